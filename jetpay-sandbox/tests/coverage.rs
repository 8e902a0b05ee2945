//! Documented facts (`shared/jetpay-api.md`, marked D) that no other test pinned down, found
//! while writing `docs/jetpay-coverage.md`: the exact shape of a delivery (method, headers, JWT
//! header and claims, body keys, ascending consecutive ids), what counts as success (any 2xx,
//! nothing else), the callback API key on every attempt, the registration bounds under the
//! documented 60 s minimum wait, the documented defaults, and the hosted page never telling the
//! parent window the outcome.

mod common;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::*;
use jetpay::test_util::eventually;
use jetpay::unspecified;
use jetpay::wire::{NewWebhook, Webhook};
use jetpay::Verifier;
use jetpay_sandbox::SandboxConfig;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const SOON: Duration = Duration::from_secs(5);

/// One request as the receiver saw it, before any verification.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

/// A webhook endpoint that records every request raw and answers scripted statuses (then 200).
#[derive(Clone, Default)]
struct Capture {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<VecDeque<u16>>>,
}

async fn record(
    State(c): State<Capture>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    c.seen.lock().unwrap().push(Seen {
        method,
        headers,
        body,
    });
    let code = c.script.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(code).unwrap()
}

impl Capture {
    async fn start(script: &[u16]) -> (String, Capture) {
        let capture = Capture::default();
        capture.script.lock().unwrap().extend(script);
        let app = Router::new()
            .route("/hook", any(record))
            .with_state(capture.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hook"), capture)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, n: usize) -> Vec<Seen> {
        eventually(SOON, &format!("{n} requests"), || async {
            let seen = self.seen();
            (seen.len() >= n).then_some(seen)
        })
        .await
    }
}

fn header<'a>(s: &'a Seen, name: &str) -> Option<&'a str> {
    s.headers.get(name).and_then(|v| v.to_str().ok())
}

fn sorted_keys(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    keys.sort();
    keys
}

/// The JOSE header and the claims of a bearer JWT, decoded without verifying anything.
fn jwt_parts(authorization: &str) -> (Value, Value) {
    let token = authorization
        .strip_prefix("Bearer ")
        .expect("Authorization: Bearer <jwt>");
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let decode = |p: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64url")).expect("JSON")
    };
    (decode(parts[0]), decode(parts[1]))
}

async fn wait_for_last_sent(h: &Harness, hook: &Webhook, id: i64) -> Webhook {
    eventually(SOON, &format!("last_sent_event_id {id}"), || async {
        let now = h.client.get_webhook(hook.identifier).await.unwrap();
        (now.last_sent_event_id == Some(id)).then_some(now)
    })
    .await
}

