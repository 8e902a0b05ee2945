//! Our server, started in-process on port 0 with the embedded sandbox, and what the benchmarks
//! do to it as Jetpay and customers would: sign up, seed cards, sign deliveries.

use std::{collections::HashMap, path::Path, time::Duration};

use app::backend::store::{Store, WebhookRegistration};
use jetpay::test_util::{batch, claims_for};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::{pkcs1::EncodeRsaPrivateKey, pkcs8::DecodePrivateKey, RsaPrivateKey};
use serde_json::Value;
use sqlx::{AnyPool, Connection};

/// Now, in the store's milliseconds: seeded pending cards must be fresh, or the server's sweep
/// expires them while the benchmark runs.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
const PASSWORD: &str = "a long bench password";

/// A server running on this process's runtime.
pub struct Running {
    pub base: String,
    pub store: Store,
    /// Where the embedded sandbox listens (another instance may share it).
    pub jetpay_url: String,
    pub registration: Option<WebhookRegistration>,
    shutdown: tokio_util::sync::CancellationToken,
}

impl Running {
    /// Starts the server with `vars` over the bench defaults (port 0, a sandbox of its own,
    /// limits out of the way). Waits for its webhook registration when it has a sandbox.
    pub async fn start(
        database_url: &str,
        sandbox_db: &Path,
        extra: &[(&str, &str)],
    ) -> Result<Self, String> {
        let mut vars: HashMap<String, String> = [
            ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
            ("JETPAY_SANDBOX_ADDR", "127.0.0.1:0"),
            ("JETPAY_SANDBOX_DB", sandbox_db.to_str().unwrap_or_default()),
            ("DATABASE_URL", database_url),
            ("IP_RATE_LIMIT_PER_MINUTE", "100000000"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        // An empty value removes a default.
        for (k, v) in extra {
            if v.is_empty() {
                vars.remove(*k);
            } else {
                vars.insert((*k).to_owned(), (*v).to_owned());
            }
        }
        let config = server::config::Config::from_vars(&vars).map_err(|e| e.to_string())?;
        let app = server::startup::Application::build(config)
            .await
            .map_err(|e| e.to_string())?;
        let base = format!("http://{}", app.local_addr());
        let callback = app
            .public_url
            .join("/webhooks/jetpay")
            .map_err(|e| e.to_string())?
            .to_string();
        let store = app.backend.store.clone();
        let jetpay_url = app.jetpay.origin();
        let shutdown = app.shutdown.clone();
        tokio::spawn(app.run());
        let mut running = Running {
            base,
            store,
            jetpay_url,
            registration: None,
            shutdown,
        };
        if !vars.contains_key("JETPAY_SANDBOX_URL") {
            running.registration = Some(running.wait_for_registration(&callback).await?);
        }
        Ok(running)
    }

    async fn wait_for_registration(&self, callback: &str) -> Result<WebhookRegistration, String> {
        for _ in 0..200 {
            if let Ok(Some(registration)) = self.store.webhook_registration(callback).await {
                return Ok(registration);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err("the server never registered its webhook".into())
    }

    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

/// Signs up a new customer over HTTP, as the sign-up form does; returns the session cookie
/// (`name=value; …`) and the customer's email.
pub async fn sign_up(
    http: &reqwest::Client,
    base: &str,
    n: usize,
) -> Result<(String, String), String> {
    let email = format!("bench{n}-{}@example.com", uuid::Uuid::new_v4().simple());
    let response = http
        .post(format!("{base}/api/sign_up"))
        .form(&[
            ("name", "Bench"),
            ("email", email.as_str()),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let cookie: Vec<String> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect();
    if !(status.is_success() || status.is_redirection()) || cookie.is_empty() {
        return Err(format!("sign-up answered {status}"));
    }
    Ok((cookie.join("; "), email))
}

/// Signs up `count` customers, a few at a time (as many as argon2 runs at once, and then some);
/// each one's session cookie and email.
pub async fn sign_up_many(
    http: &reqwest::Client,
    base: &str,
    count: usize,
) -> Result<Vec<(String, String)>, String> {
    use futures::{stream, StreamExt};
    stream::iter(0..count)
        .map(|n| sign_up(http, base, n))
        .buffered(4)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

/// An HTTP client that keeps cookies out of it (each request names its own) and never follows
/// redirects (a sign-up's answer carries the cookie).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client")
}

/// Gives the customer with `email` a Jetpay contact and `count` pending cards, the rows Add card
/// leaves; returns (contact, the cards' Jetpay ids).
pub async fn seed_cards(
    pool: &AnyPool,
    customer_id: &str,
    count: usize,
    state: &str,
) -> Result<(String, Vec<String>), String> {
    let contact = uuid::Uuid::new_v4().to_string();
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    sqlx::query("UPDATE customers SET jetpay_contact_id = $1 WHERE id = $2")
        .bind(&contact)
        .bind(customer_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let cards: Vec<(String, String)> = (0..count)
        .map(|_| {
            (
                uuid::Uuid::new_v4().to_string(),
                format!("jp-{}", uuid::Uuid::new_v4()),
            )
        })
        .collect();
    if !cards.is_empty() {
        let active = state == "active";
        let tail = if active {
            ", 'active', 'visa', '4242', 12, 2031, $0, $0"
        } else {
            ", 'pending', NULL, NULL, NULL, NULL, $0, $0"
        };
        let sql = format!(
            "INSERT INTO cards (id, customer_id, jetpay_card_id, state, brand, last4, exp_month, \
             exp_year, created_at, updated_at) VALUES {}",
            placeholders(cards.len(), 3, tail)
        );
        let mut insert = sqlx::query(&sql).bind(now_ms());
        for (id, jetpay) in &cards {
            insert = insert
                .bind(id.clone())
                .bind(customer_id.to_owned())
                .bind(jetpay.clone());
        }
        insert.execute(&mut *tx).await.map_err(|e| e.to_string())?;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok((
        contact,
        cards.into_iter().map(|(_, jetpay)| jetpay).collect(),
    ))
}

pub async fn customer_id(pool: &AnyPool, email: &str) -> Result<String, String> {
    sqlx::query_scalar("SELECT id FROM customers WHERE email = $1")
        .bind(email)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())
}

/// `rows` value lists of `per_row` placeholders each, numbered from `$2`, each followed by
/// `tail`, in which `$0` stands for `$1` (a value shared by every row, bound first). Written out
/// because the `Any` driver's query builder emits `?`, which PostgreSQL does not take.
pub fn placeholders(rows: usize, per_row: usize, tail: &str) -> String {
    let tail = tail.replace("$0", "$1");
    (0..rows)
        .map(|r| {
            let own: Vec<String> = (0..per_row)
                .map(|c| format!("${}", 2 + r * per_row + c))
                .collect();
            format!("({}{tail})", own.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Signs deliveries as Jetpay does, with the embedded sandbox's current key.
pub struct Signer {
    kid: String,
    key: EncodingKey,
}

impl Signer {
    /// The key from the sandbox's database.
    pub async fn of_sandbox(path: &Path) -> Result<Self, String> {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .map_err(|e| e.to_string())?;
        let (kid, pem): (String, String) =
            sqlx::query_as("SELECT kid, private_key_pem FROM signing_keys WHERE is_current = 1")
                .fetch_one(&mut conn)
                .await
                .map_err(|e| e.to_string())?;
        let private = RsaPrivateKey::from_pkcs8_pem(&pem).map_err(|e| e.to_string())?;
        let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
        Ok(Signer {
            kid,
            key: EncodingKey::from_rsa_der(der.as_bytes()),
        })
    }

    /// A delivery of `events` to our webhook: its body and `Authorization` header.
    pub fn delivery(&self, webhook_id: i64, events: &[Value]) -> (Vec<u8>, String) {
        let body = batch(webhook_id, events);
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims_for(&body), &self.key).expect("signs");
        (body, format!("Bearer {token}"))
    }
}

/// A delivery's POST, as Jetpay sends it.
pub fn post_delivery(
    http: &reqwest::Client,
    base: &str,
    api_key: &str,
    (body, auth): (Vec<u8>, String),
) -> reqwest::RequestBuilder {
    http.post(format!("{base}/webhooks/jetpay"))
        .header("content-type", "application/json")
        .header("authorization", auth)
        .header(jetpay::unspecified::CALLBACK_API_KEY_HEADER, api_key)
        .body(body)
}

/// The value at quantile `q` (0–1) of sorted samples.
pub fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_after_the_shared_value() {
        assert_eq!(
            super::placeholders(2, 2, ", 'x', $0"),
            "($2, $3, 'x', $1), ($4, $5, 'x', $1)"
        );
    }

    #[test]
    fn quantiles_of_sorted_samples() {
        let samples: Vec<u32> = (1..=100).collect();
        assert_eq!(super::quantile(&samples, 0.5), 51);
        assert_eq!(super::quantile(&samples, 0.99), 99);
        assert_eq!(super::quantile(&[] as &[u32], 0.99), 0);
    }
}
