//! Server-only domain: accounts, the card lifecycle, Jetpay events, live notifications.
//!
//! Both the server functions (the pages) and the webhook route call into this module, so each
//! rule lives in one place. Compiled only with the `ssr` feature.

pub mod accounts;
pub mod cards;
pub mod counters;
pub mod error;
pub mod ids;
pub mod limits;
pub mod notify;
pub mod store;

use std::{sync::Arc, time::Duration};

pub use counters::Counters;
pub use error::AppError;
pub use ids::{CardId, CustomerId};
pub use notify::Notifier;
pub use store::{Store, StoreError};

/// Milliseconds since the Unix epoch: how every timestamp is stored.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Settings the domain needs, derived from the server's configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How many cards a customer may have verifying at once.
    pub pending_cap: i64,
    /// A pending card that has heard nothing for this long expires.
    pub pending_timeout: Duration,
    /// How long Jetpay's form URL can be used (`jetpay::unspecified::TOKENIZATION_URL_TTL_SECONDS`).
    pub form_url_ttl: Duration,
    /// Show development conveniences (the demo customer's credentials on the sign-in page).
    pub dev_mode: bool,
    /// Failed sign-ins allowed per (email, client IP) in `sign_in_window` before refusing for a
    /// while.
    pub sign_in_attempts: u32,
    pub sign_in_window: Duration,
    /// Sign-ups, sign-ins and Add card requests allowed per client IP per minute, each.
    pub ip_requests_per_minute: u32,
    /// Tokenization URLs (Add card, Try again) a customer may ask Jetpay for per hour, whatever
    /// became of the cards: removing cards does not buy more.
    pub cards_added_per_hour: i64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pending_cap: 3,
            pending_timeout: Duration::from_secs(15 * 60),
            form_url_ttl: Duration::from_secs(jetpay::unspecified::TOKENIZATION_URL_TTL_SECONDS),
            dev_mode: false,
            sign_in_attempts: 5,
            sign_in_window: Duration::from_secs(15 * 60),
            ip_requests_per_minute: 30,
            cards_added_per_hour: 10,
        }
    }
}

/// Everything a request needs, shared by server functions and routes.
pub struct Backend {
    pub store: Store,
    pub jetpay: jetpay::Client,
    pub notifier: Notifier,
    pub settings: Settings,
    pub counters: Counters,
    /// Bounds concurrent argon2 work (each hash holds ~19 MiB) to one fewer than the cores.
    hashing: tokio::sync::Semaphore,
    /// Our webhook's state as Jetpay last reported it (the background beat reads it).
    webhook_state: std::sync::RwLock<Option<jetpay::wire::WebhookState>>,
}

impl Backend {
    /// Builds the backend and, when the store has other instances to hear from (PostgreSQL),
    /// starts following their changes.
    pub fn new(store: Store, jetpay: jetpay::Client, settings: Settings) -> Arc<Self> {
        let notifier = Notifier::new();
        if let Some(feed) = store.change_feed() {
            tokio::spawn(notifier.clone().follow(store.clone(), feed));
        }
        Arc::new(Self {
            store,
            jetpay,
            notifier,
            counters: Counters::default(),
            webhook_state: Default::default(),
            // One core fewer than there are, so webhooks and pages always have one.
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get())
                    .saturating_sub(1)
                    .max(1),
            ),
            settings,
        })
    }

    /// Records our webhook's state at Jetpay (readiness, and the `jetpay_webhook_state` gauge:
    /// 1 for the current state, 0 for the others).
    pub fn set_webhook_state(&self, state: jetpay::wire::WebhookState) {
        use jetpay::wire::WebhookState as S;
        *self
            .webhook_state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state);
        for (s, name) in [
            (S::Active, "active"),
            (S::Scheduled, "scheduled"),
            (S::Dispatching, "dispatching"),
            (S::BackingOff, "backing_off"),
            (S::Failed, "failed"),
        ] {
            metrics::gauge!("jetpay_webhook_state", "state" => name).set(if s == state {
                1.0
            } else {
                0.0
            });
        }
    }

    pub fn webhook_state(&self) -> Option<jetpay::wire::WebhookState> {
        *self
            .webhook_state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
