//! `POST /webhooks/jetpay`: Jetpay's signed deliveries.
//!
//! Order matters: a callback API key must be present, then the JWT is verified against the raw
//! bytes, then the key and the batch's `webhookId` must be our registration's (Jetpay signs every
//! company's deliveries alike); only then record and apply the whole batch in one transaction,
//! commit, answer 2xx, and tell open pages (the backend publishes after commit). Anything that is
//! not a valid delivery of *our* webhook changes nothing.

use axum::{
    body::Bytes,
    extract::State,
    http::{header::AUTHORIZATION, HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use jetpay::VerifyError;
use subtle::ConstantTimeEq;

use app::backend::store::WebhookRegistration;

use crate::state::AppState;

/// Largest delivery we accept: 100 events of a few hundred bytes fit many times over.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Why a correctly signed delivery is still not ours. Jetpay signs every company's deliveries
/// with the same keys, so a valid signature alone proves only that Jetpay sent it to *someone*.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotOurs {
    #[error("no callback API key header")]
    MissingApiKey,
    #[error("the callback API key is not ours")]
    WrongApiKey,
    #[error("the batch is for webhook {0}, not ours")]
    OtherWebhook(i64),
}

/// The webhook layer's one error type, mapped to HTTP in one place below.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("verification failed: {0}")]
    Unverified(#[from] VerifyError),
    #[error("not our webhook: {0}")]
    NotOurs(#[from] NotOurs),
    /// Our registration is not stored yet (just started, Jetpay unreachable): we cannot tell
    /// whose delivery this is, so Jetpay should try again later.
    #[error("our webhook registration is not complete yet")]
    NotRegistered,
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
            WebhookError::Unverified(_) | WebhookError::NotOurs(_) => StatusCode::UNAUTHORIZED,
            // Nothing was committed; a non-2xx makes Jetpay deliver again.
            WebhookError::NotRegistered | WebhookError::Apply(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let result = match &self {
            WebhookError::Unverified(e) => {
                metrics::counter!("webhook_verification_failures_total", "reason" => e.reason())
                    .increment(1);
                "unverified"
            }
            WebhookError::NotOurs(NotOurs::OtherWebhook(_)) => "other_webhook",
            WebhookError::NotOurs(_) => "wrong_api_key",
            WebhookError::NotRegistered => "not_registered",
            WebhookError::Apply(_) => "not_applied",
        };
        metrics::counter!("webhook_deliveries_total", "result" => result).increment(1);
        match &self {
            WebhookError::Unverified(e) => tracing::warn!(error = %e, "webhook delivery refused"),
            WebhookError::NotOurs(e) => tracing::warn!(error = %e, "webhook delivery refused"),
            WebhookError::NotRegistered => {
                tracing::warn!(
                    "webhook delivery before our registration completed; refused for now"
                )
            }
            WebhookError::Apply(e) => tracing::error!(error = %e, "webhook delivery not applied"),
        }
        (status, status.canonical_reason().unwrap_or("error")).into_response()
    }
}

#[tracing::instrument(name = "webhook", skip_all, fields(bytes = body.len()))]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, WebhookError> {
    let api_key = headers
        .get(jetpay::unspecified::CALLBACK_API_KEY_HEADER)
        .ok_or(NotOurs::MissingApiKey)?;
    let authorization = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let batch = state.verifier.verify(authorization, &body).await?;
    // The registration is cached; a mismatch rereads it once (it changes only when we
    // re-register, e.g. after Jetpay lost our webhook).
    let mut ours = registration(&state, false).await?;
    if !is_ours(&ours, api_key.as_bytes(), batch.webhook_id) {
        ours = registration(&state, true).await?;
    }
    if !bool::from(api_key.as_bytes().ct_eq(ours.api_key.as_bytes())) {
        return Err(NotOurs::WrongApiKey.into());
    }
    if batch.webhook_id != ours.webhook_id {
        return Err(NotOurs::OtherWebhook(batch.webhook_id).into());
    }
    let outcomes = state.backend.apply_events(&batch.events).await?;
    tracing::info!(
        webhook = batch.webhook_id,
        events = outcomes.len(),
        first = batch.events.first().map(|e| e.id),
        last = batch.events.last().map(|e| e.id),
        "webhook delivery applied"
    );
    metrics::counter!("webhook_deliveries_total", "result" => "applied").increment(1);
    state.gap_check.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

fn is_ours(registration: &WebhookRegistration, api_key: &[u8], webhook_id: i64) -> bool {
    bool::from(api_key.ct_eq(registration.api_key.as_bytes()))
        && webhook_id == registration.webhook_id
}

/// Our registration, from the cache unless `fresh`.
async fn registration(state: &AppState, fresh: bool) -> Result<WebhookRegistration, WebhookError> {
    if !fresh {
        let cached = state
            .registration
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let Some(cached) = cached {
            return Ok(cached);
        }
    }
    let stored = state
        .backend
        .store
        .webhook_registration(&state.callback_url)
        .await
        .map_err(|e| WebhookError::Apply(e.into()))?
        .ok_or(WebhookError::NotRegistered)?;
    *state
        .registration
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(stored.clone());
    Ok(stored)
}
