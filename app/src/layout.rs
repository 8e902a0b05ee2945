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
    let route_announcement = RwSignal::new(String::new());
    announce_navigation(route_announcement);

    view! {
        <div class="page" data-hydrated=move || hydrated.get().to_string()>
            // `rel="external"`: the router leaves the link to us; we move focus, not just scroll.
            <a class="skip-link" href="#main" rel="external" on:click=skip_to_main>"Skip to content"</a>
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
            <div class="visually-hidden" aria-live="polite" aria-atomic="true" data-testid="route-announcer">
                {move || route_announcement.get()}
            </div>
            <main id="main" tabindex="-1">{children()}</main>
            <footer class="site-footer">
                <JetpayStatus/>
            </footer>
        </div>
    }
}

fn skip_to_main(ev: leptos::ev::MouseEvent) {
    ev.prevent_default();
    crate::components::focus::focus_later(vec!["#main".into()]);
}

/// After a client-side navigation, focus the new page's main heading and say which page it is,
/// as a full page load would for a screen reader.
fn announce_navigation(announcement: RwSignal<String>) {
    let location = leptos_router::hooks::use_location();
    Effect::new(move |previous: Option<String>| {
        let path = location.pathname.get();
        if previous.is_some_and(|p| p != path) {
            #[cfg(feature = "hydrate")]
            set_timeout(
                move || {
                    let heading = document().query_selector("main h1").ok().flatten();
                    if let Some(heading) = heading {
                        announcement.set(heading.text_content().unwrap_or_default());
                    }
                    crate::components::focus::focus_later(vec!["main h1".into()]);
                },
                std::time::Duration::from_millis(50),
            );
            #[cfg(not(feature = "hydrate"))]
            let _ = announcement;
        }
        path
    });
}