/// D: one delivery is one POST of a non-empty batch `{"webhookId", "events": [{"id",
/// "createdAt", "type", "data"}]}` in ascending id order, with `Content-Type: application/json`,
/// `Authorization: Bearer <jwt>` (RS256, `kid` in the JWKS; `jti` UUID, `iat`, `exp` ≈ 90 s
/// later, `iss` jetpay, `sub` webhook, `payload_hash` = base64url(SHA-256(body))), the callback
/// API key header, and ids that are consecutive (never skipped).
#[tokio::test]
async fn a_delivery_is_one_signed_json_post_of_the_documented_shape() {
    let h = Harness::start().await;
    let (url, capture) = Capture::start(&[]).await;
    let hook = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: url,
            callback_api_key: Some("k-shape".into()),
            max_batch_size: Some(3),
            max_wait_seconds: Some(3600),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    for _ in 0..3 {
        h.new_card("4242424242424242").await;
    }
    let seen = capture.wait_for(1).await;
    let req = &seen[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(header(req, "content-type"), Some("application/json"));
    assert_eq!(
        header(req, unspecified::CALLBACK_API_KEY_HEADER),
        Some("k-shape")
    );

    // The JWT: header and claims as documented.
    let authorization = header(req, "authorization").expect("Authorization header");
    let (jose, claims) = jwt_parts(authorization);
    assert_eq!(jose["alg"], "RS256");
    let kid = jose["kid"].as_str().expect("a kid");
    let jwks = h.client.jwks().await.unwrap();
    assert!(
        jwks.keys
            .iter()
            .any(|k| k.common.key_id.as_deref() == Some(kid)),
        "kid {kid} is in the JWKS"
    );
    assert_eq!(
        sorted_keys(&claims),
        ["exp", "iat", "iss", "jti", "payload_hash", "sub"]
    );
    uuid::Uuid::parse_str(claims["jti"].as_str().unwrap()).expect("jti is a UUID");
    let iat = claims["iat"].as_i64().unwrap();
    let exp = claims["exp"].as_i64().unwrap();
    assert!(
        (iat - chrono::Utc::now().timestamp()).abs() < 60,
        "iat is now"
    );
    assert!(
        (80..=100).contains(&(exp - iat)),
        "exp about 90 s after iat"
    );
    assert_eq!(claims["iss"], "jetpay");
    assert_eq!(claims["sub"], "webhook");
    assert_eq!(
        claims["payload_hash"].as_str().unwrap(),
        URL_SAFE_NO_PAD.encode(Sha256::digest(&req.body)),
        "base64url(SHA-256(raw body))"
    );

    // The body: exactly the documented keys, ids ascending and consecutive.
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(sorted_keys(&body), ["events", "webhookId"]);
    assert_eq!(body["webhookId"], hook.id);
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 3, "one POST with the whole batch");
    for e in events {
        assert_eq!(sorted_keys(e), ["createdAt", "data", "id", "type"]);
        assert_eq!(e["type"], unspecified::CARD_TOKENIZED_EVENT);
        assert!(e["data"].is_object());
    }
    let ids: Vec<i64> = events.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(
        ids.windows(2).all(|w| w[1] == w[0] + 1),
        "ascending, none skipped: {ids:?}"
    );

    // And the project's verifier accepts exactly these bytes.
    let batch = Verifier::new(h.client.clone())
        .verify(Some(authorization), &req.body)
        .await
        .unwrap();
    assert_eq!(batch.events.len(), 3);
    wait_for_last_sent(&h, &hook, ids[2]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        capture.seen().len(),
        1,
        "nothing more: never an empty batch"
    );
}

