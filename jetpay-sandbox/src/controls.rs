//! Developer controls on webhooks: resend events, pause and resume one webhook, and the attempt
//! feed that `jetpay-sandbox tail` follows. The CLI and the dashboard both use these.

use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::Utc;
use serde::{Deserialize, Serialize};
use sqlx::SqlitePool;
use uuid::Uuid;

use crate::api::{parse_uuid, ValidJson};
use crate::dispatcher::Attempt;
use crate::error::{ApiError, Issue};
use crate::state::AppState;
use crate::store::format_time;
use crate::webhooks::WebhookRow;

/// A queued resend: events `next_id..=last_id` to one webhook.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Resend {
    pub id: i64,
    pub next_id: i64,
    pub last_id: i64,
}

/// The oldest queued resend of a webhook.
pub async fn next_resend(
    pool: &SqlitePool,
    webhook_id: i64,
) -> Result<Option<Resend>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, next_id, last_id FROM resends WHERE webhook_id = ? ORDER BY id LIMIT 1",
    )
    .bind(webhook_id)
    .fetch_optional(pool)
    .await
}

/// A resend's events up to `sent` were delivered: move it on, or drop it when done.
pub async fn resend_sent(pool: &SqlitePool, resend: Resend, sent: i64) -> Result<(), sqlx::Error> {
    if sent >= resend.last_id {
        sqlx::query("DELETE FROM resends WHERE id = ?")
            .bind(resend.id)
            .execute(pool)
            .await?;
    } else {
        sqlx::query("UPDATE resends SET next_id = ? WHERE id = ?")
            .bind(sent + 1)
            .bind(resend.id)
            .execute(pool)
            .await?;
    }
    Ok(())
}

async fn webhook(state: &AppState, identifier: &str) -> Result<WebhookRow, ApiError> {
    let identifier: Uuid = parse_uuid("identifier", identifier)?;
    sqlx::query_as("SELECT * FROM webhooks WHERE identifier = ?")
        .bind(identifier.to_string())
        .fetch_optional(&state.pool)
        .await?
        .ok_or(ApiError::NotFound("Webhook not found"))
}

/// Body of `POST /_sandbox/webhooks/{identifier}/resend`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendRequest {
    pub from_event_id: i64,
    /// Inclusive; default: `from_event_id` (one event).
    pub to_event_id: Option<i64>,
}

/// The answer of the resend, pause and resume endpoints: where the webhook stands.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookControl {
    pub webhook_id: i64,
    pub identifier: String,
    pub callback_url: String,
    pub state: String,
    pub paused: bool,
    /// For a resend: the events queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<Queued>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct Queued {
    pub from_event_id: i64,
    pub to_event_id: i64,
    pub events: i64,
}

impl WebhookControl {
    fn of(wh: &WebhookRow, queued: Option<Queued>) -> Self {
        WebhookControl {
            webhook_id: wh.id,
            identifier: wh.identifier.clone(),
            callback_url: wh.callback_url.clone(),
            state: wh.state.clone(),
            paused: wh.paused,
            queued,
        }
    }

    /// A sentence saying what was done.
    pub fn describe(&self) -> String {
        let hook = format!("webhook {} ({})", self.webhook_id, self.callback_url);
        let held = if self.paused {
            " It is paused: they go out when it is resumed."
        } else if self.state == "failed" {
            " It is failed: they go out once it is PATCHed."
        } else if self.state == "backing_off" {
            " Its last attempt failed: they go out with its next retry."
        } else {
            " They go out now, in batches of up to max_batch_size, before its normal batches."
        };
        match self.queued {
            Some(q) if q.events == 1 => {
                format!("Queued event {} for {hook}.{held}", q.from_event_id)
            }
            Some(q) => format!(
                "Queued events {}–{} ({} events) for {hook}.{held}",
                q.from_event_id, q.to_event_id, q.events
            ),
            None if self.paused => {
                format!("Paused {hook}: nothing is sent to it until it is resumed (events wait).")
            }
            None => format!("Resumed {hook}: waiting events go out now."),
        }
    }
}

