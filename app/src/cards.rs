//! Account → Saved cards: server functions and the page.
//!
//! The server renders the list once; after that the browser keeps its own copy in signals and
//! replaces it only with a list that loaded, so a refresh, an outage or a reconnect never rebuilds
//! the open card form, and rows are keyed by card id so what is open on a row stays with its card.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;
use serde::{Deserialize, Serialize};

pub use crate::components::cards_state::CardsState;
use crate::components::{
    add_card_panel::AddCardPanel,
    built_once::built_once,
    card_row::{AddCardButton, CardRow},
    notice::FormError,
};
use crate::live::{self, LiveEvent};
use crate::model::{CardState, CardView, ChangeKind};

/// What the page needs to know about Jetpay's hosted form: who may talk to it and in which words
/// (`jetpay::unspecified`, which only the server can read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedForm {
    /// The only origin whose messages the page believes.
    pub origin: String,
    pub submitted_message: String,
    pub resize_message: String,
    pub brand_field: String,
    pub last4_field: String,
    /// `false` for a Jetpay that posts nothing: the frame's second load then counts as submitted.
    pub posts_messages: bool,
}

/// The list and where the live stream should resume from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardsPage {
    pub cards: Vec<CardView>,
    /// The newest card change already reflected in `cards`.
    pub seq: i64,
    pub signed_in: bool,
    /// This month on the server (`model::month_index`), for "Expires soon".
    #[serde(default)]
    pub this_month: u32,
    #[serde(default)]
    pub hosted_form: HostedForm,
}

#[cfg(feature = "ssr")]
fn hosted_form() -> HostedForm {
    use jetpay::unspecified as u;
    HostedForm {
        origin: use_context::<crate::status::JetpayConnection>()
            .map(|c| c.jetpay_origin)
            .unwrap_or_default(),
        submitted_message: u::HOSTED_FORM_SUBMITTED_MESSAGE.into(),
        resize_message: u::HOSTED_FORM_RESIZE_MESSAGE.into(),
        brand_field: u::HOSTED_FORM_MESSAGE_BRAND_FIELD.into(),
        last4_field: u::HOSTED_FORM_MESSAGE_LAST4_FIELD.into(),
        posts_messages: u::HOSTED_FORM_POSTS_MESSAGES,
    }
}

