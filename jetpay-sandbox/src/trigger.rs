//! `POST /_sandbox/cards/{credit_card_id}/result`: a developer decides a card's tokenization
//! result instead of typing a test card into the hosted form (`jetpay-sandbox trigger`, the
//! dashboard's buttons).
//!
//! The result is recorded exactly as the card service records one: the card's state and its
//! `contacts.creditcards.tokenized` event commit together, with the same event data. A card whose
//! form was submitted keeps its brand, last four and expiry; a card whose form was not submitted
//! is recorded as the 4242 test card and its URL is used up (the form then answers 410).

use axum::extract::{Path, State};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};

use jetpay::unspecified;
use jetpay::wire::Event;

use crate::api::ValidJson;
use crate::card_service::{self, Outcome, StoredCard, NOT_SCHEDULED};
use crate::error::{ApiError, Issue};
use crate::events;
use crate::state::AppState;
use crate::store::format_time;

/// Body of the endpoint: `{"state": "succeeded"}` or
/// `{"state": "failed", "failure_reason": "card_declined"}` (the reason defaults to
/// `card_declined`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResultRequest {
    state: String,
    failure_reason: Option<String>,
}

impl ResultRequest {
    /// The outcome asked for, or a 422 naming the field.
    pub fn outcome(&self) -> Result<Outcome, ApiError> {
        match (self.state.as_str(), self.failure_reason.as_deref()) {
            (unspecified::TOKENIZATION_SUCCEEDED, None) => Ok(Outcome::Success),
            (unspecified::TOKENIZATION_SUCCEEDED, Some(_)) => Err(ApiError::invalid(Issue::body(
                "failure_reason",
                "A succeeded result has no failure_reason",
                "value_error",
            ))),
            (unspecified::TOKENIZATION_FAILED, reason) => {
                let reason = reason.unwrap_or(Outcome::Declined.as_str());
                Outcome::from_failure_reason(reason).ok_or_else(|| {
                    ApiError::invalid(Issue::body(
                        "failure_reason",
                        format!("Input should be one of: {}", failure_reasons().join(", ")),
                        "enum",
                    ))
                })
            }
            _ => Err(ApiError::invalid(Issue::body(
                "state",
                "Input should be 'succeeded' or 'failed'",
                "enum",
            ))),
        }
    }
}

/// The failure reasons a developer can choose.
pub fn failure_reasons() -> Vec<&'static str> {
    Outcome::FAILURES.iter().map(|o| o.as_str()).collect()
}

/// The answer: the event recorded, and whether the card had been submitted in the form.
#[derive(Debug, Clone, Serialize)]
pub struct Triggered {
    pub event: Event,
    /// `false`: the form was never submitted, so the card was recorded as the 4242 test card.
    pub form_submitted: bool,
    /// Webhooks that will get the event (every registered one).
    pub webhooks: i64,
}

