//! All SQL lives here: the rest of the app calls these methods and never sees a query.
//!
//! The card lifecycle's rules are enforced by the statements themselves: every transition is an
//! `UPDATE … WHERE state IN (…)`, so a late or repeated event can never move a card backwards,
//! whatever order things arrive in. Queries use `$N` placeholders and portable SQL so that a
//! PostgreSQL backend can sit behind the same methods.

use std::str::FromStr;

use jetpay::wire::{CardTokenized, Event, EventKind, TokenizationState};
use sqlx::{
    sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow},
    Row, SqlitePool,
};

use super::now_ms;
use crate::model::{failure_sentence, CardState, CardView, ChangeKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("that email address already has an account")]
    EmailTaken,
    #[error("no such row")]
    NotFound,
    #[error("the database is busy")]
    Busy(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    fn classify(e: sqlx::Error) -> Self {
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
}

type Result<T> = std::result::Result<T, StoreError>;

/// A customer row. The password hash stays in this module's callers that need it (sign-in).
#[derive(Debug, Clone)]
pub struct CustomerRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub jetpay_contact_id: Option<String>,
}

/// A change to one customer's card, as recorded in `card_changes` and pushed to live pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub customer_id: String,
    pub card_id: String,
    /// What happened, as a [`ChangeKind`] code; pages word it.
    pub announcement: String,
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    Applied,
    /// Already received before: skipped entirely.
    Duplicate,
    /// A valid event that may not move the card (e.g. a failure after success): recorded.
    Ignored,
    UnknownCard,
    UnknownType,
    Malformed,
    /// The event names a card whose owner's Jetpay contact is not the event's `contactId`:
    /// recorded, never applied, so a forwarded or crafted event cannot touch another customer's
    /// card.
    Refused,
}

impl EventOutcome {
    /// The code stored in `jetpay_events.outcome` (and the metrics label).
    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Applied => "applied",
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Ignored => "ignored",
            EventOutcome::UnknownCard => "unknown_card",
            EventOutcome::UnknownType => "unknown_type",
            EventOutcome::Malformed => "malformed",
            EventOutcome::Refused => "refused",
        }
    }
}

/// The webhook we registered at Jetpay. A delivery is ours only if it names `webhook_id` and
/// carries `api_key`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRegistration {
    pub identifier: String,
    pub webhook_id: i64,
    pub api_key: String,
}

impl std::fmt::Debug for WebhookRegistration {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRegistration")
            .field("identifier", &self.identifier)
            .field("webhook_id", &self.webhook_id)
            .field("api_key", &"***")
            .finish()
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Clone, Debug)]
pub struct Store {
    pool: SqlitePool,
}

const CARD_COLUMNS: &str = "id, state, brand, last4, exp_month, exp_year, failure_reason, \
     is_default, form_url, created_at, submitted_at, nickname";

