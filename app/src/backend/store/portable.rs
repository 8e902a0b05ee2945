//! The store's SQL, written once in portable SQL and compiled once per backend: `super` is
//! `sqlite.rs` or `postgres.rs`, which names the database (`Db`), the backend type (`Handle`) and
//! what differs between them (`classify`, `Handle::begin_write`, `Handle::announce`).
//!
//! Portable means: `$N` placeholders, `INSERT … ON CONFLICT`, `RETURNING`, `UPDATE … FROM` a
//! `WITH v(…) AS (VALUES …)` list, and BIGINT/TEXT/BOOLEAN values only.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use jetpay::wire::{CardTokenized, Event, EventKind, TokenizationState};
use sqlx::{QueryBuilder, Row};

use super::{classify, db_pool, Db, Handle, BACKEND, MIGRATOR};
use crate::backend::now_ms;
use crate::backend::store::{
    CardId, Cards, Change, ChangeLog, CustomerId, CustomerRow, Customers, Database, DbPool,
    EventOutcome, Events, Limits, Result, StoreError, StoredState, WebhookRegistration, Webhooks,
};
use crate::model::{failure_sentence, CardState, CardView, ChangeKind};

pub(super) type Tx<'a> = sqlx::Transaction<'a, Db>;
type DbRow = <Db as sqlx::Database>::Row;

const CARD_COLUMNS: &str = "id, state, brand, last4, exp_month, exp_year, failure_reason, \
     is_default, form_url, created_at, submitted_at, nickname";

/// Rows per multi-row statement: far below both databases' limits on bound parameters (SQLite
/// 32,766; PostgreSQL 65,535) at up to 7 parameters a row.
const ROWS_PER_STATEMENT: usize = 1000;

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
    }
}

#[async_trait]
impl Customers for Handle {
    async fn insert_customer(
        &self,
        id: &CustomerId,
        email: &str,
        name: &str,
        password_hash: &str,
    ) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO customers (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id.as_str())
        .bind(email)
        .bind(name)
        .bind(password_hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                Err(StoreError::EmailTaken)
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerRow>> {
        self.customer_where("email = $1", email).await
    }

    async fn customer_by_id(&self, id: &CustomerId) -> Result<Option<CustomerRow>> {
        self.customer_where("id = $1", id.as_str()).await
    }

    async fn set_contact_id_if_missing(
        &self,
        customer_id: &CustomerId,
        contact_id: &str,
    ) -> Result<String> {
        sqlx::query("UPDATE customers SET jetpay_contact_id = $1 WHERE id = $2 AND jetpay_contact_id IS NULL")
            .bind(contact_id)
            .bind(customer_id.as_str())
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT jetpay_contact_id FROM customers WHERE id = $1")
                .bind(customer_id.as_str())
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?
                .flatten();
        stored.ok_or(StoreError::NotFound)
    }
}

impl Handle {
    /// Whether every migration `migrator` carries has been applied.
    pub(super) async fn migrations_applied(
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

    async fn customer_where(&self, condition: &str, value: &str) -> Result<Option<CustomerRow>> {
        let sql = format!(
            "SELECT id, email, name, password_hash, jetpay_contact_id FROM customers WHERE {condition}"
        );
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        Ok(row.map(|r| CustomerRow {
            id: CustomerId::new(r.get::<String, _>(0)),
            email: r.get(1),
            name: r.get(2),
            password_hash: r.get(3),
            jetpay_contact_id: r.get(4),
        }))
    }
}

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

#[async_trait]
impl Events for Handle {
    async fn apply_events(
        &self,
        events: &[Event],
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<Change>)> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut changes = Vec::new();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let (chunk_outcomes, chunk_changes) = self.apply_chunk(&mut tx, chunk, now).await?;
            outcomes.extend(chunk_outcomes);
            changes.extend(chunk_changes);
        }
        tx.commit().await.map_err(classify)?;
        Ok((outcomes, changes))
    }

