//! Test helpers shared by the workspace's test suites, written once: the sandbox's API token,
//! the claims Jetpay signs for a delivery, a card-tokenization event and the batch that carries
//! it, and polling with a deadline.
//!
//! Compiled only for this crate's own tests and behind the `test-util` feature, which the other
//! crates enable from their `[dev-dependencies]` alone: no production build contains it.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::wire::Event;

/// The API token of every sandbox the tests start (as the app's embedded sandbox accepts). Not
/// a secret.
pub const SANDBOX_TOKEN: &str = "sandbox-token";

/// Seconds since the epoch, as JWT claims count time.
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims Jetpay signs for a delivery of `body`: a fresh `jti`, issued now, the documented
/// lifetime, issuer and subject, and the body's `payload_hash`.
pub fn claims_for(body: &[u8]) -> Value {
    let now = now();
    json!({
        "jti": uuid::Uuid::new_v4(),
        "iat": now,
        "exp": now + crate::unspecified::JWT_LIFETIME_SECONDS,
        "iss": crate::unspecified::JWT_ISSUER,
        "sub": crate::unspecified::JWT_SUBJECT,
        "payload_hash": crate::verify::payload_hash(body),
    })
}

/// A card-tokenization event as Jetpay sends it: `jetpay_card` of `contact` reached `state`
/// (a visa ending 4242; a `"failed"` one says the card was declined).
pub fn tokenized_json(id: i64, contact: &str, jetpay_card: &str, state: &str) -> Value {
    let mut data = json!({"creditCardId": jetpay_card, "contactId": contact, "state": state,
                          "brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034});
    if state == "failed" {
        data["failureReason"] = json!("card_declined");
    }
    json!({"id": id, "createdAt": "2026-11-25T10:15:30.123456Z",
           "type": crate::unspecified::CARD_TOKENIZED_EVENT, "data": data})
}

/// [`tokenized_json`] as the typed [`Event`] a webhook batch parses into.
pub fn tokenized(id: i64, contact: &str, jetpay_card: &str, state: &str) -> Event {
    serde_json::from_value(tokenized_json(id, contact, jetpay_card, state))
        .expect("a well-formed event")
}

/// The body of a delivery of `events` to webhook `webhook_id`.
pub fn batch(webhook_id: i64, events: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"webhookId": webhook_id, "events": events})).expect("JSON")
}

/// Polls `check` until it answers `Some` and returns that; panics naming `what` once `within`
/// has passed (wall-clock time, so a test that pauses tokio's clock still ends).
pub async fn eventually<T, F, Fut>(within: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("not within {within:?}: {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{EventKind, WebhookBatch};

    #[test]
    fn a_tokenized_batch_parses_as_the_client_reads_it() {
        let contact = uuid::Uuid::new_v4();
        let body = batch(
            7,
            &[tokenized_json(3, &contact.to_string(), "card", "failed")],
        );
        let parsed: WebhookBatch = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed.webhook_id, 7);
        match parsed.events[0].kind() {
            EventKind::CardTokenized(d) => {
                assert_eq!((d.credit_card_id.as_str(), d.contact_id), ("card", contact));
                assert_eq!(d.failure_reason.as_deref(), Some("card_declined"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn claims_hash_the_body() {
        let claims = claims_for(b"{}");
        assert_eq!(claims["payload_hash"], crate::verify::payload_hash(b"{}"));
        assert_eq!(tokenized(1, "c", "k", "succeeded").id, 1);
    }
}
