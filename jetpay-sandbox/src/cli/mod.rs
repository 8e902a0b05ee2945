//! The subcommands that act on a running sandbox, through its admin endpoints (`/_sandbox/…`,
//! bearer token). Part of the binary only, not of the library. Each prints one plain line of
//! what it did (`tail` one per delivery attempt); errors go to stderr with exit code 1.

mod admin;
mod tail;

use reqwest::Method;
use serde_json::{json, Value};
use url::Url;

use admin::Admin;

#[derive(Debug, clap::Subcommand)]
pub enum Control {
    /// Record a card's tokenization result now (success, or a chosen failure), as the card
    /// service would: the event goes to the webhooks with the next batch.
    Trigger(TriggerArgs),
    /// Send an event (`12`) or a range (`12..15`) to a webhook again.
    Resend(ResendArgs),
    /// Make the next N delivery attempts fail without sending (fault `fail_times`; 0 cancels).
    FailNext(FailNextArgs),
    /// Stop delivering to a webhook (or to all with --all) until `resume`.
    Pause(PauseArgs),
    /// Deliver again to a paused webhook (or to all with --all).
    Resume(PauseArgs),
    /// Print every delivery attempt as it happens, until Ctrl-C.
    Tail(TailArgs),
    /// Make a new webhook signing key (the old ones stay in the JWKS).
    Rotate(RotateArgs),
}

/// Where the running sandbox is.
#[derive(Debug, Clone, clap::Args)]
pub struct Conn {
    /// Base URL of the running sandbox. The app's dev server embeds one on 127.0.0.1:3002;
    /// `jetpay-sandbox serve` listens on 127.0.0.1:4010 by default.
    #[arg(
        long,
        env = "JETPAY_SANDBOX_URL",
        default_value = "http://127.0.0.1:3002"
    )]
    pub(super) url: Url,
    /// An API token the sandbox accepts (the embedded sandbox's is `sandbox-token`).
    #[arg(
        long,
        env = "JETPAY_SANDBOX_TOKEN",
        default_value = "sandbox-token",
        hide_env_values = true
    )]
    pub(super) token: String,
}

