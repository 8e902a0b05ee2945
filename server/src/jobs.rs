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
            tokio::select! {
                _ = tokio::time::sleep(self.sweep_interval) => {
                    if let Err(e) = self.backend.expire_stale_cards().await {
                        tracing::warn!(error = %e, "expiring stale cards failed");
                    }
                }
                _ = self.gap_check.notified() => {}
            }
            watched = self.check_gap(watched).await;
        }
    }

    async fn check_gap(&self, watched: Option<(i64, Instant)>) -> Option<(i64, Instant)> {
        let missing = match self.backend.store.first_missing_event_id().await {
            Ok(missing) => missing?,
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

    async fn request_replay(&self, from: i64) {
        let identifier = match self
            .backend
            .store
            .webhook_identifier(&self.callback_url)
            .await
        {
            Ok(Some(id)) => id,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "gap replay: no webhook identifier");
                return;
            }
        };
        let Ok(identifier) = uuid::Uuid::parse_str(&identifier) else {
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
