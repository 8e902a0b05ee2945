//! One saved card in the list, and the Add card / Try again button.
//!
//! A row is created once per card id and reads its card from the page's list, so whatever is open
//! on it (the Remove confirmation) stays with that card when other cards come and go.

use leptos::prelude::*;

use super::brand::BrandMark;
use crate::cards::{AddCard, CardsState, MakeDefaultCard, RemoveCard, RenameCard};
use crate::model::{CardView, ExpiryStatus, Progress};

#[component]
pub fn AddCardButton(
    action: ServerAction<AddCard>,
    replaces: Option<String>,
    label: &'static str,
) -> impl IntoView {
    view! {
        <ActionForm action=action attr:class="inline" attr:data-testid="add-card">
            {replaces.map(|id| view! { <input type="hidden" name="replaces" value=id/> })}
            <button class="primary" type="submit" disabled=move || action.pending().get()>
                {move || if action.pending().get() { "Opening secure form…" } else { label }}
            </button>
        </ActionForm>
    }
}

/// What a customer reads as the card's name: "Visa •••• 4242" on screen, "Visa ending 4242" for
/// screen readers.
#[component]
fn CardTitle(card: CardView) -> impl IntoView {
    let spoken = card.title();
    let shown = match &card.last4 {
        Some(last4) => format!("{} •••• {last4}", card.brand_name()),
        None => card.card_name(),
    };
    view! {
        <span class="card-title">
            <span class="visually-hidden">{spoken}</span>
            <span aria-hidden="true">
                {card.nickname.map(|n| view! { <span class="nickname">{n}</span>" · " })}
                {shown}
            </span>
        </span>
    }
}

#[component]
pub fn CardRow(
    id: String,
    add: ServerAction<AddCard>,
    make_default: ServerAction<MakeDefaultCard>,
    remove: ServerAction<RemoveCard>,
) -> impl IntoView {
    let state = expect_context::<CardsState>();
    let card = {
        let id = id.clone();
        Memo::new(move |_| {
            state
                .cards
                .with(|cards| cards.iter().find(|c| c.id == id).cloned())
        })
    };
    let progress = Memo::new(move |_| card.with(|c| c.as_ref().map(CardView::progress)));
    let expiry_status = Memo::new(move |_| {
        let this_month = state.this_month.get();
        card.with(|c| c.as_ref().and_then(|c| c.expiry_status(this_month)))
    });
    let title = move || card.with(|c| c.as_ref().map(CardView::title).unwrap_or_default());

    let main = move || {
        card.get().map(|c| {
            let brand = c.brand.clone();
            let is_default = c.is_default;
            view! {
                <BrandMark brand=brand/>
                <CardTitle card=c/>
                {is_default.then(|| view! { <span class="badge default">"Default"</span> })}
            }
        })
    };
    let expiry_badge = move || {
        expiry_status.get().and_then(|s| match s {
            ExpiryStatus::Soon => {
                Some(view! { <span class="badge soon" data-testid="expiry">"Expires soon"</span> })
            }
            ExpiryStatus::Expired => {
                Some(view! { <span class="badge failed" data-testid="expiry">"Expired"</span> })
            }
            ExpiryStatus::Valid => None,
        })
    };
    let meta = move || {
        card.get().map(|c| {
            view! {
                {c.expiry().map(|e| view! { <span>"Expires "{e}</span>" · " })}
                <span>"Added "{c.added_on.clone()}</span>
            }
        })
    };
    let problem = move || {
        card.with(|c| c.as_ref().and_then(CardView::problem))
            .map(|sentence| view! { <p class="failure" data-testid="failure">{sentence}</p> })
    };
    // What decides the buttons; the buttons are rebuilt only when one of these changes.
    let action_key = Memo::new(move |_| {
        card.with(|c| {
            c.as_ref()
                .map(|c| (c.progress(), c.is_default, c.form_url.is_some(), c.title()))
        })
    });
    let row_id = id.clone();
    let actions = move || {
        let id = row_id.clone();
        let (progress, is_default, has_form, title) = action_key.get()?;
        match progress {
            Progress::Failed | Progress::NotCompleted => Some(
                view! { <AddCardButton action=add replaces=Some(id) label="Try again"/> }.into_any(),
            ),
            Progress::Active => (!is_default).then(|| {
                view! {
                    <ActionForm action=make_default attr:class="inline">
                        <input type="hidden" name="card_id" value=id/>
                        <button type="submit" aria-label=format!("Make {title} the default")>"Make default"</button>
                    </ActionForm>
                }
                .into_any()
            }),
            Progress::WaitingForDetails => Some(
                view! {
                    {has_form.then(|| view! {
                        <a class="button primary" href=format!("/account/cards?adding={id}")>"Continue"</a>
                    })}
                    <ActionForm action=remove attr:class="inline">
                        <input type="hidden" name="card_id" value=id.clone()/>
                        <button type="submit" aria-label=format!("Discard {title}")>"Discard"</button>
                    </ActionForm>
                    <a class="button nojs-only" href="/account/cards">"Refresh"</a>
                }
                .into_any(),
            ),
            // Without JavaScript nothing updates the page by itself: offer a refresh.
            Progress::Verifying => Some(
                view! { <a class="button nojs-only" href="/account/cards">"Refresh"</a> }.into_any(),
            ),
        }
    };
    let removable = move || {
        progress
            .get()
            .is_some_and(|p| p != Progress::WaitingForDetails)
    };
    let confirm_id = id.clone();
    let nickname_id = id.clone();

    view! {
        <li
            class="card"
            tabindex="-1"
            data-testid="card"
            data-card-id=id
            data-state=move || progress.get().map(Progress::code).unwrap_or_default()
        >
            <div class="card-main">
                {main}
                {expiry_badge}
                <span
                    class=move || progress.get().map(Progress::css_class).unwrap_or("badge")
                    data-testid="state"
                >
                    {move || progress.get().map(Progress::label).unwrap_or_default()}
                </span>
            </div>
            <div class="card-meta muted">{meta}</div>
            {problem}
            <div class="card-actions">
                {actions}
                <Show when=move || progress.get() == Some(Progress::Active)>
                    <NicknameForm
                        card_id=nickname_id.clone()
                        title=Signal::derive(title)
                        current=Signal::derive(move || card.with(|c| c.as_ref().and_then(|c| c.nickname.clone())))
                    />
                </Show>
                <Show when=removable>
                    <RemoveConfirm card_id=confirm_id.clone() title=Signal::derive(title) remove=remove/>
                </Show>
            </div>
        </li>
    }
}