impl Store {
    /// Opens (creating if needed) the database and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        if let Some(dir) = options.get_filename().parent() {
            if !dir.as_os_str().is_empty() {
                let _ = std::fs::create_dir_all(dir);
            }
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await?;
        MIGRATOR.run(&pool).await?;
        Ok(Self { pool })
    }

    /// Whether the database answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(())
    }

    /// Whether every migration this binary carries has been applied (readiness: a binary newer
    /// than its database must not take traffic).
    pub async fn schema_is_current(&self) -> Result<bool> {
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::classify)?;
        Ok(MIGRATOR.iter().all(|m| applied.contains(&m.version)))
    }

    /// Closes the pool, waiting for connections in use (shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a transaction that will write. SQLite's default (deferred) transaction that reads
    /// first cannot wait for another writer when it then writes: it fails at once with "database
    /// is locked", and the busy timeout never applies. `BEGIN IMMEDIATE` takes the write lock up
    /// front, waiting up to the busy timeout, so concurrent writers queue instead of failing.
    async fn begin_write(&self) -> Result<Tx<'static>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::classify)
    }

    // ---- customers -------------------------------------------------------------------------

    pub async fn insert_customer(
        &self,
        id: &str,
        email: &str,
        name: &str,
        password_hash: &str,
    ) -> Result<()> {
        let result = sqlx::query(
            "INSERT INTO customers (id, email, name, password_hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
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
            Err(e) => Err(StoreError::classify(e)),
        }
    }

    pub async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerRow>> {
        self.customer_where("email = $1", email).await
    }

    pub async fn customer_by_id(&self, id: &str) -> Result<Option<CustomerRow>> {
        self.customer_where("id = $1", id).await
    }

    async fn customer_where(&self, condition: &str, value: &str) -> Result<Option<CustomerRow>> {
        let sql = format!(
            "SELECT id, email, name, password_hash, jetpay_contact_id FROM customers WHERE {condition}"
        );
        let row = sqlx::query(&sql)
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(row.map(|r| CustomerRow {
            id: r.get(0),
            email: r.get(1),
            name: r.get(2),
            password_hash: r.get(3),
            jetpay_contact_id: r.get(4),
        }))
    }

    /// Stores the customer's Jetpay contact unless one is stored already; returns the stored one.
    pub async fn set_contact_id_if_missing(
        &self,
        customer_id: &str,
        contact_id: &str,
    ) -> Result<String> {
        sqlx::query("UPDATE customers SET jetpay_contact_id = $1 WHERE id = $2 AND jetpay_contact_id IS NULL")
            .bind(contact_id)
            .bind(customer_id)
            .execute(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        let stored: Option<String> =
            sqlx::query_scalar("SELECT jetpay_contact_id FROM customers WHERE id = $1")
                .bind(customer_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::classify)?
                .flatten();
        stored.ok_or(StoreError::NotFound)
    }

    // ---- cards -----------------------------------------------------------------------------

    /// Cards (in any state, removed ones included) the customer added since `since` (ms): each
    /// one cost a tokenization URL at Jetpay.
    pub async fn count_cards_added_since(&self, customer_id: &str, since: i64) -> Result<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM cards WHERE customer_id = $1 AND created_at >= $2")
            .bind(customer_id)
            .bind(since)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    pub async fn count_pending(&self, customer_id: &str) -> Result<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM cards WHERE customer_id = $1 AND state = 'pending'",
        )
        .bind(customer_id)
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::classify)
    }

    /// Records a new pending card (committed before the customer sees the form). When `replaces`
    /// names one of the customer's failed or expired cards ("Try again"), that card is removed in
    /// the same transaction.
    pub async fn insert_pending_card(
        &self,
        customer_id: &str,
        card_id: &str,
        jetpay_card_id: &str,
        form_url: &str,
        replaces: Option<&str>,
    ) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        sqlx::query(
            "INSERT INTO cards (id, customer_id, jetpay_card_id, state, form_url, created_at, updated_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $5)",
        )
        .bind(card_id)
        .bind(customer_id)
        .bind(jetpay_card_id)
        .bind(form_url)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        let mut changes = Vec::new();
        if let Some(old) = replaces {
            let done = sqlx::query(
                "UPDATE cards SET state = 'removed', is_default = FALSE, form_url = NULL, updated_at = $1 \
                 WHERE id = $2 AND customer_id = $3 AND state IN ('failed', 'expired')",
            )
            .bind(now)
            .bind(old)
            .bind(customer_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
            if done.rows_affected() == 1 {
                changes.push(
                    record_change(&mut tx, customer_id, old, ChangeKind::Retired, None).await?,
                );
            }
        }
        changes.push(record_change(&mut tx, customer_id, card_id, ChangeKind::Added, None).await?);
        apply_early_result(&mut tx, jetpay_card_id, now, &mut changes).await?;
        tx.commit().await.map_err(StoreError::classify)?;
        Ok(changes)
    }

    /// The customer's cards, newest first, without removed ones.
    pub async fn list_cards(
        &self,
        customer_id: &str,
        now: i64,
        url_ttl_ms: i64,
    ) -> Result<Vec<CardView>> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 AND state <> 'removed' \
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(&sql)
            .bind(customer_id)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(rows.iter().map(|r| card_view(r, now, url_ttl_ms)).collect())
    }

    pub async fn card(
        &self,
        customer_id: &str,
        card_id: &str,
        now: i64,
        url_ttl_ms: i64,
    ) -> Result<Option<CardView>> {
        let sql = format!(
            "SELECT {CARD_COLUMNS} FROM cards WHERE customer_id = $1 AND id = $2 AND state <> 'removed'"
        );
        let row = sqlx::query(&sql)
            .bind(customer_id)
            .bind(card_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::classify)?;
        Ok(row.map(|r| card_view(&r, now, url_ttl_ms)))
    }

    /// Names one of the customer's cards (`None` clears the name). `NotFound` when the card is
    /// not theirs.
    pub async fn set_nickname(
        &self,
        customer_id: &str,
        card_id: &str,
        nickname: Option<&str>,
    ) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE cards SET nickname = $1, updated_at = $2 \
             WHERE id = $3 AND customer_id = $4 AND state <> 'removed'",
        )
        .bind(nickname)
        .bind(now_ms())
        .bind(card_id)
        .bind(customer_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let change =
            record_change(&mut tx, customer_id, card_id, ChangeKind::Renamed, None).await?;
        tx.commit().await.map_err(StoreError::classify)?;
        Ok(vec![change])
    }

    /// Makes one of the customer's active cards the default. `NotFound` when the card is not
    /// theirs or not active.
    pub async fn make_default(&self, customer_id: &str, card_id: &str) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let active: Option<String> = sqlx::query_scalar(
            "SELECT id FROM cards WHERE id = $1 AND customer_id = $2 AND state = 'active'",
        )
        .bind(card_id)
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        if active.is_none() {
            return Err(StoreError::NotFound);
        }
        let previous: Option<String> =
            sqlx::query_scalar("SELECT id FROM cards WHERE customer_id = $1 AND is_default")
                .bind(customer_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::classify)?;
        if previous.as_deref() == Some(card_id) {
            return Ok(Vec::new());
        }
        sqlx::query("UPDATE cards SET is_default = FALSE, updated_at = $1 WHERE customer_id = $2 AND is_default")
            .bind(now)
            .bind(customer_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
        sqlx::query("UPDATE cards SET is_default = TRUE, updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(card_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
        let mut changes = Vec::new();
        if let Some(previous) = previous {
            changes.push(
                record_change(&mut tx, customer_id, &previous, ChangeKind::Quiet, None).await?,
            );
        }
        changes.push(
            record_change(
                &mut tx,
                customer_id,
                card_id,
                ChangeKind::DefaultChanged,
                None,
            )
            .await?,
        );
        tx.commit().await.map_err(StoreError::classify)?;
        Ok(changes)
    }

    /// Removes one of the customer's cards; if it was the default, the newest other active card
    /// becomes the default. `NotFound` when the card is not theirs.
    pub async fn remove_card(&self, customer_id: &str, card_id: &str) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let was_default: Option<bool> = sqlx::query_scalar(
            "SELECT is_default FROM cards WHERE id = $1 AND customer_id = $2 AND state <> 'removed'",
        )
        .bind(card_id)
        .bind(customer_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        let Some(was_default) = was_default else {
            return Err(StoreError::NotFound);
        };
        sqlx::query(
            "UPDATE cards SET state = 'removed', is_default = FALSE, form_url = NULL, updated_at = $1 WHERE id = $2",
        )
        .bind(now)
        .bind(card_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        let mut changes =
            vec![record_change(&mut tx, customer_id, card_id, ChangeKind::Removed, None).await?];
        if was_default {
            if let Some(promoted) = promote_newest_active(&mut tx, customer_id, now).await? {
                changes.push(
                    record_change(&mut tx, customer_id, &promoted, ChangeKind::Quiet, None).await?,
                );
            }
        }
        tx.commit().await.map_err(StoreError::classify)?;
        Ok(changes)
    }

    /// Records that Jetpay's hosted form reported a submission for one of the customer's pending
    /// cards, with the brand and last four it showed. The webhook's values replace them later.
    /// Returns no change when the card is not pending, not theirs, not the form's (Jetpay's card
    /// id differs, when the form named one), or already marked.
    pub async fn mark_submitted(
        &self,
        customer_id: &str,
        card_id: &str,
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
        .bind(card_id)
        .bind(customer_id)
        .bind(jetpay_card_id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        let mut changes = Vec::new();
        if done.rows_affected() == 1 {
            changes.push(
                record_change(&mut tx, customer_id, card_id, ChangeKind::Submitted, None).await?,
            );
        }
        tx.commit().await.map_err(StoreError::classify)?;
        Ok(changes)
    }

    /// Expires every pending card created before `created_before` (ms since the epoch).
    pub async fn expire_stale(&self, created_before: i64) -> Result<Vec<Change>> {
        let mut tx = self.begin_write().await?;
        let stale: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, customer_id FROM cards WHERE state = 'pending' AND created_at < $1",
        )
        .bind(created_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(StoreError::classify)?;
        // Results for cards that never appeared (another platform's cards) are kept as long as a
        // pending card could still claim them.
        sqlx::query("DELETE FROM early_results WHERE received_at < $1")
            .bind(created_before)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
        let mut changes = Vec::new();
        for (card_id, customer_id) in stale {
            let done = sqlx::query(
                "UPDATE cards SET state = 'expired', form_url = NULL, updated_at = $1 WHERE id = $2 AND state = 'pending'",
            )
            .bind(now_ms())
            .bind(&card_id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
            if done.rows_affected() == 1 {
                changes.push(
                    record_change(&mut tx, &customer_id, &card_id, ChangeKind::Expired, None)
                        .await?,
                );
            }
        }
        tx.commit().await.map_err(StoreError::classify)?;
        Ok(changes)
    }

    // ---- Jetpay events ---------------------------------------------------------------------

    /// Records and applies a verified batch in one transaction: each event id is recorded once
    /// (a duplicate is skipped entirely) and each tokenization result is applied as a guarded
    /// update. Nothing is applied unless everything is.
    pub async fn apply_events(
        &self,
        events: &[Event],
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<Change>)> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut changes = Vec::new();
        for event in events {
            let seen: Option<String> =
                sqlx::query_scalar("SELECT outcome FROM jetpay_events WHERE event_id = $1")
                    .bind(event.id)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::classify)?;
            let kind = event.kind();
            // An id first seen in a garbled copy must not make the intact event a duplicate:
            // a well-formed event replaces a `malformed` record of its id. Anything else seen
            // before is a duplicate (Jetpay never reuses an id).
            let retry_of_malformed = seen.as_deref() == Some(EventOutcome::Malformed.as_str())
                && !matches!(kind, EventKind::Malformed { .. });
            if seen.is_some() && !retry_of_malformed {
                outcomes.push((event.id, EventOutcome::Duplicate));
                continue;
            }
            let outcome = match kind {
                EventKind::CardTokenized(data) => {
                    apply_tokenized(&mut tx, event.id, &data, now, &mut changes).await?
                }
                EventKind::Unknown { .. } => EventOutcome::UnknownType,
                EventKind::Malformed { .. } => EventOutcome::Malformed,
            };
            sqlx::query(
                "INSERT INTO jetpay_events (event_id, event_type, outcome, received_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (event_id) DO UPDATE SET event_type = excluded.event_type, \
                 outcome = excluded.outcome, received_at = excluded.received_at",
            )
            .bind(event.id)
            .bind(&event.event_type)
            .bind(outcome.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::classify)?;
            outcomes.push((event.id, outcome));
        }
        tx.commit().await.map_err(StoreError::classify)?;
        Ok((outcomes, changes))
    }

    /// Up to `limit` received event ids above `after`, ascending: the gap check walks these
    /// from where it last found everything contiguous, so it never rescans the whole history.
    pub async fn event_ids_after(&self, after: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT event_id FROM jetpay_events WHERE event_id > $1 ORDER BY event_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::classify)
    }

    /// The lowest event id received, if any.
    pub async fn oldest_event_id(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(event_id) FROM jetpay_events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    /// Holes we stopped asking Jetpay to fill.
    pub async fn given_up_gaps(&self) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT event_id FROM event_gaps ORDER BY event_id")
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    pub async fn give_up_gap(&self, event_id: i64, replays: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO event_gaps (event_id, replays, given_up_at) VALUES ($1, $2, $3) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(i64::from(replays))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(StoreError::classify)?;
        Ok(())
    }

    /// The highest event id received, if any.
    pub async fn newest_event_id(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MAX(event_id) FROM jetpay_events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    /// How each event was handled, for tests and operators.
    pub async fn event_outcome(&self, event_id: i64) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT outcome FROM jetpay_events WHERE event_id = $1")
            .bind(event_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::classify)
    }

    /// Up to `limit` card changes of one customer after `seq`, oldest first (live stream resume;
    /// callers page through until a page comes back short).
    pub async fn changes_since(
        &self,
        customer_id: &str,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Change>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, card_id, announcement FROM card_changes WHERE customer_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(customer_id)
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::classify)?;
        Ok(rows
            .into_iter()
            .map(|(seq, card_id, announcement)| Change {
                seq,
                customer_id: customer_id.to_owned(),
                card_id,
                announcement,
            })
            .collect())
    }

    /// The newest change seq of a customer (0 when none): where a fresh page's stream starts.
    pub async fn latest_change(&self, customer_id: &str) -> Result<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM card_changes WHERE customer_id = $1")
                .bind(customer_id)
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::classify)?;
        Ok(seq.unwrap_or(0))
    }

    // ---- webhook registration --------------------------------------------------------------

    /// The identifier of our webhook once its registration is complete.
    pub async fn webhook_identifier(&self, callback_url: &str) -> Result<Option<String>> {
        Ok(self
            .webhook_registration(callback_url)
            .await?
            .map(|r| r.identifier))
    }

    /// Our complete registration (identifier, numeric id and key), if there is one.
    pub async fn webhook_registration(
        &self,
        callback_url: &str,
    ) -> Result<Option<WebhookRegistration>> {
        let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT identifier, webhook_id, api_key FROM jetpay_webhooks WHERE callback_url = $1",
        )
        .bind(callback_url)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::classify)?;
        Ok(row.and_then(|(identifier, webhook_id, api_key)| {
            Some(WebhookRegistration {
                identifier,
                webhook_id: webhook_id?,
                api_key: api_key?,
            })
        }))
    }

    /// The callback API key stored for `callback_url`, complete registration or not: reused, so a
    /// re-registration never invalidates deliveries already signed with it in flight.
    pub async fn webhook_api_key(&self, callback_url: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT api_key FROM jetpay_webhooks WHERE callback_url = $1",
        )
        .bind(callback_url)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::classify)?
        .flatten())
    }

    pub async fn save_webhook_registration(
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
        .map_err(StoreError::classify)?;
        Ok(())
    }
}

