//! Helpers for the fault tests (`faults_*.rs`): a Jetpay sandbox run beside the server as a
//! remote Jetpay (so its timings and storage are the test's to choose), its fault and event-log
//! endpoints.
#![allow(dead_code)]

use std::time::Duration;

use jetpay::test_util::SANDBOX_TOKEN;
use jetpay_sandbox::{Sandbox, SandboxConfig, Storage};
use reqwest::Method;
use serde_json::Value;
use url::Url;

use super::{spawn_app_with, TestApp};

/// A sandbox with fast timings: card service 20 ms (slow card 300 ms), immediate batches
/// allowed, retries from 50 ms, and enough attempts that injected failures never make the
/// webhook give up.
pub fn fast_sandbox_config(storage: Storage) -> SandboxConfig {
    SandboxConfig {
        listen_addr: ([127, 0, 0, 1], 0).into(),
        storage,
        api_tokens: vec![SANDBOX_TOKEN.to_owned()],
        processing_time: Duration::from_millis(20),
        slow_processing_time: Duration::from_millis(300),
        min_wait_seconds: 0,
        retry_base: Duration::from_millis(50),
        max_attempts: 12,
        delivery_timeout: Duration::from_secs(10),
        ..SandboxConfig::default()
    }
}

pub async fn start_sandbox(config: SandboxConfig) -> Sandbox {
    jetpay_sandbox::start(config).await.expect("sandbox starts")
}

/// The real server (in process, port 0, temporary SQLite) using `sandbox` as a remote Jetpay:
/// immediate batches of up to `batch_size`, gap checks every second.
pub async fn spawn_app_against(jetpay: &Url, batch_size: u32, extra: &[(&str, &str)]) -> TestApp {
    let batch = batch_size.to_string();
    let mut vars: Vec<(&str, &str)> = vec![
        ("JETPAY_BASE_URL", jetpay.as_str()),
        ("JETPAY_API_TOKEN", SANDBOX_TOKEN),
        ("WEBHOOK_MAX_WAIT_SECONDS", "0"),
        ("WEBHOOK_MAX_BATCH_SIZE", &batch),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars).await
}

/// The sandbox's admin endpoints (fault injection, event log, attempts).
#[derive(Clone)]
pub struct SandboxAdmin {
    pub base: Url,
    http: reqwest::Client,
}

impl SandboxAdmin {
    pub fn new(base: &Url) -> Self {
        Self {
            base: base.clone(),
            http: super::client(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Value {
        let mut request = self
            .http
            .request(method.clone(), self.base.join(path).unwrap())
            .bearer_auth(SANDBOX_TOKEN);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("sandbox answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    /// Merges `faults` into the sandbox's faults.
    pub async fn faults(&self, faults: &Value) -> Value {
        self.call(Method::POST, "_sandbox/faults", Some(faults))
            .await
    }

    pub async fn clear_faults(&self) {
        self.call(Method::DELETE, "_sandbox/faults", None).await;
    }

    /// Every event of the log with an id above `after`, ascending.
    pub async fn events_after(&self, mut after: i64) -> Vec<Value> {
        let mut all = Vec::new();
        loop {
            let page = self
                .call(
                    Method::GET,
                    &format!("_sandbox/events?after={after}&limit=1000"),
                    None,
                )
                .await;
            let page = page.as_array().cloned().unwrap_or_default();
            let Some(last) = page.last() else {
                return all;
            };
            after = last["id"].as_i64().expect("event id");
            all.extend(page);
        }
    }

    /// Waits until a webhook with this callback URL is registered at the sandbox.
    pub async fn wait_for_webhook(&self, callback_url: &str) {
        jetpay::test_util::eventually(Duration::from_secs(30), "webhook registered", || async {
            self.webhooks()
                .await
                .into_iter()
                .any(|w| w["callback_url"] == callback_url)
                .then_some(())
        })
        .await;
    }

    /// The contacts platforms created at the sandbox.
    pub async fn contacts(&self) -> Vec<Value> {
        let contacts = self.call(Method::GET, "_sandbox/contacts", None).await;
        contacts.as_array().cloned().unwrap_or_default()
    }

    /// The webhooks registered at the sandbox.
    pub async fn webhooks(&self) -> Vec<Value> {
        self.call(Method::GET, "webhooks/", None)
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The identifier of the webhook registered with this callback URL.
    pub async fn webhook_identifier(&self, callback_url: &str) -> String {
        self.webhooks()
            .await
            .into_iter()
            .find(|w| w["callback_url"] == callback_url)
            .and_then(|w| w["identifier"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("no webhook for {callback_url}"))
    }

    pub async fn attempts(&self, identifier: &str) -> Vec<Value> {
        self.call(
            Method::GET,
            &format!("_sandbox/webhooks/{identifier}/attempts"),
            None,
        )
        .await
        .as_array()
        .cloned()
        .unwrap_or_default()
    }
}

/// Fills in the hosted form with a valid expiry and a CVC of the right length for `number`.
/// Answers the form's HTTP status.
pub async fn submit_form(http: &reqwest::Client, form_url: &str, number: &str) -> u16 {
    let cvc = if number.starts_with("34") || number.starts_with("37") {
        "1234"
    } else {
        "123"
    };
    http.post(form_url)
        .form(&[
            ("card_number", number),
            ("expiry", "12/39"),
            ("cvc", cvc),
            ("name", "Test Customer"),
            ("postal_code", "H2X 1Y4"),
        ])
        .send()
        .await
        .expect("form answers")
        .status()
        .as_u16()
}

/// A new customer signed up through the server function of a server at `base` (a separately
/// started binary), in a client that keeps its session cookie.
pub async fn signed_up(base: &str, name: &str) -> reqwest::Client {
    let http = super::client_builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let email = format!("{name}-{}@example.com", uuid::Uuid::new_v4());
    let response = http
        .post(format!("{base}/api/sign_up"))
        .form(&[
            ("name", name),
            ("email", email.as_str()),
            ("password", "a long password"),
        ])
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    http
}
