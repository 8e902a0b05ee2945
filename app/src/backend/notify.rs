//! Fans card changes out to the live streams of open pages. Changes are committed before they
//! are sent, and carry their `card_changes.seq`, so a stream that lags or reconnects reads what it
//! missed from the database instead.

use tokio::sync::broadcast;

use super::store::Change;

#[derive(Clone)]
pub struct Notifier {
    sender: broadcast::Sender<Change>,
}

impl Notifier {
    pub fn new() -> Self {
        let (sender, _) = broadcast::channel(1024);
        Self { sender }
    }

    pub fn publish(&self, changes: impl IntoIterator<Item = Change>) {
        for change in changes {
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
