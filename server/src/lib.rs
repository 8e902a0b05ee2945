//! The axum server: typed configuration, router, Jetpay webhook receiver, live card stream,
//! background jobs, and the embedded Jetpay sandbox in development.

pub mod client_ip;
pub mod config;
pub mod health;
pub mod jetpay_setup;
pub mod jobs;
pub mod live;
pub mod security;
pub mod sessions;
pub mod startup;
pub mod state;
pub mod telemetry;
pub mod webhook;
