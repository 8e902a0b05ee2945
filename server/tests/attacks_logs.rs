//! Nothing sensitive in the logs: the real server binary (with its embedded sandbox) runs a full
//! flow with everything at debug or trace, and its output is searched for card numbers, CVCs,
//! API tokens, JWTs, passwords, session ids and the secret part of Jetpay's form URL.

use std::{
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use jetpay::test_util::{eventually, SANDBOX_TOKEN};
use reqwest::cookie::CookieStore;
use std::io::{BufRead, BufReader};
use url::Url;

const SUCCESS: &str = "4242424242424242";
const DECLINE: &str = "4000000000000002";
const CVC: &str = "737";
/// How long the server binary may take to do what a test waits for.
const PATIENCE: Duration = Duration::from_secs(30);

/// Reads a child's output line by line into a shared buffer.
fn collect(
    out: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { return };
            let mut log = log.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
        }
    })
}

/// The server binary as a developer runs it: the embedded sandbox in memory, ports picked by the
/// system, its database in `dir`.
fn dev_server(dir: &std::path::Path) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_server"));
    command
        .current_dir(dir)
        .env_remove("JETPAY_BASE_URL")
        .env_remove("JETPAY_API_TOKEN")
        .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
        .env("LEPTOS_SITE_ROOT", dir)
        .env("JETPAY_SANDBOX_ADDR", "127.0.0.1:0")
        .env("JETPAY_SANDBOX_DB", "memory")
        .env("DATABASE_URL", format!("sqlite://{}/app.db", dir.display()));
    command
}

/// The server process, killed when the test ends however it ends.
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Browser {
    http: reqwest::Client,
    jar: Arc<reqwest::cookie::Jar>,
    base: Url,
}

