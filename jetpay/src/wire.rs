//! Jetpay's wire types: request and response bodies of the API, and the webhook payload.
//!
//! Field names follow the guide. Where its rendering leaves the case open (`webhookId`,
//! `createdAt`, the tokenization event's `data`) we emit camelCase and accept snake_case too.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::unspecified;

/// Body of `PUT /contact`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewContact {
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_language")]
    pub language: String,
}

fn default_language() -> String {
    "en".to_owned()
}

/// A contact as Jetpay returns it. Only the fields this project reads are typed; the guide says
/// the answer "includes its UUID".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default = "default_language")]
    pub language: String,
}

/// Answer of `POST /contact/{identifier}/creditcards/url`: a single-use URL to frame and the id of
/// the card it will tokenize. Store the id before showing the URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizationUrl {
    pub url: String,
    pub credit_card_id: String,
}

/// Body of `POST /webhooks/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewWebhook {
    pub callback_url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_api_key: Option<String>,
    /// 1–100, default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    /// 60–3600, default 60.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_seconds: Option<u32>,
    /// Inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from_event_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from_timestamp: Option<DateTime<Utc>>,
}

/// Body of `PATCH /webhooks/{identifier}`: every field optional; absent means unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WebhookPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_api_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_wait_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from_event_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay_from_timestamp: Option<DateTime<Utc>>,
}

/// The documented webhook states. What each means is not documented; see the sandbox's
/// dispatcher for the meaning this project gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookState {
    Active,
    Scheduled,
    Dispatching,
    #[serde(alias = "backing off", alias = "backing-off")]
    BackingOff,
    Failed,
}

/// A registered webhook as Jetpay returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub id: i64,
    pub identifier: Uuid,
    pub callback_url: String,
    pub state: WebhookState,
    pub last_sent_event_id: Option<i64>,
    pub max_batch_size: u32,
    pub max_wait_seconds: u32,
}

/// One delivery: a non-empty batch of events in ascending id order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBatch {
    #[serde(rename = "webhookId", alias = "webhook_id")]
    pub webhook_id: i64,
    /// Parsed one by one: an event that lacks a field or has one of the wrong type is kept as a
    /// malformed event (see [`Event::kind`]) rather than failing the whole batch, which Jetpay
    /// would then retry forever, holding back every event behind it. An event without an integer
    /// `id` cannot be recorded or deduplicated and is dropped with a warning.
    #[serde(deserialize_with = "lenient_events")]
    pub events: Vec<Event>,
}

fn lenient_events<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Event>, D::Error> {
    let raw = Vec::<serde_json::Value>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .filter_map(|value| match Event::deserialize(&value) {
            Ok(event) => Some(event),
            Err(e) => Event::malformed(&value, &e.to_string()),
        })
        .collect())
}

/// One event. `data` stays raw JSON so that unknown event types survive untouched; use
/// [`Event::kind`] to read the ones this crate knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique, monotonically increasing, never skipped or reused.
    pub id: i64,
    #[serde(rename = "createdAt", alias = "created_at")]
    pub created_at: DateTime<Utc>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub data: serde_json::Value,
}

/// An event this crate understands, or the raw type name of one it does not.
#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    CardTokenized(CardTokenized),
    /// A known type whose `data` did not parse: kept with the reason for the log.
    Malformed {
        event_type: String,
        reason: String,
    },
    Unknown {
        event_type: String,
    },
}

impl Event {
    /// What is left of an event that did not parse: its id, its type if it is a string, its
    /// time if it is one (else the Unix epoch), and `data` null, which makes [`Event::kind`]
    /// report it as malformed. `None` without an integer id.
    fn malformed(value: &serde_json::Value, reason: &str) -> Option<Event> {
        let Some(id) = value.get("id").and_then(serde_json::Value::as_i64) else {
            tracing::warn!(reason, "webhook event without an id dropped");
            return None;
        };
        tracing::warn!(event = id, reason, "malformed webhook event");
        let text = |a: &str, b: &str| {
            value
                .get(a)
                .or_else(|| value.get(b))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        Some(Event {
            id,
            created_at: text("createdAt", "created_at")
                .and_then(|t| t.parse().ok())
                .unwrap_or(DateTime::UNIX_EPOCH),
            event_type: text("type", "type").unwrap_or_default(),
            data: serde_json::Value::Null,
        })
    }

    pub fn kind(&self) -> EventKind {
        // Jetpay's events always have a type and an object `data`.
        if self.event_type.is_empty() || self.data.is_null() {
            return EventKind::Malformed {
                event_type: self.event_type.clone(),
                reason: "the event has no type or no data".into(),
            };
        }
        if self.event_type == unspecified::CARD_TOKENIZED_EVENT {
            match serde_json::from_value::<CardTokenized>(self.data.clone()) {
                Ok(data) => EventKind::CardTokenized(data),
                Err(e) => EventKind::Malformed {
                    event_type: self.event_type.clone(),
                    reason: e.to_string(),
                },
            }
        } else {
            EventKind::Unknown {
                event_type: self.event_type.clone(),
            }
        }
    }
}

/// Outcome of a tokenization, as `data.state` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizationState {
    Succeeded,
    Failed,
}

