//! What every handler and background task shares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use url::Url;

use crate::config::SandboxConfig;
use crate::faults::Faults;
use crate::signing::Signer;

pub type AppState = Arc<Shared>;

pub struct Shared {
    pub pool: SqlitePool,
    pub config: SandboxConfig,
    /// Ends with `/`, so `join("tokenize/…")` keeps any path prefix.
    pub base_url: Url,
    /// Origins allowed to frame the hosted form, normalised (`scheme://host[:port]`).
    pub frame_ancestors: Vec<String>,
    pub signer: Signer,
    pub faults: Faults,
    pub http: reqwest::Client,
    /// Wakes the card service when a card is submitted.
    pub card_wake: Notify,
    /// Bumped on anything a webhook worker may care about (new event, webhook changed, faults
    /// changed). A `watch` never loses a wake-up, unlike a poll interval it costs nothing idle.
    kick: watch::Sender<u64>,
    /// One delivery worker per webhook id.
    pub workers: Mutex<HashMap<i64, JoinHandle<()>>>,
}

impl Shared {
    pub fn new(
        pool: SqlitePool,
        config: SandboxConfig,
        base_url: Url,
        frame_ancestors: Vec<String>,
        signer: Signer,
        http: reqwest::Client,
    ) -> Self {
        Shared {
            pool,
            config,
            base_url,
            frame_ancestors,
            signer,
            faults: Faults::default(),
            http,
            card_wake: Notify::new(),
            kick: watch::channel(0).0,
            workers: Mutex::new(HashMap::new()),
        }
    }

    pub fn kick_dispatcher(&self) {
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe_kicks(&self) -> watch::Receiver<u64> {
        self.kick.subscribe()
    }
}
