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
    pub events: Vec<Event>,
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
    pub fn kind(&self) -> EventKind {
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