impl Browser {
    async fn call(&self, endpoint: &str, form: &[(&str, &str)]) -> (u16, String) {
        let response = self
            .http
            .post(self.base.join(&format!("/api/{endpoint}")).unwrap())
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    fn session_id(&self) -> Option<String> {
        let cookies = self.jar.cookies(&self.base)?;
        cookies
            .to_str()
            .unwrap()
            .split(';')
            .map(str::trim)
            .find_map(|c| c.strip_prefix("saved_cards_session="))
            .map(str::to_owned)
    }

    async fn card(&self, id: &str) -> serde_json::Value {
        let (status, body) = self.call("list_cards", &[]).await;
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        page["cards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or(serde_json::Value::Null)
    }

    async fn add_card(&self, number: &str, spaced: bool) -> (String, String) {
        let (status, body) = self.call("add_card", &[]).await;
        assert_eq!(status, 200, "{body}");
        let id: String = serde_json::from_str(&body).unwrap();
        let form_url = self.card(&id).await["form_url"]
            .as_str()
            .unwrap()
            .to_owned();
        // The iframe loads the form, then the customer submits it.
        let page = reqwest::get(&form_url).await.unwrap();
        assert_eq!(page.status(), 200);
        let typed = if spaced {
            number
                .as_bytes()
                .chunks(4)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            number.to_owned()
        };
        let response = reqwest::Client::new()
            .post(&form_url)
            .form(&[
                ("card_number", typed.as_str()),
                ("expiry", "12/34"),
                ("cvc", CVC),
                ("name", "Test Customer"),
                ("postal_code", "H2X 1Y4"),
            ])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        (id, form_url)
    }

    async fn wait_state(&self, id: &str, state: &str) {
        eventually(PATIENCE, &format!("card {id} {state}"), || async {
            (self.card(id).await["state"] == state).then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn a_full_run_at_trace_level_logs_no_card_data_tokens_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut child = dev_server(dir.path())
        .env(
            "RUST_LOG",
            "debug,server=trace,app=trace,jetpay=trace,jetpay_sandbox=trace,tower_http=trace,\
             tower_sessions=trace,reqwest=trace",
        )
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let readers = [
        collect(child.stdout.take().unwrap(), log.clone()),
        collect(child.stderr.take().unwrap(), log.clone()),
    ];
    let server = Server(child);

    let addr = eventually(PATIENCE, "the server to listen", || async {
        let log = log.lock().unwrap();
        let line = log.lines().find(|l| l.contains("listening"))?;
        let addr = line.split("addr=").nth(1)?.split_whitespace().next()?;
        Some(addr.to_owned())
    })
    .await;
    let base = Url::parse(&format!("http://{addr}")).unwrap();
    eventually(PATIENCE, "the webhook registration", || async {
        log.lock()
            .unwrap()
            .contains("Jetpay webhook registered")
            .then_some(())
    })
    .await;

    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = Browser {
        http: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        jar,
        base: base.clone(),
    };
    let email = format!("logs-{}@example.com", uuid::Uuid::new_v4());
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    let mut session_ids = Vec::new();

    let (status, body) = browser
        .call(
            "sign_up",
            &[
                ("name", "Log Tester"),
                ("email", &email),
                ("password", &password),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    session_ids.extend(browser.session_id());
    // Every request is logged with its id (the access log line, and lines inside it).
    let traced = browser
        .http
        .get(base.join("/health").unwrap())
        .send()
        .await
        .unwrap();
    let request_id = traced.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    let (active, active_url) = browser.add_card(SUCCESS, false).await;
    let (declined, declined_url) = browser.add_card(DECLINE, true).await;
    browser.wait_state(&active, "active").await;
    browser.wait_state(&declined, "failed").await;
    let (status, body) = browser.call("remove_card", &[("card_id", &active)]).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = browser.call("sign_out", &[]).await;
    assert!(status < 400);
    let (_, body) = browser
        .call(
            "sign_in",
            &[("email", &email), ("password", "wrong-password-123")],
        )
        .await;
    assert!(body.contains("don't match"), "{body}");
    let (status, body) = browser
        .call("sign_in", &[("email", &email), ("password", &password)])
        .await;
    assert_eq!(status, 200, "{body}");
    session_ids.extend(browser.session_id());
    assert!(!session_ids.is_empty());

    // Refusals log why, never what: a forged delivery with a JWT-shaped token, and a
    // cross-origin sign-in carrying the password.
    let forged = reqwest::Client::new()
        .post(base.join("/webhooks/jetpay").unwrap())
        .header(
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IngifQ.eyJzdWIiOiJ4In0.c2ln",
        )
        .body(r#"{"webhookId":1,"events":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let cross = reqwest::Client::new()
        .post(base.join("/api/sign_in").unwrap())
        .header("origin", "https://evil.example")
        .form(&[("email", email.as_str()), ("password", password.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);

    // The webhook deliveries were logged as applied before we stop.
    eventually(PATIENCE, "the delivery log line", || async {
        log.lock()
            .unwrap()
            .contains("webhook delivery applied")
            .then_some(())
    })
    .await;
    drop(server);
    // The readers see end of file once the process is gone.
    for reader in readers {
        reader.join().unwrap();
    }
    let log = log.lock().unwrap().clone();
    assert!(
        log.lines().count() > 50,
        "suspiciously little logged:\n{log}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains(&request_id) && l.contains("finished processing request")),
        "no access log line with request id {request_id}"
    );
    // Our callback API key (it tells our deliveries from everyone else's) is a secret too.
    let api_key: String = {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(dir.path().join("app.db"));
        let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
        let key = sqlx::query_scalar("SELECT api_key FROM jetpay_webhooks")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        key
    };

    let secret_part = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let spaced = |n: &str| {
        n.as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut forbidden: Vec<(String, String)> = vec![
        ("card number".into(), SUCCESS.into()),
        ("card number".into(), DECLINE.into()),
        ("spaced card number".into(), spaced(SUCCESS)),
        ("spaced card number".into(), spaced(DECLINE)),
        ("sandbox API token".into(), SANDBOX_TOKEN.into()),
        ("JWT".into(), "eyJ".into()),
        ("password".into(), password.clone()),
        ("wrong password".into(), "wrong-password-123".into()),
        ("form URL secret".into(), secret_part(&active_url)),
        ("form URL secret".into(), secret_part(&declined_url)),
        ("email".into(), email.clone()),
        ("password hash".into(), "$argon2".into()),
        ("callback API key".into(), api_key.clone()),
    ];
    for id in &session_ids {
        forbidden.push(("session id".into(), id.clone()));
    }
    let mut found = Vec::new();
    for (what, needle) in &forbidden {
        for line in log.lines().filter(|l| l.contains(needle.as_str())) {
            found.push(format!("{what}: {line}"));
        }
    }
    // A CVC only means something next to its name.
    let lower = log.to_ascii_lowercase();
    for name in ["cvc", "cvv", "security code"] {
        for (at, _) in lower.match_indices(name) {
            let context: String = lower[at..].chars().take(name.len() + 12).collect();
            if context.contains(CVC) {
                found.push(format!("CVC: {context}"));
            }
        }
    }
    if let Ok(path) = std::env::var("ATTACKS_LOGS_DUMP") {
        std::fs::write(path, &log).unwrap();
    }
    assert!(
        found.is_empty(),
        "sensitive data in the logs ({} lines of {}):\n{}",
        found.len(),
        log.lines().count(),
        found.join("\n")
    );
    eprintln!(
        "{} log lines searched for {} secrets: none found",
        log.lines().count(),
        forbidden.len() + 1
    );
}

/// `LEPTOS_ENV=PROD` with an unsafe configuration: the binary refuses to start (exit code 2)
/// and names the variable to fix, before it opens a port or a database.
#[test]
fn production_refuses_to_start_with_each_unsafe_configuration() {
    let jetpay = [
        (
            "JETPAY_BASE_URL",
            "https://extapi.jetpay.baselinepayments.com",
        ),
        ("JETPAY_API_TOKEN", "token"),
    ];
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        // The embedded sandbox (no Jetpay host at all).
        (
            "JETPAY_BASE_URL",
            vec![("PUBLIC_URL", "https://cards.example.com")],
        ),
        // A host without its token.
        (
            "JETPAY_API_TOKEN",
            vec![("PUBLIC_URL", "https://cards.example.com"), jetpay[0]],
        ),
        // No public URL.
        ("PUBLIC_URL", jetpay.to_vec()),
        // A public URL without TLS.
        (
            "PUBLIC_URL",
            [
                jetpay.as_slice(),
                &[("PUBLIC_URL", "http://cards.example.com")],
            ]
            .concat(),
        ),
        // Not a URL.
        (
            "PUBLIC_URL",
            [jetpay.as_slice(), &[("PUBLIC_URL", "cards.example.com")]].concat(),
        ),
    ];
    for (variable, vars) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_server"))
            .current_dir(dir.path())
            .env_clear()
            .env("LEPTOS_ENV", "PROD")
            .env("LEPTOS_SITE_ADDR", "127.0.0.1:0")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/app.db", dir.path().display()),
            )
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{variable}: {stderr}");
        assert!(stderr.contains(variable), "{variable}: {stderr}");
        assert!(
            !dir.path().join("app.db").exists(),
            "{variable}: a database was created"
        );
    }
}

/// `LOG_FORMAT=json`: every line the server writes is one JSON object (for log shippers), with
/// the request id on request lines.
#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut child = dev_server(dir.path())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reader = collect(child.stdout.take().unwrap(), log.clone());
    let server = Server(child);
    let addr = eventually(PATIENCE, "the server to listen", || async {
        let log = log.lock().unwrap();
        let line = log.lines().find(|l| l.contains("listening"))?;
        let value: serde_json::Value = serde_json::from_str(line).ok()?;
        value["addr"].as_str().map(str::to_owned)
    })
    .await;
    let response = reqwest::get(format!("http://{addr}/health")).await.unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    eventually(PATIENCE, "the access log line", || async {
        log.lock().unwrap().contains(&id).then_some(())
    })
    .await;
    drop(server);
    reader.join().unwrap();
    let log = log.lock().unwrap().clone();
    for line in log.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    let access = log.lines().find(|l| l.contains(&id)).unwrap();
    let value: serde_json::Value = serde_json::from_str(access).unwrap();
    assert_eq!(value["span"]["request_id"], id.as_str(), "{access}");
}
