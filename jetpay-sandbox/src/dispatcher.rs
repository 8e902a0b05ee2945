//! The webhook dispatcher: one worker task per webhook, each walking the event log from its
//! webhook's cursor and POSTing signed batches.
//!
//! What the states mean here (the guide names them, we chose the meanings):
//! - `active`: idle, nothing waiting;
//! - `scheduled`: events are waiting for `max_batch_size` or `max_wait_seconds` (or delivery is
//!   paused by a fault);
//! - `dispatching`: a POST is in flight;
//! - `backing_off`: the last attempt failed, a retry is scheduled;
//! - `failed`: gave up after `max_attempts` failures in a row; a PATCH makes it `active` again.
//!
//! Workers sleep until the next deadline or a kick (new event, webhook changed, faults changed),
//! so `max_wait_seconds = 0` means delivery right after the event is committed.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::header;
use axum::Json;
use chrono::Utc;
use futures::future::join_all;
use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;

use jetpay::unspecified;
use jetpay::wire::{Event, WebhookBatch, WebhookState};

use crate::api::parse_uuid;
use crate::controls::{self, Resend};
use crate::error::ApiError;
use crate::events;
use crate::faults::{DeliveryPlan, Reorder};
use crate::state::AppState;
use crate::store::{format_time, now_ms};
use crate::webhooks::{self, state_name, WebhookRow};

/// Starts the worker of a webhook unless it runs already.
pub fn ensure_worker(state: &AppState, webhook_id: i64) {
    let mut workers = state.workers.lock().expect("worker lock");
    let running = workers
        .get(&webhook_id)
        .is_some_and(|handle| !handle.is_finished());
    if !running {
        let task = tokio::spawn(run_worker(state.clone(), webhook_id));
        workers.insert(webhook_id, task);
    }
}

/// Starts a worker for every stored webhook (at startup).
pub async fn start_all(state: &AppState) -> Result<(), sqlx::Error> {
    for row in webhooks::all(&state.pool).await? {
        ensure_worker(state, row.id);
    }
    Ok(())
}

pub fn stop_all(state: &AppState) {
    for (_, task) in state.workers.lock().expect("worker lock").drain() {
        task.abort();
    }
}

/// What a worker does next.
enum Next {
    /// The webhook is gone.
    Exit,
    /// Look again right away.
    Again,
    /// Nothing to do until something changes.
    WaitForKick,
    /// Look again at this time (Unix ms) or when something changes.
    WaitUntil(i64),
}

