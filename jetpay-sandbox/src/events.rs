//! The event log: what webhooks deliver.
//!
//! Ids come from `INTEGER PRIMARY KEY AUTOINCREMENT` in this one table, so they increase, are
//! never reused, and (since a rolled-back insert also rolls back the sequence) never skipped.
//! `createdAt` never goes backwards between consecutive ids, even if the clock does.

use axum::extract::{Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use sqlx::{SqliteConnection, SqlitePool};

use jetpay::wire::Event;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{format_time, parse_time};

type Row = (i64, String, String, String);

fn to_event((id, created_at, event_type, data): Row) -> Event {
    Event {
        id,
        created_at: parse_time(&created_at).unwrap_or_else(Utc::now),
        event_type,
        data: serde_json::from_str(&data).unwrap_or(Value::Null),
    }
}

/// Appends an event inside the caller's transaction, so the event exists exactly when the state
/// change it reports does.
pub async fn append(
    conn: &mut SqliteConnection,
    event_type: &str,
    data: &Value,
) -> Result<Event, sqlx::Error> {
    let last: Option<String> =
        sqlx::query_scalar("SELECT created_at FROM events ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    let mut created_at = format_time(Utc::now());
    if let Some(last) = last {
        if last > created_at {
            created_at = last;
        }
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO events (created_at, type, data) VALUES (?, ?, ?) RETURNING id",
    )
    .bind(&created_at)
    .bind(event_type)
    .bind(data.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(to_event((
        id,
        created_at,
        event_type.to_owned(),
        data.to_string(),
    )))
}

/// Up to `limit` events with ids above `cursor`, ascending.
pub async fn after(pool: &SqlitePool, cursor: i64, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT id, created_at, type, data FROM events WHERE id > ? ORDER BY id ASC LIMIT ?",
    )
    .bind(cursor)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(to_event).collect())
}

pub async fn count_after(pool: &SqlitePool, cursor: i64) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE id > ?")
        .bind(cursor)
        .fetch_one(pool)
        .await
}

/// The newest id, 0 when the log is empty: a new webhook starts after it.
pub async fn max_id(conn: &mut SqliteConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
        .fetch_one(conn)
        .await
}

/// The cursor that replays every event created at or after `from`.
pub async fn cursor_before_time(
    conn: &mut SqliteConnection,
    from: DateTime<Utc>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events WHERE created_at < ?")
        .bind(format_time(from))
        .fetch_one(conn)
        .await
}

/// The newest `limit` events, newest first (for the dashboard).
pub async fn recent(pool: &SqlitePool, limit: u32) -> Result<Vec<Event>, sqlx::Error> {
    let rows: Vec<Row> =
        sqlx::query_as("SELECT id, created_at, type, data FROM events ORDER BY id DESC LIMIT ?")
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(to_event).collect())
}

/// Query of `GET /_sandbox/events`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only events with a higher id (default 0: from the start).
    after: Option<i64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<u32>,
}

/// `GET /_sandbox/events?after=<id>&limit=<n>`: the event log as Jetpay would deliver it,
/// ascending, so a test can compare what the platform applied with what Jetpay's log implies.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Event>>, ApiError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(
        after(&state.pool, query.after.unwrap_or(0), limit).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Storage;

    #[tokio::test]
    async fn ids_ascend_and_times_never_go_back() {
        let pool = crate::store::open(&Storage::Memory).await.unwrap();
        let mut conn = pool.acquire().await.unwrap();
        let a = append(&mut conn, "t", &serde_json::json!({"n": 1}))
            .await
            .unwrap();
        let b = append(&mut conn, "t", &serde_json::json!({"n": 2}))
            .await
            .unwrap();
        drop(conn);
        assert_eq!(b.id, a.id + 1);
        assert!(b.created_at >= a.created_at);
        let listed = after(&pool, a.id - 1, 10).await.unwrap();
        assert_eq!(listed, vec![a.clone(), b.clone()]);
        assert_eq!(after(&pool, b.id, 10).await.unwrap(), vec![]);
        let mut conn = pool.acquire().await.unwrap();
        assert!(cursor_before_time(&mut conn, b.created_at).await.unwrap() <= a.id);
    }
}
