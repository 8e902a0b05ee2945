//! The dashboard's buttons: plain HTML forms (rendered here) that POST to
//! `/_sandbox/actions/{action}` (handled here) and are redirected back (303) to the dashboard,
//! which then says what was done.
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
use crate::dashboard::{table, tr};
use crate::error::ApiError;
use crate::html::escape;
use crate::state::AppState;
use crate::{controls, html, signing, trigger, webhooks};

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

/// What every form of the page carries: the form secret and the refresh mode.
pub struct Forms {
    action_base: String,
    hidden: String,
}

impl Forms {
    pub fn new(state: &AppState, refresh_off: bool) -> Self {
        Forms {
            action_base: format!("{}_sandbox/actions/", state.base_url.path()),
            hidden: format!(
                "<input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"refresh\" value=\"{}\">",
                escape(&state.dashboard_secret),
                if refresh_off { "off" } else { "on" }
            ),
        }
    }

    /// `<form>` posting to `action`, holding `inner` (fields and buttons).
    pub fn form(&self, action: &str, inner: &str) -> String {
        format!(
            "<form class=\"inline\" method=\"post\" action=\"{}{action}\">{}{inner}</form>",
            escape(&self.action_base),
            self.hidden
        )
    }
}

pub fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
        escape(value)
    )
}

/// Cards still waiting for a result, with a button per result.
pub async fn pending_section(state: &AppState, forms: &Forms) -> Result<String, ApiError> {
    let rows = trigger::pending(state, 20)
        .await?
        .into_iter()
        .map(|card| {
            let id = escape(&card.credit_card_id);
            let mut buttons = format!(
                "{}<button name=\"result\" value=\"succeeded\" aria-label=\"Succeed card {id}\">Succeed</button>",
                hidden("card_id", &card.credit_card_id),
            );
            for outcome in Outcome::FAILURES {
                let label = failure_label(outcome);
                buttons.push_str(&format!(
                    " <button name=\"result\" value=\"{code}\" aria-label=\"{label}: card {id}\">{label}</button>",
                    code = outcome.as_str(),
                ));
            }
            tr(&[
                id.clone(),
                escape(&card.contact_id),
                escape(&card.url_created_at),
                card.status.to_owned(),
                forms.form("trigger", &buttons),
            ])
        })
        .collect();
    Ok(table(
        &[
            "credit card id",
            "contact",
            "URL created",
            "status",
            "result",
        ],
        rows,
        "No card is waiting for a result.",
    ))
}

fn failure_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Declined => "Decline",
        Outcome::ProcessingError => "Processing error",
        Outcome::ExpiredCard => "Expired card",
        Outcome::IncorrectCvc => "Incorrect CVC",
        Outcome::Success | Outcome::SlowSuccess => "Succeed",
    }
}

/// "Resend" buttons of one event, one per webhook.
pub fn resend_buttons(event_id: i64, hooks: &[webhooks::WebhookRow], forms: &Forms) -> String {
    hooks
        .iter()
        .map(|wh| {
            let label = if hooks.len() == 1 {
                "Resend".to_owned()
            } else {
                format!("Resend to {}", wh.id)
            };
            forms.form(
                "resend",
                &format!(
                    "{}{}<button aria-label=\"Resend event {event_id} to webhook {}\">{label}</button>",
                    hidden("webhook", &wh.identifier),
                    hidden("from", &event_id.to_string()),
                    wh.id
                ),
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Fail next N, pause/resume all, rotate, resend a range.
pub fn controls_section(state: &AppState, hooks: &[webhooks::WebhookRow], forms: &Forms) -> String {
    let paused = state.faults.is_paused();
    let (all_action, all_label) = if paused {
        ("resume", "Resume every webhook")
    } else {
        ("pause", "Pause every webhook")
    };
    let mut out = String::from("<div class=\"controls\">");
    out.push_str(&forms.form(
        "fail-next",
        "<label for=\"fail-n\">Deliveries to fail</label> <input id=\"fail-n\" name=\"n\" type=\"number\" min=\"0\" value=\"1\" inputmode=\"numeric\"> <button>Fail the next deliveries</button>",
    ));
    out.push_str(&forms.form(
        all_action,
        &format!("{}<button>{all_label}</button>", hidden("webhook", "all")),
    ));
    out.push_str(&forms.form("rotate", "<button>Rotate signing key</button>"));
    if !hooks.is_empty() {
        let options: String = hooks
            .iter()
            .map(|wh| {
                format!(
                    "<option value=\"{}\">{} ({})</option>",
                    escape(&wh.identifier),
                    wh.id,
                    escape(&wh.callback_url)
                )
            })
            .collect();
        out.push_str(&forms.form(
            "resend",
            &format!(
                "<label for=\"resend-from\">Resend events</label> <input id=\"resend-from\" name=\"from\" type=\"number\" min=\"1\" required inputmode=\"numeric\"> \
                 <label for=\"resend-to\">to</label> <input id=\"resend-to\" name=\"to\" type=\"number\" min=\"1\" inputmode=\"numeric\"> \
                 <label for=\"resend-webhook\">to webhook</label> <select id=\"resend-webhook\" name=\"webhook\">{options}</select> <button>Resend</button>"
            ),
        ));
    }
    out.push_str("</div>");
    out
}

/// The message of the action just done, and the recent actions.
pub fn actions_section(state: &AppState, done: Option<u64>) -> (String, String) {
    let actions = state.recent_actions();
    let notice = done
        .and_then(|seq| actions.iter().find(|a| a.seq == seq))
        .map(|a| {
            format!(
                "<p role=\"status\" class=\"notice {}\">{}</p>",
                if a.ok { "ok" } else { "error" },
                escape(&a.text)
            )
        })
        .unwrap_or_else(|| "<p role=\"status\" class=\"notice-empty\"></p>".to_owned());
    let items: String = actions
        .iter()
        .map(|a| {
            format!(
                "<li>{} {}</li>",
                escape(&crate::store::format_time(a.at)),
                escape(&a.text)
            )
        })
        .collect();
    let list = if items.is_empty() {
        "<p class=\"muted\">Nothing done yet (buttons here or <code>jetpay-sandbox</code> subcommands).</p>".to_owned()
    } else {
        format!("<ul>{items}</ul>")
    };
    (notice, list)
}
