//! A client for Jetpay (Baseline Payments) as far as its public developer guide documents it.
//!
//! This crate knows nothing of the application that uses it. Everything the guide leaves open
//! (marked **U** in `shared/jetpay-api.md`) is decided in [`unspecified`], and only there, so a
//! change when the real answer is known is a change to one module.

pub mod unspecified;
pub mod wire;
