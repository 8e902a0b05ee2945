//! `GET /_sandbox`: a small page for developers answering "why is my card still pending?".
//! No auth (a local development tool) and no card data beyond brand and last four digits.
//! Its buttons (forms) are rendered and handled by `dashboard_actions`.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use crate::card_service::TEST_CARDS;
use crate::dashboard_actions::{actions_section, controls_section, pending_section, Forms};
use crate::error::ApiError;
use crate::html::{escape, BASE_CSS};
use crate::state::AppState;
use crate::{dispatcher, events, webhooks};

type CardRow = (
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    Option<String>,
);

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| escape(&v.to_string()))
}

pub(crate) fn table(head: &[&str], rows: Vec<String>, empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"muted\">{}</p>", escape(empty));
    }
    let th: String = head
        .iter()
        .map(|h| format!("<th scope=\"col\">{h}</th>"))
        .collect();
    format!(
        "<div class=\"scroll\"><table><thead><tr>{th}</tr></thead><tbody>{}</tbody></table></div>",
        rows.concat()
    )
}

pub(crate) fn tr(cells: &[String]) -> String {
    let tds: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
    format!("<tr>{tds}</tr>")
}

/// Query of the dashboard: the action just done (to say so), and the refresh mode.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    done: Option<u64>,
    refresh: Option<String>,
}

async fn webhooks_section(
    state: &AppState,
    hooks: &[webhooks::WebhookRow],
    forms: &Forms,
) -> String {
    let mut rows = Vec::new();
    for wh in hooks {
        let (action, label) = if wh.paused {
            ("resume", "Resume")
        } else {
            ("pause", "Pause")
        };
        let button = forms.form(
            action,
            &format!(
                "{}<button aria-label=\"{label} webhook {id}\">{label}</button>",
                crate::dashboard_actions::hidden("webhook", &wh.identifier),
                id = wh.id
            ),
        );
        rows.push(tr(&[
            wh.id.to_string(),
            escape(&wh.callback_url),
            format!(
                "<strong>{}</strong>{}",
                escape(&wh.state),
                if wh.paused { " (paused)" } else { "" }
            ),
            wh.cursor.to_string(),
            opt(wh.last_sent_event_id),
            format!("{} / {} s", wh.max_batch_size, wh.max_wait_seconds),
            escape(&dispatcher::explain(state, wh).await),
            button,
        ]));
    }
    table(
        &[
            "id",
            "callback URL",
            "state",
            "cursor",
            "last sent",
            "batch / wait",
            "why",
            "control",
        ],
        rows,
        "No webhook registered: nothing will be delivered. POST /webhooks/ to register one.",
    )
}

pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let refresh_off = query.refresh.as_deref() == Some("off");
    let forms = Forms::new(&state, refresh_off);
    let hooks = webhooks::all(&state.pool).await?;
    let hooks_html = webhooks_section(&state, &hooks, &forms).await;
    let pending = pending_section(&state, &forms).await?;
    let cards = cards_section(&state).await?;
    let events = events_section(&state, &hooks, &forms).await?;
    let attempts = attempts_section(&state).await?;
    let controls = controls_section(&state, &hooks, &forms);
    let (notice, actions) = actions_section(&state, query.done);

    let test_cards: String = TEST_CARDS
        .iter()
        .map(|(n, o)| format!("<li><code>{n}</code>: {}</li>", o.describe()))
        .collect();
    let faults = serde_json::to_string(&state.faults.snapshot()).unwrap_or_default();
    let dashboard = format!("{}_sandbox", state.base_url.path());
    let (refresh_meta, refresh_link) = if refresh_off {
        (
            String::new(),
            format!(
                "not refreshing · <a href=\"{d}?refresh=off\">refresh now</a> · <a href=\"{d}\">refresh every 3 s</a>",
                d = escape(&dashboard)
            ),
        )
    } else {
        (
            format!(
                "<meta http-equiv=\"refresh\" content=\"3;url={}\">",
                escape(&dashboard)
            ),
            format!(
                "refreshes every 3 s · <a href=\"{}?refresh=off\">stop refreshing</a> (to type in the forms)",
                escape(&dashboard)
            ),
        )
    };

    let body = format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
{refresh_meta}
<title>Jetpay sandbox</title><style>{BASE_CSS}{CSS}</style></head><body><main class="wide">
<h1>Jetpay sandbox</h1>
{notice}
<p class="muted">API at <code>{base}</code> · signing key <code>{kid}</code> · faults <code>{faults}</code> · {refresh_link}</p>
<h2>Controls</h2>{controls}
<h2>Webhooks</h2>{hooks_html}
<h2>Cards waiting for a result</h2>{pending}
<h2>Cards</h2>{cards}
<h2>Recent events</h2>{events}
<h2>Recent delivery attempts</h2>{attempts}
<h2>Recent actions</h2>{actions}
<h2>Test cards</h2><ul>{test_cards}</ul>
</main></body></html>"#,
        base = escape(state.base_url.as_str()),
        kid = escape(&state.signer.current_kid()),
        faults = escape(&faults),
    );
    Ok((
        [
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(body),
    )
        .into_response())
}

