//! Live card status in the browser: a server-sent event stream, with polling while it is down.
//!
//! Each event says "card X changed" (with a sentence for screen readers); the page then refetches
//! its list, so the list on screen is always what the server has, whatever order events came in.
//! The browser's EventSource resends `Last-Event-ID` when it reconnects, and the server replays
//! what was missed. While the stream is not open the page polls every two seconds, and reopens
//! the stream when the browser has given up on it.

use leptos::prelude::*;

use crate::cards::CardsPage;

/// Where the stream lives; the server mounts its route at the same path.
pub const STREAM_PATH: &str = "/account/cards/events";
/// How often the page polls while the stream is down, and checks on the stream.
pub const POLL_MILLIS: u64 = 2000;

#[cfg(not(feature = "hydrate"))]
pub fn connect(
    _page: Resource<Result<CardsPage, ServerFnError>>,
    _live_version: RwSignal<u64>,
    _announcement: RwSignal<String>,
) {
}

#[cfg(feature = "hydrate")]
pub fn connect(
    page: Resource<Result<CardsPage, ServerFnError>>,
    live_version: RwSignal<u64>,
    announcement: RwSignal<String>,
) {
    use wasm_bindgen::{closure::Closure, JsCast};
    use web_sys::{EventSource, MessageEvent};

    use crate::model::CardChange;

    let source = StoredValue::new_local(None::<EventSource>);

    let open = move || {
        let since = page
            .get_untracked()
            .and_then(Result::ok)
            .filter(|p| p.signed_in)
            .map(|p| p.seq);
        let Some(since) = since else { return };
        let Ok(es) = EventSource::new(&format!("{STREAM_PATH}?since={since}")) else {
            return;
        };
        let on_card = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
            if let Some(text) = event.data().as_string() {
                if let Ok(change) = serde_json::from_str::<CardChange>(&text) {
                    if !change.announcement.is_empty() {
                        announcement.set(change.announcement);
                    }
                }
            }
            live_version.update(|v| *v += 1);
        });
        let _ = es.add_event_listener_with_callback("card", on_card.as_ref().unchecked_ref());
        // The listener lives as long as the page; the EventSource is closed on cleanup.
        on_card.forget();
        source.set_value(Some(es));
    };

    // Open once the first list (with its seq) is there.
    Effect::new(move |opened: Option<bool>| {
        if opened == Some(true) {
            return true;
        }
        if page.get().is_some() {
            open();
            true
        } else {
            false
        }
    });

    if let Ok(handle) = set_interval_with_handle(
        move || {
            let state = source.with_value(|s| s.as_ref().map(|es| es.ready_state()));
            match state {
                Some(EventSource::OPEN) => {}
                Some(EventSource::CLOSED) => {
                    // The browser gave up (e.g. the server restarted and refused once): poll now
                    // and open a fresh stream.
                    source.update_value(|s| {
                        if let Some(es) = s.take() {
                            es.close();
                        }
                    });
                    live_version.update(|v| *v += 1);
                    open();
                }
                _ => live_version.update(|v| *v += 1),
            }
        },
        std::time::Duration::from_millis(POLL_MILLIS),
    ) {
        on_cleanup(move || {
            handle.clear();
            source.update_value(|s| {
                if let Some(es) = s.take() {
                    es.close();
                }
            });
        });
    }
}
