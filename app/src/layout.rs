//! The frame around every page: header with navigation, main area, footer.

use leptos::prelude::*;

use crate::{auth::AccountMenu, status::JetpayStatus};

#[component]
pub fn Layout(children: Children) -> impl IntoView {
    // The menu button only works once the WASM has taken over; before that the navigation is
    // simply always visible (see the CSS), so nothing depends on it.
    let (menu_open, set_menu_open) = signal(false);
    // Set once the browser has hydrated; end-to-end tests wait for it before clicking.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));

    view! {
        <div class="page" data-hydrated=move || hydrated.get().to_string()>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <header class="site-header">
                <a class="brand" href="/">"Platform"</a>
                <button
                    class="menu-toggle"
                    type="button"
                    aria-controls="site-nav"
                    aria-expanded=move || menu_open.get().to_string()
                    on:click=move |_| set_menu_open.update(|open| *open = !*open)
                >
                    "Menu"
                </button>
                <nav
                    id="site-nav"
                    aria-label="Main"
                    class:open=move || menu_open.get()
                >
                    <ul>
                        <li><a href="/">"Home"</a></li>
                        <li><a href="/account/cards">"Account → Saved cards"</a></li>
                        <li class="account"><AccountMenu/></li>
                    </ul>
                </nav>
            </header>
            <main id="main" tabindex="-1">{children()}</main>
            <footer class="site-footer">
                <JetpayStatus/>
            </footer>
        </div>
    }
}