/// Queues events `from..=to` for the webhook `identifier`.
pub async fn queue_resend(
    state: &AppState,
    identifier: &str,
    from: i64,
    to: Option<i64>,
) -> Result<WebhookControl, ApiError> {
    let wh = webhook(state, identifier).await?;
    let to = to.unwrap_or(from);
    let newest: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
        .fetch_one(&state.pool)
        .await?;
    let invalid =
        |field: &str, msg: String| ApiError::invalid(Issue::body(field, msg, "value_error"));
    if from < 1 {
        return Err(invalid("from_event_id", "Event ids start at 1".to_owned()));
    }
    if to < from {
        return Err(invalid(
            "to_event_id",
            format!("to_event_id ({to}) is below from_event_id ({from})"),
        ));
    }
    if to > newest {
        let field = if from > newest {
            "from_event_id"
        } else {
            "to_event_id"
        };
        return Err(invalid(
            field,
            format!("There is no event {to} yet: the newest event is {newest}"),
        ));
    }
    sqlx::query(
        "INSERT INTO resends (webhook_id, next_id, last_id, created_at) VALUES (?, ?, ?, ?)",
    )
    .bind(wh.id)
    .bind(from)
    .bind(to)
    .bind(format_time(Utc::now()))
    .execute(&state.pool)
    .await?;
    crate::dispatcher::ensure_worker(state, wh.id);
    state.kick_dispatcher();
    Ok(WebhookControl::of(
        &wh,
        Some(Queued {
            from_event_id: from,
            to_event_id: to,
            events: to - from + 1,
        }),
    ))
}

/// Pauses or resumes the webhook `identifier`.
pub async fn set_paused(
    state: &AppState,
    identifier: &str,
    paused: bool,
) -> Result<WebhookControl, ApiError> {
    let wh = webhook(state, identifier).await?;
    let wh: WebhookRow = sqlx::query_as("UPDATE webhooks SET paused = ? WHERE id = ? RETURNING *")
        .bind(paused)
        .bind(wh.id)
        .fetch_one(&state.pool)
        .await?;
    state.kick_dispatcher();
    Ok(WebhookControl::of(&wh, None))
}

fn answer(state: &AppState, control: WebhookControl) -> Json<WebhookControl> {
    state.record_action(true, control.describe());
    Json(control)
}

/// `POST /_sandbox/webhooks/{identifier}/resend`.
pub async fn resend(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
    ValidJson(req): ValidJson<ResendRequest>,
) -> Result<Json<WebhookControl>, ApiError> {
    let done = queue_resend(&state, &identifier, req.from_event_id, req.to_event_id).await?;
    Ok(answer(&state, done))
}

/// `POST /_sandbox/webhooks/{identifier}/pause`.
pub async fn pause(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Json<WebhookControl>, ApiError> {
    let done = set_paused(&state, &identifier, true).await?;
    Ok(answer(&state, done))
}

/// `POST /_sandbox/webhooks/{identifier}/resume`.
pub async fn resume(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Json<WebhookControl>, ApiError> {
    let done = set_paused(&state, &identifier, false).await?;
    Ok(answer(&state, done))
}

/// Query of `GET /_sandbox/attempts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptsQuery {
    /// Only attempts with a higher id (default 0).
    after: Option<i64>,
    /// Only the newest `last` attempts (instead of `after`).
    last: Option<u32>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// `GET /_sandbox/attempts?after=<id>&limit=<n>` or `?last=<n>`: delivery attempts of every
/// webhook, ascending by id. `jetpay-sandbox tail` polls it.
pub async fn attempts(
    State(state): State<AppState>,
    Query(query): Query<AttemptsQuery>,
) -> Result<Json<Vec<Attempt>>, ApiError> {
    let limit = i64::from(query.limit.unwrap_or(100).clamp(1, 1000));
    let rows: Vec<Attempt> = match query.last {
        Some(last) => {
            let mut rows: Vec<Attempt> =
                sqlx::query_as("SELECT * FROM delivery_attempts ORDER BY id DESC LIMIT ?")
                    .bind(i64::from(last.min(1000)))
                    .fetch_all(&state.pool)
                    .await?;
            rows.reverse();
            rows
        }
        None => {
            sqlx::query_as("SELECT * FROM delivery_attempts WHERE id > ? ORDER BY id LIMIT ?")
                .bind(query.after.unwrap_or(0))
                .bind(limit)
                .fetch_all(&state.pool)
                .await?
        }
    };
    Ok(Json(rows))
}
