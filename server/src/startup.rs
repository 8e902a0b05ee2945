//! Building the application and binding its listener, shared by `main` and the integration tests
//! (which bind port 0).

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
};

use app::{
    backend::{Backend, Settings},
    shell,
    status::JetpayConnection as JetpayStatus,
    App,
};
use axum::{
    extract::DefaultBodyLimit,
    middleware,
    routing::{get, post},
    serve::ListenerExt,
    Router,
};
use leptos::prelude::*;
use leptos_axum::{generate_route_list, AxumRouteListing, LeptosRoutes};
use tokio::{net::TcpListener, sync::Notify};
use tokio_util::sync::CancellationToken;
use tower_sessions::{cookie::SameSite, Expiry, SessionManagerLayer};
use url::Url;

use crate::{
    client_ip,
    config::Config,
    health,
    jetpay_setup::{self, JetpayConnection, WebhookSettings},
    jobs::Jobs,
    live, security,
    state::AppState,
    telemetry, webhook,
};

pub const SESSION_COOKIE: &str = "saved_cards_session";
/// In production the `__Host-` prefix makes the browser insist on Secure, Path=/ and no Domain,
/// so no subdomain can plant or read the session cookie.
const SESSION_COOKIE_PROD: &str = "__Host-saved_cards_session";
/// The largest form or server function body a page may send.
const MAX_FORM_BYTES: usize = 64 * 1024;
/// A too-large form up to this size is read to its end before the 413: closing a connection with
/// unread data resets it, and a proxy in between then loses the answer (the client sees a reset,
/// not a 413). Larger ones are cut off at once.
const DRAIN_BYTES: usize = 1024 * 1024;

/// The app's pages, worked out once per process. Leptos works them out by rendering the app with
/// every resource held back, by a flag global to the process; worked out again as a second server
/// in the process starts (the tests, the benchmark's two instances), it would leave the pages the
/// first server renders meanwhile waiting forever for their data.
fn route_list() -> Vec<AxumRouteListing> {
    static ROUTES: OnceLock<Vec<AxumRouteListing>> = OnceLock::new();
    ROUTES.get_or_init(|| generate_route_list(App)).clone()
}

