//! Fans card changes out to the live streams of open pages. Changes are committed before they
//! are sent, and carry their `card_changes.seq`, so a stream that lags or reconnects reads what it
//! missed from the database instead.

use tokio::sync::broadcast;

use super::{counters::card_transition, store::Change};
use crate::model::ChangeKind;

#[derive(Clone)]
pub struct Notifier {
    sender: broadcast::Sender<Change>,
}

impl Notifier {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }

    /// Sends committed changes to open pages, and counts the card transitions among them
    /// (`cards_transitions_total{to}`: only what was committed is counted).
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
            // No subscriber is not an error: nobody has the page open.
            let _ = self.sender.send(change);
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.sender.subscribe()
    }
}

impl Default for Notifier {
    fn default() -> Self {
        Self::new()
    }
}
