//! Messages about a refused action, with and without JavaScript.
//!
//! With JavaScript an action's error comes back to the page that sent it. A plain form post
//! (no JavaScript) lands on the server function's URL instead, so the server keeps the sentence
//! in the customer's session under a one-time id and sends the browser back to the page with
//! `?notice=<id>`; the page shows the sentence in place. Only sentences the server itself stored
//! can appear: the address carries an id, never text.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

#[cfg(feature = "ssr")]
const NOTICE_KEY: &str = "form_notice";

/// Turns a domain error into the server function's error; for a plain form post, also keeps the
/// sentence for the page and sends the browser back to `back_to`.
#[cfg(feature = "ssr")]
pub async fn refuse(e: crate::backend::AppError, back_to: &str) -> ServerFnError {
    let sentence = e.customer_message();
    // Logs the detail and sets the status; a redirect below replaces the status.
    let error = ServerFnError::from(e);
    if is_plain_form_post() {
        let id = uuid::Uuid::new_v4().simple().to_string();
        if let Ok(session) = crate::session::session().await {
            if session.insert(NOTICE_KEY, (&id, &sentence)).await.is_ok() {
                let separator = if back_to.contains('?') { '&' } else { '?' };
                leptos_axum::redirect(&format!("{back_to}{separator}notice={id}"));
            }
        }
    }
    error
}

/// A browser's own form submission asks for HTML; the server function client never does.
#[cfg(feature = "ssr")]
pub fn is_plain_form_post() -> bool {
    use_context::<http::request::Parts>()
        .and_then(|parts| {
            parts
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.contains("text/html"))
        })
        .unwrap_or(false)
}

/// The sentence kept for `id` by [`refuse`], if it is this session's latest.
#[server(endpoint = "form_notice", output = crate::codec::JsonText)]
pub async fn form_notice(id: String) -> Result<Option<String>, ServerFnError> {
    let session = crate::session::session().await?;
    let kept: Option<(String, String)> = session.get(NOTICE_KEY).await.ok().flatten();
    Ok(kept.and_then(|(kept_id, sentence)| (kept_id == id).then_some(sentence)))
}

fn error_text(e: &ServerFnError) -> String {
    match e {
        ServerFnError::ServerError(message) => message.clone(),
        _ => "We couldn't reach the server. Check your connection and try again.".to_owned(),
    }
}

/// The customer-facing message of an action's last result, if it failed.
pub fn error_of<T: 'static>(
    value: impl Fn() -> Option<Result<T, ServerFnError>> + Send + Sync + 'static,
) -> Signal<Option<String>> {
    Signal::derive(move || match value() {
        Some(Err(e)) => Some(error_text(&e)),
        _ => None,
    })
}

/// Shows a failed action's message in an alert region: the latest action's error, or the one a
/// plain form post was sent back with.
#[component]
pub fn FormError(message: Signal<Option<String>>) -> impl IntoView {
    let query = use_query_map();
    let notice_id = move || query.with(|q| q.get("notice"));
    let notice = Resource::new(notice_id, |id| async move {
        match id {
            Some(id) => form_notice(id).await.ok().flatten(),
            None => None,
        }
    });
    view! {
        <div role="alert" class="form-error" aria-live="assertive" data-testid="form-error">
            <Suspense>
                {move || {
                    let shown = message.get().or_else(|| notice.get().flatten());
                    shown.map(|m| view! { <p>{m}</p> })
                }}
            </Suspense>
        </div>
    }
}
