//! All SQL lives behind this module: the rest of the app calls the [`Database`] interface and
//! never sees a query.
//!
//! Two backends implement it: SQLite (the default, one process) and PostgreSQL (several
//! instances on one database). Their SQL is the same portable text, written once in
//! `portable.rs` and compiled once per backend (each backend module names its `Db`); what
//! differs (starting a write transaction, recognising a busy database, the per-customer lock, the
//! leader lock, telling other instances about changes) is written per backend.
//!
//! The card lifecycle's rules are enforced by the statements themselves: every transition is an
//! `UPDATE … WHERE state IN (…)`, so a late or repeated event can never move a card backwards,
//! whatever order things arrive in, and whichever instance applies it.

mod postgres;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use jetpay::wire::Event;

use crate::model::{CardState, CardView};

pub use super::ids::{CardId, CustomerId};

pub use postgres::PostgresDatabase;
pub use sqlite::SqliteDatabase;

/// The store every part of the app shares: one backend, chosen by `DATABASE_URL`.
pub type Store = Arc<dyn Database>;

/// Opens the database `url` names (`sqlite:` or `postgres:`), creating it if needed (SQLite),
/// and brings its schema up to date.
pub async fn connect(url: &str) -> Result<Store> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(PostgresDatabase::connect(url).await?))
    } else {
        Ok(Arc::new(SqliteDatabase::connect(url).await?))
    }
}

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

pub type Result<T> = std::result::Result<T, StoreError>;

/// A customer row. The password hash stays in this module's callers that need it (sign-in).
#[derive(Debug, Clone)]
pub struct CustomerRow {
    pub id: CustomerId,
    pub email: String,
    pub name: String,
    pub password_hash: String,
    pub jetpay_contact_id: Option<String>,
}

/// A change to one customer's card, as recorded in `card_changes` and pushed to live pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub customer_id: CustomerId,
    pub card_id: CardId,
    /// What happened, as a [`crate::model::ChangeKind`] code; pages word it.
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
    const ALL: [EventOutcome; 7] = [
        EventOutcome::Applied,
        EventOutcome::Duplicate,
        EventOutcome::Ignored,
        EventOutcome::UnknownCard,
        EventOutcome::UnknownType,
        EventOutcome::Malformed,
        EventOutcome::Refused,
    ];

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

    /// The outcome a stored code stands for.
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == code)
    }
}

/// A card's state as stored: the page's [`CardState`] plus `removed`, which pages never see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredState {
    Shown(CardState),
    Removed,
}

impl StoredState {
    /// The code in `cards.state`.
    pub fn as_str(self) -> &'static str {
        match self {
            StoredState::Shown(CardState::Pending) => "pending",
            StoredState::Shown(CardState::Active) => "active",
            StoredState::Shown(CardState::Failed) => "failed",
            StoredState::Shown(CardState::Expired) => "expired",
            StoredState::Removed => "removed",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Some(match code {
            "pending" => StoredState::Shown(CardState::Pending),
            "active" => StoredState::Shown(CardState::Active),
            "failed" => StoredState::Shown(CardState::Failed),
            "expired" => StoredState::Shown(CardState::Expired),
            "removed" => StoredState::Removed,
            _ => return None,
        })
    }