#[derive(Debug, clap::Args)]
pub struct TriggerArgs {
    /// The credit card id from `POST /contact/{id}/creditcards/url` (also on the dashboard).
    /// Default: the newest card waiting for a result.
    credit_card_id: Option<String>,
    /// Fail with this reason instead of succeeding.
    #[arg(long, value_name = "REASON", value_parser = ["card_declined", "processing_error", "expired_card", "incorrect_cvc"])]
    fail: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct ResendArgs {
    /// An event id (`12`) or an inclusive range (`12..15`).
    #[arg(value_parser = parse_range)]
    events: (i64, i64),
    /// The webhook: its id or identifier. Needed when several are registered.
    #[arg(long)]
    webhook: Option<String>,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct FailNextArgs {
    /// How many attempts fail (any webhook); 0 cancels.
    n: u32,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct PauseArgs {
    /// The webhook: its id or identifier. Needed when several are registered.
    #[arg(long, conflicts_with = "all")]
    webhook: Option<String>,
    /// Every webhook at once (the global fault `pause`).
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// Only this webhook (id or identifier).
    #[arg(long)]
    webhook: Option<String>,
    /// Also print the last N attempts made before tail started.
    #[arg(long, default_value_t = 0)]
    last: u32,
    #[command(flatten)]
    conn: Conn,
}

#[derive(Debug, clap::Args)]
pub struct RotateArgs {
    #[command(flatten)]
    conn: Conn,
}

/// `12` or `12..15` (also `12-15`, `12..=15`).
fn parse_range(s: &str) -> Result<(i64, i64), String> {
    let number = |v: &str| {
        v.trim()
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| format!("{v:?} is not an event id (a whole number from 1)"))
    };
    let (from, to) = match s.split_once("..=").or_else(|| s.split_once("..")) {
        Some((a, b)) => (number(a)?, number(b)?),
        None => match s.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => (number(s)?, number(s)?),
        },
    };
    if to < from {
        return Err(format!("the range {s} ends before it starts"));
    }
    Ok((from, to))
}

/// Runs one subcommand; prints what it did, or the error with exit code 1.
pub async fn run(control: Control) -> std::process::ExitCode {
    let result = match control {
        Control::Trigger(a) => trigger(a).await,
        Control::Resend(a) => resend(a).await,
        Control::FailNext(a) => fail_next(a).await,
        Control::Pause(a) => pause(a, true).await,
        Control::Resume(a) => pause(a, false).await,
        Control::Tail(a) => tail::tail(a).await,
        Control::Rotate(a) => rotate(a).await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("jetpay-sandbox: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

pub(crate) fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

async fn trigger(a: TriggerArgs) -> Result<(), String> {
    let admin = Admin::new(&a.conn)?;
    let body = match &a.fail {
        Some(reason) => json!({"state": "failed", "failure_reason": reason}),
        None => json!({"state": "succeeded"}),
    };
    let (card, newest) = match a.credit_card_id {
        Some(card) => (card, ""),
        None => {
            let pending = admin
                .call(
                    Method::GET,
                    "_sandbox/cards/pending",
                    None,
                    "this sandbox cannot list cards",
                )
                .await?;
            let newest = pending
                .as_array()
                .and_then(|cards| cards.first())
                .map(|c| str_of(c, "credit_card_id").to_owned())
                .filter(|id| !id.is_empty())
                .ok_or("no card is waiting for a result: add a card in the app first, or name a card id")?;
            (newest, " (the newest card waiting for a result)")
        }
    };
    let card = &card;
    let path = format!("_sandbox/cards/{}/result", urlencode(card));
    let not_found = format!(
        "no card {card} at this sandbox: use the credit_card_id of a tokenization URL it made \
         (the dashboard lists the cards waiting for a result)"
    );
    let answer = admin
        .call(Method::POST, &path, Some(body), &not_found)
        .await?;
    let data = &answer["event"]["data"];
    let result = match data.get("failureReason").and_then(Value::as_str) {
        Some(reason) => format!("failed ({reason})"),
        None => "succeeded".to_owned(),
    };
    let submitted = if answer["form_submitted"].as_bool() == Some(false) {
        " (form not submitted: recorded as the 4242 test card)"
    } else {
        ""
    };
    println!(
        "Recorded event {} ({}): card {card}{newest} {result}, {} ····{}{submitted}, contact {}; {} webhook(s) will get it with the next batch.",
        answer["event"]["id"],
        str_of(&answer["event"], "type"),
        str_of(data, "brand"),
        str_of(data, "last4"),
        str_of(data, "contactId"),
        answer["webhooks"],
    );
    Ok(())
}

/// Percent-encodes a path segment (card ids are UUIDs, but the argument is the user's).
fn urlencode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The sentence of a resend, pause or resume answer.
fn control_sentence(answer: &Value) -> String {
    let hook = format!(
        "webhook {} ({})",
        answer["webhook_id"],
        str_of(answer, "callback_url")
    );
    let paused = answer["paused"].as_bool() == Some(true);
    if let Some(q) = answer.get("queued") {
        let what = if q["events"].as_i64() == Some(1) {
            format!("event {}", q["from_event_id"])
        } else {
            format!(
                "events {}..{} ({} events)",
                q["from_event_id"], q["to_event_id"], q["events"]
            )
        };
        let when = if paused {
            "; it is paused, so they go out when it is resumed"
        } else if str_of(answer, "state") == "failed" {
            "; it is failed, so they go out once it is PATCHed"
        } else if str_of(answer, "state") == "backing_off" {
            "; its last attempt failed, so they go out with its next retry"
        } else {
            ", going out now ahead of its normal batches"
        };
        format!("Queued {what} for {hook}{when}.")
    } else if paused {
        format!(
            "Paused {hook}: nothing is sent to it until `jetpay-sandbox resume`; its events wait."
        )
    } else {
        format!("Resumed {hook}: waiting events go out now.")
    }
}

async fn resend(a: ResendArgs) -> Result<(), String> {
    let admin = Admin::new(&a.conn)?;
    let hook = admin.webhook(a.webhook.as_deref()).await?;
    let (from, to) = a.events;
    let answer = admin
        .call(
            Method::POST,
            &format!("_sandbox/webhooks/{}/resend", hook.identifier),
            Some(json!({"from_event_id": from, "to_event_id": to})),
            "the webhook is gone",
        )
        .await?;
    println!("{}", control_sentence(&answer));
    Ok(())
}

async fn fail_next(a: FailNextArgs) -> Result<(), String> {
    let admin = Admin::new(&a.conn)?;
    let answer = admin
        .call(
            Method::POST,
            "_sandbox/faults",
            Some(json!({"fail_times": a.n})),
            "this sandbox has no fault API",
        )
        .await?;
    let n = answer["fail_times"].as_u64().unwrap_or(u64::from(a.n));
    println!(
        "{}",
        match n {
            0 => "No delivery attempt will be made to fail (fault fail_times 0).".to_owned(),
            1 => "The next delivery attempt (to any webhook) will fail without sending, then deliveries are normal (fault fail_times 1).".to_owned(),
            n => format!("The next {n} delivery attempts (to any webhook) will fail without sending, then deliveries are normal (fault fail_times {n})."),
        }
    );
    Ok(())
}

async fn pause(a: PauseArgs, paused: bool) -> Result<(), String> {
    let admin = Admin::new(&a.conn)?;
    if a.all {
        let body = if paused {
            json!({"pause": true})
        } else {
            json!({"resume": true})
        };
        admin
            .call(
                Method::POST,
                "_sandbox/faults",
                Some(body),
                "this sandbox has no fault API",
            )
            .await?;
        println!(
            "{}",
            if paused {
                "Paused deliveries to every webhook (global fault pause): events wait until `jetpay-sandbox resume --all`."
            } else {
                "Resumed deliveries to every webhook (global fault pause cleared)."
            }
        );
        return Ok(());
    }
    let hook = admin.webhook(a.webhook.as_deref()).await?;
    let verb = if paused { "pause" } else { "resume" };
    let answer = admin
        .call(
            Method::POST,
            &format!("_sandbox/webhooks/{}/{verb}", hook.identifier),
            None,
            "the webhook is gone",
        )
        .await?;
    println!("{}", control_sentence(&answer));
    if !paused {
        let faults = admin
            .call(Method::GET, "_sandbox/faults", None, "no fault API")
            .await?;
        if faults["paused"].as_bool() == Some(true) {
            println!("Note: every webhook is still paused by the global fault pause; `jetpay-sandbox resume --all` clears it.");
        }
    }
    Ok(())
}

async fn rotate(a: RotateArgs) -> Result<(), String> {
    let admin = Admin::new(&a.conn)?;
    let answer = admin
        .call(
            Method::POST,
            "_sandbox/keys/rotate",
            None,
            "this sandbox cannot rotate keys",
        )
        .await?;
    println!(
        "Rotated the webhook signing key: new deliveries are signed with kid {}. The previous key {} stays in the JWKS, so deliveries signed with it still verify.",
        str_of(&answer, "kid"),
        str_of(&answer, "previous_kid")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ranges() {
        assert_eq!(parse_range("12"), Ok((12, 12)));
        assert_eq!(parse_range("12..15"), Ok((12, 15)));
        assert_eq!(parse_range("12..=15"), Ok((12, 15)));
        assert_eq!(parse_range("12-15"), Ok((12, 15)));
        assert!(parse_range("15..12").is_err());
        assert!(parse_range("0").is_err());
        assert!(parse_range("x").is_err());
    }
}
