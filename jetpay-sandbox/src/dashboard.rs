//! `GET /_sandbox`: a small page for developers answering "why is my card still pending?".
//! No auth (a local development tool) and no card data beyond brand and last four digits.

use axum::extract::State;
use axum::response::Html;

use crate::card_service::TEST_CARDS;
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

fn table(head: &[&str], rows: Vec<String>, empty: &str) -> String {
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

fn tr(cells: &[String]) -> String {
    let tds: String = cells.iter().map(|c| format!("<td>{c}</td>")).collect();
    format!("<tr>{tds}</tr>")
}

pub async fn page(State(state): State<AppState>) -> Result<Html<String>, ApiError> {
    let hooks = webhooks::all(&state.pool).await?;
    let mut hook_rows = Vec::new();
    for wh in &hooks {
        hook_rows.push(tr(&[
            wh.id.to_string(),
            escape(&wh.callback_url),
            format!("<strong>{}</strong>", escape(&wh.state)),
            wh.cursor.to_string(),
            opt(wh.last_sent_event_id),
            format!("{} / {} s", wh.max_batch_size, wh.max_wait_seconds),
            escape(&dispatcher::explain(&state, wh).await),
        ]));
    }

    let cards: Vec<CardRow> = sqlx::query_as(
        "SELECT id, contact_id, state, brand, last4, failure_reason, created_at, processed_at \
         FROM credit_cards ORDER BY created_at DESC LIMIT 20",
    )
    .fetch_all(&state.pool)
    .await?;
    let card_rows = cards
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

    let event_rows = events::recent(&state.pool, 30)
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
            ])
        })
        .collect();

    let attempt_rows = dispatcher::recent(&state, 30)
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

    let test_cards: String = TEST_CARDS
        .iter()
        .map(|(n, o)| format!("<li><code>{n}</code>: {}</li>", o.describe()))
        .collect();
    let faults = serde_json::to_string(&state.faults.snapshot()).unwrap_or_default();

    Ok(Html(format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta http-equiv="refresh" content="3">
<title>Jetpay sandbox</title><style>{BASE_CSS}{CSS}</style></head><body><main class="wide">
<h1>Jetpay sandbox</h1>
<p class="muted">API at <code>{base}</code> · signing key <code>{kid}</code> · faults <code>{faults}</code> · refreshes every 3 s</p>
<h2>Webhooks</h2>{hooks}
<h2>Cards</h2>{cards}
<h2>Recent events</h2>{events}
<h2>Recent delivery attempts</h2>{attempts}
<h2>Test cards</h2><ul>{test_cards}</ul>
</main></body></html>"#,
        base = escape(state.base_url.as_str()),
        kid = escape(&state.signer.current_kid()),
        faults = escape(&faults),
        hooks = table(
            &[
                "id",
                "callback URL",
                "state",
                "cursor",
                "last sent",
                "batch / wait",
                "why"
            ],
            hook_rows,
            "No webhook registered: nothing will be delivered. POST /webhooks/ to register one."
        ),
        cards = table(
            &[
                "credit card id",
                "contact",
                "state",
                "card",
                "failure",
                "submitted",
                "processed"
            ],
            card_rows,
            "No card submitted yet."
        ),
        events = table(
            &[
                "id",
                "createdAt",
                "type",
                "creditCardId",
                "state",
                "failureReason"
            ],
            event_rows,
            "No events yet."
        ),
        attempts = table(
            &[
                "time",
                "webhook",
                "attempt",
                "events",
                "outcome",
                "HTTP",
                "latency",
                "error / note"
            ],
            attempt_rows,
            "No delivery attempted yet."
        ),
    )))
}

const CSS: &str = r#"
main.wide{max-width:1200px}
h2{font-size:1rem;margin:18px 0 6px}
.scroll{overflow-x:auto}
table{border-collapse:collapse;font-size:.85rem;width:100%}
th,td{border-bottom:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
code{font-size:.85rem}
"#;
