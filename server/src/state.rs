//! What every route shares.

use std::sync::Arc;

use app::backend::Backend;
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::live::StreamSlots;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub backend: Arc<Backend>,
    pub verifier: jetpay::Verifier,
    /// Poked after each delivery so the gap check runs soon.
    pub gap_check: Arc<Notify>,
    /// Our webhook's callback URL: deliveries are checked against its stored registration.
    pub callback_url: String,
    /// That registration, cached (reread from the database on a mismatch).
    pub registration: Arc<std::sync::RwLock<Option<app::backend::store::WebhookRegistration>>>,
    /// Ends live streams with their session.
    pub session_watch: crate::live::SessionWatch,
    pub streams: StreamSlots,
    /// Cancelled when the server starts shutting down: streams end, jobs stop.
    pub shutdown: CancellationToken,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