/// `data` of a [`unspecified::CARD_TOKENIZED_EVENT`] event. The shape is the project's choice
/// until Jetpay documents it (jetpay-api.md, U).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CardTokenized {
    #[serde(alias = "credit_card_id")]
    pub credit_card_id: String,
    #[serde(alias = "contact_id")]
    pub contact_id: Uuid,
    pub state: TokenizationState,
    /// Machine-readable reason code on failure, e.g. `card_declined`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "failure_reason"
    )]
    pub failure_reason: Option<String>,
    /// A sentence for people on failure.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        alias = "failure_message"
    )]
    pub failure_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last4: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "exp_month")]
    pub exp_month: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "exp_year")]
    pub exp_year: Option<u32>,
}

/// Claims of the JWT in a delivery's `Authorization: Bearer` header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookClaims {
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
    pub iss: String,
    pub sub: String,
    /// base64url (no padding) of SHA-256 of the raw request body.
    pub payload_hash: String,
}

/// Error body shape we expect (FastAPI style); see [`unspecified::ERROR_DETAIL_FIELD`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `PUT /contact`'s body as the guide shows it, and its answer with the contact's UUID.
    #[test]
    fn contact_body_and_answer_match_the_guide() {
        let body = NewContact {
            email: "ada@example.com".into(),
            name: "Ada".into(),
            tags: vec![],
            language: "en".into(),
        };
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({"email": "ada@example.com", "name": "Ada", "tags": [], "language": "en"})
        );
        let answer: Contact = serde_json::from_str(
            r#"{"id":"7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e","email":"ada@example.com","name":"Ada","tags":[],"language":"en"}"#,
        )
        .unwrap();
        assert_eq!(
            answer.id,
            "7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e"
                .parse::<Uuid>()
                .unwrap()
        );
    }

    /// The guide's example answer of `POST /contact/{identifier}/creditcards/url`, verbatim.
    #[test]
    fn tokenization_answer_of_the_guide_parses() {
        let answer: TokenizationUrl = serde_json::from_str(
            r#"{"url": "https://secure.jetpay.com/tokenize/session_abc", "credit_card_id": "card_456"}"#,
        )
        .unwrap();
        assert_eq!(answer.url, "https://secure.jetpay.com/tokenize/session_abc");
        assert_eq!(answer.credit_card_id, "card_456");
    }

    /// `POST /webhooks/` sends the documented field names; the timestamp is ISO 8601.
    #[test]
    fn webhook_registration_uses_the_documented_field_names() {
        let body = NewWebhook {
            callback_url: "https://example.test/hook".into(),
            callback_api_key: Some("k".into()),
            max_batch_size: Some(10),
            max_wait_seconds: Some(60),
            replay_from_event_id: Some(45678),
            replay_from_timestamp: Some("2026-01-22T10:15:30Z".parse().unwrap()),
        };
        let value = serde_json::to_value(&body).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "callback_api_key",
                "callback_url",
                "max_batch_size",
                "max_wait_seconds",
                "replay_from_event_id",
                "replay_from_timestamp"
            ]
        );
        let stamp = value["replay_from_timestamp"].as_str().unwrap();
        assert_eq!(
            DateTime::parse_from_rfc3339(stamp).unwrap(),
            "2026-01-22T10:15:30Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    /// Every documented state parses, "backing off" with the guide's space too, and so does an
    /// answer with every documented field (`last_sent_event_id` null before any delivery).
    #[test]
    fn documented_webhook_states_and_answer_parse() {
        for (text, state) in [
            ("active", WebhookState::Active),
            ("scheduled", WebhookState::Scheduled),
            ("dispatching", WebhookState::Dispatching),
            ("backing off", WebhookState::BackingOff),
            ("backing_off", WebhookState::BackingOff),
            ("failed", WebhookState::Failed),
        ] {
            let parsed: WebhookState = serde_json::from_value(serde_json::json!(text)).unwrap();
            assert_eq!(parsed, state, "{text}");
        }
        let answer: Webhook = serde_json::from_value(serde_json::json!({
            "id": 123, "identifier": "7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e",
            "callback_url": "https://example.test/hook", "state": "active",
            "last_sent_event_id": null, "max_batch_size": 10, "max_wait_seconds": 60
        }))
        .unwrap();
        assert_eq!(answer.id, 123);
        assert_eq!(answer.state, WebhookState::Active);
        assert_eq!(answer.last_sent_event_id, None);
        assert_eq!((answer.max_batch_size, answer.max_wait_seconds), (10, 60));
    }

    #[test]
    fn batch_accepts_camel_and_snake_case() {
        let camel = r#"{"webhookId":1,"events":[{"id":2,"createdAt":"2026-01-22T10:15:30.123456Z","type":"x","data":{}}]}"#;
        let snake = r#"{"webhook_id":1,"events":[{"id":2,"created_at":"2026-01-22T10:15:30.123456Z","type":"x","data":{}}]}"#;
        let a: WebhookBatch = serde_json::from_str(camel).unwrap();
        let b: WebhookBatch = serde_json::from_str(snake).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.events[0].id, 2);
    }

    #[test]
    fn guide_example_parses_and_is_unknown() {
        let body = r#"{"webhookId": 123, "events": [{"id": 45678, "createdAt": "2026-01-22T10:15:30.123456Z",
            "type": "transactions.credits.created",
            "data": {"state": "requested", "transactionId": "41fc05d5-3148-4ee2-bfdf-9ad5ab7172c6"}}]}"#;
        let batch: WebhookBatch = serde_json::from_str(body).unwrap();
        assert_eq!(
            batch.events[0].kind(),
            EventKind::Unknown {
                event_type: "transactions.credits.created".into()
            }
        );
    }

    #[test]
    fn tokenized_event_parses() {
        let e = Event {
            id: 1,
            created_at: Utc::now(),
            event_type: unspecified::CARD_TOKENIZED_EVENT.into(),
            data: serde_json::json!({"creditCardId":"c1","contactId":"7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e",
                "state":"failed","failureReason":"card_declined","failureMessage":"The card was declined."}),
        };
        match e.kind() {
            EventKind::CardTokenized(d) => {
                assert_eq!(d.state, TokenizationState::Failed);
                assert_eq!(d.failure_reason.as_deref(), Some("card_declined"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn events_missing_fields_are_malformed_not_fatal() {
        let body = r#"{"webhookId":1,"events":[
            {"id":1,"type":"x"},
            {"id":2,"createdAt":"2026-01-22T10:15:30Z","data":{}},
            {"id":3,"type":"x","data":{}},
            {"id":4,"createdAt":"soon","type":7,"data":{}},
            {"type":"x","createdAt":"2026-01-22T10:15:30Z","data":{}},
            "junk",
            {"id":5,"createdAt":"2026-01-22T10:15:30Z","type":"x","data":{}}]}"#;
        let batch: WebhookBatch = serde_json::from_str(body).unwrap();
        let ids: Vec<i64> = batch.events.iter().map(|e| e.id).collect();
        assert_eq!(ids, [1, 2, 3, 4, 5]);
        for e in &batch.events[..4] {
            assert!(matches!(e.kind(), EventKind::Malformed { .. }), "{e:?}");
        }
        assert_eq!(batch.events[2].event_type, "x");
        assert!(matches!(batch.events[4].kind(), EventKind::Unknown { .. }));
        // The batch itself must still be a batch.
        for bad in [
            r#"{"webhookId":1}"#,
            r#"{"webhookId":1,"events":{}}"#,
            r#"{"events":[]}"#,
        ] {
            assert!(serde_json::from_str::<WebhookBatch>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tokenized_event_with_bad_data_is_malformed() {
        let e = Event {
            id: 1,
            created_at: Utc::now(),
            event_type: unspecified::CARD_TOKENIZED_EVENT.into(),
            data: serde_json::json!({"state":"succeeded"}),
        };
        assert!(matches!(e.kind(), EventKind::Malformed { .. }));
    }
}
