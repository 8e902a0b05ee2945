//! How the sandbox is configured when it is embedded (the app's dev server) or run as a binary.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use jetpay::unspecified;

/// Where the sandbox keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// Gone when the sandbox stops: for tests.
    Memory,
    /// A SQLite file (WAL mode); contacts, cards, events, webhooks and the signing keys survive a
    /// restart, so a developer's pending cards and undelivered events do too.
    File(PathBuf),
}

/// Everything the sandbox can be told. [`Default`] gives the documented behaviour of Jetpay;
/// [`SandboxConfig::for_tests`] gives fast timings for tests.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Address to listen on; port 0 picks a free port (see [`crate::Sandbox::local_addr`]).
    pub listen_addr: SocketAddr,
    pub storage: Storage,
    /// Bearer tokens the API accepts. Must not be empty.
    pub api_tokens: Vec<String>,
    /// Base URL used in the URLs the sandbox hands out (tokenization URLs). `None` means
    /// `http://<bound address>`.
    pub public_url: Option<url::Url>,
    /// Origins (e.g. `http://localhost:3000`) allowed to frame the hosted card form and to
    /// receive its `postMessage`.
    pub frame_ancestors: Vec<String>,
    /// How long the card service takes for a normal card.
    pub processing_time: Duration,
    /// How long the card service takes for the "slow" test card.
    pub slow_processing_time: Duration,
    /// Lifetime of a tokenization URL.
    pub url_ttl: Duration,
    /// Lowest `max_wait_seconds` a webhook may ask for. Jetpay documents 60; tests use 0.
    pub min_wait_seconds: u32,
    /// First retry delay after a failed delivery; doubles per attempt, with full jitter, capped at
    /// [`unspecified::RETRY_MAX_SECONDS`].
    pub retry_base: Duration,
    /// Failed attempts in a row after which a webhook goes to `failed`.
    pub max_attempts: u32,
    /// A delivery that has not answered 2xx within this counts as failed.
    pub delivery_timeout: Duration,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 4010)),
            storage: Storage::File(PathBuf::from("./data/jetpay-sandbox.db")),
            api_tokens: vec!["sandbox-token".to_owned()],
            public_url: None,
            frame_ancestors: vec![
                "http://127.0.0.1:3000".to_owned(),
                "http://localhost:3000".to_owned(),
            ],
            processing_time: Duration::from_millis(300),
            slow_processing_time: Duration::from_secs(5),
            url_ttl: Duration::from_secs(unspecified::TOKENIZATION_URL_TTL_SECONDS),
            min_wait_seconds: 60,
            retry_base: Duration::from_secs(unspecified::RETRY_BASE_SECONDS),
            max_attempts: unspecified::MAX_DELIVERY_ATTEMPTS,
            delivery_timeout: Duration::from_secs(unspecified::DELIVERY_TIMEOUT_SECONDS),
        }
    }
}

impl SandboxConfig {
    /// In memory, on a free port, with fast timings: card service 50 ms (slow card 1 s), any
    /// `max_wait_seconds` from 0, retries from 100 ms, `failed` after 4 attempts.
    pub fn for_tests() -> Self {
        SandboxConfig {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            storage: Storage::Memory,
            api_tokens: vec!["sandbox-test-token".to_owned()],
            processing_time: Duration::from_millis(50),
            slow_processing_time: Duration::from_secs(1),
            min_wait_seconds: 0,
            retry_base: Duration::from_millis(100),
            max_attempts: 4,
            ..SandboxConfig::default()
        }
    }
}
