//! Webhook registration and management: `POST /webhooks/`, `GET /webhooks/`,
//! `GET|PATCH|DELETE /webhooks/{identifier}`.
//!
//! A webhook's delivery position is its `cursor` (the highest event id it is done with).
//! Registration without a replay starts after the newest event; `replay_from_event_id`
//! (inclusive) or `replay_from_timestamp` put the cursor before older events, on creation or by
//! PATCH, and the dispatcher delivers them again.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde::Deserialize;
use sqlx::SqliteConnection;
use uuid::Uuid;

use jetpay::wire::{Webhook, WebhookState};

use crate::api::{parse_uuid, ValidJson};
use crate::error::{ApiError, Issue};
use crate::state::AppState;
use crate::store::format_time;
use crate::{dispatcher, events};

pub const DEFAULT_MAX_BATCH_SIZE: i64 = 10;
pub const DEFAULT_MAX_WAIT_SECONDS: i64 = 60;
pub const MAX_MAX_WAIT_SECONDS: i64 = 3600;

/// A `webhooks` row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct WebhookRow {
    pub id: i64,
    pub identifier: String,
    pub callback_url: String,
    pub callback_api_key: Option<String>,
    pub max_batch_size: i64,
    pub max_wait_seconds: i64,
    pub state: String,
    pub cursor: i64,
    pub last_sent_event_id: Option<i64>,
    pub consecutive_failures: i64,
    pub next_attempt_at_ms: Option<i64>,
    /// Paused by `jetpay-sandbox pause` or the dashboard: nothing is sent until resumed.
    pub paused: bool,
}

pub fn state_name(state: WebhookState) -> &'static str {
    match state {
        WebhookState::Active => "active",
        WebhookState::Scheduled => "scheduled",
        WebhookState::Dispatching => "dispatching",
        WebhookState::BackingOff => "backing_off",
        WebhookState::Failed => "failed",
    }
}

impl WebhookRow {
    pub fn state(&self) -> WebhookState {
        serde_json::from_value(serde_json::Value::String(self.state.clone()))
            .unwrap_or(WebhookState::Active)
    }

    pub fn to_wire(&self) -> Webhook {
        Webhook {
            id: self.id,
            identifier: self.identifier.parse().unwrap_or_default(),
            callback_url: self.callback_url.clone(),
            state: self.state(),
            last_sent_event_id: self.last_sent_event_id,
            max_batch_size: u32::try_from(self.max_batch_size).unwrap_or(1),
            max_wait_seconds: u32::try_from(self.max_wait_seconds).unwrap_or(0),
        }
    }
}

pub async fn by_id(
    conn: &mut SqliteConnection,
    id: i64,
) -> Result<Option<WebhookRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM webhooks WHERE id = ?")
        .bind(id)
        .fetch_optional(conn)
        .await
}

async fn by_identifier(
    conn: &mut SqliteConnection,
    identifier: Uuid,
) -> Result<WebhookRow, ApiError> {
    sqlx::query_as("SELECT * FROM webhooks WHERE identifier = ?")
        .bind(identifier.to_string())
        .fetch_optional(conn)
        .await?
        .ok_or(ApiError::NotFound("Webhook not found"))
}

pub async fn all(pool: &sqlx::SqlitePool) -> Result<Vec<WebhookRow>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM webhooks ORDER BY id")
        .fetch_all(pool)
        .await
}

/// Body of `POST /webhooks/` and `PATCH /webhooks/{identifier}`. Numbers are read wide so that
/// an out-of-range value is a clear 422 rather than a parse error.
#[derive(Debug, Default, Deserialize)]
pub struct WebhookBody {
    callback_url: Option<String>,
    callback_api_key: Option<String>,
    max_batch_size: Option<i64>,
    max_wait_seconds: Option<i64>,
    replay_from_event_id: Option<i64>,
    replay_from_timestamp: Option<String>,
}

/// Where to put the cursor for a replay.
enum Replay {
    FromEventId(i64),
    FromTime(DateTime<Utc>),
}

/// Checked fields of a body; `None` = not given.
struct Checked {
    callback_url: Option<String>,
    max_batch_size: Option<i64>,
    max_wait_seconds: Option<i64>,
    replay: Option<Replay>,
}

/// ISO 8601 with or without offset (no offset = UTC), or a bare date.
fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(t.and_utc());
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

