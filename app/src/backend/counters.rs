//! Counts of things an operator needs to see: recoveries, refusals, holes given up. Each is kept
//! twice: as a plain atomic that tests and readiness read, and as a Prometheus counter (`/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    /// `replay_from_event_id` requests sent to Jetpay to fill a hole in the event ids.
    pub replays_requested: AtomicU64,
    /// Holes we stopped asking Jetpay about after the allowed replays.
    pub gaps_given_up: AtomicU64,
    /// Times we found our webhook `failed` while running and revived it.
    pub webhook_revivals: AtomicU64,
}

impl Counters {
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn replay_requested(&self) {
        self.replays_requested.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("jetpay_replay_requests_total").increment(1);
    }

    pub fn gap_given_up(&self) {
        self.gaps_given_up.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("jetpay_event_gaps_given_up_total").increment(1);
    }

    pub fn webhook_revived(&self) {
        self.webhook_revivals.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("jetpay_webhook_revivals_total").increment(1);
    }
}

/// A card entered `state` (`cards_transitions_total{to}`).
pub fn card_transition(state: &'static str, count: u64) {
    metrics::counter!("cards_transitions_total", "to" => state).increment(count);
}
