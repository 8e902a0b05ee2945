//! The PostgreSQL backend: several instances on one database. What an instance would keep in
//! memory is in the database instead: a customer's card additions are serialised by an advisory
//! lock, one instance leads the background jobs by holding another, and committed changes are
//! announced with `NOTIFY` (by a trigger on the change log: migration 0002) so that every
//! instance's live streams hear them.

use std::{str::FromStr, time::Duration};

use async_trait::async_trait;
use sqlx::{
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
    Connection,
};
use tokio::sync::mpsc;

use super::{
    Coordination, CustomerId, CustomerLock, DbPool, FeedEvent, Leadership, LockInner, Result,
    StoreError,
};

// The same SQL text is compiled once per backend on purpose: see `portable/mod.rs`.
#[allow(clippy::duplicate_mod)]
#[path = "portable/mod.rs"]
mod portable;

type Db = sqlx::Postgres;
type Handle = PostgresDatabase;

/// `Database::backend`'s answer.
const BACKEND: &str = "postgres";

fn db_pool(pool: &sqlx::Pool<Db>) -> DbPool {
    DbPool::Postgres(pool.clone())
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The channel committed changes are announced on, by the trigger on `card_changes` that
/// migration 0002 creates (it names the channel too: the two must match); each payload is
/// `"<customer id> <seq>"`.
const CHANGES_CHANNEL: &str = "card_changes";
/// The advisory lock (in the two-key space, apart from customer locks) that makes an instance
/// the leader of background jobs.
const LEADER_LOCK: (i32, i32) = (7242, 1);
/// How long a statement waits for a row or advisory lock before the database counts as busy
/// (SQLite's busy timeout, here).
const LOCK_TIMEOUT: &str = "5s";
/// How long a connection may sit idle in the pool before it is pinged again before use.
const RECHECK_AFTER_IDLE: Duration = Duration::from_secs(1);

pub struct PostgresDatabase {
    pool: sqlx::PgPool,
}

/// Lock waits that ran out, deadlocks and serialisation failures are "busy": the request can be
/// retried as it is.
fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        if matches!(
            db.code().as_deref(),
            Some("55P03" | "40001" | "40P01" | "57014")
        ) {
            return StoreError::Busy(e);
        }
    }
    if matches!(e, sqlx::Error::PoolTimedOut) {
        return StoreError::Busy(e);
    }
    StoreError::Database(e)
}

impl PostgresDatabase {
    /// Connects and brings the schema up to date (instances starting together take turns: the
    /// migrator holds a lock while it runs).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url)?
            .options([("lock_timeout", LOCK_TIMEOUT)])
            .application_name("saved-cards");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            // sqlx pings every connection given back to the pool; pinging it again when it is
            // handed out costs each request a round trip for nothing (P2 in BENCHMARKS.md).
            // Only a connection that has sat idle for a while is checked again, so that one the
            // database dropped meanwhile (a restart, a failover) is replaced, not used.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= RECHECK_AFTER_IDLE {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    async fn begin_write(&self) -> Result<portable::Tx<'static>> {
        self.pool.begin().await.map_err(classify)
    }

    /// Writes share the pool: nothing else to close.
    async fn close_writer(&self) {}
}

/// Listens on [`CHANGES_CHANNEL`] for as long as `feed` has a reader. After every (re)connect it
/// says [`FeedEvent::Resumed`]: notifications sent while nobody listened are gone, and readers
/// catch up from the log.
async fn listen(pool: sqlx::PgPool, feed: mpsc::Sender<FeedEvent>) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(mut listener) => match listener.listen(CHANGES_CHANNEL).await {
                Ok(()) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "LISTEN failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not connect to listen for changes; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if feed.send(FeedEvent::Resumed).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                _ = feed.closed() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    let Some(event) = parse_payload(notification.payload()) else {
                        tracing::warn!("unreadable change notification ignored");
                        continue;
                    };
                    if feed.send(event).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    tracing::warn!("the change feed's connection was lost; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the change feed failed; reconnecting");
                    break;
                }
            }
        }
    }
}

fn parse_payload(payload: &str) -> Option<FeedEvent> {
    let (customer_id, seq) = payload.split_once(' ')?;
    Some(FeedEvent::Committed {
        customer_id: CustomerId::new(customer_id),
        seq: seq.parse().ok()?,
    })
}

#[async_trait]
impl Coordination for PostgresDatabase {
    async fn lock_customer(&self, customer_id: &CustomerId) -> Result<CustomerLock> {
        let mut tx = self.pool.begin().await.map_err(classify)?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(customer_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        Ok(CustomerLock(LockInner::Postgres(tx)))
    }

    async fn try_lead(&self) -> Result<Option<Leadership>> {
        let mut conn = self.pool.acquire().await.map_err(classify)?;
        let leads: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LEADER_LOCK.0)
            .bind(LEADER_LOCK.1)
            .fetch_one(&mut *conn)
            .await
            .map_err(classify)?;
        // The lock belongs to the connection: keep it out of the pool for as long as we lead.
        Ok(leads.then(|| Leadership(Some(conn.detach()))))
    }

    fn change_feed(&self) -> Option<mpsc::Receiver<FeedEvent>> {
        let (sender, receiver) = mpsc::channel(1024);
        tokio::spawn(listen(self.pool.clone(), sender));
        Some(receiver)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse() {
        assert_eq!(
            parse_payload("c-1 42"),
            Some(FeedEvent::Committed {
                customer_id: CustomerId::new("c-1"),
                seq: 42
            })
        );
        assert_eq!(parse_payload("c-1"), None);
        assert_eq!(parse_payload("c-1 x"), None);
    }
}