/// Refuses a form whose declared length is over [`MAX_FORM_BYTES`] with a plain 413, after
/// reading (and dropping) its body when it is at most [`DRAIN_BYTES`].
async fn refuse_large_forms(
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    match declared {
        Some(length) if length > MAX_FORM_BYTES => {
            if length <= DRAIN_BYTES {
                let _ = axum::body::to_bytes(request.into_body(), DRAIN_BYTES).await;
            }
            (
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "That was more than a form can hold. Shorten what you typed and try again.",
            )
                .into_response()
        }
        _ => next.run(request).await,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("database {url}: {source}")]
    Database {
        url: String,
        source: app::backend::store::StoreError,
    },
    #[error("session store: {0}")]
    Sessions(#[from] sqlx::Error),
    #[error(transparent)]
    Jetpay(#[from] jetpay_setup::SetupError),
}

/// A bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// `METRICS_ADDR`'s own listener and router, when configured.
    metrics: Option<(TcpListener, Router)>,
    pub backend: Arc<Backend>,
    pub jetpay: JetpayConnection,
    pub public_url: Url,
    /// Cancelled when shutdown begins: live streams end with a reconnect hint, jobs stop.
    pub shutdown: CancellationToken,
    jobs: tokio::task::JoinHandle<()>,
    shutdown_grace: std::time::Duration,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let listener = TcpListener::bind(config.listen_addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.listen_addr,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .expect("bound listener has an address");
        let public_url = config.public_url.clone().unwrap_or_else(|| {
            Url::parse(&format!("http://{local_addr}")).expect("socket address makes a URL")
        });

        // The metrics recorder first: the background jobs and the webhook registration start
        // below and set gauges at once (a gauge set before the recorder exists is lost).
        let prometheus = telemetry::prometheus();

        // Built here rather than by `get_configuration`, so the binary behaves the same whether
        // cargo-leptos, Playwright or an operator starts it.
        let leptos_options = LeptosOptions::builder()
            .output_name(config.output_name.as_str())
            .site_root(config.site_root.to_string_lossy().as_ref())
            .site_pkg_dir(config.site_pkg_dir.as_str())
            .site_addr(local_addr)
            .reload_port(config.reload_port)
            .env(if config.production {
                Env::PROD
            } else {
                Env::DEV
            })
            .build();

        let store = app::backend::store::connect(&config.database_url)
            .await
            .map_err(|source| StartError::Database {
                url: crate::config::redact_password(&config.database_url),
                source,
            })?;
        let jetpay = jetpay_setup::connect(&config, &public_url).await?;
        let settings = Settings {
            pending_timeout: config.pending_timeout,
            dev_mode: config.seeds_demo_customer(),
            ip_requests_per_minute: config.ip_requests_per_minute,
            cards_added_per_hour: i64::from(config.cards_added_per_hour),
            ..Settings::default()
        };
        let backend = Backend::new(store.clone(), jetpay.client.clone(), settings);
        if config.seeds_demo_customer() {
            if let Err(e) = backend.seed_demo_customer().await {
                tracing::warn!(error = %e, "could not seed the demo customer");
            }
        }

        let session_store = crate::sessions::Sessions::open(store.pool()).await?;
        let sessions = SessionManagerLayer::new(session_store.clone())
            .with_name(if config.production {
                SESSION_COOKIE_PROD
            } else {
                SESSION_COOKIE
            })
            .with_path("/")
            .with_http_only(true)
            .with_same_site(SameSite::Lax)
            .with_secure(config.production)
            .with_expiry(Expiry::OnInactivity(
                tower_sessions::cookie::time::Duration::days(14),
            ));

        let callback_url = public_url
            .join("/webhooks/jetpay")
            .expect("static path joins")
            .to_string();
        let webhook_settings = WebhookSettings {
            callback_url: callback_url.clone(),
            max_wait_seconds: config.webhook_max_wait_seconds,
            max_batch_size: config.webhook_max_batch_size,
        };
        let (leader, leads) = tokio::sync::watch::channel(false);
        tokio::spawn(jetpay_setup::register_webhook(
            backend.clone(),
            webhook_settings.clone(),
            leads,
        ));
        let gap_check = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let jobs = Jobs {
            backend: backend.clone(),
            webhook: webhook_settings,
            sweep_interval: config.sweep_interval,
            gap_grace: config.gap_grace,
            max_replays: config.gap_max_replays,
            gap_check: gap_check.clone(),
            sessions: session_store.clone(),
            shutdown: shutdown.clone(),
            leader,
        }
        .spawn();
        let verifier = jetpay::Verifier::new(jetpay.client.clone());
        {
            // Load Jetpay's keys now rather than on the first delivery (readiness reports them).
            let verifier = verifier.clone();
            tokio::spawn(async move { verifier.ensure_keys().await });
        }

        let session_watch = live::SessionWatch::default();
        tokio::spawn(
            session_watch
                .clone()
                .run(session_store.clone(), shutdown.clone()),
        );
        let state = AppState {
            leptos_options: leptos_options.clone(),
            backend: backend.clone(),
            verifier,
            gap_check,
            callback_url,
            registration: Default::default(),
            session_watch,
            streams: live::StreamSlots::default(),
            shutdown: shutdown.clone(),
        };
        let status = JetpayStatus {
            jetpay_mode: if jetpay.is_sandbox() {
                "sandbox"
            } else {
                "jetpay"
            }
            .into(),
            jetpay_origin: jetpay.origin(),
            version: env!("CARGO_PKG_VERSION").into(),
        };
        let headers = security::Headers {
            jetpay_origin: jetpay.origin(),
            dev_reload: (!config.production).then_some(leptos_options.reload_port),
            hsts: config.production,
        };
        let allowed_origins = security::AllowedOrigins::new(&public_url, !config.production);
        let client_ip = client_ip::ClientIpSource::new(config.trusted_client_ip_header.clone());

        let routes = route_list();
        // The same context for pages, server functions and the not-found page, whose header
        // needs the backend as much as any page's.
        let context = {
            let backend = backend.clone();
            move || {
                provide_context(status.clone());
                provide_context(backend.clone());
            }
        };
        let pages = Router::new()
            .leptos_routes_with_context(&state, routes, context.clone(), {
                let leptos_options = leptos_options.clone();
                move || shell(leptos_options.clone())
            })
            .route(app::live::STREAM_PATH, get(live::stream))
            .fallback(leptos_axum::file_and_error_handler_with_context::<
                AppState,
                _,
            >(context, shell))
            .layer(middleware::from_fn_with_state(
                allowed_origins,
                security::same_origin_only,
            ))
            .layer(sessions)
            .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
            // A larger body is refused with 413 before anything uses it.
            .layer(tower_http::limit::RequestBodyLimitLayer::new(
                MAX_FORM_BYTES,
            ))
            .layer(middleware::from_fn(refuse_large_forms));
        let router = Router::new()
            .route(
                "/webhooks/jetpay",
                post(webhook::receive).layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES)),
            )
            .route("/health", get(health::health))
            .route("/ready", get(health::ready))
            .merge(pages)
            .layer(middleware::from_fn_with_state(
                headers,
                security::set_headers,
            ))
            .layer(middleware::from_fn_with_state(
                client_ip,
                client_ip::establish,
            ))
            .layer(middleware::from_fn(telemetry::count_requests))
            .with_state(state);
        let metrics_route = Router::new()
            .route("/metrics", get(telemetry::metrics))
            .with_state(prometheus);
        let (router, metrics) = match config.metrics_addr {
            None => (router.merge(metrics_route), None),
            Some(addr) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartError::Bind { addr, source })?;
                (router, Some((listener, metrics_route)))
            }
        };
        // Outermost: a request id (the proxy's, when trusted), echoed on the response, and one
        // span per request carrying it, with an access log line.
        let (set_request_id, propagate_request_id) = telemetry::request_id_layers();
        let router = router.layer(
            tower::ServiceBuilder::new()
                .layer(middleware::from_fn_with_state(
                    telemetry::TrustRequestId(config.trusted_client_ip_header.is_some()),
                    telemetry::strip_untrusted_request_id,
                ))
                .layer(set_request_id)
                .layer(propagate_request_id)
                .layer(telemetry::access_log()),
        );

        Ok(Self {
            listener,
            router,
            metrics,
            backend,
            jetpay,
            public_url,
            shutdown,
            jobs,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address `/metrics` has its own listener on, when `METRICS_ADDR` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics
            .as_ref()
            .and_then(|(listener, _)| listener.local_addr().ok())
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully.
    pub async fn run(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `signal` completes, then: stop accepting; end live streams with a
    /// reconnect hint; let in-flight requests (an Add card waiting on Jetpay, a webhook batch)
    /// finish, for at most `SHUTDOWN_GRACE_SECS`; stop the jobs; close the database pool.
    pub async fn run_until(
        self,
        signal: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let shutdown = self.shutdown.clone();
        if let Some((listener, router)) = self.metrics {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let served = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { shutdown.cancelled().await })
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener stopped");
                }
            });
        }
        // TCP_NODELAY: pages are streamed in pieces; with Nagle's algorithm each piece after the
        // first on a kept-alive connection waits ~40 ms for the client's delayed ACK.
        let listener = self.listener.tap_io(|stream| {
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "could not set TCP_NODELAY");
            }
        });
        let serve = axum::serve(
            listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown({
            let shutdown = shutdown.clone();
            async move {
                signal.await;
                tracing::info!("shutting down: no new connections; finishing in-flight requests");
                shutdown.cancel();
            }
        });
        let grace = self.shutdown_grace;
        let result = tokio::select! {
            served = serve => served,
            _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "in-flight requests did not finish in time; exiting anyway");
                Ok(())
            }
        };
        let _ = self.jobs.await;
        self.backend.store.close().await;
        #[cfg(feature = "sandbox")]
        if let Some(sandbox) = self.jetpay.sandbox {
            sandbox.shutdown().await;
        }
        tracing::info!("stopped");
        result
    }
}

/// SIGTERM (systemd, containers) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
