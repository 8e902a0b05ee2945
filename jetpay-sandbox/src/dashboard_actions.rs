//! The dashboard's buttons: plain HTML forms that POST to `/_sandbox/actions/{action}` and are
//! redirected back (303) to the dashboard, which then says what was done.
//!
//! The dashboard has no login (a local development tool), so these routes take no API token.
//! Instead every form carries a secret made at start and printed only into the dashboard page:
//! another web site cannot read the page, so it cannot post the forms (no cross-site request
//! forgery against a sandbox on localhost). `Sec-Fetch-Site: cross-site` is refused as well.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Router};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::card_service::Outcome;
use crate::error::ApiError;
use crate::state::AppState;
use crate::{controls, html, signing, trigger};

pub fn router() -> Router<AppState> {
    Router::new().route("/_sandbox/actions/{action}", post(act))
}

/// Every field any of the forms sends; each action reads its own.
#[derive(Debug, Default, Deserialize)]
pub struct ActionForm {
    #[serde(default)]
    csrf: String,
    /// `off` when the dashboard's auto-refresh was off, to come back the same way.
    refresh: Option<String>,
    card_id: Option<String>,
    /// `succeeded` or a failure reason.
    result: Option<String>,
    /// A webhook identifier, or `all` for every webhook (the global pause fault).
    webhook: Option<String>,
    from: Option<String>,
    to: Option<String>,
    n: Option<String>,
}

/// The dashboard's URL, with the action to show and the refresh mode.
fn back_to(state: &AppState, seq: u64, refresh_off: bool) -> String {
    format!(
        "{}_sandbox?done={seq}{}",
        state.base_url.path(),
        if refresh_off { "&refresh=off" } else { "" }
    )
}

/// The sentence of an error, for the dashboard.
pub fn reason(e: &ApiError) -> String {
    match e {
        ApiError::NotFound(msg) => (*msg).to_owned(),
        ApiError::Conflict(msg) => msg.clone(),
        ApiError::Validation(issues) => issues
            .iter()
            .map(|i| i.msg.as_str())
            .collect::<Vec<_>>()
            .join("; "),
        ApiError::Unauthorized(msg) => (*msg).to_owned(),
        ApiError::Page { title, .. } => (*title).to_owned(),
        ApiError::Database(_) | ApiError::Internal(_) => {
            "internal error (see the sandbox's log)".to_owned()
        }
    }
}

fn forbidden(message: &'static str) -> Response {
    (
        StatusCode::FORBIDDEN,
        html::message_page("This form cannot be used", message),
    )
        .into_response()
}

fn number(field: &str, value: Option<&str>) -> Result<i64, String> {
    value
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("{field} is required"))?
        .parse()
        .map_err(|_| format!("{field} must be a whole number"))
}

/// `POST /_sandbox/actions/{action}`.
async fn act(
    State(state): State<AppState>,
    Path(action): Path<String>,
    headers: HeaderMap,
    Form(form): Form<ActionForm>,
) -> Response {
    let cross_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == "cross-site" || v == "same-site");
    if cross_site {
        return forbidden("The sandbox's dashboard forms only work from the dashboard itself.");
    }
    let secret_ok: bool = form
        .csrf
        .as_bytes()
        .ct_eq(state.dashboard_secret.as_bytes())
        .into();
    if !secret_ok {
        return forbidden("This form is out of date (the sandbox restarted?). Reload the dashboard and try again.");
    }
    let seq = match run(&state, &action, &form).await {
        Ok(text) => state.record_action(true, text),
        Err(text) => state.record_action(false, format!("Could not {action}: {text}")),
    };
    let refresh_off = form.refresh.as_deref() == Some("off");
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, back_to(&state, seq, refresh_off))],
    )
        .into_response()
}

/// Does one action; answers the sentence to show.
async fn run(state: &AppState, action: &str, form: &ActionForm) -> Result<String, String> {
    let webhook = || form.webhook.as_deref().unwrap_or_default();
    match action {
        "trigger" => {
            let card_id = form.card_id.as_deref().unwrap_or_default();
            let outcome = match form.result.as_deref() {
                Some("succeeded") => Outcome::Success,
                Some(reason) => Outcome::from_failure_reason(reason)
                    .ok_or_else(|| format!("unknown result {reason:?}"))?,
                None => return Err("no result chosen".to_owned()),
            };
            let done = trigger::record(state, card_id, outcome)
                .await
                .map_err(|e| reason(&e))?;
            Ok(trigger::describe(card_id, &done))
        }
        "resend" => {
            let from = number("From event id", form.from.as_deref())?;
            let to = match form.to.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(_) => Some(number("To event id", form.to.as_deref())?),
            };
            let done = controls::queue_resend(state, webhook(), from, to)
                .await
                .map_err(|e| reason(&e))?;
            Ok(done.describe())
        }
        "pause" | "resume" => {
            let paused = action == "pause";
            if webhook() == "all" {
                state.faults.set_paused(paused);
                state.kick_dispatcher();
                return Ok(if paused {
                    "Paused every webhook (fault pause): nothing is sent until resumed.".to_owned()
                } else {
                    "Resumed every webhook (fault pause cleared).".to_owned()
                });
            }
            let done = controls::set_paused(state, webhook(), paused)
                .await
                .map_err(|e| reason(&e))?;
            Ok(done.describe())
        }
        "fail-next" => {
            let n = number("N", form.n.as_deref())?;
            let n = u32::try_from(n).map_err(|_| "N must be between 0 and 4294967295")?;
            state.faults.set_fail_times(n);
            state.kick_dispatcher();
            Ok(fail_next_sentence(n))
        }
        "rotate" => {
            let (kid, previous) = signing::rotate_key(state).await.map_err(|e| reason(&e))?;
            Ok(format!(
                "Rotated the signing key: new kid {kid} (previous {previous} stays in the JWKS)."
            ))
        }
        _ => Err("no such action".to_owned()),
    }
}

/// What `fail_times = n` means, in words (shared with the CLI's output).
pub fn fail_next_sentence(n: u32) -> String {
    match n {
        0 => "No delivery attempt will be made to fail (fail_times 0).".to_owned(),
        1 => "The next delivery attempt (to any webhook) will fail without sending; then deliveries are normal.".to_owned(),
        n => format!("The next {n} delivery attempts (to any webhook) will fail without sending; then deliveries are normal."),
    }
}