type Tx<'a> = sqlx::Transaction<'a, sqlx::Sqlite>;

/// Appends to the change log; `event_id` names the Jetpay event that caused it, if one did.
/// Records what happened to a card as a [`ChangeKind`] code (in the `announcement` column, which
/// holds codes since migration 0005): the page words it.
async fn record_change(
    tx: &mut Tx<'_>,
    customer_id: &str,
    card_id: &str,
    kind: ChangeKind,
    event_id: Option<i64>,
) -> Result<Change> {
    let announcement = kind.code();
    let announcement = announcement.as_str();
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO card_changes (customer_id, card_id, announcement, created_at, event_id) \
         VALUES ($1, $2, $3, $4, $5) RETURNING seq",
    )
    .bind(customer_id)
    .bind(card_id)
    .bind(announcement)
    .bind(now_ms())
    .bind(event_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(StoreError::classify)?;
    Ok(Change {
        seq,
        customer_id: customer_id.to_owned(),
        card_id: card_id.to_owned(),
        announcement: announcement.to_owned(),
    })
}

async fn promote_newest_active(
    tx: &mut Tx<'_>,
    customer_id: &str,
    now: i64,
) -> Result<Option<String>> {
    let newest: Option<String> = sqlx::query_scalar(
        "SELECT id FROM cards WHERE customer_id = $1 AND state = 'active' AND NOT is_default \
         ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .bind(customer_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::classify)?;
    let Some(card_id) = newest else {
        return Ok(None);
    };
    let done = sqlx::query(
        "UPDATE cards SET is_default = TRUE, updated_at = $1 WHERE id = $2 \
         AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.customer_id = $3 AND c.is_default)",
    )
    .bind(now)
    .bind(&card_id)
    .bind(customer_id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::classify)?;
    Ok((done.rows_affected() == 1).then_some(card_id))
}

/// Keeps a result for a card we don't know (yet), so that a pending row written after it picks
/// it up. The first result for a card wins, as with applied results.
async fn keep_early_result(
    tx: &mut Tx<'_>,
    event_id: i64,
    data: &CardTokenized,
    now: i64,
) -> Result<()> {
    let json = serde_json::to_string(data)
        .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))?;
    sqlx::query(
        "INSERT INTO early_results (jetpay_card_id, data, received_at, event_id) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (jetpay_card_id) DO NOTHING",
    )
    .bind(&data.credit_card_id)
    .bind(json)
    .bind(now)
    .bind(event_id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::classify)?;
    Ok(())
}