    async fn event_ids_after(&self, after: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT event_id FROM jetpay_events WHERE event_id > $1 ORDER BY event_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn oldest_event_id(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(event_id) FROM jetpay_events")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn newest_event_id(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MAX(event_id) FROM jetpay_events")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn event_outcome(&self, event_id: i64) -> Result<Option<EventOutcome>> {
        let code: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM jetpay_events WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        Ok(code.as_deref().and_then(EventOutcome::parse))
    }

    async fn given_up_gaps(&self) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT event_id FROM event_gaps ORDER BY event_id")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn give_up_gap(&self, event_id: i64, replays: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO event_gaps (event_id, replays, given_up_at) VALUES ($1, $2, $3) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(i64::from(replays))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl ChangeLog for Handle {
    async fn changes_since(
        &self,
        customer_id: &CustomerId,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Change>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, card_id, announcement FROM card_changes WHERE customer_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(customer_id.as_str())
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(seq, card_id, announcement)| Change {
                seq,
                customer_id: customer_id.clone(),
                card_id: CardId::new(card_id),
                announcement,
            })
            .collect())
    }

    async fn latest_change(&self, customer_id: &CustomerId) -> Result<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM card_changes WHERE customer_id = $1")
                .bind(customer_id.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
        Ok(seq.unwrap_or(0))
    }
}

#[async_trait]
impl Webhooks for Handle {
    async fn webhook_registration(
        &self,
        callback_url: &str,
    ) -> Result<Option<WebhookRegistration>> {
        let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT identifier, webhook_id, api_key FROM jetpay_webhooks WHERE callback_url = $1",
        )
        .bind(callback_url)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?;
        Ok(row.and_then(|(identifier, webhook_id, api_key)| {
            Some(WebhookRegistration {
                identifier,
                webhook_id: webhook_id?,
                api_key: api_key?,
            })
        }))
    }

    async fn webhook_api_key(&self, callback_url: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT api_key FROM jetpay_webhooks WHERE callback_url = $1",
        )
        .bind(callback_url)
        .fetch_optional(&self.pool)
        .await
        .map_err(classify)?
        .flatten())
    }

    async fn save_webhook_registration(
        &self,
        callback_url: &str,
        registration: &WebhookRegistration,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO jetpay_webhooks (callback_url, identifier, webhook_id, api_key, registered_at) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (callback_url) DO UPDATE SET identifier = excluded.identifier, \
             webhook_id = excluded.webhook_id, api_key = excluded.api_key",
        )
        .bind(callback_url)
        .bind(&registration.identifier)
        .bind(registration.webhook_id)
        .bind(&registration.api_key)
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }
}

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

/// A change to append to the log. `event_id` names the Jetpay event that caused it, if one did.
struct NewChange {
    customer_id: CustomerId,
    card_id: CardId,
    kind: ChangeKind,
    event_id: Option<i64>,
}

impl NewChange {
    /// A change the customer (or time) made, not a Jetpay event.
    fn by_customer(customer_id: &CustomerId, card_id: &CardId, kind: ChangeKind) -> Self {
        Self {
            customer_id: customer_id.clone(),
            card_id: card_id.clone(),
            kind,
            event_id: None,
        }
    }
}

/// A tokenization result about to move a card, decided from the card as this batch left it.
struct Transition {
    event_id: i64,
    card_id: CardId,
    customer_id: CustomerId,
    state: &'static str,
    failure_reason: Option<String>,
    result: CardTokenized,
}

/// A card a batch's results name, as the batch found it.
struct Target {
    card_id: CardId,
    customer_id: CustomerId,
    state: StoredState,
    contact_id: Option<String>,
    has_default: bool,
}

impl Handle {
    /// Appends changes to the log in one statement (in order: their seqs ascend as given), and
    /// tells the backend's other instances, if it has any.
    async fn record_changes(&self, tx: &mut Tx<'_>, logged: Vec<NewChange>) -> Result<Vec<Change>> {
        if logged.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut query = QueryBuilder::<Db>::new(
            "INSERT INTO card_changes (customer_id, card_id, announcement, created_at, event_id) ",
        );
        query.push_values(&logged, |mut row, change| {
            row.push_bind(change.customer_id.as_str())
                .push_bind(change.card_id.as_str())
                .push_bind(change.kind.code())
                .push_bind(now)
                .push_bind(change.event_id);
        });
        query.push(" RETURNING seq, customer_id, card_id, announcement");
        let rows: Vec<(i64, String, String, String)> = query
            .build_query_as()
            .fetch_all(&mut **tx)
            .await
            .map_err(classify)?;
        let mut changes: Vec<Change> = rows
            .into_iter()
            .map(|(seq, customer_id, card_id, announcement)| Change {
                seq,
                customer_id: CustomerId::new(customer_id),
                card_id: CardId::new(card_id),
                announcement,
            })
            .collect();
        changes.sort_by_key(|c| c.seq);
        self.announce(tx, &changes).await?;
        Ok(changes)
    }

