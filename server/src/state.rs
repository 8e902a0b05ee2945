//! What every route shares.

use std::sync::Arc;

use app::backend::Backend;
use axum::extract::FromRef;
use leptos::prelude::LeptosOptions;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    pub leptos_options: LeptosOptions,
    pub backend: Arc<Backend>,
    pub verifier: jetpay::Verifier,
    /// Poked after each delivery so the gap check runs soon.
    pub gap_check: Arc<Notify>,
}

impl FromRef<AppState> for LeptosOptions {
    fn from_ref(state: &AppState) -> Self {
        state.leptos_options.clone()
    }
}
