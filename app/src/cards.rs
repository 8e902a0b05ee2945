//! Account → Saved cards: server functions and the page.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

use crate::auth::{error_of, FormError};
use crate::model::{CardState, CardView};

/// The list and where the live stream should resume from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardsPage {
    pub cards: Vec<CardView>,
    /// The newest card change already reflected in `cards`.
    pub seq: i64,
    pub signed_in: bool,
}

#[server(endpoint = "list_cards")]
pub async fn list_cards() -> Result<CardsPage, ServerFnError> {
    use crate::session;
    let Some(customer) = session::customer_id().await? else {
        return Ok(CardsPage {
            cards: vec![],
            seq: 0,
            signed_in: false,
        });
    };
    let backend = session::backend()?;
    // Read the seq first: a change landing in between is then sent again, never missed.
    let seq = backend
        .store
        .latest_change(&customer)
        .await
        .map_err(crate::backend::AppError::from)?;
    let cards = backend.list_cards(&customer).await?;
    Ok(CardsPage {
        cards,
        seq,
        signed_in: true,
    })
}

/// Starts adding a card: the pending row is committed before this answers. `replaces` is a
/// failed or expired card that "Try again" retires at the same time.
#[server(endpoint = "add_card")]
pub async fn add_card(replaces: Option<String>) -> Result<String, ServerFnError> {
    use crate::session;
    let customer = session::require_customer().await?;
    let backend = session::backend()?;
    let added = backend
        .add_card(
            &customer,
            replaces.as_deref().filter(|s| !s.is_empty()),
            session::client_ip(),
        )
        .await?;
    leptos_axum::redirect(&format!("/account/cards?adding={}", added.card_id));
    Ok(added.card_id)
}

#[server(endpoint = "make_default_card")]
pub async fn make_default_card(card_id: String) -> Result<(), ServerFnError> {
    use crate::session;
    let customer = session::require_customer().await?;
    session::backend()?
        .make_default(&customer, &card_id)
        .await?;
    leptos_axum::redirect("/account/cards");
    Ok(())
}

#[server(endpoint = "remove_card")]
pub async fn remove_card(card_id: String) -> Result<(), ServerFnError> {
    use crate::session;
    let customer = session::require_customer().await?;
    session::backend()?.remove_card(&customer, &card_id).await?;
    leptos_axum::redirect("/account/cards");
    Ok(())
}

#[component]
pub fn SavedCardsPage() -> impl IntoView {
    let add = ServerAction::<AddCard>::new();
    let make_default = ServerAction::<MakeDefaultCard>::new();
    let remove = ServerAction::<RemoveCard>::new();
    // Bumped by the live stream (or the polling fallback) whenever something may have changed.
    let live_version = RwSignal::new(0u64);
    let announcement = RwSignal::new(String::new());
    let adding = move || use_query_map().with(|q| q.get("adding"));

    let page = Resource::new(
        move || {
            (
                add.version().get(),
                make_default.version().get(),
                remove.version().get(),
                live_version.get(),
            )
        },
        |_| list_cards(),
    );

    crate::live::connect(page, live_version, announcement);

    let add_error = error_of(move || add.value().get());
    let default_error = error_of(move || make_default.value().get());
    let remove_error = error_of(move || remove.value().get());
    let action_error = Signal::derive(move || {
        add_error
            .get()
            .or(default_error.get())
            .or(remove_error.get())
    });

    view! {
        <Title text="Saved cards"/>
        <h1>"Saved cards"</h1>
        <div class="visually-hidden" aria-live="polite" aria-atomic="true" data-testid="announcer">
            {move || announcement.get()}
        </div>
        <FormError message=action_error/>
        <Transition fallback=|| view! { <p class="muted">"Loading your cards…"</p> }>
            {move || {
                page.get().map(|result| match result {
                    Err(_) => view! {
                        <p class="form-error" role="alert">
                            "We couldn't load your cards. Check your connection and reload the page."
                        </p>
                    }.into_any(),
                    Ok(page) if !page.signed_in => view! {
                        <p class="empty">
                            <a href="/sign-in?next=/account/cards">"Sign in"</a>
                            " to see and add your saved cards."
                        </p>
                    }.into_any(),
                    Ok(page) => {
                        let adding_card = adding()
                            .and_then(|id| page.cards.iter().find(|c| c.id == id).cloned())
                            .filter(|c| c.state == CardState::Pending && c.form_url.is_some());
                        let cards = page.cards.clone();
                        view! {
                            {match adding_card {
                                Some(card) => view! { <AddCardPanel card=card/> }.into_any(),
                                None => view! { <AddCardButton action=add replaces=None label="Add card"/> }.into_any(),
                            }}
                            <CardList cards=cards add=add make_default=make_default remove=remove/>
                        }.into_any()
                    }
                })
            }}
        </Transition>
    }
}

