//! The `jetpay-sandbox` subcommands: each runs the real binary against a sandbox started on
//! port 0, and the test checks the effect through the API and a verifying webhook receiver.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use jetpay::wire::WebhookState;
use reqwest::Method;
use serde_json::Value;

const SOON: Duration = Duration::from_secs(5);
const BIN: &str = env!("CARGO_BIN_EXE_jetpay-sandbox");

/// The binary with `args`, then `--url` and `--token` for `h`'s sandbox; no inherited settings.
fn command(h: &Harness, args: &[&str], token: &str) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .args(["--url", h.sandbox.base_url().as_str(), "--token", token])
        .env_remove("JETPAY_SANDBOX_URL")
        .env_remove("JETPAY_SANDBOX_TOKEN")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs a subcommand to completion (off the async threads: the sandbox runs on this runtime).
async fn run_with(h: &Harness, args: &[&str], token: &str) -> Output {
    let mut cmd = command(h, args, token);
    tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap()
}

struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

async fn run(h: &Harness, args: &[&str]) -> Ran {
    let out = run_with(h, args, TOKEN).await;
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs a subcommand that must succeed; answers its stdout.
async fn ok(h: &Harness, args: &[&str]) -> String {
    let ran = run(h, args).await;
    assert_eq!(ran.code, Some(0), "{args:?}: {}{}", ran.stdout, ran.stderr);
    ran.stdout
}

async fn event_log(h: &Harness) -> Vec<Value> {
    let (status, body) = h.admin(Method::GET, "_sandbox/events", None).await;
    assert_eq!(status, 200);
    body.as_array().cloned().unwrap()
}

#[tokio::test]
async fn trigger_success_records_the_event_and_delivers_it() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 0).await;
    let (contact, url) = h.card_url().await;
    let card = url.credit_card_id.clone();

    let out = ok(&h, &["trigger", &card]).await;
    assert!(
        out.starts_with("Recorded event 1 (contacts.creditcards.tokenized): "),
        "{out}"
    );
    assert!(
        out.contains(&format!("card {card} succeeded, visa ····4242")),
        "{out}"
    );
    assert!(out.contains("1 webhook(s)"), "{out}");

    // In the event log exactly as the card service writes it.
    let log = event_log(&h).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0]["type"], "contacts.creditcards.tokenized");
    let data = &log[0]["data"];
    assert_eq!(data["creditCardId"], card.as_str());
    assert_eq!(data["contactId"], contact.id.to_string());
    assert_eq!(data["state"], "succeeded");
    assert_eq!(
        (data["brand"].as_str(), data["last4"].as_str()),
        (Some("visa"), Some("4242"))
    );
    assert!(data.get("failureReason").is_none());

    // Delivered, signed, to the webhook.
    let (event, delivered) = receiver.wait_for_card(&card, SOON).await;
    assert_eq!(event.id, 1);
    assert_eq!(delivered.contact_id, contact.id);

    // The URL is used up, and a second result is refused.
    let (status, _) = h.submit_card(&url.url, "4242424242424242").await;
    assert_eq!(status, 410);
    let again = run(&h, &["trigger", &card, "--fail", "card_declined"]).await;
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already has a result: succeeded") && again.stderr.contains("409"),
        "{}",
        again.stderr
    );
    assert_eq!(
        event_log(&h).await.len(),
        1,
        "nothing recorded by the refused trigger"
    );
}

