//! Saved cards as the customer and time move them.

use async_trait::async_trait;
use sqlx::Row;

use super::{changes::NewChange, classify, Db, Handle, Tx};
use crate::backend::now_ms;
use crate::backend::store::{CardId, Cards, Change, CustomerId, Result, StoreError, StoredState};
use crate::model::{failure_sentence, CardState, CardView, ChangeKind};

type DbRow = <Db as sqlx::Database>::Row;

const CARD_COLUMNS: &str = "id, state, brand, last4, exp_month, exp_year, failure_reason, \
     is_default, form_url, created_at, submitted_at, nickname";

#[async_trait]
impl Cards for Handle {
    async fn count_cards_added_since(&self, customer_id: &CustomerId, since: i64) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM cards WHERE customer_id = $1 AND created_at >= $2")
            .bind(customer_id.as_str())
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn count_pending(&self, customer_id: &CustomerId) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM cards WHERE customer_id = $1 AND state = 'pending'",
        )
        .bind(customer_id.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(classify)
    }

    async fn insert_pending_card(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        jetpay_card_id: &str,
        form_url: &str,
        replaces: Option<&CardId>,
    ) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO cards (id, customer_id, jetpay_card_id, state, form_url, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $5)",
        )
        .bind(card_id.as_str())
        .bind(customer_id.as_str())
        .bind(jetpay_card_id)
        .bind(form_url)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let mut logged = Vec::new();
        if let Some(old) = replaces {
            let done = sqlx::query(
                "UPDATE cards SET state = 'removed', is_default = FALSE, form_url = NULL, updated_at = $1 \
                 WHERE id = $2 AND customer_id = $3 AND state IN ('failed', 'expired')",
            )
            .bind(now)
            .bind(old.as_str())
            .bind(customer_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
            if done.rows_affected() == 1 {
                logged.push(NewChange::by_customer(
                    customer_id,
                    old,
                    ChangeKind::Retired,
                ));
            }
        }
        logged.push(NewChange::by_customer(
            customer_id,
            card_id,
            ChangeKind::Added,
        ));
        let mut changes = self.record_changes(&mut tx, logged).await?;
        changes.extend(
            self.apply_early_result(&mut tx, jetpay_card_id, now)
                .await?,
        );
        tx.commit().await.map_err(classify)?;
        Ok(changes)
    }

    async fn list_cards(
        &self,
        customer_id: &CustomerId,
        now: i64,
        url_ttl_ms: i64,
    ) -> Result<Vec<CardView>> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 AND state <> 'removed' \
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(customer_id.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        Ok(rows.iter().map(|r| card_view(r, now, url_ttl_ms)).collect())
    }

    async fn card(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        now: i64,
        url_ttl_ms: i64,
    ) -> Result<Option<CardView>> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 AND id = $2 AND state <> 'removed'"
        );
        let row = sqlx::query(&sql)
            .bind(customer_id.as_str())
            .bind(card_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.map(|r| card_view(&r, now, url_ttl_ms)))
    }

    async fn card_state(&self, card_id: &CardId) -> Result<Option<StoredState>> {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM cards WHERE id = $1")
            .bind(card_id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(state.as_deref().and_then(StoredState::parse))
    }

    async fn set_nickname(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        nickname: Option<&str>,
    ) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE cards SET nickname = $1, updated_at = $2 \
             WHERE id = $3 AND customer_id = $4 AND state <> 'removed'",
        )
        .bind(nickname)
        .bind(now_ms())
        .bind(card_id.as_str())
        .bind(customer_id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let changes = self
            .record_changes(
                &mut tx,
                vec![NewChange::by_customer(
                    customer_id,
                    card_id,
                    ChangeKind::Renamed,
                )],
            )
            .await?;
        tx.commit().await.map_err(classify)?;
        Ok(changes)
    }

    async fn make_default(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
    ) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let active: Option<String> = sqlx::query_scalar(
            "SELECT id FROM cards WHERE id = $1 AND customer_id = $2 AND state = 'active'",
        )
        .bind(card_id.as_str())
        .bind(customer_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        if active.is_none() {
            return Err(StoreError::NotFound);
        }
        let previous: Option<String> =
            sqlx::query_scalar("SELECT id FROM cards WHERE customer_id = $1 AND is_default")
                .bind(customer_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(classify)?;
        if previous.as_deref() == Some(card_id.as_str()) {
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE cards SET is_default = FALSE, updated_at = $1 WHERE customer_id = $2 AND is_default")
            .bind(now)
            .bind(customer_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        sqlx::query("UPDATE cards SET is_default = TRUE, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(card_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let mut logged = Vec::new();
        if let Some(previous) = previous {
            logged.push(NewChange::by_customer(
                customer_id,
                &CardId::new(previous),
                ChangeKind::Quiet,
            ));
        }
        logged.push(NewChange::by_customer(
            customer_id,
            card_id,
            ChangeKind::DefaultChanged,
        ));
        let changes = self.record_changes(&mut tx, logged).await?;
        tx.commit().await.map_err(classify)?;
        Ok(changes)
    }

    async fn remove_card(&self, customer_id: &CustomerId, card_id: &CardId) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let was_default: Option<bool> = sqlx::query_scalar(
            "SELECT is_default FROM cards WHERE id = $1 AND customer_id = $2 AND state <> 'removed'",
        )
        .bind(card_id.as_str())
        .bind(customer_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(classify)?;
        if was_default.is_some() {
            sqlx::query(
                "UPDATE cards SET state = 'removed', is_default = FALSE, form_url = NULL, updated_at = $1 \
                 WHERE id = $2",
            )
            .bind(now)
            .bind(card_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        }
        let Some(was_default) = was_default else {
            return Err(StoreError::NotFound);
        };
        let mut logged = vec![NewChange::by_customer(
            customer_id,
            card_id,
            ChangeKind::Removed,
        )];
        if was_default {
            if let Some(promoted) = promote_newest_active(&mut tx, customer_id, now).await? {
                logged.push(NewChange::by_customer(
                    customer_id,
                    &CardId::new(promoted),
                    ChangeKind::Quiet,
                ));
            }
        }
        let changes = self.record_changes(&mut tx, logged).await?;
        tx.commit().await.map_err(classify)?;
        Ok(changes)
    }

    async fn mark_submitted(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        jetpay_card_id: Option<&str>,
        brand: Option<&str>,
        last4: Option<&str>,
    ) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let done = sqlx::query(
            "UPDATE cards SET submitted_at = $1, brand = COALESCE(brand, $2), \
             last4 = COALESCE(last4, $3), updated_at = $1 \
             WHERE id = $4 AND customer_id = $5 AND ($6 IS NULL OR jetpay_card_id = $6) \
             AND state = 'pending' \
             AND submitted_at IS NULL",
        )
        .bind(now)
        .bind(brand)
        .bind(last4)
        .bind(card_id.as_str())
        .bind(customer_id.as_str())
        .bind(jetpay_card_id)
        .execute(&mut *tx)
        .await
        .map_err(classify)?;
        let mut logged = Vec::new();
        if done.rows_affected() == 1 {
            logged.push(NewChange::by_customer(
                customer_id,
                card_id,
                ChangeKind::Submitted,
            ));
        }
        let changes = self.record_changes(&mut tx, logged).await?;
        tx.commit().await.map_err(classify)?;
        Ok(changes)
    }

    async fn expire_stale(&self, created_before: i64) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let stale: Vec<(String, String)> = sqlx::query_as(
            "UPDATE cards SET state = 'expired', form_url = NULL, updated_at = $1 \
             WHERE state = 'pending' AND created_at < $2 RETURNING id, customer_id",
        )
        .bind(now_ms())
        .bind(created_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(classify)?;
        // Results for cards that never appeared (another platform's cards) are kept as long as a
        // pending card could still claim them.
        sqlx::query("DELETE FROM early_results WHERE received_at < $1")
            .bind(created_before)
            .execute(&mut *tx)
            .await
            .map_err(classify)?;
        let logged = stale
            .iter()
            .map(|(card_id, customer_id)| NewChange {
                customer_id: CustomerId::new(customer_id.as_str()),
                card_id: CardId::new(card_id.as_str()),
                kind: ChangeKind::Expired,
                event_id: None,
            })
            .collect();
        let changes = self.record_changes(&mut tx, logged).await?;
        tx.commit().await.map_err(classify)?;
        Ok(changes)
    }
}

async fn promote_newest_active(
    tx: &mut Tx<'_>,
    customer_id: &CustomerId,
    now: i64,
) -> Result<Option<String>> {
    sqlx::query_scalar(
        "UPDATE cards SET is_default = TRUE, updated_at = $1 WHERE id = ( \
             SELECT id FROM cards WHERE customer_id = $2 AND state = 'active' AND NOT is_default \
             ORDER BY created_at DESC, id DESC LIMIT 1) \
         AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.customer_id = $2 AND c.is_default) \
         RETURNING id",
    )
    .bind(now)
    .bind(customer_id.as_str())
    .fetch_optional(&mut **tx)
    .await
    .map_err(classify)
}

fn card_view(r: &DbRow, now: i64, url_ttl_ms: i64) -> CardView {
    let state: String = r.get("state");
    let state = match StoredState::parse(&state) {
        Some(StoredState::Shown(state)) => state,
        _ => CardState::Pending,
    };
    let created_at: i64 = r.get("created_at");
    let failure_reason: Option<String> = r.get("failure_reason");
    let form_url: Option<String> = r.get("form_url");
    CardView {
        id: r.get("id"),
        state,
        brand: r.get("brand"),
        last4: r.get("last4"),
        exp_month: r.get::<Option<i64>, _>("exp_month").map(|v| v as u32),
        exp_year: r.get::<Option<i64>, _>("exp_year").map(|v| v as u32),
        is_default: r.get("is_default"),
        added_on: chrono::DateTime::from_timestamp_millis(created_at)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default(),
        failure: (state == CardState::Failed).then(|| failure_sentence(failure_reason.as_deref())),
        form_url: form_url.filter(|_| state == CardState::Pending && now - created_at < url_ttl_ms),
        submitted: r.get::<Option<i64>, _>("submitted_at").is_some(),
        nickname: r.get("nickname"),
    }
}
