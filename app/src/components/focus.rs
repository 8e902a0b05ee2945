//! Moving keyboard focus where the customer's attention goes. Nothing happens on the server.

/// Focuses the first element matching `selector` once the browser has rendered the change that
/// made it appear.
pub fn focus_later(selector: String) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        leptos::prelude::set_timeout(
            move || {
                let element = leptos::prelude::document()
                    .query_selector(&selector)
                    .ok()
                    .flatten()
                    .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
                if let Some(element) = element {
                    // Headings and rows take focus only when asked, never by Tab.
                    if !element.has_attribute("tabindex") && element.tab_index() < 0 {
                        let _ = element.set_attribute("tabindex", "-1");
                    }
                    let _ = element.focus();
                }
            },
            std::time::Duration::from_millis(0),
        );
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = selector;
}

/// Focuses a card's row, or the Add card button when the row is gone (a discarded card).
pub fn focus_card_row(card_id: &str) {
    #[cfg(feature = "hydrate")]
    {
        let selector = format!(r#"li[data-card-id="{}"]"#, css_escape(card_id));
        let exists = leptos::prelude::document()
            .query_selector(&selector)
            .ok()
            .flatten()
            .is_some();
        if exists {
            focus_later(selector);
        } else {
            focus_later("[data-testid=\"add-card\"] button".into());
        }
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = card_id;
}

/// Card ids are UUIDs; anything else is dropped rather than put into a selector.
#[cfg(feature = "hydrate")]
fn css_escape(id: &str) -> String {
    id.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}