#[tokio::test]
async fn trigger_failure_overrides_a_card_being_verified() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 0).await;
    // The slow test card takes 1 s in tests: trigger decides first.
    let card = h.new_card("4000000000003220").await;
    let out = ok(&h, &["trigger", &card, "--fail", "expired_card"]).await;
    assert!(
        out.contains(&format!("card {card} failed (expired_card), visa ····3220")),
        "{out}"
    );
    assert!(!out.contains("4242 test card"), "{out}");

    let (_, data) = receiver.wait_for_card(&card, SOON).await;
    assert_eq!(data.state, jetpay::wire::TokenizationState::Failed);
    assert_eq!(data.failure_reason.as_deref(), Some("expired_card"));
    assert_eq!(
        data.failure_message.as_deref(),
        Some("The card has expired. Use another card.")
    );
    assert_eq!(data.last4.as_deref(), Some("3220"));

    // The card service does not add its own result later.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let for_card = event_log(&h)
        .await
        .into_iter()
        .filter(|e| e["data"]["creditCardId"] == card.as_str())
        .count();
    assert_eq!(for_card, 1);
}

#[tokio::test]
async fn trigger_without_an_id_takes_the_newest_waiting_card() {
    let h = Harness::start().await;
    let ran = run(&h, &["trigger"]).await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("no card is waiting for a result"),
        "{}",
        ran.stderr
    );

    let (_, older) = h.card_url().await;
    let (_, newer) = h.card_url().await;
    let out = ok(&h, &["trigger", "--fail", "processing_error"]).await;
    let expected = format!(
        "card {} (the newest card waiting for a result) failed (processing_error)",
        newer.credit_card_id
    );
    assert!(out.contains(&expected), "{out}");
    let out = ok(&h, &["trigger"]).await;
    assert!(
        out.contains(&format!("card {} (the newest", older.credit_card_id)),
        "{out}"
    );
    let (_, pending) = h.admin(Method::GET, "_sandbox/cards/pending", None).await;
    assert_eq!(pending, serde_json::json!([]));
}

#[tokio::test]
async fn trigger_of_an_unknown_card_says_so() {
    let h = Harness::start().await;
    let ran = run(&h, &["trigger", "card_456"]).await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("no card card_456 at this sandbox") && ran.stderr.contains("404"),
        "{}",
        ran.stderr
    );
    assert!(ran.stdout.is_empty());
    assert!(event_log(&h).await.is_empty());

    // A reason that does not exist is refused by the argument parser (exit code 2).
    let ran = run(&h, &["trigger", "card_456", "--fail", "stolen"]).await;
    assert_eq!(ran.code, Some(2), "{}", ran.stderr);
}

#[tokio::test]
async fn resend_delivers_an_event_and_a_range_again() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    let mut cards = Vec::new();
    for _ in 0..3 {
        let card = h.new_card("4242424242424242").await;
        receiver.wait_for_card(&card, SOON).await;
        cards.push(card);
    }
    let ids: Vec<i64> = receiver.events().iter().map(|e| e.id).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;

    let out = ok(&h, &["resend", "2"]).await;
    assert!(
        out.starts_with(&format!(
            "Queued event 2 for webhook {} ({})",
            hook.id, receiver.url
        )),
        "{out}"
    );
    receiver.wait_for_events(4, SOON).await;
    assert_eq!(receiver.events()[3].id, 2);
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;

    let out = ok(&h, &["resend", "1..3", "--webhook", &hook.id.to_string()]).await;
    assert!(out.contains("events 1..3 (3 events)"), "{out}");
    let events = receiver.wait_for_events(7, SOON).await;
    let again: Vec<i64> = events[4..].iter().map(|e| e.id).collect();
    assert_eq!(again, vec![1, 2, 3], "one batch, ascending");
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    let attempts = h.attempts(&hook).await;
    let resent: Vec<&Value> = attempts.iter().filter(|a| a["note"] == "resend").collect();
    assert_eq!(resent.len(), 2);
    // A resend never moves the webhook back.
    let now = h.client.get_webhook(hook.identifier).await.unwrap();
    assert_eq!(now.last_sent_event_id, Some(3));

    // An event that does not exist yet is refused, and nothing is queued.
    let ran = run(&h, &["resend", "9"]).await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr
            .contains("There is no event 9 yet: the newest event is 3"),
        "{}",
        ran.stderr
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.events().len(), 7);
}

