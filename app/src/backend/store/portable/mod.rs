//! The store's SQL, written once in portable SQL and compiled once per backend: `super` is
//! `sqlite.rs` or `postgres.rs`, which names the database (`Db`), the backend type (`Handle`) and
//! what differs between them (`classify`, `Handle::begin_write`).
//!
//! Split by what is stored, one file each: `customers`, `cards`, `events` (Jetpay's events and the
//! batch apply), `changes` (the live streams' log), `webhooks` (our registration), `limits`.
//!
//! Portable means: `$N` placeholders, `INSERT … ON CONFLICT`, `RETURNING`, `UPDATE … FROM` a
//! `WITH v(…) AS (VALUES …)` list, and BIGINT/TEXT/BOOLEAN values only.

mod cards;
mod changes;
mod customers;
mod events;
mod limits;
mod webhooks;

use async_trait::async_trait;

use super::{classify, db_pool, Db, Handle, BACKEND, MIGRATOR};
use crate::backend::store::{Database, DbPool, Result};

pub(super) type Tx<'a> = sqlx::Transaction<'a, Db>;

#[async_trait]
impl Database for Handle {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    fn pool(&self) -> DbPool {
        db_pool(&self.pool)
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn schema_is_current(&self) -> Result<bool> {
        self.migrations_applied(&MIGRATOR).await
    }

    async fn close(&self) {
        self.pool.close().await;
        self.close_writer().await;
    }
}

impl Handle {
    /// Whether every migration `migrator` carries has been applied.
    pub(in crate::backend::store) async fn migrations_applied(
        &self,
        migrator: &sqlx::migrate::Migrator,
    ) -> Result<bool> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(classify)?;
        Ok(migrator.iter().all(|m| applied.contains(&m.version)))
    }
}
