//! The domain's one error type, and the one place it becomes what a customer reads.
//!
//! Internal details (database, Jetpay bodies) are logged here and never shown: a customer gets a
//! plain sentence that says what to do next.

use leptos::prelude::ServerFnError;

use super::store::StoreError;

///
/// It deliberately does not implement `std::error::Error`: server_fn turns any such error into a
/// `ServerFnError` with its `Display` text, which would show internals. Our own
/// `From<AppError> for ServerFnError` below logs the detail and sends only the customer sentence.
#[derive(Debug)]
pub enum AppError {
    NotSignedIn,
    /// The sentence says what to fix.
    InvalidInput(String),
    EmailTaken,
    WrongCredentials,
    SignInRateLimited,
    /// Too many requests of one kind from one client address.
    RateLimited,
    TooManyPending(i64),
    /// The customer asked for this many tokenization URLs within the last hour.
    TooManyCardsAdded(i64),
    CardNotFound,
    Jetpay(jetpay::Error),
    Store(StoreError),
    Internal(String),
}

impl std::fmt::Display for AppError {
    /// For logs: the internal detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::Jetpay(e) => write!(f, "Jetpay request failed: {e}"),
            AppError::Store(e) => write!(f, "store: {e}: {:?}", e),
            AppError::Internal(e) => write!(f, "internal: {e}"),
            other => write!(f, "{other:?}"),
        }
    }
}

impl From<jetpay::Error> for AppError {
    fn from(e: jetpay::Error) -> Self {
        AppError::Jetpay(e)
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::EmailTaken => AppError::EmailTaken,
            StoreError::NotFound => AppError::CardNotFound,
            other => AppError::Store(other),
        }
    }
}

impl AppError {
    /// What the customer reads.
    pub fn customer_message(&self) -> String {
        match self {
            AppError::NotSignedIn => "Please sign in to continue.".into(),
            AppError::InvalidInput(sentence) => sentence.clone(),
            AppError::EmailTaken => {
                "An account with this email already exists. Sign in instead, or use another email.".into()
            }
            AppError::WrongCredentials => "That email and password don't match. Check them and try again.".into(),
            AppError::SignInRateLimited => {
                "Too many sign-in attempts. Wait 15 minutes, then try again.".into()
            }
            AppError::RateLimited => {
                "Too many requests from your network. Wait a minute, then try again.".into()
            }
            AppError::TooManyCardsAdded(limit) => format!(
                "You've started adding {limit} cards in the last hour. Wait an hour before adding another, or use one of your saved cards."
            ),
            AppError::TooManyPending(cap) => format!(
                "You already have {cap} cards being verified. Wait for them to finish, or remove one, before adding another."
            ),
            AppError::CardNotFound => "That card isn't in your saved cards. Reload the page to see your current cards.".into(),
            AppError::Jetpay(_) => {
                "We couldn't reach our payment provider. Nothing was saved. Try again in a minute.".into()
            }
            AppError::Store(StoreError::Busy(_)) => {
                "We're very busy right now. Nothing was lost. Try again in a moment.".into()
            }
            AppError::Store(_) | AppError::Internal(_) => {
                "Something went wrong on our side. Nothing was lost. Try again in a moment.".into()
            }
        }
    }

    fn log(&self) {
        match self {
            AppError::Jetpay(e) => tracing::warn!(error = %e, "Jetpay call failed"),
            AppError::Store(e) => tracing::error!(error = ?e, "database error"),
            AppError::Internal(e) => tracing::error!(error = %e, "internal error"),
            other => tracing::debug!(error = %other, "request refused"),
        }
    }

    /// The HTTP status a server function answers with for this error.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            AppError::NotSignedIn | AppError::WrongCredentials => S::UNAUTHORIZED,
            AppError::InvalidInput(_) => S::UNPROCESSABLE_ENTITY,
            AppError::EmailTaken | AppError::TooManyPending(_) => S::CONFLICT,
            AppError::SignInRateLimited
            | AppError::RateLimited
            | AppError::TooManyCardsAdded(_) => S::TOO_MANY_REQUESTS,
            AppError::CardNotFound => S::NOT_FOUND,
            AppError::Jetpay(_) => S::BAD_GATEWAY,
            AppError::Store(StoreError::Busy(_)) => S::SERVICE_UNAVAILABLE,
            AppError::Store(_) | AppError::Internal(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The one place a domain error becomes a server function's answer: logged in full, answered
/// with its status and the customer's sentence only.
impl From<AppError> for ServerFnError {
    fn from(e: AppError) -> Self {
        e.log();
        if let Some(response) = leptos::prelude::use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(e.status());
        }
        ServerFnError::new(e.customer_message())
    }
}