async fn run_worker(state: AppState, webhook_id: i64) {
    let mut kicks = state.subscribe_kicks();
    loop {
        kicks.borrow_and_update();
        let next = match step(&state, webhook_id).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(webhook_id, error = %e, "dispatcher step failed");
                Next::WaitUntil(now_ms() + 1000)
            }
        };
        match next {
            Next::Exit => {
                tracing::debug!(webhook_id, "webhook worker stops");
                return;
            }
            Next::Again => {}
            Next::WaitForKick => {
                if kicks.changed().await.is_err() {
                    return;
                }
            }
            Next::WaitUntil(at) => {
                let wait = Duration::from_millis((at - now_ms()).max(0).unsigned_abs());
                tokio::select! {
                    changed = kicks.changed() => if changed.is_err() { return },
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
}

async fn set_state(state: &AppState, id: i64, to: WebhookState) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE webhooks SET state = ? WHERE id = ? AND state != ?")
        .bind(state_name(to))
        .bind(id)
        .bind(state_name(to))
        .execute(&state.pool)
        .await?;
    Ok(())
}

/// One look at a webhook: deliver if due, else say when to look again.
async fn step(state: &AppState, webhook_id: i64) -> Result<Next, sqlx::Error> {
    let mut conn = state.pool.acquire().await?;
    let Some(wh) = webhooks::by_id(&mut conn, webhook_id).await? else {
        return Ok(Next::Exit);
    };
    drop(conn);
    let now = now_ms();
    let current = wh.state();
    if current == WebhookState::Failed {
        return Ok(Next::WaitForKick);
    }
    let retry_due = match (current, wh.next_attempt_at_ms) {
        (WebhookState::BackingOff, Some(at)) if at > now => return Ok(Next::WaitUntil(at)),
        (WebhookState::BackingOff, _) => true,
        _ => false,
    };

    let batch_size = u32::try_from(wh.max_batch_size).unwrap_or(1);
    let resend = controls::next_resend(&state.pool, wh.id).await?;
    let batch = events::after(&state.pool, wh.cursor, batch_size).await?;
    if resend.is_none() && batch.is_empty() {
        sqlx::query(
            "UPDATE webhooks SET state = 'active', consecutive_failures = 0, \
             next_attempt_at_ms = NULL WHERE id = ? AND state != 'active'",
        )
        .bind(wh.id)
        .execute(&state.pool)
        .await?;
        return Ok(Next::WaitForKick);
    }
    if wh.paused || state.faults.is_paused() {
        if !retry_due {
            set_state(state, wh.id, WebhookState::Scheduled).await?;
        }
        return Ok(Next::WaitForKick);
    }
    if let Some(resend) = resend {
        return send_resend(state, &wh, resend, batch_size).await;
    }
    let Some(oldest) = batch.first() else {
        return Ok(Next::WaitForKick);
    };
    let deadline = oldest.created_at.timestamp_millis() + wh.max_wait_seconds * 1000;
    let full = batch.len() as i64 >= wh.max_batch_size;
    if !(retry_due || full || now >= deadline) {
        set_state(state, wh.id, WebhookState::Scheduled).await?;
        return Ok(Next::WaitUntil(deadline));
    }
    let Some(plan) = state.faults.plan_delivery() else {
        return Ok(Next::WaitForKick);
    };
    deliver(state, &wh, batch, plan, Target::Cursor).await?;
    Ok(Next::Again)
}

/// Sends the next batch of a queued resend: asked for explicitly, so at once (no batching wait)
/// and ahead of the webhook's normal batches.
async fn send_resend(
    state: &AppState,
    wh: &WebhookRow,
    resend: Resend,
    batch_size: u32,
) -> Result<Next, sqlx::Error> {
    let events: Vec<Event> = events::after(&state.pool, resend.next_id - 1, batch_size)
        .await?
        .into_iter()
        .filter(|e| e.id <= resend.last_id)
        .collect();
    if events.is_empty() {
        controls::resend_sent(&state.pool, resend, resend.last_id).await?;
        return Ok(Next::Again);
    }
    let Some(plan) = state.faults.plan_delivery() else {
        return Ok(Next::WaitForKick);
    };
    deliver(state, wh, events, plan, Target::Resend(resend)).await?;
    Ok(Next::Again)
}

/// What a delivery is for, i.e. what its success moves on.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The webhook's next events: success moves the cursor.
    Cursor,
    /// A resend asked for by a developer: success moves the resend, never the cursor.
    Resend(Resend),
}

/// The result of one POST.
struct Sent {
    status: Option<u16>,
    error: Option<String>,
    latency_ms: i64,
}