    /// Applies up to [`ROWS_PER_STATEMENT`] events with a fixed number of statements: claim the
    /// ids, read the cards they name, move them, log the changes, keep early results, and
    /// correct the outcomes recorded provisionally.
    async fn apply_chunk(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event],
        now: i64,
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<Change>)> {
        let kinds: Vec<EventKind> = events.iter().map(Event::kind).collect();
        let provisional = |kind: &EventKind| match kind {
            EventKind::CardTokenized(_) => EventOutcome::Applied,
            EventKind::Unknown { .. } => EventOutcome::UnknownType,
            EventKind::Malformed { .. } => EventOutcome::Malformed,
        };
        // One representative per id: its first intact copy, else its first copy. Any other copy
        // in the batch is a duplicate.
        let mut representative: HashMap<i64, usize> = HashMap::new();
        for (i, (event, kind)) in events.iter().zip(&kinds).enumerate() {
            let intact = !matches!(kind, EventKind::Malformed { .. });
            representative
                .entry(event.id)
                .and_modify(|chosen| {
                    if intact && matches!(kinds[*chosen], EventKind::Malformed { .. }) {
                        *chosen = i;
                    }
                })
                .or_insert(i);
        }
        let mut chosen: Vec<usize> = representative.values().copied().collect();
        chosen.sort_unstable();

        // Claim: an id is ours to apply when it is new, or when only a garbled copy of it was
        // recorded before (a well-formed event replaces a `malformed` record, so a garbled copy
        // cannot make the real event a duplicate). Concurrent claims of one id on PostgreSQL wait
        // for each other; one wins.
        let mut query = QueryBuilder::<Db>::new(
            "INSERT INTO jetpay_events (event_id, event_type, outcome, received_at) ",
        );
        query.push_values(&chosen, |mut row, &i| {
            row.push_bind(events[i].id)
                .push_bind(&events[i].event_type)
                .push_bind(provisional(&kinds[i]).as_str())
                .push_bind(now);
        });
        query.push(
            " ON CONFLICT (event_id) DO UPDATE SET event_type = excluded.event_type, \
             outcome = excluded.outcome, received_at = excluded.received_at \
             WHERE jetpay_events.outcome = 'malformed' AND excluded.outcome <> 'malformed' \
             RETURNING event_id",
        );
        let claimed: HashSet<i64> = query
            .build_query_scalar::<i64>()
            .fetch_all(&mut **tx)
            .await
            .map_err(classify)?
            .into_iter()
            .collect();

        let results: Vec<(i64, CardTokenized)> = chosen
            .iter()
            .filter(|&&i| claimed.contains(&events[i].id))
            .filter_map(|&i| match &kinds[i] {
                EventKind::CardTokenized(data) => Some((events[i].id, data.clone())),
                _ => None,
            })
            .collect();
        let (applied, changes) = self.apply_results(tx, &results, now).await?;

        let corrected: Vec<(i64, EventOutcome)> = applied
            .iter()
            .filter(|(_, outcome)| **outcome != EventOutcome::Applied)
            .map(|(id, outcome)| (*id, *outcome))
            .collect();
        set_outcomes(tx, &corrected).await?;

        let outcomes = events
            .iter()
            .zip(&kinds)
            .enumerate()
            .map(|(i, (event, kind))| {
                let outcome = if representative[&event.id] != i || !claimed.contains(&event.id) {
                    EventOutcome::Duplicate
                } else {
                    applied
                        .get(&event.id)
                        .copied()
                        .unwrap_or_else(|| provisional(kind))
                };
                (event.id, outcome)
            })
            .collect();
        Ok((outcomes, changes))
    }

    /// Applies tokenization results, in order. Success moves `pending` or `expired` to `active`
    /// (Jetpay's word is final); failure moves them to `failed`. Anything else (a failure after
    /// success, anything on a removed card) is ignored. Only the card owner's contact may speak
    /// for a card. A result for a card we don't know (yet) is kept for its pending row.
    async fn apply_results(
        &self,
        tx: &mut Tx<'_>,
        results: &[(i64, CardTokenized)],
        now: i64,
    ) -> Result<(HashMap<i64, EventOutcome>, Vec<Change>)> {
        let mut outcomes = HashMap::new();
        if results.is_empty() {
            return Ok((outcomes, Vec::new()));
        }
        let mut targets = load_targets(tx, results).await?;
        let mut transitions = Vec::new();
        let mut early: Vec<&(i64, CardTokenized)> = Vec::new();
        for item @ (event_id, data) in results {
            let outcome = match targets.get_mut(&data.credit_card_id) {
                None => {
                    if !early
                        .iter()
                        .any(|(_, e)| e.credit_card_id == data.credit_card_id)
                    {
                        early.push(item);
                    }
                    EventOutcome::UnknownCard
                }
                Some(target)
                    if target
                        .contact_id
                        .as_deref()
                        .and_then(|c| uuid::Uuid::parse_str(c).ok())
                        != Some(data.contact_id) =>
                {
                    // Jetpay's card ids are its own; only the owner's contact may speak for the
                    // card.
                    tracing::warn!(card = %target.card_id, "tokenization event for another contact refused");
                    EventOutcome::Refused
                }
                Some(target) if target.state.awaits_result() => {
                    let (state, failure_reason) = match data.state {
                        TokenizationState::Succeeded => (CardState::Active, None),
                        TokenizationState::Failed => (
                            CardState::Failed,
                            Some(
                                data.failure_reason
                                    .clone()
                                    .unwrap_or_else(|| "unknown".into()),
                            ),
                        ),
                    };
                    target.state = StoredState::Shown(state);
                    transitions.push(Transition {
                        event_id: *event_id,
                        card_id: target.card_id.clone(),
                        customer_id: target.customer_id.clone(),
                        state: StoredState::Shown(state).as_str(),
                        failure_reason,
                        result: data.clone(),
                    });
                    EventOutcome::Applied
                }
                Some(_) => EventOutcome::Ignored,
            };
            outcomes.insert(*event_id, outcome);
        }

        let moved = move_cards(tx, &transitions, now).await?;
        let mut logged = Vec::new();
        let mut promote = Vec::new();
        for t in &transitions {
            if !moved.contains(&t.card_id) {
                // Another instance moved the card first (between our read and our update).
                outcomes.insert(t.event_id, EventOutcome::Ignored);
                continue;
            }
            let kind = match t.result.state {
                TokenizationState::Succeeded => {
                    // The customer's first active card becomes the default.
                    let target = &targets[&t.result.credit_card_id];
                    if !target.has_default && !promote.iter().any(|(c, _)| c == &t.customer_id) {
                        promote.push((t.customer_id.clone(), t.card_id.clone()));
                    }
                    ChangeKind::Activated
                }
                TokenizationState::Failed => ChangeKind::Failed(t.failure_reason.clone()),
            };
            logged.push(NewChange {
                customer_id: t.customer_id.clone(),
                card_id: t.card_id.clone(),
                kind,
                event_id: Some(t.event_id),
            });
        }
        make_first_defaults(tx, &promote).await?;
        keep_early_results(tx, &early, now).await?;
        let changes = self.record_changes(tx, logged).await?;
        Ok((outcomes, changes))
    }

    /// Applies a result that arrived before this card's row existed (see `early_results`).
    async fn apply_early_result(
        &self,
        tx: &mut Tx<'_>,
        jetpay_card_id: &str,
        now: i64,
    ) -> Result<Vec<Change>> {
        let early: Option<(String, Option<i64>)> = sqlx::query_as(
            "DELETE FROM early_results WHERE jetpay_card_id = $1 RETURNING data, event_id",
        )
        .bind(jetpay_card_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(classify)?;
        let Some((early, event_id)) = early else {
            return Ok(Vec::new());
        };
        match serde_json::from_str::<CardTokenized>(&early) {
            Ok(data) => {
                let event_id = event_id.unwrap_or_default();
                let (outcomes, changes) = self.apply_results(tx, &[(event_id, data)], now).await?;
                // The event was recorded as for an unknown card; now we know what became of it.
                let outcomes: Vec<(i64, EventOutcome)> = outcomes.into_iter().collect();
                set_outcomes(tx, &outcomes).await?;
                Ok(changes)
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored early result did not parse");
                Ok(Vec::new())
            }
        }
    }
}

