//! The SQLite backend: one process, one file. Coordination is in-process: a lock per customer,
//! this instance always leads, and live changes travel in memory.

use std::{collections::HashMap, str::FromStr, sync::Arc, time::Duration};

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use super::{
    Coordination, CustomerId, CustomerLock, DbPool, FeedEvent, Leadership, LockInner, Result,
    StoreError,
};

// The same SQL text is compiled once per backend on purpose: see `portable/mod.rs`.
#[allow(clippy::duplicate_mod)]
#[path = "portable/mod.rs"]
mod portable;

type Db = sqlx::Sqlite;
type Handle = SqliteDatabase;

/// `Database::backend`'s answer.
const BACKEND: &str = "sqlite";

fn db_pool(pool: &sqlx::Pool<Db>) -> DbPool {
    DbPool::Sqlite(pool.clone())
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteDatabase {
    pool: sqlx::SqlitePool,
    /// One lock per customer around "ensure contact, check the caps, add a card".
    customer_locks: std::sync::Mutex<HashMap<CustomerId, Arc<tokio::sync::Mutex<()>>>>,
    /// The one connection that runs write transactions (see [`SqliteDatabase::begin_write`]).
    writer: sqlx::SqlitePool,
}

/// SQLite reports a held write lock as "database is locked" (or "busy"), in its message only.
fn classify(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        let msg = db.message();
        if msg.contains("locked") || msg.contains("busy") {
            return StoreError::Busy(e);
        }
    }
    if matches!(e, sqlx::Error::PoolTimedOut) {
        return StoreError::Busy(e);
    }
    StoreError::Database(e)
}

impl SqliteDatabase {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            // A file on this machine does not go away like a server connection: no ping (a
            // round trip to the connection's thread) before every query.
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&pool).await?;
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            // Waiting behind this process's other writers counts against the same 5 s as
            // waiting for another process's lock (the busy timeout); then the store says Busy.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(Self {
            pool,
            customer_locks: Default::default(),
            writer,
        })
    }

    /// Starts a transaction that will write, on the one writer connection. SQLite takes one
    /// writer at a time: this process's writers queue for that connection in order, instead of
    /// polling in SQLite's busy handler (sleeps of 1, 2, 5, 10 … ms, with the database idle
    /// meanwhile), and the writer's page cache stays warm, since no other connection of ours
    /// changes the pages it reads (BENCHMARKS.md, P2). `BEGIN IMMEDIATE` still takes the lock up
    /// front, so another process's writer is waited for (busy timeout) rather than failing the
    /// transaction at its first write.
    async fn begin_write(&self) -> Result<portable::Tx<'static>> {
        self.writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(classify)
    }

    async fn close_writer(&self) {
        self.writer.close().await;
    }
}

#[async_trait]
impl Coordination for SqliteDatabase {
    async fn lock_customer(&self, customer_id: &CustomerId) -> Result<CustomerLock> {
        let lock = {
            let mut locks = self.customer_locks.lock().expect("lock map poisoned");
            // Forget locks nobody holds, so the map stays as small as the customers adding now.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
            locks.entry(customer_id.clone()).or_default().clone()
        };
        Ok(CustomerLock(LockInner::Local(lock.lock_owned().await)))
    }

    async fn try_lead(&self) -> Result<Option<Leadership>> {
        Ok(Some(Leadership(None)))
    }

    fn change_feed(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>> {
        None
    }
}