impl Sent {
    fn ok(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One row of `delivery_attempts`; also the JSON of `GET /_sandbox/webhooks/{id}/attempts`.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Attempt {
    pub id: i64,
    pub webhook_id: i64,
    pub attempt: i64,
    pub started_at: String,
    pub latency_ms: Option<i64>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub first_event_id: i64,
    pub last_event_id: i64,
    pub event_count: i64,
    /// `delivered`, `failed` or `dropped`.
    pub outcome: String,
    pub note: Option<String>,
}

struct NewAttempt<'a> {
    webhook_id: i64,
    attempt: i64,
    started_at: chrono::DateTime<Utc>,
    sent: Option<&'a Sent>,
    events: &'a [Event],
    outcome: &'a str,
    note: Option<String>,
}

async fn record(state: &AppState, a: NewAttempt<'_>) -> Result<(), sqlx::Error> {
    let first = a.events.iter().map(|e| e.id).min().unwrap_or(0);
    let last = a.events.iter().map(|e| e.id).max().unwrap_or(0);
    sqlx::query(
        "INSERT INTO delivery_attempts (webhook_id, attempt, started_at, latency_ms, status_code, \
         error, first_event_id, last_event_id, event_count, outcome, note) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(a.webhook_id)
    .bind(a.attempt)
    .bind(format_time(a.started_at))
    .bind(a.sent.map(|s| s.latency_ms))
    .bind(a.sent.and_then(|s| s.status).map(i64::from))
    .bind(a.sent.and_then(|s| s.error.clone()))
    .bind(first)
    .bind(last)
    .bind(a.events.len() as i64)
    .bind(a.outcome)
    .bind(a.note)
    .execute(&state.pool)
    .await?;
    Ok(())
}

/// POSTs one body, signed afresh (each request gets its own `jti`).
async fn post(state: &AppState, wh: &WebhookRow, body: &[u8]) -> Sent {
    let started = Instant::now();
    let jwt = match state.signer.sign(body) {
        Ok(jwt) => jwt,
        Err(e) => {
            return Sent {
                status: None,
                error: Some(format!("signing failed: {e}")),
                latency_ms: 0,
            }
        }
    };
    let mut request = state
        .http
        .post(&wh.callback_url)
        .header(header::CONTENT_TYPE, "application/json")
        .bearer_auth(jwt)
        .timeout(state.config.delivery_timeout)
        .body(body.to_vec());
    if let Some(key) = &wh.callback_api_key {
        request = request.header(unspecified::CALLBACK_API_KEY_HEADER, key);
    }
    let result = request.send().await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match result {
        Ok(response) => {
            let status = response.status().as_u16();
            Sent {
                status: Some(status),
                error: (!response.status().is_success()).then(|| format!("HTTP {status}")),
                latency_ms,
            }
        }
        Err(e) => Sent {
            status: None,
            error: Some(if e.is_timeout() {
                format!(
                    "no answer within {} ms",
                    state.config.delivery_timeout.as_millis()
                )
            } else {
                // Without the URL: it may carry secrets in its query.
                e.without_url().to_string()
            }),
            latency_ms,
        },
    }
}

/// Delivers one due batch according to `plan`, and moves the webhook on.
async fn deliver(
    state: &AppState,
    wh: &WebhookRow,
    mut batch: Vec<Event>,
    plan: DeliveryPlan,
    target: Target,
) -> Result<(), sqlx::Error> {
    set_state(state, wh.id, WebhookState::Dispatching).await?;
    let attempt = wh.consecutive_failures + 1;
    let last_id = batch.iter().map(|e| e.id).max().unwrap_or(wh.cursor);
    let started_at = Utc::now();
    let note = match (target, plan.note()) {
        (Target::Cursor, note) => note,
        (Target::Resend(_), None) => Some("resend".to_owned()),
        (Target::Resend(_), Some(note)) => Some(format!("resend, {note}")),
    };

    if plan.fail {
        let sent = Sent {
            status: None,
            error: Some("simulated receiver failure (fault fail_times); nothing sent".to_owned()),
            latency_ms: 0,
        };
        record(
            state,
            NewAttempt {
                webhook_id: wh.id,
                attempt,
                started_at,
                sent: Some(&sent),
                events: &batch,
                outcome: "failed",
                note,
            },
        )
        .await?;
        return failed(state, wh, attempt).await;
    }
    if plan.drop {
        record(
            state,
            NewAttempt {
                webhook_id: wh.id,
                attempt,
                started_at,
                sent: None,
                events: &batch,
                outcome: "dropped",
                note,
            },
        )
        .await?;
        tracing::info!(webhook_id = wh.id, last_id, "batch dropped (fault)");
        return succeeded(state, wh, last_id, target).await;
    }
    if plan.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(plan.delay_ms)).await;
    }
    match plan.reorder {
        Some(Reorder::Reverse) => batch.reverse(),
        Some(Reorder::Shuffle) if batch.len() > 1 => {
            let original: Vec<i64> = batch.iter().map(|e| e.id).collect();
            while batch.iter().map(|e| e.id).eq(original.iter().copied()) {
                batch.shuffle(&mut rand::thread_rng());
            }
        }
        Some(Reorder::Shuffle) | None => {}
    }
    let body = match serde_json::to_vec(&WebhookBatch {
        webhook_id: wh.id,
        events: batch.clone(),
    }) {
        Ok(body) => body,
        Err(e) => {
            tracing::error!(error = %e, "batch does not serialise");
            return failed(state, wh, attempt).await;
        }
    };