/// The cards `results` name, with their owner's contact and whether the owner has a default.
async fn load_targets(
    tx: &mut Tx<'_>,
    results: &[(i64, CardTokenized)],
) -> Result<HashMap<String, Target>> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT c.id, c.customer_id, c.jetpay_card_id, c.state, cu.jetpay_contact_id, \
         EXISTS (SELECT 1 FROM cards d WHERE d.customer_id = c.customer_id AND d.is_default) \
         FROM cards c JOIN customers cu ON cu.id = c.customer_id WHERE c.jetpay_card_id IN (",
    );
    let mut ids = query.separated(", ");
    let mut seen = HashSet::new();
    for (_, data) in results {
        if seen.insert(&data.credit_card_id) {
            ids.push_bind(&data.credit_card_id);
        }
    }
    query.push(")");
    let rows: Vec<(String, String, String, String, Option<String>, bool)> = query
        .build_query_as()
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(
            |(card_id, customer_id, jetpay_card_id, state, contact_id, has_default)| {
                let target = Target {
                    card_id: CardId::new(card_id),
                    customer_id: CustomerId::new(customer_id),
                    state: StoredState::parse(&state).unwrap_or(StoredState::Removed),
                    contact_id,
                    has_default,
                };
                (jetpay_card_id, target)
            },
        )
        .collect())
}

