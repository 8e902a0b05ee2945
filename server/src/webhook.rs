//! `POST /webhooks/jetpay`: Jetpay's signed deliveries.
//!
//! Order matters: verify the JWT against the raw bytes, then record and apply the whole batch in
//! one transaction, commit, answer 2xx, and only then tell open pages (the backend publishes after
//! commit). Anything that is not a valid delivery changes nothing.

use axum::{
    body::Bytes,
    extract::State,
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use jetpay::VerifyError;

use crate::state::AppState;

/// Largest delivery we accept: 100 events of a few hundred bytes fit many times over.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The webhook layer's one error type, mapped to HTTP in one place below.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("verification failed: {0}")]
    Unverified(#[from] VerifyError),
    #[error("could not apply: {0}")]
    Apply(app::backend::AppError),
}

impl From<app::backend::AppError> for WebhookError {
    fn from(e: app::backend::AppError) -> Self {
        WebhookError::Apply(e)
    }
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match &self {
            // Our key cache could not be filled: not the sender's fault; let Jetpay retry.
            WebhookError::Unverified(VerifyError::KeysUnavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            WebhookError::Unverified(_) => StatusCode::UNAUTHORIZED,
            // Nothing was committed; a non-2xx makes Jetpay deliver again.
            WebhookError::Apply(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        match &self {
            WebhookError::Unverified(e) => tracing::warn!(error = %e, "webhook delivery refused"),
            WebhookError::Apply(e) => tracing::error!(error = %e, "webhook delivery not applied"),
        }
        (status, status.canonical_reason().unwrap_or("error")).into_response()
    }
}

pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, WebhookError> {
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let batch = state.verifier.verify(authorization, &body).await?;
    let outcomes = state.backend.apply_events(&batch.events).await?;
    tracing::info!(
        webhook = batch.webhook_id,
        events = outcomes.len(),
        first = batch.events.first().map(|e| e.id),
        last = batch.events.last().map(|e| e.id),
        "webhook delivery applied"
    );
    state.gap_check.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