    /// Whether Jetpay's result may still move the card (its word is final over our timeout).
    pub fn awaits_result(self) -> bool {
        matches!(
            self,
            StoredState::Shown(CardState::Pending) | StoredState::Shown(CardState::Expired)
        )
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

/// The connection pool behind the store, for libraries that keep their own tables in the same
/// database (the session store). Not for queries: those belong in this module.
#[derive(Clone, Debug)]
pub enum DbPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// What another instance committed, as PostgreSQL's `NOTIFY` carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// `customer_id`'s change `seq` is in the log.
    Committed { customer_id: CustomerId, seq: i64 },
    /// The feed was interrupted and is listening again: anything may have been missed, so every
    /// open stream rereads the log.
    Resumed,
}

/// Held while one customer's "ensure contact, check the caps, add a card" runs, on whichever
/// instance: so concurrent requests create exactly one Jetpay contact. Give it back with
/// [`CustomerLock::release`].
pub struct CustomerLock(pub(crate) LockInner);

pub(crate) enum LockInner {
    Local(tokio::sync::OwnedMutexGuard<()>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl CustomerLock {
    pub async fn release(self) {
        match self.0 {
            LockInner::Local(guard) => drop(guard),
            LockInner::Postgres(tx) => {
                // Ending the transaction ends its advisory lock.
                if let Err(e) = tx.commit().await {
                    tracing::warn!(error = %e, "releasing a customer lock failed");
                }
            }
        }
    }
}

/// Held by the one instance that runs the background jobs.
/// On PostgreSQL it owns the connection holding the session-level advisory lock, detached from
/// the pool: dropping it closes the connection, which ends the lock.
pub struct Leadership(pub(crate) Option<sqlx::PgConnection>);

impl Leadership {
    /// Whether this instance still leads: a PostgreSQL leader's lock lives as long as its
    /// connection.
    pub async fn still_held(&mut self) -> bool {
        use sqlx::Connection;
        match &mut self.0 {
            None => true,
            Some(conn) => match conn.ping().await {
                Ok(()) => true,
                Err(e) => {
                    tracing::warn!(error = %e, "the background jobs' lock connection failed");
                    false
                }
            },
        }
    }
}

/// Customers and their Jetpay contact.
#[async_trait]
pub trait Customers: Send + Sync {
    async fn insert_customer(
        &self,
        id: &CustomerId,
        email: &str,
        name: &str,
        password_hash: &str,
    ) -> Result<()>;
    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerRow>>;
    async fn customer_by_id(&self, id: &CustomerId) -> Result<Option<CustomerRow>>;
    /// Stores the customer's Jetpay contact unless one is stored already; returns the stored one.
    async fn set_contact_id_if_missing(
        &self,
        customer_id: &CustomerId,
        contact_id: &str,
    ) -> Result<String>;
}

/// Saved cards, as the customer and time move them. Every method that changes a card returns
/// the changes it logged (already committed).
#[async_trait]
pub trait Cards: Send + Sync {
    /// Cards (in any state, removed ones included) the customer added since `since` (ms): each
    /// one cost a tokenization URL at Jetpay.
    async fn count_cards_added_since(&self, customer_id: &CustomerId, since: i64) -> Result<i64>;
    async fn count_pending(&self, customer_id: &CustomerId) -> Result<i64>;
    /// Records a new pending card (committed before the customer sees the form). When `replaces`
    /// names one of the customer's failed or expired cards ("Try again"), that card is removed in
    /// the same transaction. A result that arrived before the card (`early_results`) applies now.
    async fn insert_pending_card(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        jetpay_card_id: &str,
        form_url: &str,
        replaces: Option<&CardId>,
    ) -> Result<Vec<Change>>;
    async fn list_cards(
        &self,
        customer_id: &CustomerId,
        now: i64,
        url_ttl_ms: i64,
    ) -> Result<Vec<CardView>>;
    async fn card(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        now: i64,
        url_ttl_ms: i64,
    ) -> Result<Option<CardView>>;
    /// The stored state of a card, removed included (tests and operators).
    async fn card_state(&self, card_id: &CardId) -> Result<Option<StoredState>>;
    /// Names one of the customer's cards (`None` clears the name).
    async fn set_nickname(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        nickname: Option<&str>,
    ) -> Result<Vec<Change>>;
    /// Makes one of the customer's active cards the default.
    async fn make_default(&self, customer_id: &CustomerId, card_id: &CardId)
        -> Result<Vec<Change>>;
    /// Removes one of the customer's cards; if it was the default, the newest other active card
    /// becomes the default.
    async fn remove_card(&self, customer_id: &CustomerId, card_id: &CardId) -> Result<Vec<Change>>;
    /// Records that Jetpay's hosted form reported a submission for one of the customer's pending
    /// cards, with the brand and last four it showed.
    async fn mark_submitted(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        jetpay_card_id: Option<&str>,
        brand: Option<&str>,
        last4: Option<&str>,
    ) -> Result<Vec<Change>>;
    /// Expires every pending card created before `created_before` (ms since the epoch).
    async fn expire_stale(&self, created_before: i64) -> Result<Vec<Change>>;
}

/// Jetpay's events: what was received, what became of it, and the holes.
#[async_trait]
pub trait Events: Send + Sync {
    /// Records and applies a verified batch in one transaction, with a fixed number of
    /// statements whatever its size: each event id is recorded once (a duplicate is skipped
    /// entirely) and each tokenization result is applied as a guarded update.
    async fn apply_events(
        &self,
        events: &[Event],
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<Change>)>;
    /// Up to `limit` received event ids above `after`, ascending.
    async fn event_ids_after(&self, after: i64, limit: i64) -> Result<Vec<i64>>;
    async fn oldest_event_id(&self) -> Result<Option<i64>>;
    async fn newest_event_id(&self) -> Result<Option<i64>>;
    /// How an event was handled, for tests and operators.
    async fn event_outcome(&self, event_id: i64) -> Result<Option<EventOutcome>>;
    /// Holes we stopped asking Jetpay to fill.
    async fn given_up_gaps(&self) -> Result<Vec<i64>>;
    async fn give_up_gap(&self, event_id: i64, replays: u32) -> Result<()>;
}

/// The log of card changes per customer: the live streams' positions.
#[async_trait]
pub trait ChangeLog: Send + Sync {
    /// Up to `limit` card changes of one customer after `seq`, oldest first.
    async fn changes_since(
        &self,
        customer_id: &CustomerId,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Change>>;
    /// The newest change seq of a customer (0 when none): where a fresh page's stream starts.
    async fn latest_change(&self, customer_id: &CustomerId) -> Result<i64>;
}

/// The webhook this server registered at Jetpay.
#[async_trait]
pub trait Webhooks: Send + Sync {
    /// Our complete registration (identifier, numeric id and key), if there is one.
    async fn webhook_registration(&self, callback_url: &str)
        -> Result<Option<WebhookRegistration>>;
    /// The callback API key stored for `callback_url`, complete registration or not: reused, so a
    /// re-registration never invalidates deliveries already signed with it in flight.
    async fn webhook_api_key(&self, callback_url: &str) -> Result<Option<String>>;
    async fn save_webhook_registration(
        &self,
        callback_url: &str,
        registration: &WebhookRegistration,
    ) -> Result<()>;
    /// The identifier of our webhook once its registration is complete.
    async fn webhook_identifier(&self, callback_url: &str) -> Result<Option<String>> {
        Ok(self
            .webhook_registration(callback_url)
            .await?
            .map(|r| r.identifier))
    }
}

/// Counters shared by every instance: rate limits and failed sign-ins.
#[async_trait]
pub trait Limits: Send + Sync {
    /// Counts one hit on `key` and returns the hits in its current window, which starts at the
    /// key's first hit and lasts `window_ms`.
    async fn hit(&self, key: &str, window_ms: i64, now: i64) -> Result<i64>;
    /// Forgets `key` (a successful sign-in clears its failures).
    async fn clear_hits(&self, key: &str) -> Result<()>;
    /// Forgets windows that started before `before`.
    async fn forget_hits_before(&self, before: i64) -> Result<()>;
}

/// What makes several instances behave as one.
#[async_trait]
pub trait Coordination: Send + Sync {
    /// Waits for, and returns, the lock on one customer's card additions.
    async fn lock_customer(&self, customer_id: &CustomerId) -> Result<CustomerLock>;
    /// The background jobs' lock, if no other instance holds it.
    async fn try_lead(&self) -> Result<Option<Leadership>>;
    /// Changes other instances commit, when there can be other instances (PostgreSQL).
    fn change_feed(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>>;
}

/// Everything the app stores, on one database.
#[async_trait]
pub trait Database:
    Customers + Cards + Events + ChangeLog + Webhooks + Limits + Coordination
{
    /// `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
    fn pool(&self) -> DbPool;
    /// Whether the database answers (readiness).
    async fn ping(&self) -> Result<()>;
    /// Whether every migration this binary carries has been applied (readiness: a binary newer
    /// than its database must not take traffic).
    async fn schema_is_current(&self) -> Result<bool>;
    /// Closes the pool, waiting for connections in use (shutdown).
    async fn close(&self);
}
