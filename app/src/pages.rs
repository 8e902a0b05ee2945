//! The routes' pages.

use leptos::prelude::*;
use leptos_meta::Title;

#[component]
pub fn Home() -> impl IntoView {
    view! {
        <Title text="Home"/>
        <h1 tabindex="-1">"Welcome"</h1>
        <p>"Manage the cards you pay with under "<a href="/account/cards">"Account → Saved cards"</a>"."</p>
    }
}

#[component]
pub fn NotFound() -> impl IntoView {
    #[cfg(feature = "ssr")]
    {
        if let Some(response) = use_context::<leptos_axum::ResponseOptions>() {
            response.set_status(http::StatusCode::NOT_FOUND);
        }
    }
    view! {
        <Title text="Page not found"/>
        <h1 tabindex="-1">"Page not found"</h1>
        <p>"There is nothing at this address. Go back to "<a href="/account/cards">"your saved cards"</a>"."</p>
    }
}
