//! Background work on a fixed beat: expire pending cards that never heard back, keep our Jetpay
//! webhook alive (revive it when Jetpay marked it `failed`), and ask Jetpay to replay when the
//! received event ids have a hole that does not fill by itself.
//!
//! The beat is a `tokio::time::interval`, independent of deliveries: a delivery only pokes the
//! (cheap, incremental) gap check, so steady traffic can never starve expiry or the tail check.
//!
//! With several instances on one database, one leads: the store's leader lock
//! (`pg_try_advisory_lock` on PostgreSQL) decides which, so two instances never both revive the
//! webhook or ask Jetpay to replay. The others try to take over on every beat, which they do
//! when the leader stops (its lock dies with its connection). Every instance still reads the
//! webhook's state for its own readiness.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use app::backend::{store::Leadership, Backend};
use jetpay::wire::{WebhookPatch, WebhookState};
use tokio::{
    sync::{watch, Notify},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;
use tower_sessions::ExpiredDeletion;

use crate::jetpay_setup::{self, WebhookSettings};

/// How many ids the gap check reads per query while walking forward.
const GAP_PAGE: i64 = 1000;
/// The longest wait between two replay requests for the same hole.
const MAX_REPLAY_BACKOFF: Duration = Duration::from_secs(3600);

pub struct Jobs {
    pub backend: Arc<Backend>,
    pub webhook: WebhookSettings,
    pub sweep_interval: Duration,
    pub gap_grace: Duration,
    /// Replay requests per hole before we give it up (`GAP_MAX_REPLAYS`).
    pub max_replays: u32,
    pub gap_check: Arc<Notify>,
    /// Expired sessions are deleted on every beat.
    pub sessions: crate::sessions::Sessions,
    /// Cancelled at shutdown: the loop stops between steps.
    pub shutdown: CancellationToken,
    /// Whether this instance leads (the webhook registration waits for it).
    pub leader: watch::Sender<bool>,
}

/// A hole we are waiting on: replay only if it outlives the grace period, then with backoff.
#[derive(Debug, Clone, Copy)]
struct Watched {
    id: i64,
    replays: u32,
    next_action: Instant,
}

/// Where the gap check stands. Every id up to `contiguous_through` was received (or given up).
#[derive(Debug, Default)]
struct Gaps {
    contiguous_through: Option<i64>,
    given_up: BTreeSet<i64>,
    watched: Option<Watched>,
}

impl Jobs {
    pub fn spawn(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let mut gaps = Gaps::default();
        let mut leadership: Option<Leadership> = None;
        let mut beat = tokio::time::interval(self.sweep_interval);
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = beat.tick() => {
                    self.backend.notifier.forget_idle();
                    if !self.lead(&mut leadership, &mut gaps).await {
                        self.read_webhook_state().await;
                        continue;
                    }
                    if let Err(e) = self.sessions.delete_expired().await {
                        tracing::warn!(error = %e, "deleting expired sessions failed");
                    }
                    if let Err(e) = self.backend.expire_stale_cards().await {
                        tracing::warn!(error = %e, "expiring stale cards failed");
                    }
                    self.backend.forget_idle_limits().await;
                    let tail = self.watch_webhook(&gaps).await;
                    self.check_gaps(&mut gaps, tail).await;
                }
                _ = self.gap_check.notified(), if leadership.is_some() => {
                    self.check_gaps(&mut gaps, None).await
                }
            }
        }
    }

    /// Whether this instance leads now: keeps the lock it holds, or takes it if nobody does.
    /// A new leader starts the gap check afresh (the old one may have moved on).
    async fn lead(&self, leadership: &mut Option<Leadership>, gaps: &mut Gaps) -> bool {
        if let Some(held) = leadership {
            if held.still_held().await {
                return true;
            }
            tracing::warn!("lost the background jobs' lock; another instance may take over");
            *leadership = None;
            self.set_leader(false);
        }
        match self.backend.store.try_lead().await {
            Ok(Some(held)) => {
                *leadership = Some(held);
                *gaps = Gaps::default();
                match self.backend.store.given_up_gaps().await {
                    Ok(ids) => gaps.given_up = ids.into_iter().collect(),
                    Err(e) => tracing::warn!(error = %e, "could not read given-up event gaps"),
                }
                if self.backend.store.backend() != "sqlite" {
                    tracing::info!("this instance now runs the background jobs");
                }
                self.set_leader(true);
                true
            }
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not try the background jobs' lock");
                false
            }
        }
    }

    fn set_leader(&self, leads: bool) {
        self.leader.send_replace(leads);
        metrics::gauge!("jobs_leader").set(if leads { 1.0 } else { 0.0 });
    }

    /// Reads our webhook at Jetpay and records its state (every instance: readiness reports it).
    async fn read_webhook_state(&self) -> Option<jetpay::wire::Webhook> {
        let registration = match self
            .backend
            .store
            .webhook_registration(&self.webhook.callback_url)
            .await
        {
            Ok(registration) => registration?,
            Err(e) => {
                tracing::warn!(error = %e, "webhook watch: could not read our registration");
                return None;
            }
        };
        let identifier = uuid::Uuid::parse_str(&registration.identifier).ok()?;
        let webhook = match self.backend.jetpay.get_webhook(identifier).await {
            Ok(webhook) => webhook,
            Err(e) => {
                tracing::debug!(error = %e, "webhook watch: could not read our Jetpay webhook");
                return None;
            }
        };
        self.backend.set_webhook_state(webhook.state);
        Some(webhook)
    }

    /// Reads our webhook at Jetpay once per beat: revives it if Jetpay gave up on it, and returns
    /// the id after our newest event when Jetpay says it delivered more than we have (a lost
    /// delivery of the newest events leaves no later event to reveal that hole).
    async fn watch_webhook(&self, gaps: &Gaps) -> Option<i64> {
        let store = &self.backend.store;
        let webhook = self.read_webhook_state().await?;
        if webhook.state == WebhookState::Failed {
            let replay_from = gaps.contiguous_through.map(|id| id + 1);
            match jetpay_setup::try_register(
                &self.backend.jetpay,
                store,
                &self.webhook,
                replay_from,
            )
            .await
            {
                Ok((_, state)) => {
                    self.backend.set_webhook_state(state);
                    self.backend.counters.webhook_revived();
                    tracing::warn!(
                        replay_from,
                        "Jetpay had marked our webhook failed; revived it"
                    );
                }
                Err(e) => tracing::warn!(error = %e, "could not revive our failed Jetpay webhook"),
            }
            return None;
        }
        let newest = match store.newest_event_id().await {
            Ok(newest) => newest?,
            Err(e) => {
                tracing::warn!(error = %e, "gap check failed");
                return None;
            }
        };
        webhook
            .last_sent_event_id
            .filter(|sent| *sent > newest)
            .map(|_| newest + 1)
            .filter(|id| !gaps.given_up.contains(id))
    }

    /// Finds the first hole (walking forward from where everything was last contiguous) and acts
    /// on it: wait out the grace period, ask Jetpay to replay with growing pauses, and after
    /// `max_replays` requests give the hole up (logged, counted, recorded for readiness).
    async fn check_gaps(&self, gaps: &mut Gaps, tail: Option<i64>) {
        let missing = match self.first_missing(gaps).await {
            Ok(missing) => missing.or(tail),
            Err(e) => {
                tracing::warn!(error = %e, "gap check failed");
                return;
            }
        };
        let Some(missing) = missing else {
            gaps.watched = None;
            return;
        };
        let now = Instant::now();
        let watched = match gaps.watched {
            Some(w) if w.id == missing => w,
            _ => Watched {
                id: missing,
                replays: 0,
                next_action: now + self.gap_grace,
            },
        };
        if now < watched.next_action {
            gaps.watched = Some(watched);
            return;
        }
        if watched.replays >= self.max_replays {
            self.give_up(gaps, missing, watched.replays).await;
            gaps.watched = None;
            return;
        }
        self.request_replay(missing).await;
        let replays = watched.replays + 1;
        let backoff = self
            .gap_grace
            .saturating_mul(2u32.saturating_pow(replays))
            .min(MAX_REPLAY_BACKOFF);
        gaps.watched = Some(Watched {
            id: missing,
            replays,
            next_action: now + backoff,
        });
    }

    /// The lowest id after `contiguous_through` that was neither received nor given up, if a
    /// later id was received. Reads only the ids above the contiguous prefix, a page at a time.
    async fn first_missing(
        &self,
        gaps: &mut Gaps,
    ) -> Result<Option<i64>, app::backend::store::StoreError> {
        let store = &self.backend.store;
        let mut cursor = match gaps.contiguous_through {
            Some(cursor) => cursor,
            None => match store.oldest_event_id().await? {
                Some(oldest) => oldest - 1,
                None => return Ok(None),
            },
        };
        let found = 'walk: loop {
            let ids = store.event_ids_after(cursor, GAP_PAGE).await?;
            for &id in &ids {
                while id > cursor + 1 && gaps.given_up.contains(&(cursor + 1)) {
                    cursor += 1;
                }
                if id > cursor + 1 {
                    break 'walk Some(cursor + 1);
                }
                cursor = id;
            }
            if (ids.len() as i64) < GAP_PAGE {
                break None;
            }
        };
        gaps.contiguous_through = Some(cursor);
        Ok(found)
    }

    async fn give_up(&self, gaps: &mut Gaps, id: i64, replays: u32) {
        tracing::error!(
            event_id = id,
            replays,
            "Jetpay never resent this event id; giving the hole up (see readiness)"
        );
        // Recorded first, then counted: whoever sees the count can read the record.
        if let Err(e) = self.backend.store.give_up_gap(id, replays).await {
            tracing::warn!(error = %e, "could not record the given-up hole");
        }
        self.backend.counters.gap_given_up();
        gaps.given_up.insert(id);
    }

    async fn request_replay(&self, from: i64) {
        let registration = match self
            .backend
            .store
            .webhook_registration(&self.webhook.callback_url)
            .await
        {
            Ok(Some(registration)) => registration,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "gap replay: no webhook registration");
                return;
            }
        };
        let Ok(identifier) = uuid::Uuid::parse_str(&registration.identifier) else {
            return;
        };
        let patch = WebhookPatch {
            replay_from_event_id: Some(from),
            ..Default::default()
        };
        self.backend.counters.replay_requested();
        match self.backend.jetpay.update_webhook(identifier, &patch).await {
            Ok(_) => tracing::warn!(from, "missed Jetpay events detected; replay requested"),
            Err(e) => tracing::warn!(error = %e, from, "replay request failed"),
        }
    }
}