#[tokio::test]
async fn fail_next_two_fails_twice_then_delivers() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    let out = ok(&h, &["fail-next", "2"]).await;
    assert!(
        out.starts_with("The next 2 delivery attempts (to any webhook) will fail without sending"),
        "{out}"
    );

    let (_, url) = h.card_url().await;
    ok(&h, &["trigger", &url.credit_card_id]).await;
    receiver.wait_for_card(&url.credit_card_id, SOON).await;
    // Active again once the delivery is recorded (the receiver has it a moment before).
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    let attempts = h.attempts(&hook).await;
    let outcomes: Vec<(&str, i64)> = attempts
        .iter()
        .map(|a| {
            (
                a["outcome"].as_str().unwrap(),
                a["attempt"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        vec![("failed", 1), ("failed", 2), ("delivered", 3)]
    );
    assert_eq!(receiver.requests(), 1, "the failed attempts sent nothing");
    let (_, faults) = h.admin(Method::GET, "_sandbox/faults", None).await;
    assert_eq!(faults["fail_times"], 0);
}

#[tokio::test]
async fn pause_holds_one_webhook_until_resume() {
    let h = Harness::start().await;
    let held = Receiver::start(&h).await;
    let other = Receiver::start(&h).await;
    let held_hook = h.webhook(&held, 10, 0).await;
    h.webhook(&other, 10, 0).await;

    // Two webhooks: the CLI will not guess.
    let ran = run(&h, &["pause"]).await;
    assert_eq!(ran.code, Some(1));
    assert!(
        ran.stderr.contains("2 webhooks are registered") && ran.stderr.contains("--webhook"),
        "{}",
        ran.stderr
    );

    let out = ok(
        &h,
        &["pause", "--webhook", &held_hook.identifier.to_string()],
    )
    .await;
    assert!(
        out.starts_with(&format!("Paused webhook {} ({})", held_hook.id, held.url)),
        "{out}"
    );
    let card = h.new_card("4242424242424242").await;
    other.wait_for_card(&card, SOON).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(held.requests(), 0, "nothing reaches a paused webhook");
    let waiting = h.client.get_webhook(held_hook.identifier).await.unwrap();
    assert_eq!(waiting.state, WebhookState::Scheduled);
    assert_eq!(waiting.last_sent_event_id, None);

    let out = ok(&h, &["resume", "--webhook", &held_hook.id.to_string()]).await;
    assert!(
        out.starts_with(&format!("Resumed webhook {}", held_hook.id)),
        "{out}"
    );
    held.wait_for_card(&card, SOON).await;
}

#[tokio::test]
async fn pause_all_uses_the_global_fault() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 0).await;
    let out = ok(&h, &["pause", "--all"]).await;
    assert!(out.contains("every webhook (global fault pause)"), "{out}");
    let (_, faults) = h.admin(Method::GET, "_sandbox/faults", None).await;
    assert_eq!(faults["paused"], true);
    let card = h.new_card("4242424242424242").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.requests(), 0);
    ok(&h, &["resume", "--all"]).await;
    receiver.wait_for_card(&card, SOON).await;
}

/// Reads a child's stdout lines on a thread.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line within `within`, without blocking the runtime.
async fn next_line(lines: &mpsc::Receiver<String>, within: Duration) -> Option<String> {
    let deadline = Instant::now() + within;
    loop {
        match lines.try_recv() {
            Ok(line) => return Some(line),
            Err(mpsc::TryRecvError::Disconnected) => return None,
            Err(mpsc::TryRecvError::Empty) if Instant::now() >= deadline => return None,
            Err(mpsc::TryRecvError::Empty) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

#[tokio::test]
async fn tail_prints_a_line_per_new_attempt() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    receiver.script(&[Answer::Status(503)]);
    let hook = h.webhook(&receiver, 10, 0).await;
    let before = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&before, SOON).await;
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;

    let mut child = command(&h, &["tail"], TOKEN)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let header = next_line(&lines, SOON).await.expect("a first line");
    assert!(
        header.starts_with("Tailing delivery attempts at "),
        "{header}"
    );

    let (_, url) = h.card_url().await;
    ok(&h, &["trigger", &url.credit_card_id]).await;
    receiver.wait_for_card(&url.credit_card_id, SOON).await;
    let line = next_line(&lines, SOON)
        .await
        .expect("a line for the delivery");
    // Ctrl-C ends it cleanly.
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "tail ends with {status} on Ctrl-C");
    // The attempts before tail started (a 503, then the delivery of event 1) are not printed.
    assert!(
        line.contains(&format!(
            "webhook {}  event 2  attempt 1  delivered  HTTP 200",
            hook.id
        )),
        "{line}"
    );
    let time = &line[..12];
    assert!(
        time.as_bytes()[2] == b':' && time.as_bytes()[8] == b'.',
        "{line}"
    );
}

