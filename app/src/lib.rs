//! The Leptos application, shared by the server (SSR, feature `ssr`) and the browser (hydrate).
//!
//! Server-only code lives behind the `ssr` feature; everything else compiles for both sides.

pub mod auth;
pub mod cards;
pub mod codec;
pub mod components;
pub mod layout;
pub mod live;
pub mod model;
pub mod pages;
pub mod status;

#[cfg(feature = "ssr")]
pub mod backend;
#[cfg(feature = "ssr")]
pub mod session;

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, Link, MetaTags, Title};
use leptos_router::{
    components::{Route, Router, Routes},
    path, SsrMode,
};

/// The HTML document around the app. Only the server renders it.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    session::provide_csp_nonce();
    // The stylesheet's name comes from the server's Leptos options (cargo-leptos' environment),
    // not from a name written here.
    let stylesheet = format!("/{}/{}.css", options.site_pkg_dir, options.output_name);
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <link rel="stylesheet" id="leptos" href=stylesheet/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();

    view! {
        <Link rel="icon" type_="image/svg+xml" href="/favicon.svg"/>
        <Title formatter=|text| format!("{text} · Platform")/>
        <Router>
            <layout::Layout>
                <Routes fallback=pages::NotFound>
                    // In-order streaming: the HTML arrives complete, so pages work without WASM
                    // or JavaScript (out-of-order streaming swaps Suspense content in with JS).
                    <Route path=path!("") view=pages::Home ssr=SsrMode::InOrder/>
                    <Route path=path!("/account/cards") view=cards::SavedCardsPage ssr=SsrMode::InOrder/>
                    <Route path=path!("/account/cards/") view=cards::SavedCardsPage ssr=SsrMode::InOrder/>
                    <Route path=path!("/sign-in") view=auth::SignInPage ssr=SsrMode::InOrder/>
                    <Route path=path!("/sign-up") view=auth::SignUpPage ssr=SsrMode::InOrder/>
                </Routes>
            </layout::Layout>
        </Router>
    }
}
