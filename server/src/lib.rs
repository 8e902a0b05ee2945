//! The axum server: configuration, router, and (in later layers) the webhook receiver, live
//! updates and background jobs.

pub mod config;
pub mod startup;
