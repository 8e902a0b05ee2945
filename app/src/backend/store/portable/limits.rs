//! Rate-limit counters shared by every instance.

use async_trait::async_trait;

use super::{classify, Handle};
use crate::backend::store::{Limits, Result};

#[async_trait]
impl Limits for Handle {
    async fn hit(&self, key: &str, window_ms: i64, now: i64) -> Result<i64> {
        // One statement, so two instances counting the same key at once both count.
        sqlx::query_scalar(
            "INSERT INTO rate_limits (key, window_start, hits) VALUES ($1, $2, 1) \
             ON CONFLICT (key) DO UPDATE SET \
             hits = CASE WHEN rate_limits.window_start > $3 THEN rate_limits.hits + 1 ELSE 1 END, \
             window_start = CASE WHEN rate_limits.window_start > $3 \
                 THEN rate_limits.window_start ELSE excluded.window_start END \
             RETURNING hits",
        )
        .bind(key)
        .bind(now)
        .bind(now - window_ms)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    async fn clear_hits(&self, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM rate_limits WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn forget_hits_before(&self, before: i64) -> Result<()> {
        sqlx::query("DELETE FROM rate_limits WHERE window_start < $1")
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }
}