async fn cards_section(state: &AppState) -> Result<String, ApiError> {
    let cards: Vec<CardRow> = sqlx::query_as(
        "SELECT id, contact_id, state, brand, last4, failure_reason, created_at, processed_at \
         FROM credit_cards ORDER BY created_at DESC LIMIT 20",
    )
    .fetch_all(&state.pool)
    .await?;
    let rows = cards
        .into_iter()
        .map(
            |(id, contact, st, brand, last4, reason, created, processed)| {
                tr(&[
                    escape(&id),
                    escape(&contact),
                    format!("<strong>{}</strong>", escape(&st)),
                    format!("{} ····{}", escape(&brand), escape(&last4)),
                    opt(reason),
                    escape(&created),
                    opt(processed),
                ])
            },
        )
        .collect();
    Ok(table(
        &[
            "credit card id",
            "contact",
            "state",
            "card",
            "failure",
            "submitted",
            "processed",
        ],
        rows,
        "No card submitted yet.",
    ))
}

async fn events_section(
    state: &AppState,
    hooks: &[webhooks::WebhookRow],
    forms: &Forms,
) -> Result<String, ApiError> {
    let rows = events::recent(&state.pool, 30)
        .await?
        .into_iter()
        .map(|e| {
            let field = |k: &str| opt(e.data.get(k).and_then(|v| v.as_str()));
            tr(&[
                e.id.to_string(),
                escape(&crate::store::format_time(e.created_at)),
                escape(&e.event_type),
                field("creditCardId"),
                field("state"),
                field("failureReason"),
                crate::dashboard_actions::resend_buttons(e.id, hooks, forms),
            ])
        })
        .collect();
    Ok(table(
        &[
            "id",
            "createdAt",
            "type",
            "creditCardId",
            "state",
            "failureReason",
            "control",
        ],
        rows,
        "No events yet.",
    ))
}

async fn attempts_section(state: &AppState) -> Result<String, ApiError> {
    let rows = dispatcher::recent(state, 30)
        .await?
        .into_iter()
        .map(|a| {
            tr(&[
                escape(&a.started_at),
                a.webhook_id.to_string(),
                a.attempt.to_string(),
                format!(
                    "{}–{} ({})",
                    a.first_event_id, a.last_event_id, a.event_count
                ),
                format!("<strong>{}</strong>", escape(&a.outcome)),
                opt(a.status_code),
                a.latency_ms
                    .map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms")),
                opt(a.error.or(a.note)),
            ])
        })
        .collect();
    Ok(table(
        &[
            "time",
            "webhook",
            "attempt",
            "events",
            "outcome",
            "HTTP",
            "latency",
            "error / note",
        ],
        rows,
        "No delivery attempted yet.",
    ))
}

const CSS: &str = r#"
main.wide{max-width:1200px}
h2{font-size:1rem;margin:18px 0 6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
code{font-size:.85rem}
form.inline{display:inline}
.controls form{display:block;margin:0 0 6px}
button{font:inherit;font-size:.85rem;padding:2px 8px}
input[type=number]{width:6em}
.notice{padding:6px 8px;border-radius:4px}
.notice.ok{background:#e7f5ea;border:1px solid #2e7d32}
.notice.error{background:#fdecea;border:1px solid #c62828}
"#;
