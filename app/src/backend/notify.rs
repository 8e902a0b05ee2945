//! Fans card changes out to the live streams of open pages, per customer: a change wakes only its
//! customer's streams, not every stream. Changes are committed before they are sent, and carry
//! their `card_changes.seq`, so a stream that lags or reconnects reads what it missed from the
//! log instead.
//!
//! With several instances (PostgreSQL), a change committed elsewhere arrives as a `NOTIFY` of
//! (customer, seq) through the store's change feed; [`Notifier::follow`] reads it from the log and
//! fans it out here. When the feed was interrupted, every stream is told to reread the log.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::{broadcast, mpsc, watch};

use super::{
    counters::card_transition,
    store::{Change, CustomerId, FeedEvent, Store},
};
use crate::model::ChangeKind;

/// Changes buffered per customer before a slow stream lags (and rereads the log). Small: the
/// buffer is allocated whole for every customer with a stream open (a slot is a `Change`), and a
/// lag costs one read of the log.
const PER_CUSTOMER_BUFFER: usize = 16;

#[derive(Clone)]
pub struct Notifier {
    customers: Arc<Mutex<HashMap<CustomerId, broadcast::Sender<Change>>>>,
    /// Bumped when changes may have been missed: every stream rereads the log.
    resync: Arc<watch::Sender<u64>>,
}

/// One stream's view of its customer's changes.
pub struct Subscription {
    pub changes: broadcast::Receiver<Change>,
    /// Changes when the stream must reread the log.
    pub resync: watch::Receiver<u64>,
}

impl Notifier {
    pub fn new() -> Self {
        Self {
            customers: Default::default(),
            resync: Arc::new(watch::Sender::new(0)),
        }
    }

    /// Sends changes this instance committed to open pages, and counts the card transitions
    /// among them (`cards_transitions_total{to}`: only what was committed is counted).
    pub fn publish(&self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
            let to = match ChangeKind::parse(&change.announcement) {
                ChangeKind::Added => Some("pending"),
                ChangeKind::Activated => Some("active"),
                ChangeKind::Failed(_) => Some("failed"),
                ChangeKind::Expired => Some("expired"),
                ChangeKind::Removed | ChangeKind::Retired => Some("removed"),
                _ => None,
            };
            if let Some(to) = to {
                card_transition(to, 1);
            }
            self.fan_out(change);
        }
    }

    /// Sends a committed change to its customer's streams on this instance, if any.
    pub fn fan_out(&self, change: Change) {
        let mut customers = self.customers.lock().expect("notifier poisoned");
        if let Some(sender) = customers.get(&change.customer_id) {
            if sender.send(change.clone()).is_err() {
                // Nobody is listening any more.
                customers.remove(&change.customer_id);
            }
        }
    }

    /// Whether any stream on this instance follows `customer_id`.
    pub fn is_followed(&self, customer_id: &CustomerId) -> bool {
        self.customers
            .lock()
            .expect("notifier poisoned")
            .get(customer_id)
            .is_some_and(|s| s.receiver_count() > 0)
    }

    pub fn subscribe(&self, customer_id: &CustomerId) -> Subscription {
        let mut customers = self.customers.lock().expect("notifier poisoned");
        let sender = customers
            .entry(customer_id.clone())
            .or_insert_with(|| broadcast::channel(PER_CUSTOMER_BUFFER).0);
        Subscription {
            changes: sender.subscribe(),
            resync: self.resync.subscribe(),
        }
    }

    /// Tells every stream to reread the log.
    pub fn resync_all(&self) {
        self.resync.send_modify(|n| *n += 1);
    }

    /// Forgets customers nobody follows any more (the background beat calls it).
    pub fn forget_idle(&self) {
        self.customers
            .lock()
            .expect("notifier poisoned")
            .retain(|_, s| s.receiver_count() > 0);
    }

    /// Fans out what other instances commit, read from the log, for as long as `feed` runs.
    pub async fn follow(self, store: Store, mut feed: mpsc::Receiver<FeedEvent>) {
        while let Some(event) = feed.recv().await {
            match event {
                FeedEvent::Resumed => self.resync_all(),
                FeedEvent::Committed { customer_id, seq } => {
                    if !self.is_followed(&customer_id) {
                        continue;
                    }
                    match store.changes_since(&customer_id, seq - 1, 1).await {
                        Ok(changes) => {
                            for change in changes.into_iter().filter(|c| c.seq == seq) {
                                self.fan_out(change);
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not read a notified change; streams reread the log");
                            self.resync_all();
                        }
                    }
                }
            }
        }
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}
