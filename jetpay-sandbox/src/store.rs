//! Opening the SQLite database, and the time formats used in it.
//!
//! The pool has exactly one connection. Everything the sandbox does is small, and one
//! connection serialises all writers: event ids and their `createdAt` are then assigned in the
//! same order, and no transaction can fail with `SQLITE_BUSY`. It also keeps an in-memory
//! database alive (each new connection to `:memory:` would be a new, empty database).
//! The price: never hold a transaction across an await on anything but the database.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use crate::config::Storage;
use crate::error::SandboxError;

/// Opens (creating if needed) and migrates the database.
pub async fn open(storage: &Storage) -> Result<SqlitePool, SandboxError> {
    let options = match storage {
        Storage::Memory => SqliteConnectOptions::from_str("sqlite::memory:")?,
        Storage::File(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| SandboxError::Io {
                    what: format!("creating {}", dir.display()),
                    source,
                })?;
            }
            SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
        }
    }
    .foreign_keys(true)
    .busy_timeout(Duration::from_secs(5));

    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await?;
    sqlx::migrate!("./migrations").run(&pool).await?;
    Ok(pool)
}

/// RFC 3339 with microseconds and `Z`, e.g. `2026-01-22T10:15:30.123456Z`: the guide's format,
/// and it sorts as text.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub fn ms_to_time(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_else(Utc::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_format_has_microseconds_and_round_trips() {
        let t = Utc.with_ymd_and_hms(2026, 1, 22, 10, 15, 30).unwrap()
            + chrono::Duration::microseconds(123_456);
        let s = format_time(t);
        assert_eq!(s, "2026-01-22T10:15:30.123456Z");
        assert_eq!(parse_time(&s), Some(t));
    }

    #[tokio::test]
    async fn memory_database_migrates() {
        let pool = open(&Storage::Memory).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
}
