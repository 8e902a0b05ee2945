//! `spawn_app`: the real server on port 0, the embedded sandbox in memory on port 0, and a
//! database of its own (SQLite, or PostgreSQL when `TEST_POSTGRES_URL` is set: see [`db`]), plus
//! a customer-shaped HTTP client.
#![allow(dead_code)]

pub mod db;
pub mod faults;
pub mod process;

use std::{collections::HashMap, sync::Arc, time::Duration};

use app::backend::{store::WebhookRegistration, Backend};
use jetpay::test_util::{eventually, SANDBOX_TOKEN};
use reqwest::StatusCode;
use serde_json::Value;
use server::{config::Config, startup::Application};
use url::Url;

/// How long a test's HTTP client waits for the server to say anything (response headers, or the
/// next piece of a body; a live stream sends a heartbeat every 15 s). A server that stops
/// answering then fails its test with a timeout instead of hanging the suite.
const SILENCE: Duration = Duration::from_secs(60);

/// A test's HTTP client: like a browser's, it gives up on a silent server (see [`SILENCE`]).
pub fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

/// [`client`], for a test that needs more settings (a cookie jar, no redirects).
pub fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(SILENCE)
}

pub struct TestApp {
    /// Where the server listens (plain HTTP on loopback): what tests send requests to.
    pub base: Url,
    /// `PUBLIC_URL` (defaults to `base`): what browsers and Jetpay are told; the webhook's
    /// callback URL is built from it.
    pub public: Url,
    pub sandbox: Url,
    pub backend: Arc<Backend>,
    /// The database behind the server, for tests that lock it like another process would.
    pub db: db::TestDatabase,
    /// The test's own connections to it, for looking at what the server stored.
    pub pool: sqlx::AnyPool,
    _dir: tempfile::TempDir,
}

/// The server in production mode (`LEPTOS_ENV=PROD`), which refuses the embedded sandbox: a
/// sandbox started on its own stands in for the real Jetpay host, and `PUBLIC_URL` is https (a
/// TLS-terminating proxy would be in front). Keep the returned sandbox alive.
pub async fn spawn_prod_app(extra: &[(&str, &str)]) -> (TestApp, jetpay_sandbox::Sandbox) {
    let sandbox = jetpay_sandbox::start(jetpay_sandbox::SandboxConfig {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        storage: jetpay_sandbox::Storage::Memory,
        api_tokens: vec![SANDBOX_TOKEN.to_owned()],
        min_wait_seconds: 0,
        ..Default::default()
    })
    .await
    .expect("sandbox starts");
    let jetpay = sandbox.base_url().to_string();
    let mut vars = vec![
        ("LEPTOS_ENV", "PROD"),
        ("PUBLIC_URL", "https://cards.example.test"),
        ("JETPAY_BASE_URL", jetpay.as_str()),
        ("JETPAY_API_TOKEN", SANDBOX_TOKEN),
    ];
    vars.extend_from_slice(extra);
    (spawn_app_unregistered(&vars).await, sandbox)
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    let test = spawn_app_unregistered(extra).await;
    test.wait_for_webhook().await;
    test
}

