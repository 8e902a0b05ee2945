//! The card service: takes a submitted card, "verifies" it after a while, and records the result
//! as a `contacts.creditcards.tokenized` event.
//!
//! Work is kept in the database (`credit_cards.state = 'processing'` with a due time), not in
//! timers, so a card submitted just before a restart is still processed after it. Test card
//! numbers choose the outcome (README.md lists them); any other valid number succeeds.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::Utc;

use jetpay::unspecified;
use jetpay::wire::{CardTokenized, TokenizationState};

use crate::card_checks::ValidCard;
use crate::error::ApiError;
use crate::faults::EarlyAt;
use crate::state::AppState;
use crate::store::{format_time, now_ms};
use crate::{dispatcher, events};

/// Due time of a card whose result is produced by an early delivery, not by the service loop.
pub(crate) const NOT_SCHEDULED: i64 = i64::MAX;

/// What the card service answers for a card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    SlowSuccess,
    Declined,
    ProcessingError,
    ExpiredCard,
    IncorrectCvc,
}

/// The test cards, in the README's order: number as printed on the card, outcome.
pub const TEST_CARDS: [(&str, Outcome); 8] = [
    ("4242 4242 4242 4242", Outcome::Success),
    ("5555 5555 5555 4444", Outcome::Success),
    ("3782 822463 10005", Outcome::Success),
    ("4000 0000 0000 0002", Outcome::Declined),
    ("4000 0000 0000 0119", Outcome::ProcessingError),
    ("4000 0000 0000 0069", Outcome::ExpiredCard),
    ("4000 0000 0000 0127", Outcome::IncorrectCvc),
    ("4000 0000 0000 3220", Outcome::SlowSuccess),
];

impl Outcome {
    pub fn for_number(digits: &str) -> Self {
        TEST_CARDS
            .iter()
            .find(|(n, _)| n.chars().filter(|c| *c != ' ').eq(digits.chars()))
            .map_or(Outcome::Success, |(_, o)| *o)
    }

    /// The failures a developer can choose (`jetpay-sandbox trigger --fail <reason>`).
    pub const FAILURES: [Outcome; 4] = [
        Outcome::Declined,
        Outcome::ProcessingError,
        Outcome::ExpiredCard,
        Outcome::IncorrectCvc,
    ];

    /// The failure whose `failureReason` is `reason`.
    pub fn from_failure_reason(reason: &str) -> Option<Self> {
        Self::FAILURES.into_iter().find(|o| o.as_str() == reason)
    }

    /// The stored code: `success`, `card_declined`, … (a failure's code is its `failureReason`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::SlowSuccess => "slow_success",
            Outcome::Declined => "card_declined",
            Outcome::ProcessingError => "processing_error",
            Outcome::ExpiredCard => "expired_card",
            Outcome::IncorrectCvc => "incorrect_cvc",
        }
    }

    fn parse(s: &str) -> Self {
        [
            Outcome::Success,
            Outcome::SlowSuccess,
            Outcome::Declined,
            Outcome::ProcessingError,
            Outcome::ExpiredCard,
            Outcome::IncorrectCvc,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .unwrap_or(Outcome::Success)
    }

    /// `failureReason` and `failureMessage` of a failed result.
    pub fn failure(self) -> Option<(&'static str, &'static str)> {
        match self {
            Outcome::Success | Outcome::SlowSuccess => None,
            Outcome::Declined => Some(("card_declined", "The card was declined by the bank.")),
            Outcome::ProcessingError => Some((
                "processing_error",
                "We couldn't verify the card because of a processing error. Try again in a few minutes.",
            )),
            Outcome::ExpiredCard => Some((
                "expired_card",
                "The card has expired. Use another card.",
            )),
            Outcome::IncorrectCvc => Some((
                "incorrect_cvc",
                "The card's security code (CVC) is incorrect. Check it and try again.",
            )),
        }
    }

    /// For the README and the dashboard.
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::Success => "succeeds",
            Outcome::SlowSuccess => "succeeds after the slow processing time",
            Outcome::Declined => "fails: card_declined",
            Outcome::ProcessingError => "fails: processing_error",
            Outcome::ExpiredCard => "fails: expired_card",
            Outcome::IncorrectCvc => "fails: incorrect_cvc",
        }
    }
}

