//! `jetpay-sandbox tail`: polls the attempt feed and prints one line per delivery attempt.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::admin::{shown, Admin, Failure};
use super::{str_of, TailArgs};

/// How often `tail` asks for new attempts.
const TAIL_INTERVAL: Duration = Duration::from_millis(250);

/// One line for a delivery attempt.
fn attempt_line(a: &Value) -> String {
    let started = str_of(a, "started_at");
    let time = started.get(11..23).unwrap_or(started);
    let (first, last, count) = (
        a["first_event_id"].as_i64().unwrap_or(0),
        a["last_event_id"].as_i64().unwrap_or(0),
        a["event_count"].as_i64().unwrap_or(0),
    );
    let events = if count == 1 {
        format!("event {first}")
    } else {
        format!("events {first}..{last} ({count})")
    };
    let status = a["status_code"]
        .as_i64()
        .map_or_else(|| "HTTP -".to_owned(), |s| format!("HTTP {s}"));
    let latency = a["latency_ms"]
        .as_i64()
        .map_or_else(String::new, |ms| format!("  {ms} ms"));
    let extra = [str_of(a, "error"), str_of(a, "note")]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let mut line = format!(
        "{time}  webhook {}  {events}  attempt {}  {}  {status}{latency}",
        a["webhook_id"],
        a["attempt"],
        str_of(a, "outcome"),
    );
    if !extra.is_empty() {
        line.push_str("  ");
        line.push_str(&extra);
    }
    line
}

pub async fn tail(a: TailArgs) -> Result<(), String> {
    let admin = Admin::new(&a.conn)?;
    let only = match &a.webhook {
        Some(choice) => Some(admin.webhook(Some(choice)).await?.id),
        None => None,
    };
    let wanted = |v: &Value| only.is_none_or(|id| v["webhook_id"].as_i64() == Some(id));
    let recent = admin
        .call(
            Method::GET,
            &format!("_sandbox/attempts?last={}", a.last.max(1)),
            None,
            "this sandbox has no attempt feed",
        )
        .await?;
    let recent = recent.as_array().cloned().unwrap_or_default();
    let mut cursor = recent.last().and_then(|v| v["id"].as_i64()).unwrap_or(0);
    println!(
        "Tailing delivery attempts at {}{} (times UTC). Ctrl-C to stop.",
        shown(&admin.base),
        only.map_or_else(String::new, |id| format!(", webhook {id} only"))
    );
    // The feed was asked for at least one attempt, to know where to follow from; `--last 0`
    // prints none of them.
    if a.last > 0 {
        for attempt in recent.iter().filter(|v| wanted(v)) {
            println!("{}", attempt_line(attempt));
        }
    }
    let mut lost = false;
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = tokio::time::sleep(TAIL_INTERVAL) => {}
        }
        let path = format!("_sandbox/attempts?after={cursor}&limit=1000");
        match admin.send(Method::GET, &path, None).await {
            Ok(page) => {
                if lost {
                    eprintln!("jetpay-sandbox: the sandbox answers again.");
                    lost = false;
                }
                for attempt in page.as_array().into_iter().flatten() {
                    cursor = cursor.max(attempt["id"].as_i64().unwrap_or(cursor));
                    if wanted(attempt) {
                        println!("{}", attempt_line(attempt));
                    }
                }
            }
            Err(Failure::Transport(why)) => {
                if !lost {
                    eprintln!("jetpay-sandbox: {why} Retrying until Ctrl-C.");
                    lost = true;
                }
            }
            Err(failure) => return Err(admin.explain(failure, "this sandbox has no attempt feed")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn attempt_lines_name_time_webhook_events_outcome_status() {
        let line = attempt_line(&json!({
            "id": 3, "webhook_id": 1, "attempt": 2, "started_at": "2026-11-26T03:51:02.123456Z",
            "latency_ms": 12, "status_code": 200, "error": null, "first_event_id": 5,
            "last_event_id": 7, "event_count": 3, "outcome": "delivered", "note": "resend"
        }));
        assert_eq!(
            line,
            "03:51:02.123  webhook 1  events 5..7 (3)  attempt 2  delivered  HTTP 200  12 ms  resend"
        );
    }
}
