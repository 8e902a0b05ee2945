//! Shared test harness: a sandbox driven through the `jetpay` client, plain HTTP for the hosted
//! form and the admin endpoints, and a webhook receiver that verifies every batch with
//! `jetpay::Verifier` and records it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use chrono::Datelike;
use serde_json::Value;
use uuid::Uuid;

use jetpay::test_util::eventually;
use jetpay::unspecified;
use jetpay::wire::{
    CardTokenized, Contact, Event, NewContact, NewWebhook, Webhook, WebhookBatch, WebhookState,
};
use jetpay::{ApiToken, Client, ClientConfig, Verifier};
use jetpay_sandbox::{Sandbox, SandboxConfig};

pub const TOKEN: &str = "sandbox-test-token";
pub const FRAME_ORIGIN: &str = "http://localhost:3000";

pub struct Harness {
    pub sandbox: Sandbox,
    pub client: Client,
    pub http: reqwest::Client,
}

pub fn client_for(sandbox: &Sandbox, token: &str) -> Client {
    Client::new(ClientConfig::new(sandbox.base_url(), ApiToken::new(token))).expect("client")
}

pub fn test_config() -> SandboxConfig {
    SandboxConfig {
        frame_ancestors: vec![FRAME_ORIGIN.to_owned()],
        ..SandboxConfig::for_tests()
    }
}

impl Harness {
    pub async fn start() -> Self {
        Self::with(test_config()).await
    }

