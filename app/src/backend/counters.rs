//! Counts of things an operator needs to see: recoveries, refusals, holes given up. Plain atomics
//! so every part of the server can bump them without a lock; readiness and metrics read them.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Counters {
    /// `replay_from_event_id` requests sent to Jetpay to fill a hole in the event ids.
    pub replays_requested: AtomicU64,
    /// Holes we stopped asking Jetpay about after the allowed replays.
    pub gaps_given_up: AtomicU64,
    /// Times we found our webhook `failed` while running and revived it.
    pub webhook_revivals: AtomicU64,
    /// Deliveries refused as not ours (wrong key or webhook id) or not verified.
    pub deliveries_refused: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
