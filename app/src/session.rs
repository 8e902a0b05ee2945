//! Server-side access to the backend and the signed-in customer from inside server functions.

use std::sync::Arc;

use leptos::prelude::*;
use tower_sessions::Session;

use crate::backend::{AppError, Backend, CustomerId};

/// The session key holding the signed-in customer's id.
pub const CUSTOMER_KEY: &str = "customer_id";

/// This response's Content-Security-Policy nonce, put in the request's extensions by the server's
/// header layer; [`provide_csp_nonce`] hands it to Leptos so its inline scripts carry it.
#[derive(Debug, Clone)]
pub struct CspNonce(pub Arc<str>);

/// The client's address as the server established it (the peer, or a trusted proxy's header),
/// put in the request's extensions by the server; rate limits key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp(pub std::net::IpAddr);

fn request_parts() -> Option<http::request::Parts> {
    use_context::<http::request::Parts>()
}

/// Makes Leptos use the header layer's nonce (instead of one of its own that no header names).
pub fn provide_csp_nonce() {
    if let Some(nonce) = request_parts().and_then(|p| p.extensions.get::<CspNonce>().cloned()) {
        provide_context(leptos::nonce::Nonce::from_value(nonce.0));
    }
}

/// The client's address; `None` only outside a request (tests calling the backend directly).
pub fn client_ip() -> Option<ClientIp> {
    request_parts().and_then(|p| p.extensions.get::<ClientIp>().copied())
}

pub fn backend() -> Result<Arc<Backend>, AppError> {
    use_context::<Arc<Backend>>().ok_or_else(|| AppError::Internal("backend not provided".into()))
}

pub async fn session() -> Result<Session, AppError> {
    leptos_axum::extract::<Session>()
        .await
        .map_err(|e| AppError::Internal(format!("session layer missing: {e}")))
}

/// The signed-in customer's id, if any.
pub async fn customer_id() -> Result<Option<CustomerId>, AppError> {
    let session = session().await?;
    session
        .get::<String>(CUSTOMER_KEY)
        .await
        .map(|id| id.map(CustomerId::new))
        .map_err(|e| AppError::Internal(format!("session read: {e}")))
}

pub async fn require_customer() -> Result<CustomerId, AppError> {
    customer_id().await?.ok_or(AppError::NotSignedIn)
}

/// Starts a signed-in session. The session id is rotated first, so an id planted before sign-in
/// (session fixation) is worthless.
pub async fn sign_in(customer_id: &CustomerId) -> Result<(), AppError> {
    let session = session().await?;
    session
        .cycle_id()
        .await
        .map_err(|e| AppError::Internal(format!("session cycle: {e}")))?;
    session
        .insert(CUSTOMER_KEY, customer_id.as_str())
        .await
        .map_err(|e| AppError::Internal(format!("session write: {e}")))
}

pub async fn sign_out() -> Result<(), AppError> {
    let session = session().await?;
    session
        .flush()
        .await
        .map_err(|e| AppError::Internal(format!("session flush: {e}")))
}

/// Reads the customer id from a session outside Leptos (the live stream route).
pub async fn customer_of(session: &Session) -> Option<CustomerId> {
    session
        .get::<String>(CUSTOMER_KEY)
        .await
        .ok()
        .flatten()
        .map(CustomerId::new)
}
