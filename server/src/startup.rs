//! Building the router and binding the listener, shared by `main` and the integration tests
//! (which bind port 0).

use app::{shell, status::JetpayConnection, App};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;

use crate::config::Config;

/// The name cargo-leptos gives the WASM, JS and CSS files (`name` in the workspace metadata).
const OUTPUT_NAME: &str = "saved-cards";

/// A bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(config: Config) -> std::io::Result<Self> {
        // Built here rather than by `get_configuration`, so the binary behaves the same whether
        // cargo-leptos, Playwright or an operator starts it.
        let leptos_options = LeptosOptions::builder()
            .output_name(OUTPUT_NAME)
            .site_root(config.site_root.to_string_lossy().as_ref())
            .site_pkg_dir("pkg")
            .site_addr(config.listen_addr)
            .env(if config.production { Env::PROD } else { Env::DEV })
            .build();

        let listener = TcpListener::bind(config.listen_addr).await?;
        let server_info = JetpayConnection {
            jetpay_mode: "sandbox".into(),
            jetpay_origin: "not started yet".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        };

        let routes = generate_route_list(App);
        let router = Router::new()
            .leptos_routes_with_context(
                &leptos_options,
                routes,
                {
                    let info = server_info.clone();
                    move || provide_context(info.clone())
                },
                {
                    let leptos_options = leptos_options.clone();
                    move || shell(leptos_options.clone())
                },
            )
            .fallback(leptos_axum::file_and_error_handler(shell))
            .with_state(leptos_options);
        Ok(Self { listener, router })
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("bound listener has an address")
    }

    pub async fn run(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router.into_make_service()).await
    }
}