/// Applies a result that arrived before this card's row existed (see `early_results`).
async fn apply_early_result(
    tx: &mut Tx<'_>,
    jetpay_card_id: &str,
    now: i64,
    changes: &mut Vec<Change>,
) -> Result<()> {
    let early: Option<(String, Option<i64>)> =
        sqlx::query_as("SELECT data, event_id FROM early_results WHERE jetpay_card_id = $1")
            .bind(jetpay_card_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(StoreError::classify)?;
    let Some((early, event_id)) = early else {
        return Ok(());
    };
    sqlx::query("DELETE FROM early_results WHERE jetpay_card_id = $1")
        .bind(jetpay_card_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::classify)?;
    match serde_json::from_str::<CardTokenized>(&early) {
        Ok(data) => {
            let event_id = event_id.unwrap_or_default();
            let outcome = apply_tokenized(tx, event_id, &data, now, changes).await?;
            // The event was recorded as for an unknown card; now we know what became of it.
            sqlx::query("UPDATE jetpay_events SET outcome = $1 WHERE event_id = $2")
                .bind(outcome.as_str())
                .bind(event_id)
                .execute(&mut **tx)
                .await
                .map_err(StoreError::classify)?;
        }
        Err(e) => tracing::warn!(error = %e, "stored early result did not parse"),
    }
    Ok(())
}

/// Applies one tokenization result. Success moves `pending` or `expired` to `active` (Jetpay's
/// word is final); failure moves `pending` or `expired` to `failed`. Anything else (a failure
/// after success, anything on a removed card) is ignored and recorded. Only the card owner's
/// contact may speak for a card.
async fn apply_tokenized(
    tx: &mut Tx<'_>,
    event_id: i64,
    data: &CardTokenized,
    now: i64,
    changes: &mut Vec<Change>,
) -> Result<EventOutcome> {
    let card: Option<(String, String, Option<String>)> = sqlx::query_as(
        "SELECT c.id, c.customer_id, cu.jetpay_contact_id FROM cards c \
         JOIN customers cu ON cu.id = c.customer_id WHERE c.jetpay_card_id = $1",
    )
    .bind(&data.credit_card_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(StoreError::classify)?;
    let Some((card_id, customer_id, contact_id)) = card else {
        keep_early_result(tx, event_id, data, now).await?;
        return Ok(EventOutcome::UnknownCard);
    };
    // Jetpay's card ids are its own; only the owner's contact may speak for the card.
    let owner_contact = contact_id.and_then(|c| uuid::Uuid::parse_str(&c).ok());
    if owner_contact != Some(data.contact_id) {
        tracing::warn!(card = %card_id, "tokenization event for another contact refused");
        return Ok(EventOutcome::Refused);
    }
    let (state, failure_reason) = match data.state {
        TokenizationState::Succeeded => ("active", None),
        TokenizationState::Failed => (
            "failed",
            Some(
                data.failure_reason
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
            ),
        ),
    };
    let done = sqlx::query(
        "UPDATE cards SET state = $1, failure_reason = $2, brand = $3, last4 = $4, exp_month = $5, \
         exp_year = $6, form_url = NULL, updated_at = $7 \
         WHERE id = $8 AND state IN ('pending', 'expired')",
    )
    .bind(state)
    .bind(&failure_reason)
    .bind(&data.brand)
    .bind(&data.last4)
    .bind(data.exp_month.map(i64::from))
    .bind(data.exp_year.map(i64::from))
    .bind(now)
    .bind(&card_id)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::classify)?;
    if done.rows_affected() == 0 {
        return Ok(EventOutcome::Ignored);
    }
    let kind = match data.state {
        TokenizationState::Succeeded => ChangeKind::Activated,
        TokenizationState::Failed => ChangeKind::Failed(failure_reason),
    };
    changes.push(record_change(tx, &customer_id, &card_id, kind, Some(event_id)).await?);
    if data.state == TokenizationState::Succeeded {
        // The first active card becomes the default.
        let made_default = sqlx::query(
            "UPDATE cards SET is_default = TRUE WHERE id = $1 \
             AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.customer_id = $2 AND c.is_default)",
        )
        .bind(&card_id)
        .bind(&customer_id)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::classify)?;
        let _ = made_default;
    }
    Ok(EventOutcome::Applied)
}

fn card_view(r: &SqliteRow, now: i64, url_ttl_ms: i64) -> CardView {
    let state: String = r.get("state");
    let state = match state.as_str() {
        "active" => CardState::Active,
        "failed" => CardState::Failed,
        "expired" => CardState::Expired,
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