#[server(endpoint = "list_cards", output = crate::codec::JsonText)]
pub async fn list_cards() -> Result<CardsPage, ServerFnError> {
    use crate::session;
    use chrono::Datelike;
    let today = chrono::Utc::now();
    let this_month = crate::model::month_index(today.year().unsigned_abs(), today.month());
    let Some(customer) = session::customer_id().await? else {
        return Ok(CardsPage {
            cards: vec![],
            seq: 0,
            signed_in: false,
            this_month,
            hosted_form: hosted_form(),
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
        this_month,
        hosted_form: hosted_form(),
    })
}

/// Where a refused plain form post (no JavaScript) sends the customer back to.
#[cfg(feature = "ssr")]
const CARDS_PATH: &str = "/account/cards";

/// A card id a page sent: anything but one of our ids names no card.
#[cfg(feature = "ssr")]
fn sent_card(card_id: &str) -> Result<crate::backend::CardId, crate::backend::AppError> {
    crate::backend::CardId::parse(card_id).ok_or(crate::backend::AppError::CardNotFound)
}

/// A plain form post goes back to the list. From the page's own script nothing navigates, so an
/// open card form stays open.
#[cfg(feature = "ssr")]
fn back_to_cards() {
    if crate::components::notice::is_plain_form_post() {
        leptos_axum::redirect(CARDS_PATH);
    }
}

/// Starts adding a card: the pending row is committed before this answers. `replaces` is a
/// failed or expired card that "Try again" retires at the same time.
#[server(endpoint = "add_card", output = crate::codec::JsonText)]
pub async fn add_card(replaces: Option<String>) -> Result<String, ServerFnError> {
    use crate::components::notice::refuse;
    use crate::session;
    let customer = match session::require_customer().await {
        Ok(c) => c,
        Err(e) => return Err(refuse(e, CARDS_PATH).await),
    };
    let backend = session::backend()?;
    let added = match backend
        .add_card(
            &customer,
            replaces
                .as_deref()
                .and_then(crate::backend::CardId::parse)
                .as_ref(),
            session::client_ip(),
        )
        .await
    {
        Ok(added) => added,
        Err(e) => return Err(refuse(e, CARDS_PATH).await),
    };
    leptos_axum::redirect(&format!("/account/cards?adding={}", added.card_id));
    Ok(added.card_id.to_string())
}

#[server(endpoint = "make_default_card", output = crate::codec::JsonText)]
pub async fn make_default_card(card_id: String) -> Result<(), ServerFnError> {
    use crate::components::notice::refuse;
    use crate::session;
    let result = match session::require_customer().await {
        Ok(customer) => match sent_card(&card_id) {
            Ok(card) => session::backend()?.make_default(&customer, &card).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        return Err(refuse(e, CARDS_PATH).await);
    }
    back_to_cards();
    Ok(())
}

#[server(endpoint = "remove_card", output = crate::codec::JsonText)]
pub async fn remove_card(card_id: String) -> Result<(), ServerFnError> {
    use crate::components::notice::refuse;
    use crate::session;
    let result = match session::require_customer().await {
        Ok(customer) => match sent_card(&card_id) {
            Ok(card) => session::backend()?.remove_card(&customer, &card).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        return Err(refuse(e, CARDS_PATH).await);
    }
    back_to_cards();
    Ok(())
}

/// Gives one of the customer's cards a nickname; an empty one clears it.
#[server(endpoint = "rename_card", output = crate::codec::JsonText)]
pub async fn rename_card(card_id: String, nickname: String) -> Result<(), ServerFnError> {
    use crate::components::notice::refuse;
    use crate::session;
    let result = match session::require_customer().await {
        Ok(customer) => match sent_card(&card_id) {
            Ok(card) => {
                session::backend()?
                    .set_nickname(&customer, &card, &nickname)
                    .await
            }
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        return Err(refuse(e, CARDS_PATH).await);
    }
    back_to_cards();
    Ok(())
}

/// The hosted form reported that the customer submitted it. `jetpay_card_id` is the id the form
/// named (absent when Jetpay posts no message); brand and last four are what it showed.
#[server(endpoint = "card_form_submitted", output = crate::codec::JsonText)]
pub async fn card_form_submitted(
    card_id: String,
    jetpay_card_id: Option<String>,
    brand: Option<String>,
    last4: Option<String>,
) -> Result<(), ServerFnError> {
    use crate::session;
    let customer = session::require_customer().await?;
    session::backend()?
        .card_form_submitted(
            &customer,
            &sent_card(&card_id)?,
            jetpay_card_id.as_deref(),
            brand.as_deref(),
            last4.as_deref(),
        )
        .await?;
    Ok(())
}

#[component]
pub fn SavedCardsPage() -> impl IntoView {
    // Loaded once; afterwards the page refreshes its own signals (see `CardsState`).
    let page = Resource::new(|| (), |_| list_cards());
    view! {
        <Title text="Saved cards"/>
        <h1 tabindex="-1">"Saved cards"</h1>
        <Transition fallback=|| view! { <p class="muted">"Loading your cards…"</p> }>
            // A `Suspend`, not a closure reading the resource, and the list `built_once`: the
            // boundary checks its children for pending reads once more after the resource
            // loaded, which would build the list (every row) there and again to render it (P4
            // in BENCHMARKS.md). Nothing here reruns: the resource never reloads.
            {Suspend::new(async move {
                match page.await {
                    Ok(page) => built_once(move || view! { <CardsView page=page/> }),
                    Err(_) => view! {
                        <p class="form-error" role="alert">
                            "We couldn't load your cards. Check your connection and reload the page."
                        </p>
                    }
                    .into_any(),
                }
            })}
        </Transition>
    }
}

#[component]
fn CardsView(page: CardsPage) -> impl IntoView {
    let state = CardsState::new(page);
    provide_context(state);
    let add = ServerAction::<AddCard>::new();
    let make_default = ServerAction::<MakeDefaultCard>::new();
    let remove = ServerAction::<RemoveCard>::new();
    let rename = ServerAction::<RenameCard>::new();
    provide_context(rename);

    // Whatever an action did, the list shows it once it answered.
    Effect::new(move |first: Option<()>| {
        add.version().track();
        make_default.version().track();
        remove.version().track();
        rename.version().track();
        if first.is_some() {
            state.refresh();
        }
    });

    // Follow live changes while signed in; stop (and let another tab lead) when signed out.
    Effect::new(move |_| {
        if state.signed_in.get() {
            live::follow(
                move || state.seq.try_get_untracked().unwrap_or_default(),
                move |event| match event {
                    LiveEvent::Change(change) => {
                        if state
                            .seq
                            .try_get_untracked()
                            .is_some_and(|seq| seq < change.seq)
                        {
                            state.seq.set(change.seq);
                        }
                        // Worded once the list shows the change, so the sentence can name
                        // the card as the page now shows it.
                        state.unannounced.try_update_value(|queue| {
                            queue.push((ChangeKind::parse(&change.announcement), change.card_id))
                        });
                        state.refresh();
                    }
                    LiveEvent::Poll | LiveEvent::SessionChanged => state.refresh(),
                },
            );
        }
    });

    // After a failed load, keep trying until one succeeds, whatever the stream is doing (it may
    // still look open while nothing gets through).
    #[cfg(feature = "hydrate")]
    if let Ok(retry) = set_interval_with_handle(
        move || {
            if state.reconnecting.try_get_untracked() == Some(true) {
                state.refresh();
            }
        },
        std::time::Duration::from_millis(live::POLL_MILLIS),
    ) {
        on_cleanup(move || retry.clear());
    }

    // The browser knows first when the network is gone, and when it is back.
    let offline = window_event_listener(leptos::ev::offline, move |_| state.reconnecting.set(true));
    let online = window_event_listener(leptos::ev::online, move |_| state.refresh());
    on_cleanup(move || {
        offline.remove();
        online.remove();
    });

    let query = use_query_map();
    let adding = Memo::new(move |_| query.with(|q| q.get("adding")));
    // The open form: only a new card id or URL changes it, never a refresh of the list.
    let panel = Memo::new(move |_| {
        let id = adding.get()?;
        state.cards.with(|cards| {
            cards
                .iter()
                .find(|c| c.id == id && c.state == CardState::Pending)
                .and_then(|c| c.form_url.clone())
                .map(|url| (id.clone(), url))
        })
    });

    // When the form closes by itself (the card was verified or refused), focus its row.
    Effect::new(move |previous: Option<Option<String>>| {
        let now = panel.with(|p| p.as_ref().map(|(id, _)| id.clone()));
        if let Some(Some(closed)) = previous {
            if now.is_none() {
                crate::components::focus::focus_card_row(&closed);
            }
        }
        now
    });

    let add_error = crate::components::notice::error_of(move || add.value().get());
    let default_error = crate::components::notice::error_of(move || make_default.value().get());
    let remove_error = crate::components::notice::error_of(move || remove.value().get());
    let rename_error = crate::components::notice::error_of(move || rename.value().get());
    let action_error = Signal::derive(move || {
        add_error
            .get()
            .or(default_error.get())
            .or(remove_error.get())
            .or(rename_error.get())
    });
    let ids = move || {
        state
            .cards
            .with(|cards| cards.iter().map(|c| c.id.clone()).collect::<Vec<_>>())
    };

    view! {
        <div class="visually-hidden" aria-live="polite" aria-atomic="true" data-testid="announcer">
            {move || state.announcement.get()}
        </div>
        <p class="reconnecting" role="status" data-testid="reconnecting">
            {move || state.reconnecting.get().then_some("Reconnecting… Your cards and the open form are kept.")}
        </p>
        <FormError message=action_error/>
        <Show
            when=move || state.signed_in.get()
            fallback=|| view! {
                <p class="empty" data-testid="signed-out">
                    <a href="/sign-in?next=/account/cards">"Sign in"</a>
                    " to see and add your saved cards."
                </p>
            }
        >
            {move || match panel.get() {
                Some((id, url)) => view! { <AddCardPanel card_id=id url=url/> }.into_any(),
                None => view! { <AddCardButton action=add replaces=None label="Add card"/> }.into_any(),
            }}
            <Show
                when=move || state.cards.with(|c| !c.is_empty())
                fallback=|| view! {
                    <p class="empty" data-testid="empty">
                        "You have no saved cards yet. Add a card to pay faster next time."
                    </p>
                }
            >
                <ul class="cards" aria-label="Your saved cards">
                    <For each=ids key=|id| id.clone() let:id>
                        <CardRow id=id add=add make_default=make_default remove=remove/>
                    </For>
                </ul>
            </Show>
        </Show>
    }
}