fn check(body: &WebhookBody, min_wait: i64) -> Result<Checked, ApiError> {
    let mut issues = Vec::new();
    if let Some(u) = &body.callback_url {
        match url::Url::parse(u) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {}
            _ => issues.push(Issue::body(
                "callback_url",
                "Input should be a valid URL (http or https, with a host)",
                "url_parsing",
            )),
        }
    }
    if let Some(n) = body.max_batch_size {
        if !(1..=100).contains(&n) {
            issues.push(Issue::body(
                "max_batch_size",
                "Input should be between 1 and 100",
                "value_error.range",
            ));
        }
    }
    if let Some(n) = body.max_wait_seconds {
        if !(min_wait..=MAX_MAX_WAIT_SECONDS).contains(&n) {
            issues.push(Issue::body(
                "max_wait_seconds",
                format!("Input should be between {min_wait} and {MAX_MAX_WAIT_SECONDS}"),
                "value_error.range",
            ));
        }
    }
    let replay = match (body.replay_from_event_id, &body.replay_from_timestamp) {
        (Some(_), Some(_)) => {
            issues.push(Issue::body(
                "replay_from_timestamp",
                "Give replay_from_event_id or replay_from_timestamp, not both",
                "value_error",
            ));
            None
        }
        (Some(id), None) if id < 0 => {
            issues.push(Issue::body(
                "replay_from_event_id",
                "Input should be greater than or equal to 0",
                "value_error.range",
            ));
            None
        }
        (Some(id), None) => Some(Replay::FromEventId(id)),
        (None, Some(ts)) => match parse_timestamp(ts) {
            Some(t) => Some(Replay::FromTime(t)),
            None => {
                issues.push(Issue::body(
                    "replay_from_timestamp",
                    "Input should be an ISO 8601 date-time, e.g. 2026-01-22T10:15:30Z",
                    "datetime_parsing",
                ));
                None
            }
        },
        (None, None) => None,
    };
    if issues.is_empty() {
        Ok(Checked {
            callback_url: body.callback_url.clone(),
            max_batch_size: body.max_batch_size,
            max_wait_seconds: body.max_wait_seconds,
            replay,
        })
    } else {
        Err(ApiError::Validation(issues))
    }
}

async fn cursor_for(conn: &mut SqliteConnection, replay: &Replay) -> Result<i64, sqlx::Error> {
    match replay {
        Replay::FromEventId(id) => Ok((id - 1).max(0)),
        Replay::FromTime(t) => events::cursor_before_time(conn, *t).await,
    }
}

async fn ensure_unique_url(
    conn: &mut SqliteConnection,
    url: &str,
    except_id: i64,
) -> Result<(), ApiError> {
    let taken: Option<i64> =
        sqlx::query_scalar("SELECT id FROM webhooks WHERE callback_url = ? AND id != ?")
            .bind(url)
            .bind(except_id)
            .fetch_optional(conn)
            .await?;
    match taken {
        Some(_) => Err(ApiError::invalid(Issue::body(
            "callback_url",
            "A webhook with this callback_url already exists",
            "value_error.duplicate",
        ))),
        None => Ok(()),
    }
}

fn min_wait(state: &AppState) -> i64 {
    i64::from(state.config.min_wait_seconds)
}

/// `POST /webhooks/`.
pub async fn create(
    State(state): State<AppState>,
    ValidJson(body): ValidJson<WebhookBody>,
) -> Result<Json<Webhook>, ApiError> {
    let mut checked = check(&body, min_wait(&state))?;
    let Some(callback_url) = checked.callback_url.take() else {
        return Err(ApiError::invalid(Issue::body(
            "callback_url",
            "Field required",
            "missing",
        )));
    };
    let mut tx = state.pool.begin().await?;
    ensure_unique_url(&mut tx, &callback_url, -1).await?;
    let cursor = match &checked.replay {
        Some(replay) => cursor_for(&mut tx, replay).await?,
        None => events::max_id(&mut tx).await?,
    };
    let row: WebhookRow = sqlx::query_as(
        "INSERT INTO webhooks (identifier, callback_url, callback_api_key, max_batch_size, \
         max_wait_seconds, state, cursor, created_at) VALUES (?, ?, ?, ?, ?, 'active', ?, ?) \
         RETURNING *",
    )
    .bind(Uuid::new_v4().to_string())
    .bind(&callback_url)
    .bind(&body.callback_api_key)
    .bind(checked.max_batch_size.unwrap_or(DEFAULT_MAX_BATCH_SIZE))
    .bind(
        checked
            .max_wait_seconds
            .unwrap_or(DEFAULT_MAX_WAIT_SECONDS.max(min_wait(&state))),
    )
    .bind(cursor)
    .bind(format_time(Utc::now()))
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(webhook_id = row.id, cursor, "webhook registered");
    dispatcher::ensure_worker(&state, row.id);
    state.kick_dispatcher();
    Ok(Json(row.to_wire()))
}

