//! Server-only domain: accounts, the card lifecycle, Jetpay events, live notifications.
//!
//! Both the server functions (the pages) and the webhook route call into this module, so each
//! rule lives in one place. Compiled only with the `ssr` feature.

pub mod accounts;
pub mod cards;
pub mod error;
pub mod notify;
pub mod store;

use std::{collections::HashMap, sync::Arc, time::Duration};

pub use error::AppError;
pub use notify::Notifier;
pub use store::Store;

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
    /// Sign-in attempts allowed per email in `sign_in_window` before refusing for a while.
    pub sign_in_attempts: u32,
    pub sign_in_window: Duration,
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
        }
    }
}

/// Everything a request needs, shared by server functions and routes.
pub struct Backend {
    pub store: Store,
    pub jetpay: jetpay::Client,
    pub notifier: Notifier,
    pub settings: Settings,
    /// One lock per customer around "ensure contact, check the cap, add a card", so concurrent
    /// requests create exactly one Jetpay contact and cannot overshoot the pending cap.
    customer_locks: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    sign_in_limiter: accounts::SignInLimiter,
}

impl Backend {
    pub fn new(store: Store, jetpay: jetpay::Client, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            store,
            jetpay,
            notifier: Notifier::new(),
            sign_in_limiter: accounts::SignInLimiter::new(
                settings.sign_in_attempts,
                settings.sign_in_window,
            ),
            settings,
            customer_locks: Default::default(),
        })
    }

    fn customer_lock(&self, customer_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.customer_locks.lock().expect("lock map poisoned");
        locks.entry(customer_id.to_owned()).or_default().clone()
    }
}
