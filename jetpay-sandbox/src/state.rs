//! What every handler and background task shares.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;

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
    /// What developers did to this sandbox (CLI or dashboard), newest last, for the dashboard.
    actions: Mutex<VecDeque<Action>>,
    /// Random per start; the dashboard's forms carry it, so another site cannot post them.
    pub dashboard_secret: String,
}

/// Actions kept for the dashboard.
const ACTIONS_KEPT: usize = 20;

/// One thing a developer did, in words: "Paused webhook 1", "Could not trigger …".
#[derive(Debug, Clone)]
pub struct Action {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub ok: bool,
    pub text: String,
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
            actions: Mutex::new(VecDeque::new()),
            dashboard_secret: {
                let mut bytes = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut bytes);
                URL_SAFE_NO_PAD.encode(bytes)
            },
        }
    }

    /// Remembers an action for the dashboard and logs it; answers its number.
    pub fn record_action(&self, ok: bool, text: impl Into<String>) -> u64 {
        let text = text.into();
        if ok {
            tracing::info!(action = %text, "sandbox control");
        } else {
            tracing::warn!(action = %text, "sandbox control refused");
        }
        let mut actions = self.actions.lock().expect("action lock");
        let seq = actions.back().map_or(1, |a| a.seq + 1);
        actions.push_back(Action {
            seq,
            at: Utc::now(),
            ok,
            text,
        });
        while actions.len() > ACTIONS_KEPT {
            actions.pop_front();
        }
        seq
    }

    /// The remembered actions, newest first.
    pub fn recent_actions(&self) -> Vec<Action> {
        let actions = self.actions.lock().expect("action lock");
        actions.iter().rev().cloned().collect()
    }

    pub fn kick_dispatcher(&self) {
        self.kick.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn subscribe_kicks(&self) -> watch::Receiver<u64> {
        self.kick.subscribe()
    }
}