#[component]
fn AddCardButton(
    action: ServerAction<AddCard>,
    replaces: Option<String>,
    label: &'static str,
) -> impl IntoView {
    view! {
        <ActionForm action=action attr:class="inline">
            {replaces.map(|id| view! { <input type="hidden" name="replaces" value=id/> })}
            <button class="primary" type="submit" disabled=move || action.pending().get()>
                {move || if action.pending().get() { "Opening secure form…" } else { label }}
            </button>
        </ActionForm>
    }
}

/// Jetpay's hosted form in a frame. Card details go from this frame straight to Jetpay.
#[component]
fn AddCardPanel(card: CardView) -> impl IntoView {
    let url = card.form_url.clone().unwrap_or_default();
    view! {
        <section class="add-card" aria-labelledby="add-card-heading">
            <h2 id="add-card-heading">"Add a card"</h2>
            <p class="muted" id="add-card-help">
                "Enter your card in Jetpay's secure form below. Your card number goes straight to Jetpay; we never see it. "
                "The card appears in your list as Verifying… until the bank confirms it."
            </p>
            <iframe
                class="jetpay-frame"
                src=url
                title="Jetpay secure card form"
                aria-describedby="add-card-help"
            ></iframe>
            <a class="button" href="/account/cards">"Close"</a>
        </section>
    }
}

#[component]
fn CardList(
    cards: Vec<CardView>,
    add: ServerAction<AddCard>,
    make_default: ServerAction<MakeDefaultCard>,
    remove: ServerAction<RemoveCard>,
) -> impl IntoView {
    if cards.is_empty() {
        return view! {
            <p class="empty" data-testid="empty">
                "You have no saved cards yet. Add a card to pay faster next time."
            </p>
        }
        .into_any();
    }
    view! {
        <ul class="cards" aria-label="Your saved cards">
            {cards
                .into_iter()
                .map(|card| view! { <CardRow card=card add=add make_default=make_default remove=remove/> })
                .collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn CardRow(
    card: CardView,
    add: ServerAction<AddCard>,
    make_default: ServerAction<MakeDefaultCard>,
    remove: ServerAction<RemoveCard>,
) -> impl IntoView {
    let title = card.title();
    let expiry = card.expiry().map(|e| format!("Expires {e}"));
    let state = card.state;
    let id = card.id.clone();
    let remove_label = format!("Remove {title}");
    view! {
        <li class="card" data-testid="card" data-card-id=card.id.clone() data-state=format!("{state:?}").to_lowercase()>
            <div class="card-main">
                <span class="card-title">{title.clone()}</span>
                {card.is_default.then(|| view! { <span class="badge default">"Default"</span> })}
                <span class=state.css_class() data-testid="state">{state.label()}</span>
            </div>
            <div class="card-meta muted">
                {expiry.map(|e| view! { <span>{e}</span>" · " })}
                <span>"Added "{card.added_on.clone()}</span>
            </div>
            {card.failure.clone().map(|reason| view! { <p class="failure" data-testid="failure">{reason}</p> })}
            <div class="card-actions">
                {(state == CardState::Failed || state == CardState::Expired)
                    .then(|| view! { <AddCardButton action=add replaces=Some(id.clone()) label="Try again"/> })}
                {(state == CardState::Active && !card.is_default).then(|| {
                    let id = id.clone();
                    view! {
                        <ActionForm action=make_default attr:class="inline">
                            <input type="hidden" name="card_id" value=id/>
                            <button type="submit" aria-label=format!("Make {title} the default")>"Make default"</button>
                        </ActionForm>
                    }
                })}
                <details class="confirm">
                    <summary aria-label=remove_label.clone()>"Remove"</summary>
                    <div class="confirm-body">
                        <p>{format!("Remove {}? You can add it again later.", card.title())}</p>
                        <ActionForm action=remove attr:class="inline">
                            <input type="hidden" name="card_id" value=id.clone()/>
                            <button type="submit" class="danger">"Yes, remove"</button>
                        </ActionForm>
                    </div>
                </details>
            </div>
        </li>
    }
}
