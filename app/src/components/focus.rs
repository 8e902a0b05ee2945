//! Moving keyboard focus where the customer's attention goes. Nothing happens on the server.

/// Once the browser has rendered the change that is under way, focuses the first element that
/// matches one of `selectors`, in order.
pub fn focus_later(selectors: Vec<String>) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::JsCast;
        leptos::prelude::set_timeout(
            move || {
                let element = selectors.iter().find_map(|selector| {
                    leptos::prelude::document()
                        .query_selector(selector)
                        .ok()
                        .flatten()
                        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok())
                });
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
    let _ = selectors;
}

/// Focuses a card's row, or the Add card button when the row is gone (a discarded card).
pub fn focus_card_row(card_id: &str) {
    let id: String = card_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    focus_later(vec![
        format!(r#"li[data-card-id="{id}"]"#),
        r#"[data-testid="add-card"] button"#.into(),
    ]);
}
