//! Jetpay's hosted form in a frame. Card details go from this frame straight to Jetpay.
//!
//! The panel is created when a form opens and lives until it closes: list refreshes, outages
//! and reconnects do not touch it, so what the customer typed stays. The hosted page tells us
//! (by `postMessage`, see `jetpay::unspecified`) its height and when it was submitted; only
//! messages from Jetpay's origin and from this very frame count.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::cards::{card_form_submitted, remove_card, CardsState};
use crate::model::CardView;

#[component]
pub fn AddCardPanel(card_id: String, url: String) -> impl IntoView {
    let state = expect_context::<CardsState>();
    let frame = NodeRef::<leptos::html::Iframe>::new();
    let height = RwSignal::new(None::<u32>);
    let already = state.cards.with_untracked(|cards| {
        cards
            .iter()
            .find(|c| c.id == card_id)
            .is_some_and(|c: &CardView| c.submitted)
    });
    let submitted = RwSignal::new(already);
    let loads = StoredValue::new(0u32);
    let posts_messages = state.hosted_form.with_value(|h| h.posts_messages);

    let report_submitted = {
        let card_id = card_id.clone();
        move |jetpay_card_id: Option<String>, brand: Option<String>, last4: Option<String>| {
            if submitted.get_untracked() {
                return;
            }
            submitted.set(true);
            let card_id = card_id.clone();
            leptos::task::spawn_local(async move {
                let _ = card_form_submitted(card_id, jetpay_card_id, brand, last4).await;
                state.refresh();
            });
        }
    };

    // Move the customer into the form as it opens.
    Effect::new(move |_| {
        if let Some(frame) = frame.get() {
            let _ = frame.focus();
        }
    });

    #[cfg(feature = "hydrate")]
    {
        let report_submitted = report_submitted.clone();
        let handle = window_event_listener_untyped("message", move |event| {
            on_message(event, frame, height, state, &report_submitted);
        });
        on_cleanup(move || handle.remove());
    }

    let on_load = {
        let report_submitted = report_submitted.clone();
        move |_| {
            loads.update_value(|n| *n += 1);
            // A Jetpay that posts nothing: the form's own post is the frame's second load.
            if !posts_messages && loads.get_value() >= 2 {
                report_submitted(None, None, None);
            }
        }
    };

    let navigate = use_navigate();
    let close = {
        let card_id = card_id.clone();
        move |ev: leptos::ev::MouseEvent| {
            ev.prevent_default();
            let card_id = card_id.clone();
            let navigate = navigate.clone();
            if posts_messages && !submitted.get_untracked() {
                // Nothing was entered: the opened form is not a card. Discard it.
                state
                    .cards
                    .update(|cards| cards.retain(|c| c.id != card_id));
                leptos::task::spawn_local(async move {
                    let _ = remove_card(card_id).await;
                    state.refresh();
                });
                state.announce("The card form was closed. Nothing was saved.");
            }
            navigate("/account/cards", Default::default());
        }
    };

    view! {
        <section class="add-card" aria-labelledby="add-card-heading" data-testid="add-card-panel">
            <h2 id="add-card-heading">"Add a card"</h2>
            <p class="muted" id="add-card-help">
                "Enter your card in Jetpay's secure form below. Your card number goes straight to Jetpay; we never see it. "
                "The card appears in your list as Verifying… until the bank confirms it."
            </p>
            <iframe
                class="jetpay-frame"
                node_ref=frame
                src=url
                title="Jetpay secure card form"
                aria-describedby="add-card-help"
                style=move || height.get().map(|h| format!("height: {h}px"))
                on:load=on_load
            ></iframe>
            <a class="button" href="/account/cards" on:click=close>"Close"</a>
        </section>
    }
}

#[cfg(feature = "hydrate")]
fn on_message(
    event: web_sys::Event,
    frame: NodeRef<leptos::html::Iframe>,
    height: RwSignal<Option<u32>>,
    state: CardsState,
    report_submitted: &impl Fn(Option<String>, Option<String>, Option<String>),
) {
    use wasm_bindgen::{JsCast, JsValue};
    let Ok(event) = event.dyn_into::<web_sys::MessageEvent>() else {
        return;
    };
    let hosted = state.hosted_form.get_value();
    if hosted.origin.is_empty() || event.origin() != hosted.origin {
        return;
    }
    let ours = match (
        event.source(),
        frame.get_untracked().and_then(|f| f.content_window()),
    ) {
        (Some(source), Some(window)) => JsValue::from(source) == JsValue::from(window),
        _ => false,
    };
    if !ours {
        return;
    }
    let data = event.data();
    let field = |name: &str| {
        js_sys::Reflect::get(&data, &JsValue::from_str(name))
            .ok()
            .and_then(|v| v.as_string())
    };
    match field("type") {
        Some(kind) if kind == hosted.resize_message => {
            let h = js_sys::Reflect::get(&data, &JsValue::from_str("height"))
                .ok()
                .and_then(|v| v.as_f64());
            if let Some(h) = h.filter(|h| h.is_finite()) {
                // Bounded, so a misbehaving page cannot push ours around.
                height.set(Some(h.clamp(200.0, 2000.0).ceil() as u32 + 4));
            }
        }
        Some(kind) if kind == hosted.submitted_message => report_submitted(
            field("creditCardId"),
            field(&hosted.brand_field),
            field(&hosted.last4_field),
        ),
        _ => {}
    }
}
