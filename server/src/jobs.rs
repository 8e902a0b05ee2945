//! Background work: expire pending cards that never heard back, and ask Jetpay to replay when the
//! received event ids have a hole that does not fill by itself.

use std::{sync::Arc, time::Duration};

use app::backend::Backend;
use jetpay::wire::WebhookPatch;
use tokio::{sync::Notify, time::Instant};

pub struct Jobs {
    pub backend: Arc<Backend>,
    pub callback_url: String,
    pub sweep_interval: Duration,
    pub gap_grace: Duration,
    pub gap_check: Arc<Notify>,
}

impl Jobs {
    pub fn spawn(self) {
        tokio::spawn(self.run());
    }

    async fn run(self) {
        // The hole we are watching and since when; replay only if it outlives the grace period.
        let mut watched: Option<(i64, Instant)> = None;
        loop {
            let tick = tokio::select! {
                _ = tokio::time::sleep(self.sweep_interval) => {
                    if let Err(e) = self.backend.expire_stale_cards().await {
                        tracing::warn!(error = %e, "expiring stale cards failed");
                    }
                    true
                }
                _ = self.gap_check.notified() => false,
            };
            watched = self.check_gap(watched, tick).await;
        }
    }

    /// `ask_jetpay` (on sweep ticks only, so Jetpay sees at most one read per interval): also
    /// look for a hole at the end, which no later delivery would reveal.
    async fn check_gap(
        &self,
        watched: Option<(i64, Instant)>,
        ask_jetpay: bool,
    ) -> Option<(i64, Instant)> {
        let missing = match self.backend.store.first_missing_event_id().await {
            Ok(Some(missing)) => missing,
            // Between ticks a delivery cannot tell about the end: keep watching it.
            Ok(None) if !ask_jetpay => return watched,
            Ok(None) => self.missing_tail().await?,
            Err(e) => {
                tracing::warn!(error = %e, "gap check failed");
                return watched;
            }
        };
        match watched {
            Some((id, since)) if id == missing && since.elapsed() >= self.gap_grace => {
                self.request_replay(missing).await;
                Some((missing, Instant::now()))
            }
            Some((id, since)) if id == missing => Some((id, since)),
            _ => Some((missing, Instant::now())),
        }
    }

    /// The id after the newest one we received, when Jetpay says it delivered more than that:
    /// a dropped delivery of the newest events leaves no later event to reveal the hole, but
    /// the webhook's `last_sent_event_id` does. A delivery that commits between our two reads
    /// can look like a hole for a moment; the grace period absorbs that.
    async fn missing_tail(&self) -> Option<i64> {
        let newest = match self.backend.store.newest_event_id().await {
            Ok(newest) => newest?,
            Err(e) => {
                tracing::warn!(error = %e, "gap check failed");
                return None;
            }
        };
        let identifier = self.webhook_identifier().await?;
        match self.backend.jetpay.get_webhook(identifier).await {
            Ok(webhook) => webhook
                .last_sent_event_id
                .filter(|sent| *sent > newest)
                .map(|_| newest + 1),
            Err(e) => {
                tracing::debug!(error = %e, "gap check: could not read our Jetpay webhook");
                None
            }
        }
    }

    async fn webhook_identifier(&self) -> Option<uuid::Uuid> {
        match self
            .backend
            .store
            .webhook_identifier(&self.callback_url)
            .await
        {
            Ok(Some(id)) => uuid::Uuid::parse_str(&id).ok(),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "gap replay: no webhook identifier");
                None
            }
        }
    }

    async fn request_replay(&self, from: i64) {
        let Some(identifier) = self.webhook_identifier().await else {
            return;
        };
        let patch = WebhookPatch {
            replay_from_event_id: Some(from),
            ..Default::default()
        };
        match self.backend.jetpay.update_webhook(identifier, &patch).await {
            Ok(_) => tracing::warn!(from, "missed Jetpay events detected; replay requested"),
            Err(e) => tracing::warn!(error = %e, from, "replay request failed"),
        }
    }
}