    pub async fn with(config: SandboxConfig) -> Self {
        let sandbox = jetpay_sandbox::start(config).await.expect("sandbox starts");
        let client = client_for(&sandbox, TOKEN);
        Harness {
            sandbox,
            client,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.sandbox.base_url().join(path).unwrap().to_string()
    }

    pub async fn contact(&self) -> Contact {
        self.client
            .create_contact(&NewContact {
                email: "ada@example.com".into(),
                name: "Ada Lovelace".into(),
                tags: vec![],
                language: "en".into(),
            })
            .await
            .expect("contact")
    }

    /// A fresh contact's tokenization URL and card id.
    pub async fn card_url(&self) -> (Contact, jetpay::wire::TokenizationUrl) {
        let contact = self.contact().await;
        let url = self
            .client
            .create_tokenization_url(contact.id)
            .await
            .expect("tokenization url");
        (contact, url)
    }

    pub async fn post_form(&self, url: &str, fields: &[(&str, &str)]) -> (StatusCode, String) {
        let res = self
            .http
            .post(url)
            .form(fields)
            .send()
            .await
            .expect("form post");
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        (status, res.text().await.unwrap())
    }

    /// Submits the hosted form with a valid expiry, CVC, name and postal code.
    pub async fn submit_card(&self, url: &str, number: &str) -> (StatusCode, String) {
        let cvc = if number.starts_with("34") || number.starts_with("37") {
            "1234"
        } else {
            "123"
        };
        let expiry = format!("12/{}", (chrono::Utc::now().year() + 3) % 100);
        self.post_form(
            url,
            &[
                ("card_number", number),
                ("expiry", &expiry),
                ("cvc", cvc),
                ("name", "Ada Lovelace"),
                ("postal_code", "H2X 1Y4"),
            ],
        )
        .await
    }

    /// A new card URL submitted with `number`; answers the credit card id.
    pub async fn new_card(&self, number: &str) -> String {
        let (_, url) = self.card_url().await;
        let (status, _) = self.submit_card(&url.url, number).await;
        assert_eq!(status, StatusCode::OK, "submitting {number}");
        url.credit_card_id
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap();
        let status = StatusCode::from_u16(res.status().as_u16()).unwrap();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn faults(&self, body: Value) -> Value {
        let (status, body) = self
            .admin(reqwest::Method::POST, "_sandbox/faults", Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    pub async fn attempts(&self, webhook: &Webhook) -> Vec<Value> {
        let path = format!("_sandbox/webhooks/{}/attempts", webhook.identifier);
        let (status, body) = self.admin(reqwest::Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        body.as_array().cloned().unwrap_or_default()
    }

    /// A webhook delivering to `receiver`.
    pub async fn webhook(
        &self,
        receiver: &Receiver,
        max_batch_size: u32,
        max_wait_seconds: u32,
    ) -> Webhook {
        self.client
            .create_webhook(&NewWebhook {
                callback_url: receiver.url.clone(),
                max_batch_size: Some(max_batch_size),
                max_wait_seconds: Some(max_wait_seconds),
                ..NewWebhook::default()
            })
            .await
            .expect("webhook")
    }

    pub async fn wait_for_state(
        &self,
        webhook: &Webhook,
        state: WebhookState,
        within: Duration,
    ) -> Webhook {
        let what = format!("webhook {} {state:?}", webhook.identifier);
        eventually(within, &what, || async {
            let now = self.client.get_webhook(webhook.identifier).await.unwrap();
            (now.state == state).then_some(now)
        })
        .await
    }
}

/// One POST the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub batch: WebhookBatch,
    pub raw: String,
    pub api_key: Option<String>,
    pub kid: Option<String>,
    pub at: Instant,
}

/// What the receiver answers to the next requests, before falling back to 200.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Hang this long, then 200 (to exceed the delivery timeout).
    Hang(Duration),
}

struct ReceiverState {
    verifier: Verifier,
    accepted: Mutex<Vec<Received>>,
    rejected: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Answer>>,
    requests: AtomicUsize,
}

/// A webhook endpoint on 127.0.0.1 that verifies every delivery.
pub struct Receiver {
    pub url: String,
    state: Arc<ReceiverState>,
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    state.requests.fetch_add(1, Ordering::SeqCst);
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    assert_eq!(
        headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/json")
    );
    let batch = match state.verifier.verify(authorization, &body).await {
        Ok(batch) => batch,
        Err(e) => {
            state.rejected.lock().unwrap().push(e.to_string());
            return StatusCode::UNAUTHORIZED;
        }
    };
    let next = state.script.lock().unwrap().pop_front();
    match next {
        Some(Answer::Status(code)) => return StatusCode::from_u16(code).unwrap(),
        Some(Answer::Hang(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    let kid = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .and_then(|t| jsonwebtoken::decode_header(t).ok())
        .and_then(|h| h.kid);
    state.accepted.lock().unwrap().push(Received {
        batch,
        raw: String::from_utf8_lossy(&body).into_owned(),
        api_key: headers
            .get(unspecified::CALLBACK_API_KEY_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        kid,
        at: Instant::now(),
    });
    StatusCode::OK
}

impl Receiver {
    pub async fn start(harness: &Harness) -> Self {
        Self::with_verifier(Verifier::new(harness.client.clone())).await
    }

    pub async fn with_verifier(verifier: Verifier) -> Self {
        let state = Arc::new(ReceiverState {
            verifier,
            accepted: Mutex::new(Vec::new()),
            rejected: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver {
            url: format!("http://{addr}/hook"),
            state,
        }
    }

    /// The next requests get these answers (then 200 again).
    pub fn script(&self, answers: &[Answer]) {
        self.state
            .script
            .lock()
            .unwrap()
            .extend(answers.iter().copied());
    }

    pub fn clear_script(&self) {
        self.state.script.lock().unwrap().clear();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.accepted.lock().unwrap().clone()
    }

    pub fn events(&self) -> Vec<Event> {
        self.received()
            .into_iter()
            .flat_map(|r| r.batch.events)
            .collect()
    }

    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Every delivery so far verified; panics with the reasons otherwise.
    pub fn assert_all_verified(&self) {
        let rejected = self.state.rejected.lock().unwrap().clone();
        assert!(
            rejected.is_empty(),
            "deliveries failed verification: {rejected:?}"
        );
    }

    /// Waits until at least `n` events have been accepted.
    pub async fn wait_for_events(&self, n: usize, within: Duration) -> Vec<Event> {
        let events = eventually(within, &format!("{n} events received"), || async {
            let events = self.events();
            (events.len() >= n).then_some(events)
        })
        .await;
        self.assert_all_verified();
        events
    }

    /// Waits for the tokenization event of `card_id`.
    pub async fn wait_for_card(&self, card_id: &str, within: Duration) -> (Event, CardTokenized) {
        let what = format!("an event for card {card_id}");
        let found = eventually(within, &what, || async {
            self.events().into_iter().find_map(|e| {
                let data = tokenized(&e)?;
                (data.credit_card_id == card_id).then_some((e, data))
            })
        })
        .await;
        self.assert_all_verified();
        found
    }
}

pub fn tokenized(e: &Event) -> Option<CardTokenized> {
    match e.kind() {
        jetpay::wire::EventKind::CardTokenized(data) => Some(data),
        _ => None,
    }
}

pub fn status_of(err: jetpay::Error) -> (u16, String) {
    match err {
        jetpay::Error::Status { status, body } => (status, body),
        other => panic!("expected a status error, got {other:?}"),
    }
}

pub fn random_id() -> Uuid {
    Uuid::new_v4()
}