/// Like [`spawn_app_with`], without waiting for the webhook registration (which never succeeds
/// against a broken Jetpay).
pub async fn spawn_app_unregistered(extra: &[(&str, &str)]) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = db::TestDatabase::create(dir.path()).await;
    let mut vars: HashMap<String, String> = [
        ("LEPTOS_SITE_ADDR", "127.0.0.1:0"),
        ("JETPAY_SANDBOX_ADDR", "127.0.0.1:0"),
        ("JETPAY_SANDBOX_DB", "memory"),
        ("SWEEP_INTERVAL_SECS", "1"),
        ("GAP_GRACE_SECS", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    vars.insert("DATABASE_URL".into(), db.url());
    for (k, v) in extra {
        vars.insert((*k).to_owned(), (*v).to_owned());
    }
    let config = Config::from_vars(&vars).expect("test config");
    let app = Application::build(config).await.expect("app builds");
    let base = Url::parse(&format!("http://{}", app.local_addr())).unwrap();
    let public = app.public_url.clone();
    let sandbox = app.jetpay.client.base_url().clone();
    let backend = app.backend.clone();
    tokio::spawn(app.run());
    TestApp {
        base,
        public,
        sandbox,
        backend,
        pool: db.pool().await,
        db,
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        self.base.join(path).unwrap().to_string()
    }

    /// Our webhook's callback URL, as registered at Jetpay.
    pub fn callback_url(&self) -> String {
        self.public.join("/webhooks/jetpay").unwrap().to_string()
    }

    /// Our webhook's state at the sandbox, as Jetpay reports it.
    pub async fn webhook_state(&self) -> jetpay::wire::WebhookState {
        let identifier = uuid::Uuid::parse_str(&self.registration().await.identifier).unwrap();
        self.backend
            .jetpay
            .get_webhook(identifier)
            .await
            .unwrap()
            .state
    }

    /// Waits until the server has registered its webhook at the sandbox.
    async fn wait_for_webhook(&self) {
        let callback = self.callback_url();
        eventually(Duration::from_secs(5), "webhook registered", || async {
            self.backend
                .store
                .webhook_identifier(&callback)
                .await
                .ok()?
        })
        .await;
    }

    /// A new customer, signed in, in their own cookie jar.
    pub async fn customer(&self, name: &str) -> Customer {
        let http = client_builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4());
        let customer = Customer {
            http,
            base: self.base.clone(),
            email,
        };
        let (status, body) = customer
            .call(
                "sign_up",
                &[
                    ("name", name),
                    ("email", &customer.email),
                    ("password", "a long password"),
                ],
            )
            .await;
        assert!(status.is_success(), "sign up failed: {status} {body}");
        customer
    }

    pub async fn card_state(&self, card_id: &str) -> String {
        sqlx::query_scalar("SELECT state FROM cards WHERE id = $1")
            .bind(card_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn jetpay_card_id(&self, card_id: &str) -> String {
        sqlx::query_scalar("SELECT jetpay_card_id FROM cards WHERE id = $1")
            .bind(card_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    pub async fn wait_for_state(&self, card_id: &str, state: &str) {
        self.wait_for_state_within(card_id, state, Duration::from_secs(10))
            .await
    }

    pub async fn wait_for_state_within(&self, card_id: &str, state: &str, limit: Duration) {
        let what = format!("card {card_id} to become {state}");
        eventually(limit, &what, || async {
            (self.card_state(card_id).await == state).then_some(())
        })
        .await
    }

    /// Our webhook registration at the sandbox: its numeric id and the callback API key Jetpay
    /// sends back on every delivery of it.
    pub async fn registration(&self) -> WebhookRegistration {
        self.backend
            .store
            .webhook_registration(&self.callback_url())
            .await
            .unwrap()
            .expect("webhook registered")
    }

    /// The Jetpay contact of the customer who owns a Jetpay card id: what Jetpay's event for
    /// that card carries as `contactId`.
    pub async fn contact_of(&self, jetpay_card_id: &str) -> String {
        sqlx::query_scalar(
            "SELECT cu.jetpay_contact_id FROM cards c JOIN customers cu ON cu.id = c.customer_id \
             WHERE c.jetpay_card_id = $1",
        )
        .bind(jetpay_card_id)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }

    /// Posts a body to the webhook with the given Authorization header and our callback API key,
    /// as Jetpay delivers to our webhook.
    pub async fn deliver(&self, authorization: Option<&str>, body: &[u8]) -> StatusCode {
        let key = self.registration().await.api_key;
        self.deliver_with_key(Some(&key), authorization, body).await
    }

    /// Posts a body with the given callback API key header (or none).
    pub async fn deliver_with_key(
        &self,
        api_key: Option<&str>,
        authorization: Option<&str>,
        body: &[u8],
    ) -> StatusCode {
        let mut request = client()
            .post(self.url("/webhooks/jetpay"))
            .header("content-type", "application/json")
            .body(body.to_vec());
        if let Some(a) = authorization {
            request = request.header("authorization", a);
        }
        if let Some(k) = api_key {
            request = request.header(jetpay::unspecified::CALLBACK_API_KEY_HEADER, k);
        }
        request.send().await.unwrap().status()
    }

    /// Fills in Jetpay's hosted form like a customer would.
    pub async fn submit_card(&self, form_url: &str, number: &str) {
        let response = client()
            .post(form_url)
            .form(&[
                ("card_number", number),
                ("expiry", "12/34"),
                ("cvc", "123"),
                ("name", "Test Customer"),
                ("postal_code", "H2X 1Y4"),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "form post: {}",
            response.status()
        );
    }
}

pub struct Customer {
    pub http: reqwest::Client,
    pub base: Url,
    pub email: String,
}

impl Customer {
    /// Calls a server function the way a page without WASM would (form-encoded POST).
    pub async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (StatusCode, String) {
        let response = self
            .http
            .post(self.base.join(&format!("/api/{endpoint}")).unwrap())
            .form(form)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }

    /// Opens the live card stream, as a page does.
    pub async fn open_stream(&self) -> reqwest::Response {
        self.http
            .get(self.base.join("/account/cards/events").unwrap())
            .send()
            .await
            .unwrap()
    }

    pub async fn add_card(&self) -> String {
        let (status, body) = self.call("add_card", &[]).await;
        assert!(status.is_success(), "add_card: {status} {body}");
        serde_json::from_str::<String>(&body).unwrap()
    }

    pub async fn cards(&self) -> Value {
        let (status, body) = self.call("list_cards", &[]).await;
        assert!(status.is_success(), "list_cards: {status} {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub async fn form_url(&self, card_id: &str) -> String {
        let page = self.cards().await;
        page["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == card_id)
            .and_then(|c| c["form_url"].as_str())
            .expect("pending card has a form URL")
            .to_owned()
    }
}
