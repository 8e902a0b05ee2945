//! A stateful stand-in for Jetpay (Baseline Payments), faithful to what its developer guide
//! documents (`shared/jetpay-api.md`) and to the project's choices for what it leaves open
//! (`jetpay::unspecified`, shared with the client so both always agree).
//!
//! It serves the API (bearer tokens, contacts, tokenization URLs, webhooks), the hosted card
//! form, an asynchronous card service with test card numbers, an event log, and a batching
//! webhook dispatcher that signs every delivery with an RS256 JWT published in a JWKS. Tests can
//! inject delivery faults. The app's dev server embeds it with [`start`]; the `jetpay-sandbox`
//! binary runs it alone. See README.md for the test cards, the states and the fault JSON.

#![forbid(unsafe_code)]

mod api;
mod auth;
mod card_checks;
mod card_service;
mod config;
mod controls;
mod dashboard;
mod dashboard_actions;
mod dispatcher;
mod error;
mod events;
mod faults;
mod hosted_form;
mod html;
mod signing;
mod state;
mod store;
mod trigger;
mod webhooks;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use url::Url;

pub use config::{SandboxConfig, Storage};
pub use error::SandboxError;

use state::{AppState, Shared};

/// A running sandbox. Stop it with [`Sandbox::shutdown`]; dropping it leaves its tasks running
/// until the Tokio runtime ends.
pub struct Sandbox {
    base_url: Url,
    local_addr: SocketAddr,
    state: AppState,
    stop_server: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    card_service: JoinHandle<()>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("base_url", &self.base_url.as_str())
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// The base URL of the API (and of the URLs it hands out), ending in `/`.
    pub fn base_url(&self) -> Url {
        self.base_url.clone()
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops serving, stops the card service and the dispatcher, and closes the database.
    /// Work in progress is not lost: processing cards and undelivered events are in the
    /// database and resume on the next start (with file storage).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop_server.take() {
            let _ = stop.send(());
        }
        self.card_service.abort();
        dispatcher::stop_all(&self.state);
        if tokio::time::timeout(Duration::from_secs(5), &mut self.server)
            .await
            .is_err()
        {
            self.server.abort();
        }
        let _ = (&mut self.card_service).await;
        self.state.pool.close().await;
        tracing::info!(addr = %self.local_addr, "sandbox stopped");
    }
}

fn check_config(config: &SandboxConfig) -> Result<Vec<String>, SandboxError> {
    if config.api_tokens.is_empty() || config.api_tokens.iter().any(|t| t.trim().is_empty()) {
        return Err(SandboxError::Config(
            "api_tokens must hold at least one token, and no empty one".to_owned(),
        ));
    }
    if config.max_attempts == 0 {
        return Err(SandboxError::Config(
            "max_attempts must be at least 1".to_owned(),
        ));
    }
    if config.min_wait_seconds > 3600 {
        return Err(SandboxError::Config(
            "min_wait_seconds must be at most 3600".to_owned(),
        ));
    }
    if let Some(url) = &config.public_url {
        if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
            return Err(SandboxError::Config(format!(
                "public_url must be an http(s) URL with a host, not {url}"
            )));
        }
    }
    config
        .frame_ancestors
        .iter()
        .map(|origin| {
            Url::parse(origin)
                .ok()
                .filter(|u| matches!(u.scheme(), "http" | "https") && u.has_host())
                .map(|u| u.origin().ascii_serialization())
                .ok_or_else(|| {
                    SandboxError::Config(format!(
                        "frame_ancestors: {origin:?} is not an origin like http://localhost:3000"
                    ))
                })
        })
        .collect()
}

/// `http://<addr>/`, with an unspecified address replaced by loopback so the URL is usable.
fn local_base_url(addr: SocketAddr) -> Url {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Url::parse(&format!("http://{}/", SocketAddr::new(ip, addr.port())))
        .expect("a socket address makes a valid URL")
}

/// Binds, migrates, loads or creates the signing key, and spawns the HTTP server, the card
/// service and the webhook dispatcher as Tokio tasks.
pub async fn start(config: SandboxConfig) -> Result<Sandbox, SandboxError> {
    let frame_ancestors = check_config(&config)?;
    let pool = store::open(&config.storage).await?;
    let signer = signing::Signer::load_or_create(&pool).await?;
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|source| SandboxError::Io {
            what: format!("binding {}", config.listen_addr),
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| SandboxError::Io {
        what: "reading the bound address".to_owned(),
        source,
    })?;
    let mut base_url = config
        .public_url
        .clone()
        .unwrap_or_else(|| local_base_url(local_addr));
    if !base_url.path().ends_with('/') {
        let path = format!("{}/", base_url.path());
        base_url.set_path(&path);
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("jetpay-sandbox-webhooks")
        .build()
        .map_err(|e| SandboxError::Config(format!("HTTP client: {e}")))?;

    let state: AppState = Arc::new(Shared::new(
        pool,
        config,
        base_url.clone(),
        frame_ancestors,
        signer,
        http,
    ));

    let (stop_server, stopped) = oneshot::channel::<()>();
    let app = api::router(state.clone());
    let server = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "sandbox HTTP server failed");
        }
    });
    let card_service = tokio::spawn(card_service::run(state.clone()));
    dispatcher::start_all(&state).await?;
    tracing::info!(addr = %local_addr, base_url = %base_url, kid = %state.signer.current_kid(), "jetpay sandbox started");

    Ok(Sandbox {
        base_url,
        local_addr,
        state,
        stop_server: Some(stop_server),
        server,
        card_service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_is_checked() {
        let mut c = SandboxConfig::for_tests();
        assert!(check_config(&c).is_ok());
        c.api_tokens.clear();
        assert!(check_config(&c).is_err());
        let mut c = SandboxConfig::for_tests();
        c.frame_ancestors = vec!["localhost:3000; script-src *".to_owned()];
        assert!(check_config(&c).is_err());
        c.frame_ancestors = vec!["http://localhost:3000/some/path".to_owned()];
        assert_eq!(check_config(&c).unwrap(), vec!["http://localhost:3000"]);
    }

    #[test]
    fn unspecified_bind_address_becomes_loopback() {
        let url = local_base_url("0.0.0.0:4010".parse().unwrap());
        assert_eq!(url.as_str(), "http://127.0.0.1:4010/");
    }
}