/// Records `outcome` as the result of card `card_id`. 404 for a card id no tokenization URL
/// was made for, 409 when the card already has a result.
pub async fn record(
    state: &AppState,
    card_id: &str,
    outcome: Outcome,
) -> Result<Triggered, ApiError> {
    let mut tx = state.pool.begin().await?;
    let contact_id: Option<String> =
        sqlx::query_scalar("SELECT contact_id FROM tokenization_sessions WHERE credit_card_id = ?")
            .bind(card_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some(contact_id) = contact_id else {
        return Err(ApiError::NotFound("Credit card not found"));
    };
    let card: Option<(String, String, String, i64, i64)> = sqlx::query_as(
        "SELECT state, brand, last4, exp_month, exp_year FROM credit_cards WHERE id = ?",
    )
    .bind(card_id)
    .fetch_optional(&mut *tx)
    .await?;
    let (stored, form_submitted) = match card {
        Some((current, ..)) if current != "processing" => {
            return Err(ApiError::Conflict(format!(
                "Credit card {card_id} already has a result: {current}"
            )))
        }
        Some((_, brand, last4, exp_month, exp_year)) => (
            StoredCard {
                brand,
                last4,
                exp_month,
                exp_year,
            },
            true,
        ),
        None => (
            use_up_unsubmitted(&mut tx, card_id, &contact_id, outcome).await?,
            false,
        ),
    };
    let (data, new_state) = card_service::result_data(card_id, &contact_id, &stored, outcome)?;
    let reason = outcome.failure().map(|f| f.0);
    sqlx::query("UPDATE credit_cards SET outcome = ? WHERE id = ?")
        .bind(outcome.as_str())
        .bind(card_id)
        .execute(&mut *tx)
        .await?;
    if !card_service::mark_card(&mut tx, card_id, new_state, reason).await? {
        return Err(ApiError::Conflict(format!(
            "Credit card {card_id} already has a result"
        )));
    }
    let event = events::append(&mut tx, unspecified::CARD_TOKENIZED_EVENT, &data).await?;
    let webhooks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM webhooks")
        .fetch_one(&mut *tx)
        .await?;
    tx.commit().await?;
    state.kick_dispatcher();
    Ok(Triggered {
        event,
        form_submitted,
        webhooks,
    })
}

/// A card whose form was never submitted: uses its URL up and stores it as the 4242 test card,
/// still processing (the caller records the result).
async fn use_up_unsubmitted(
    conn: &mut sqlx::SqliteConnection,
    card_id: &str,
    contact_id: &str,
    outcome: Outcome,
) -> Result<StoredCard, sqlx::Error> {
    let card = StoredCard::test_card();
    let now = format_time(Utc::now());
    sqlx::query(
        "UPDATE tokenization_sessions SET used_at = COALESCE(used_at, ?) WHERE credit_card_id = ?",
    )
    .bind(&now)
    .bind(card_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO credit_cards (id, contact_id, state, brand, last4, exp_month, exp_year, \
         outcome, process_after_ms, created_at) VALUES (?, ?, 'processing', ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(card_id)
    .bind(contact_id)
    .bind(&card.brand)
    .bind(&card.last4)
    .bind(card.exp_month)
    .bind(card.exp_year)
    .bind(outcome.as_str())
    .bind(NOT_SCHEDULED)
    .bind(&now)
    .execute(&mut *conn)
    .await?;
    Ok(card)
}

/// A sentence saying what [`record`] did.
pub fn describe(card_id: &str, t: &Triggered) -> String {
    let data = &t.event.data;
    let field = |k: &str| data.get(k).and_then(|v| v.as_str()).unwrap_or("");
    let result = match data.get("failureReason").and_then(|v| v.as_str()) {
        Some(reason) => format!("failed ({reason})"),
        None => "succeeded".to_owned(),
    };
    format!(
        "Recorded event {} ({}): card {card_id} {result}, {} ····{}{}; {} webhook(s) will get it.",
        t.event.id,
        t.event.event_type,
        field("brand"),
        field("last4"),
        if t.form_submitted {
            ""
        } else {
            " (form not submitted: recorded as the 4242 test card)"
        },
        t.webhooks
    )
}

/// A card a tokenization URL was made for that has no result yet.
#[derive(Debug, Clone, Serialize)]
pub struct PendingCard {
    pub credit_card_id: String,
    pub contact_id: String,
    pub url_created_at: String,
    /// In words: whether the form was submitted, whether the URL expired.
    pub status: &'static str,
}

type PendingRow = (String, String, String, i64, Option<String>, Option<String>);

/// The newest `limit` cards waiting for a result, newest first.
pub async fn pending(state: &AppState, limit: u32) -> Result<Vec<PendingCard>, sqlx::Error> {
    let rows: Vec<PendingRow> = sqlx::query_as(
        "SELECT s.credit_card_id, s.contact_id, s.created_at, s.expires_at_ms, s.used_at, c.state \
         FROM tokenization_sessions s LEFT JOIN credit_cards c ON c.id = s.credit_card_id \
         WHERE c.state IS NULL OR c.state = 'processing' \
         ORDER BY s.created_at DESC, s.rowid DESC LIMIT ?",
    )
    .bind(i64::from(limit))
    .fetch_all(&state.pool)
    .await?;
    let now = crate::store::now_ms();
    Ok(rows
        .into_iter()
        .map(
            |(credit_card_id, contact_id, url_created_at, expires, used, card)| {
                let status = match (card, used) {
                    (Some(_), _) => "form submitted, being verified",
                    (None, Some(_)) => "URL used",
                    (None, None) if expires <= now => "URL expired, form not submitted",
                    (None, None) => "URL handed out, form not submitted",
                };
                PendingCard {
                    credit_card_id,
                    contact_id,
                    url_created_at,
                    status,
                }
            },
        )
        .collect())
}

/// `GET /_sandbox/cards/pending`: the cards waiting for a result, newest first (at most 100).
pub async fn list_pending(
    State(state): State<AppState>,
) -> Result<Json<Vec<PendingCard>>, ApiError> {
    Ok(Json(pending(&state, 100).await?))
}

/// `POST /_sandbox/cards/{credit_card_id}/result`.
pub async fn handle(
    State(state): State<AppState>,
    Path(card_id): Path<String>,
    ValidJson(req): ValidJson<ResultRequest>,
) -> Result<Json<Triggered>, ApiError> {
    let outcome = req.outcome()?;
    let triggered = record(&state, &card_id, outcome).await?;
    state.record_action(true, describe(&card_id, &triggered));
    Ok(Json(triggered))
}