#[tokio::test]
async fn rotate_prints_the_new_kid_and_signs_with_it() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 0).await;
    let old = h.client.jwks().await.unwrap().keys[0]
        .common
        .key_id
        .clone()
        .unwrap();

    let out = ok(&h, &["rotate"]).await;
    let kid = out
        .split("signed with kid ")
        .nth(1)
        .and_then(|rest| rest.split(". ").next())
        .expect("the new kid")
        .to_owned();
    assert_ne!(kid, old);
    assert!(
        out.contains(&format!("The previous key {old} stays in the JWKS")),
        "{out}"
    );
    let kids: Vec<String> = h
        .client
        .jwks()
        .await
        .unwrap()
        .keys
        .into_iter()
        .filter_map(|k| k.common.key_id)
        .collect();
    assert_eq!(kids, vec![old, kid.clone()]);

    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&card, SOON).await;
    assert_eq!(receiver.received()[0].kid.as_deref(), Some(kid.as_str()));
}

#[tokio::test]
async fn wrong_token_and_unreachable_sandbox_are_clear_errors() {
    let h = Harness::start().await;
    let (_, url) = h.card_url().await;
    for args in [
        vec!["trigger", url.credit_card_id.as_str()],
        vec!["rotate"],
        vec!["fail-next", "1"],
        vec!["pause"],
        vec!["tail"],
    ] {
        let out = run_with(&h, &args, "not-the-token").await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(
            stderr.contains("refused the token (401 Invalid API token)")
                && stderr.contains("--token"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("not-the-token"),
            "the token is never printed"
        );
    }
    assert!(event_log(&h).await.is_empty(), "nothing was triggered");

    // Nothing listens on a port we just released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(BIN);
    cmd.args(["rotate", "--url", &dead])
        .env_remove("JETPAY_SANDBOX_TOKEN");
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.contains(&format!("cannot reach the sandbox at {dead}/"))
            && stderr.contains("Is it running?"),
        "{stderr}"
    );
}

#[tokio::test]
async fn no_subcommand_still_serves_and_the_env_points_the_cli_at_it() {
    for serve in [&[][..], &["serve"][..]] {
        let mut child = Command::new(BIN)
            .args(serve)
            .args(["--listen", "127.0.0.1:0", "--db", ":memory:"])
            .env_remove("JETPAY_SANDBOX_API_TOKENS")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = lines_of(&mut child);
        // Log lines come first (on stdout too); then the one that names the address.
        let base = loop {
            let line = next_line(&lines, Duration::from_secs(30))
                .await
                .expect("it starts");
            if let Some(rest) = line.strip_prefix("Jetpay sandbox on ") {
                break rest.split(' ').next().unwrap().to_owned();
            }
        };
        // Default token (sandbox-token); the URL from the environment.
        let mut cmd = Command::new(BIN);
        cmd.args(["rotate"])
            .env("JETPAY_SANDBOX_URL", &base)
            .env_remove("JETPAY_SANDBOX_TOKEN");
        let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap();
        let _ = child.kill();
        let _ = child.wait();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{serve:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("Rotated the webhook signing key"),
            "{stdout}"
        );
    }
}