    let mut delivered = false;
    for copy in 0..plan.sends.max(1) {
        let sent = post(state, wh, &body).await;
        let ok = sent.ok();
        tracing::info!(
            webhook_id = wh.id,
            attempt,
            copy = copy + 1,
            events = batch.len(),
            last_id,
            status = sent.status,
            latency_ms = sent.latency_ms,
            ok,
            "delivery"
        );
        record(
            state,
            NewAttempt {
                webhook_id: wh.id,
                attempt,
                started_at,
                sent: Some(&sent),
                events: &batch,
                outcome: if ok { "delivered" } else { "failed" },
                note: note.clone(),
            },
        )
        .await?;
        delivered |= ok && copy == 0;
        if !ok {
            break;
        }
    }
    if delivered {
        succeeded(state, wh, last_id, target).await
    } else {
        failed(state, wh, attempt).await
    }
}

/// Moves the cursor past a delivered (or dropped) batch, unless a PATCH moved it meanwhile; or,
/// for a resend, moves the resend on.
async fn succeeded(
    state: &AppState,
    wh: &WebhookRow,
    last_id: i64,
    target: Target,
) -> Result<(), sqlx::Error> {
    if let Target::Resend(resend) = target {
        controls::resend_sent(&state.pool, resend, last_id).await?;
        sqlx::query(
            "UPDATE webhooks SET last_sent_event_id = MAX(COALESCE(last_sent_event_id, 0), ?), \
             consecutive_failures = 0, next_attempt_at_ms = NULL, state = 'active' WHERE id = ?",
        )
        .bind(last_id)
        .bind(wh.id)
        .execute(&state.pool)
        .await?;
        return Ok(());
    }
    sqlx::query(
        "UPDATE webhooks SET \
         cursor = CASE WHEN cursor = ? THEN ? ELSE cursor END, \
         last_sent_event_id = MAX(COALESCE(last_sent_event_id, 0), ?), \
         consecutive_failures = 0, next_attempt_at_ms = NULL, state = 'active' \
         WHERE id = ?",
    )
    .bind(wh.cursor)
    .bind(last_id)
    .bind(last_id)
    .bind(wh.id)
    .execute(&state.pool)
    .await?;
    Ok(())
}

/// Full-jitter exponential backoff: a random delay in `0..=min(cap, base * 2^(attempt-1))`.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let cap = Duration::from_secs(unspecified::RETRY_MAX_SECONDS);
    let ceiling = base
        .checked_mul(2u32.saturating_pow(attempt.saturating_sub(1).min(30)))
        .unwrap_or(cap)
        .min(cap);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::thread_rng().gen_range(0..=ms))
}

async fn failed(state: &AppState, wh: &WebhookRow, attempt: i64) -> Result<(), sqlx::Error> {
    let max = i64::from(state.config.max_attempts.max(1));
    if attempt >= max {
        tracing::warn!(
            webhook_id = wh.id,
            attempt,
            "webhook failed: giving up until PATCHed"
        );
        sqlx::query(
            "UPDATE webhooks SET state = 'failed', consecutive_failures = ?, \
             next_attempt_at_ms = NULL WHERE id = ?",
        )
        .bind(attempt)
        .bind(wh.id)
        .execute(&state.pool)
        .await?;
    } else {
        let delay = backoff(
            state.config.retry_base,
            u32::try_from(attempt).unwrap_or(u32::MAX),
        );
        let at = now_ms() + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 2);
        tracing::info!(
            webhook_id = wh.id,
            attempt,
            retry_in_ms = delay.as_millis() as u64,
            "delivery failed, backing off"
        );
        sqlx::query(
            "UPDATE webhooks SET state = 'backing_off', consecutive_failures = ?, \
             next_attempt_at_ms = ? WHERE id = ?",
        )
        .bind(attempt)
        .bind(at)
        .bind(wh.id)
        .execute(&state.pool)
        .await?;
    }
    Ok(())
}

