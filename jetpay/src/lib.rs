//! A client for Jetpay (Baseline Payments) as far as its public developer guide documents it.
//!
//! This crate knows nothing of the application that uses it. Everything the guide leaves open
//! (marked **U** in `shared/jetpay-api.md`) is decided in [`unspecified`], and only there, so a
//! change when the real answer is known is a change to one module.
//!
//! - [`client`]: the typed API client ([`Client`]) for contacts, card tokenization and webhooks.
//! - [`verify`]: the webhook delivery verifier ([`Verifier`]): RS256 JWT, JWKS by `kid`,
//!   `payload_hash` over the raw body.
//! - [`wire`]: request, response and webhook payload types.
//! - [`error`]: the client's [`Error`].
//! - `test_util` (feature `test-util`, for other crates' tests only): helpers the workspace's
//!   test suites share.

#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod unspecified;
pub mod verify;
pub mod wire;

#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
#[cfg(test)]
mod testkit;

pub use client::{ApiToken, Client, ClientConfig};
pub use error::Error;
pub use verify::{Verifier, VerifyError};