/// Marks the session used and stores the card (brand, last4, expiry only) as processing.
/// Answers the credit card id. A used or expired session is a 410 page.
pub async fn submit(
    state: &AppState,
    session_id: &str,
    card: &ValidCard,
) -> Result<String, ApiError> {
    let outcome = Outcome::for_number(card.digits());
    let early = state.faults.take_early(EarlyAt::Submit);
    let delay = if outcome == Outcome::SlowSuccess {
        state.config.slow_processing_time
    } else {
        state.config.processing_time
    };
    let due = if early {
        NOT_SCHEDULED
    } else {
        now_ms().saturating_add(delay.as_millis().try_into().unwrap_or(i64::MAX))
    };
    let now = Utc::now();

    let mut tx = state.pool.begin().await?;
    let claimed: Option<(String, String)> = sqlx::query_as(
        "UPDATE tokenization_sessions SET used_at = ? \
         WHERE id = ? AND used_at IS NULL AND expires_at_ms > ? \
         RETURNING contact_id, credit_card_id",
    )
    .bind(format_time(now))
    .bind(session_id)
    .bind(now.timestamp_millis())
    .fetch_optional(&mut *tx)
    .await?;
    let Some((contact_id, card_id)) = claimed else {
        return Err(gone());
    };
    sqlx::query(
        "INSERT INTO credit_cards (id, contact_id, state, brand, last4, exp_month, exp_year, \
         outcome, process_after_ms, created_at) VALUES (?, ?, 'processing', ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&card_id)
    .bind(&contact_id)
    .bind(card.brand.as_str())
    .bind(&card.last4)
    .bind(card.exp_month)
    .bind(card.exp_year)
    .bind(outcome.as_str())
    .bind(due)
    .bind(format_time(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(credit_card_id = %card_id, brand = card.brand.as_str(), early, "card submitted");

    if early {
        finish(state, &card_id, true).await?;
    } else {
        state.card_wake.notify_one();
    }
    Ok(card_id)
}

/// The fault `deliver_early` at `url_created`: tokenize the card behind a fresh URL at once
/// (as the 4242 test card) and deliver the event before the URL is even returned.
pub async fn tokenize_at_url_creation(
    state: &AppState,
    session_id: &str,
    contact_id: &str,
    card_id: &str,
) -> Result<(), ApiError> {
    let now = Utc::now();
    let mut tx = state.pool.begin().await?;
    sqlx::query("UPDATE tokenization_sessions SET used_at = ? WHERE id = ?")
        .bind(format_time(now))
        .bind(session_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO credit_cards (id, contact_id, state, brand, last4, exp_month, exp_year, \
         outcome, process_after_ms, created_at) \
         VALUES (?, ?, 'processing', 'visa', '4242', 12, ?, 'success', ?, ?)",
    )
    .bind(card_id)
    .bind(contact_id)
    .bind(StoredCard::test_card().exp_year)
    .bind(NOT_SCHEDULED)
    .bind(format_time(now))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    finish(state, card_id, true).await
}

fn gone() -> ApiError {
    ApiError::Page {
        status: StatusCode::GONE,
        title: "This link can no longer be used",
        message: "This card form has already been used or has expired. Close it and start adding your card again.",
    }
}

type CardRow = (String, String, String, i64, i64, String);

/// What a card-on-file service keeps of a card (never the number or the CVC).
pub(crate) struct StoredCard {
    pub brand: String,
    pub last4: String,
    pub exp_month: i64,
    pub exp_year: i64,
}

impl StoredCard {
    /// The 4242 test card, expiring in December three years from now: what a card is recorded
    /// as when its result comes without a form submission (faults, `trigger`).
    pub(crate) fn test_card() -> Self {
        StoredCard {
            brand: "visa".to_owned(),
            last4: "4242".to_owned(),
            exp_month: 12,
            exp_year: i64::from(chrono::Datelike::year(&Utc::now()) + 3),
        }
    }
}

/// The `data` of a card's `contacts.creditcards.tokenized` event, and the card's new state.
pub(crate) fn result_data(
    card_id: &str,
    contact_id: &str,
    card: &StoredCard,
    outcome: Outcome,
) -> Result<(serde_json::Value, &'static str), ApiError> {
    let failure = outcome.failure();
    let data = CardTokenized {
        credit_card_id: card_id.to_owned(),
        contact_id: contact_id
            .parse()
            .map_err(|e| ApiError::Internal(format!("{e}")))?,
        state: if failure.is_some() {
            TokenizationState::Failed
        } else {
            TokenizationState::Succeeded
        },
        failure_reason: failure.map(|f| f.0.to_owned()),
        failure_message: failure.map(|f| f.1.to_owned()),
        brand: Some(card.brand.clone()),
        last4: Some(card.last4.clone()),
        exp_month: u32::try_from(card.exp_month).ok(),
        exp_year: u32::try_from(card.exp_year).ok(),
    };
    let data = serde_json::to_value(&data).map_err(|e| ApiError::Internal(e.to_string()))?;
    let new_state = if failure.is_some() {
        unspecified::TOKENIZATION_FAILED
    } else {
        unspecified::TOKENIZATION_SUCCEEDED
    };
    Ok((data, new_state))
}

/// Records the result of one processing card: the card's new state and its event.
///
/// Normally both commit together. `early` (fault injection) appends the event, delivers it to
/// every webhook, and only then commits the card's state.
async fn finish(state: &AppState, card_id: &str, early: bool) -> Result<(), ApiError> {
    let row: Option<CardRow> = sqlx::query_as(
        "SELECT contact_id, brand, last4, exp_month, exp_year, outcome FROM credit_cards \
         WHERE id = ? AND state = 'processing'",
    )
    .bind(card_id)
    .fetch_optional(&state.pool)
    .await?;
    let Some((contact_id, brand, last4, exp_month, exp_year, outcome)) = row else {
        return Ok(());
    };
    let card = StoredCard {
        brand,
        last4,
        exp_month,
        exp_year,
    };
    let outcome = Outcome::parse(&outcome);
    let failure = outcome.failure();
    let (data, new_state) = result_data(card_id, &contact_id, &card, outcome)?;

    if early {
        let mut conn = state.pool.acquire().await?;
        let event = events::append(&mut conn, unspecified::CARD_TOKENIZED_EVENT, &data).await?;
        drop(conn);
        dispatcher::deliver_now(state, &event).await;
        update_card(state, card_id, new_state, failure.map(|f| f.0)).await?;
        tracing::info!(credit_card_id = %card_id, event_id = event.id, state = new_state, "card processed (delivered early)");
    } else {
        let mut tx = state.pool.begin().await?;
        let updated = mark_card(&mut tx, card_id, new_state, failure.map(|f| f.0)).await?;
        if !updated {
            return Ok(());
        }
        let event = events::append(&mut tx, unspecified::CARD_TOKENIZED_EVENT, &data).await?;
        tx.commit().await?;
        tracing::info!(credit_card_id = %card_id, event_id = event.id, state = new_state, "card processed");
    }
    state.kick_dispatcher();
    Ok(())
}

pub(crate) async fn mark_card(
    conn: &mut sqlx::SqliteConnection,
    card_id: &str,
    new_state: &str,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE credit_cards SET state = ?, failure_reason = ?, processed_at = ? \
         WHERE id = ? AND state = 'processing'",
    )
    .bind(new_state)
    .bind(reason)
    .bind(format_time(Utc::now()))
    .bind(card_id)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn update_card(
    state: &AppState,
    card_id: &str,
    new_state: &str,
    reason: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let mut conn = state.pool.acquire().await?;
    mark_card(&mut conn, card_id, new_state, reason).await
}

/// The service loop: processes each card when it is due; sleeps until the next due time or a
/// new submission.
pub async fn run(state: AppState) {
    loop {
        let next: Result<Option<(String, i64)>, _> = sqlx::query_as(
            "SELECT id, process_after_ms FROM credit_cards \
             WHERE state = 'processing' AND process_after_ms < ? \
             ORDER BY process_after_ms ASC LIMIT 1",
        )
        .bind(NOT_SCHEDULED)
        .fetch_optional(&state.pool)
        .await;
        match next {
            Ok(None) => state.card_wake.notified().await,
            Ok(Some((card_id, due))) => {
                let wait = due - now_ms();
                if wait <= 0 {
                    if let Err(e) = finish(&state, &card_id, false).await {
                        tracing::error!(credit_card_id = %card_id, error = %e, "card processing failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                } else {
                    let wait = Duration::from_millis(wait.unsigned_abs());
                    tokio::select! {
                        _ = state.card_wake.notified() => {}
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "card service query failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_choose_outcomes() {
        assert_eq!(Outcome::for_number("4000000000000002"), Outcome::Declined);
        assert_eq!(Outcome::for_number("378282246310005"), Outcome::Success);
        assert_eq!(
            Outcome::for_number("4000000000003220"),
            Outcome::SlowSuccess
        );
        assert_eq!(Outcome::for_number("4111111111111111"), Outcome::Success);
        for (number, outcome) in TEST_CARDS {
            let digits: String = number.chars().filter(|c| *c != ' ').collect();
            assert!(crate::card_checks::luhn_valid(&digits), "{number}");
            assert_eq!(Outcome::parse(outcome.as_str()), outcome);
        }
        assert_eq!(
            Outcome::Declined.failure(),
            Some(("card_declined", "The card was declined by the bank."))
        );
    }
}