/// D: the receiver must answer 2xx; anything else (here a redirect and a 500) is a failed
/// attempt that is retried, with the callback API key on every attempt. Any 2xx (here 204)
/// is success: `last_sent_event_id` moves and nothing is sent again. A webhook with nothing
/// waiting sends nothing, even with `max_wait_seconds` 0.
#[tokio::test]
async fn only_a_2xx_is_success_and_every_retry_carries_the_api_key() {
    let h = Harness::start().await;
    let (url, capture) = Capture::start(&[302, 500, 204]).await;
    let hook = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: url,
            callback_api_key: Some("k-retry".into()),
            max_batch_size: Some(10),
            max_wait_seconds: Some(0),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(capture.seen().is_empty(), "no events, no POST");

    h.new_card("4242424242424242").await;
    let seen = capture.wait_for(3).await;
    let body: Value = serde_json::from_slice(&seen[2].body).unwrap();
    let id = body["events"][0]["id"].as_i64().unwrap();
    let hook = wait_for_last_sent(&h, &hook, id).await;
    assert_eq!(hook.state, jetpay::wire::WebhookState::Active);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let seen = capture.seen();
    assert_eq!(seen.len(), 3, "the 204 ended the retries");

    let mut jtis = std::collections::HashSet::new();
    for s in &seen {
        assert_eq!(
            header(s, unspecified::CALLBACK_API_KEY_HEADER),
            Some("k-retry")
        );
        assert_eq!(s.body, seen[0].body, "the same batch each time");
        jtis.insert(jwt_parts(header(s, "authorization").unwrap()).1["jti"].to_string());
    }
    assert_eq!(jtis.len(), 3, "a fresh token (jti) for every request");

    let attempts = h.attempts(&hook).await;
    let summary: Vec<(Option<i64>, &str)> = attempts
        .iter()
        .map(|a| (a["status_code"].as_i64(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        summary,
        [
            (Some(302), "failed"),
            (Some(500), "failed"),
            (Some(204), "delivered")
        ]
    );
}

/// D: `max_batch_size` 1–100 (default 10) and `max_wait_seconds` 60–3600 (default 60), with the
/// sandbox enforcing the documented 60 s minimum; the bounds themselves are accepted.
#[tokio::test]
async fn webhook_settings_at_their_documented_bounds() {
    let mut config = test_config();
    config.min_wait_seconds = SandboxConfig::default().min_wait_seconds;
    assert_eq!(config.min_wait_seconds, 60);
    let h = Harness::with(config).await;
    async fn register(
        h: &Harness,
        n: usize,
        size: Option<u32>,
        wait: Option<u32>,
    ) -> Result<Webhook, jetpay::Error> {
        h.client
            .create_webhook(&NewWebhook {
                callback_url: format!("http://127.0.0.1:9/hook-{n}"),
                max_batch_size: size,
                max_wait_seconds: wait,
                ..NewWebhook::default()
            })
            .await
    }
    for (n, size, wait, expected) in [
        (0, None, None, (10, 60)),
        (1, Some(1), Some(60), (1, 60)),
        (2, Some(100), Some(3600), (100, 3600)),
    ] {
        let w = register(&h, n, size, wait).await.unwrap();
        assert_eq!((w.max_batch_size, w.max_wait_seconds), expected);
    }
    for (n, size, wait, field) in [
        (3, Some(0), None, "max_batch_size"),
        (4, Some(101), None, "max_batch_size"),
        (5, None, Some(59), "max_wait_seconds"),
        (6, None, Some(3601), "max_wait_seconds"),
    ] {
        let (status, body) = status_of(register(&h, n, size, wait).await.unwrap_err());
        assert_eq!(status, 422, "{field}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["detail"][0]["loc"], json!(["body", field]));
    }
}

/// D: the receiver has 15 s to answer, `exp` is about 90 s after `iat`, `iss`/`sub` are
/// `jetpay`/`webhook`, the JWKS is at `/.well-known/jwks.json`; the sandbox's default
/// configuration is that documented behaviour (60 s minimum wait, 15 s delivery timeout).
#[test]
fn the_default_configuration_is_the_documented_behaviour() {
    let config = SandboxConfig::default();
    assert_eq!(config.delivery_timeout, Duration::from_secs(15));
    assert_eq!(unspecified::DELIVERY_TIMEOUT_SECONDS, 15);
    assert_eq!(config.min_wait_seconds, 60);
    assert_eq!(unspecified::JWT_LIFETIME_SECONDS, 90);
    assert_eq!(unspecified::JWT_ISSUER, "jetpay");
    assert_eq!(unspecified::JWT_SUBJECT, "webhook");
    assert_eq!(unspecified::JWKS_PATH, "/.well-known/jwks.json");
}

/// D: card details go straight to Jetpay (the hosted form posts back to its own URL, not to the
/// platform), and success is never inferred from the frame: the message to the parent window
/// says only "submitted", the card id, brand and last four, even for a card that will be declined.
#[tokio::test]
async fn the_hosted_page_posts_to_itself_and_never_tells_the_outcome() {
    let h = Harness::start().await;
    let (_, url) = h.card_url().await;
    let form = h
        .http
        .get(&url.url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(form.contains(r#"<form id="card-form" method="post""#));
    assert!(!form.contains("action="), "the form posts to its own URL");

    let (status, page) = h.submit_card(&url.url, "4000000000000002").await;
    assert_eq!(status, StatusCode::OK);
    let start = page
        .find(r#"<script type="application/json" id="jetpay-message">"#)
        .expect("the message for the parent window");
    let json_start = page[start..].find('>').unwrap() + start + 1;
    let json_end = page[json_start..].find("</script>").unwrap() + json_start;
    let data: Value = serde_json::from_str(&page[json_start..json_end]).unwrap();
    assert_eq!(
        data["message"],
        json!({"type": unspecified::HOSTED_FORM_SUBMITTED_MESSAGE, "creditCardId": url.credit_card_id,
               "brand": "visa", "last4": "0002"})
    );
    assert_eq!(
        data["resize"],
        json!(unspecified::HOSTED_FORM_RESIZE_MESSAGE)
    );
    assert_eq!(data["origins"], json!([FRAME_ORIGIN]));
    let lower = page.to_lowercase();
    assert!(
        !lower.contains("declined") && !lower.contains("failed"),
        "the page does not know the outcome yet"
    );
}
