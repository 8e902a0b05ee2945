//! Building the router and binding the listener, shared by `main` and the integration tests
//! (which bind port 0).

use app::{shell, status::ServerInfo, App};
use axum::Router;
use leptos::prelude::*;
use leptos_axum::{generate_route_list, LeptosRoutes};
use tokio::net::TcpListener;

use crate::config::Config;

/// A bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    router: Router,
}

impl Application {
    pub async fn build(config: Config) -> std::io::Result<Self> {
        let mut leptos_options = get_configuration(None)
            .map(|c| c.leptos_options)
            .unwrap_or_default();
        leptos_options.site_addr = config.listen_addr;
        leptos_options.site_root = config.site_root.to_string_lossy().as_ref().into();
        if leptos_options.output_name.is_empty() {
            leptos_options.output_name = "saved-cards".into();
        }

        let listener = TcpListener::bind(config.listen_addr).await?;
        let server_info = ServerInfo {
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