/// "Remove" opens a confirmation (a `<details>`, so it works without JavaScript too); Cancel or
/// Escape closes it and returns focus to "Remove".
#[component]
fn RemoveConfirm(
    card_id: String,
    title: Signal<String>,
    remove: ServerAction<RemoveCard>,
) -> impl IntoView {
    let open = RwSignal::new(false);
    let summary = NodeRef::<leptos::html::Summary>::new();
    let close = move || {
        open.set(false);
        if let Some(summary) = summary.get_untracked() {
            let _ = summary.focus();
        }
    };
    view! {
        <Disclosure class="confirm" open=open on_escape=Callback::new(move |()| close())>
            <summary node_ref=summary aria-label=move || format!("Remove {}", title.get())>"Remove"</summary>
            <div class="confirm-body">
                <p>{move || format!("Remove {}? You can add it again later.", title.get())}</p>
                <ActionForm action=remove attr:class="inline">
                    <input type="hidden" name="card_id" value=card_id/>
                    <button type="submit" class="danger">"Yes, remove"</button>
                </ActionForm>
                " "
                <a
                    class="button"
                    href="/account/cards"
                    on:click=move |ev| {
                        ev.prevent_default();
                        close();
                    }
                >
                    "Cancel"
                </a>
            </div>
        </Disclosure>
    }
}

/// "Nickname" opens a small form to name the card (a `<details>`, so it works without
/// JavaScript); saving or Escape closes it.
#[component]
fn NicknameForm(
    card_id: String,
    title: Signal<String>,
    current: Signal<Option<String>>,
) -> impl IntoView {
    let rename = expect_context::<ServerAction<RenameCard>>();
    let open = RwSignal::new(false);
    let input_id = format!("nickname-{card_id}");
    // Close once a save has answered.
    Effect::new(move |first: Option<()>| {
        rename.version().track();
        if first.is_some() {
            open.set(false);
        }
    });
    view! {
        <Disclosure
            class="confirm nickname-form"
            open=open
            on_escape=Callback::new(move |()| open.set(false))
        >
            <summary aria-label=move || format!("Nickname for {}", title.get())>"Nickname"</summary>
            <div class="confirm-body">
                <ActionForm action=rename attr:class="stack">
                    <input type="hidden" name="card_id" value=card_id/>
                    <label for=input_id.clone()>"Nickname (optional)"</label>
                    <input
                        id=input_id
                        name="nickname"
                        maxlength="40"
                        autocomplete="off"
                        value=move || current.get().unwrap_or_default()
                    />
                    <button type="submit" class="primary">"Save nickname"</button>
                </ActionForm>
            </div>
        </Disclosure>
    }
}

/// A `<details>` (it opens and closes without JavaScript too) whose open state is the `open`
/// signal, kept in step with the browser's toggling; Escape closes it through `on_escape`, which
/// decides where focus goes.
#[component]
fn Disclosure(
    class: &'static str,
    open: RwSignal<bool>,
    on_escape: Callback<()>,
    children: Children,
) -> impl IntoView {
    let details = NodeRef::<leptos::html::Details>::new();
    view! {
        <details
            class=class
            node_ref=details
            prop:open=move || open.get()
            on:toggle=move |_| {
                if let Some(details) = details.get_untracked() {
                    open.set(details.open());
                }
            }
            on:keydown=move |ev| {
                // Ask the element, not the signal: its `toggle` event arrives a task later, so
                // an Escape right after opening would find the signal still closed.
                let is_open = details.get_untracked().is_some_and(|d| d.open());
                if ev.key() == "Escape" && is_open {
                    ev.prevent_default();
                    on_escape.run(());
                }
            }
        >
            {children()}
        </details>
    }
}
