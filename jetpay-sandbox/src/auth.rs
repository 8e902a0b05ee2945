//! Bearer-token authentication of the API routes, as Jetpay documents it.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Compares in constant time, so response timing says nothing about a token's prefix.
fn accepted(tokens: &[String], given: &str) -> bool {
    tokens.iter().fold(false, |ok, t| {
        ok | bool::from(t.as_bytes().ct_eq(given.as_bytes()))
    })
}

/// Middleware: 401 `{"detail": …}` unless a configured token is presented.
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Some(token) = header.and_then(bearer) else {
        return ApiError::Unauthorized("Not authenticated").into_response();
    };
    if !accepted(&state.config.api_tokens, token) {
        tracing::info!("request with an unknown API token");
        return ApiError::Unauthorized("Invalid API token").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
    }

    #[test]
    fn accepts_only_configured_tokens() {
        let tokens = vec!["one".to_owned(), "two".to_owned()];
        assert!(accepted(&tokens, "two"));
        assert!(!accepted(&tokens, "tw"));
        assert!(!accepted(&tokens, "three"));
    }
}