/// Moves every card in one guarded statement; returns the ids it moved (a card another
/// transaction moved first fails the guard and is not among them).
async fn move_cards(
    tx: &mut Tx<'_>,
    transitions: &[Transition],
    now: i64,
) -> Result<HashSet<CardId>> {
    if transitions.is_empty() {
        return Ok(HashSet::new());
    }
    let mut query = QueryBuilder::<Db>::new(
        "WITH v (id, state, failure_reason, brand, last4, exp_month, exp_year) AS (",
    );
    query.push_values(transitions, |mut row, t| {
        row.push_bind(t.card_id.as_str())
            .push_bind(t.state)
            .push_bind(&t.failure_reason)
            .push_bind(&t.result.brand)
            .push_bind(&t.result.last4)
            .push_bind(t.result.exp_month.map(i64::from))
            .push_bind(t.result.exp_year.map(i64::from));
    });
    query.push(
        ") UPDATE cards SET state = v.state, failure_reason = v.failure_reason, brand = v.brand, \
         last4 = v.last4, exp_month = v.exp_month, exp_year = v.exp_year, form_url = NULL, \
         updated_at = ",
    );
    query.push_bind(now);
    query.push(
        " FROM v WHERE cards.id = v.id AND cards.state IN ('pending', 'expired') RETURNING cards.id",
    );
    Ok(query
        .build_query_scalar::<String>()
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?
        .into_iter()
        .map(CardId::new)
        .collect())
}

/// Makes each named card its customer's default, unless the customer has one (at most one card
/// per customer is named).
async fn make_first_defaults(tx: &mut Tx<'_>, promote: &[(CustomerId, CardId)]) -> Result<()> {
    if promote.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new("UPDATE cards SET is_default = TRUE WHERE id IN (");
    let mut ids = query.separated(", ");
    for (_, card_id) in promote {
        ids.push_bind(card_id.as_str());
    }
    query.push(
        ") AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.customer_id = cards.customer_id AND c.is_default)",
    );
    query.build().execute(&mut **tx).await.map_err(classify)?;
    Ok(())
}

/// Keeps results for cards we don't know (yet), so that a pending row written after them picks
/// them up. The first result for a card wins, as with applied results.
async fn keep_early_results(
    tx: &mut Tx<'_>,
    early: &[&(i64, CardTokenized)],
    now: i64,
) -> Result<()> {
    if early.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(early.len());
    for (event_id, data) in early {
        let json = serde_json::to_string(data)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))?;
        rows.push((*event_id, &data.credit_card_id, json));
    }
    let mut query = QueryBuilder::<Db>::new(
        "INSERT INTO early_results (jetpay_card_id, data, received_at, event_id) ",
    );
    query.push_values(&rows, |mut row, (event_id, card, json)| {
        row.push_bind(*card)
            .push_bind(json)
            .push_bind(now)
            .push_bind(*event_id);
    });
    query.push(" ON CONFLICT (jetpay_card_id) DO NOTHING");
    query.build().execute(&mut **tx).await.map_err(classify)?;
    Ok(())
}

/// Records final outcomes for events recorded with a provisional one.
async fn set_outcomes(tx: &mut Tx<'_>, outcomes: &[(i64, EventOutcome)]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new("WITH v (event_id, outcome) AS (");
    query.push_values(outcomes, |mut row, (id, outcome)| {
        row.push_bind(*id).push_bind(outcome.as_str());
    });
    query.push(
        ") UPDATE jetpay_events SET outcome = v.outcome FROM v WHERE jetpay_events.event_id = v.event_id",
    );
    query.build().execute(&mut **tx).await.map_err(classify)?;
    Ok(())
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