/// `GET /webhooks/`.
pub async fn list(State(state): State<AppState>) -> Result<Json<Vec<Webhook>>, ApiError> {
    let rows = all(&state.pool).await?;
    Ok(Json(rows.iter().map(WebhookRow::to_wire).collect()))
}

/// `GET /webhooks/{identifier}`.
pub async fn get(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    let identifier = parse_uuid("identifier", &identifier)?;
    let mut conn = state.pool.acquire().await?;
    Ok(Json(by_identifier(&mut conn, identifier).await?.to_wire()))
}

/// `PATCH /webhooks/{identifier}`: change settings and/or replay. Any PATCH also takes a
/// `failed` or `backing_off` webhook back to `active` and retries at once: whoever patches it
/// has presumably fixed the receiver.
pub async fn patch(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    ValidJson(body): ValidJson<WebhookBody>,
) -> Result<Json<Webhook>, ApiError> {
    let identifier = parse_uuid("identifier", &identifier)?;
    let checked = check(&body, min_wait(&state))?;
    let mut tx = state.pool.begin().await?;
    let current = by_identifier(&mut tx, identifier).await?;
    if let Some(url) = &checked.callback_url {
        ensure_unique_url(&mut tx, url, current.id).await?;
    }
    let cursor = match &checked.replay {
        Some(replay) => cursor_for(&mut tx, replay).await?,
        None => current.cursor,
    };
    let reset = matches!(
        current.state(),
        WebhookState::Failed | WebhookState::BackingOff
    );
    let row: WebhookRow = sqlx::query_as(
        "UPDATE webhooks SET callback_url = ?, callback_api_key = ?, max_batch_size = ?, \
         max_wait_seconds = ?, cursor = ?, \
         state = CASE WHEN ? THEN 'active' ELSE state END, \
         consecutive_failures = CASE WHEN ? THEN 0 ELSE consecutive_failures END, \
         next_attempt_at_ms = CASE WHEN ? THEN NULL ELSE next_attempt_at_ms END \
         WHERE id = ? RETURNING *",
    )
    .bind(
        checked
            .callback_url
            .as_ref()
            .unwrap_or(&current.callback_url),
    )
    .bind(
        body.callback_api_key
            .as_ref()
            .or(current.callback_api_key.as_ref()),
    )
    .bind(checked.max_batch_size.unwrap_or(current.max_batch_size))
    .bind(checked.max_wait_seconds.unwrap_or(current.max_wait_seconds))
    .bind(cursor)
    .bind(reset)
    .bind(reset)
    .bind(reset)
    .bind(current.id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(webhook_id = row.id, cursor, reset, "webhook updated");
    dispatcher::ensure_worker(&state, row.id);
    state.kick_dispatcher();
    Ok(Json(row.to_wire()))
}

/// `DELETE /webhooks/{identifier}`: answers the deleted webhook. Its delivery attempts stay
/// visible on the dashboard.
pub async fn delete(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Json<Webhook>, ApiError> {
    let identifier = parse_uuid("identifier", &identifier)?;
    let mut conn = state.pool.acquire().await?;
    let row = by_identifier(&mut conn, identifier).await?;
    sqlx::query("DELETE FROM webhooks WHERE id = ?")
        .bind(row.id)
        .execute(&mut *conn)
        .await?;
    drop(conn);
    tracing::info!(webhook_id = row.id, "webhook deleted");
    state.kick_dispatcher();
    Ok(Json(row.to_wire()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_in_several_iso_forms() {
        let t = parse_timestamp("2026-01-22T10:15:30.5+01:00").unwrap();
        assert_eq!(format_time(t), "2026-01-22T09:15:30.500000Z");
        assert!(parse_timestamp("2026-01-22T10:15:30").is_some());
        assert!(parse_timestamp("2026-01-22").is_some());
        assert!(parse_timestamp("yesterday").is_none());
    }

    #[test]
    fn checks_collect_every_issue() {
        let body = WebhookBody {
            callback_url: Some("ftp://x".into()),
            max_batch_size: Some(0),
            max_wait_seconds: Some(5),
            replay_from_event_id: Some(1),
            replay_from_timestamp: Some("2026-01-01".into()),
            ..WebhookBody::default()
        };
        match check(&body, 60) {
            Err(ApiError::Validation(issues)) => {
                let fields: Vec<&str> = issues.iter().map(|i| i.loc[1].as_str()).collect();
                assert_eq!(
                    fields,
                    [
                        "callback_url",
                        "max_batch_size",
                        "max_wait_seconds",
                        "replay_from_timestamp"
                    ]
                );
            }
            _ => panic!("expected a validation error"),
        }
    }
}