/// The fault `deliver_early`: POST one event to every webhook now, ignoring batching, and
/// without waiting for the worker. If it lands and nothing else moved the cursor, the cursor
/// moves past it; otherwise the worker delivers it again later (at least once).
pub async fn deliver_now(state: &AppState, event: &Event) {
    let rows = match webhooks::all(&state.pool).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::error!(error = %e, "early delivery: cannot list webhooks");
            return;
        }
    };
    let sends = rows
        .iter()
        .filter(|wh| wh.state() != WebhookState::Failed && !wh.paused)
        .map(|wh| async move {
            let started_at = Utc::now();
            let events = vec![event.clone()];
            let body = match serde_json::to_vec(&WebhookBatch {
                webhook_id: wh.id,
                events: events.clone(),
            }) {
                Ok(body) => body,
                Err(_) => return,
            };
            let sent = post(state, wh, &body).await;
            let ok = sent.ok();
            tracing::info!(
                webhook_id = wh.id,
                event_id = event.id,
                status = sent.status,
                ok,
                "early delivery"
            );
            let _ = record(
                state,
                NewAttempt {
                    webhook_id: wh.id,
                    attempt: 1,
                    started_at,
                    sent: Some(&sent),
                    events: &events,
                    outcome: if ok { "delivered" } else { "failed" },
                    note: Some("fault: deliver_early".to_owned()),
                },
            )
            .await;
            if ok {
                let _ = sqlx::query(
                    "UPDATE webhooks SET cursor = CASE WHEN cursor = ? THEN ? ELSE cursor END, \
                     last_sent_event_id = MAX(COALESCE(last_sent_event_id, 0), ?) WHERE id = ?",
                )
                .bind(event.id - 1)
                .bind(event.id)
                .bind(event.id)
                .bind(wh.id)
                .execute(&state.pool)
                .await;
            }
        });
    join_all(sends).await;
}

/// `GET /_sandbox/webhooks/{identifier}/attempts`: every delivery attempt of a webhook, oldest
/// first.
pub async fn attempts(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Json<Vec<Attempt>>, ApiError> {
    let identifier = parse_uuid("identifier", &identifier)?;
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM webhooks WHERE identifier = ?")
        .bind(identifier.to_string())
        .fetch_optional(&state.pool)
        .await?;
    let id = id.ok_or(ApiError::NotFound("Webhook not found"))?;
    Ok(Json(for_webhook(&state, id).await?))
}

pub async fn for_webhook(state: &AppState, webhook_id: i64) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM delivery_attempts WHERE webhook_id = ? ORDER BY id")
        .bind(webhook_id)
        .fetch_all(&state.pool)
        .await
}

pub async fn recent(state: &AppState, limit: u32) -> Result<Vec<Attempt>, sqlx::Error> {
    sqlx::query_as("SELECT * FROM delivery_attempts ORDER BY id DESC LIMIT ?")
        .bind(i64::from(limit))
        .fetch_all(&state.pool)
        .await
}

/// Why a webhook has not delivered yet, in words, for the dashboard.
pub async fn explain(state: &AppState, wh: &WebhookRow) -> String {
    let waiting = events::count_after(&state.pool, wh.cursor)
        .await
        .unwrap_or(0);
    let when = |ms: Option<i64>| {
        ms.map(crate::store::ms_to_time)
            .map(format_time)
            .unwrap_or_else(|| "soon".to_owned())
    };
    match wh.state() {
        WebhookState::Failed => format!(
            "Gave up after {} failed attempts in a row; {waiting} events undelivered. PATCH the webhook to retry.",
            wh.consecutive_failures
        ),
        WebhookState::BackingOff => format!(
            "Last attempt failed ({} in a row); next try at {}. {waiting} events waiting.",
            wh.consecutive_failures,
            when(wh.next_attempt_at_ms)
        ),
        WebhookState::Dispatching => format!("Sending a batch now; {waiting} events after the cursor."),
        _ if wh.paused => format!("Paused (resume it to deliver); {waiting} events waiting."),
        _ if waiting == 0 => "Up to date: every event has been delivered.".to_owned(),
        _ if state.faults.is_paused() => format!("{waiting} events waiting: delivery is paused (fault injection)."),
        _ => {
            let oldest = events::after(&state.pool, wh.cursor, 1)
                .await
                .ok()
                .and_then(|v| v.into_iter().next());
            let due = oldest.map(|e| e.created_at.timestamp_millis() + wh.max_wait_seconds * 1000);
            format!(
                "{waiting} events waiting for a batch of {} or until {} (max_wait_seconds {}).",
                wh.max_batch_size,
                when(due),
                wh.max_wait_seconds
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_full_jitter_and_capped() {
        let base = Duration::from_millis(100);
        for _ in 0..200 {
            assert!(backoff(base, 1) <= Duration::from_millis(100));
            assert!(backoff(base, 3) <= Duration::from_millis(400));
            assert!(backoff(base, 200) <= Duration::from_secs(unspecified::RETRY_MAX_SECONDS));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(base, 4)).collect();
        assert!(spread.len() > 1, "jitter should vary");
    }
}
