//! Recovery without a restart, against the real server and sandbox: an outage long enough for
//! Jetpay to mark our webhook `failed`, and steady traffic that must not starve the background
//! beat (expiry, tail check).

mod common;

use std::time::{Duration, Instant};

use app::backend::Counters;
use common::spawn_app_with;
use jetpay::wire::WebhookState;

const SUCCESS: &str = "4242424242424242";

/// The database locked by another writer (as a stuck migration or a backup would) for longer
/// than Jetpay's whole retry budget: every delivery answers 503 until Jetpay marks the webhook
/// `failed`. Once the lock is gone, the running server notices the state, revives the webhook,
/// and both the card submitted during the outage and a new one turn Active, with no restart.
#[tokio::test]
async fn a_webhook_jetpay_marked_failed_is_revived_while_running() {
    let app = spawn_app_with(&[
        ("JETPAY_SANDBOX_RETRY_BASE_MS", "20"),
        ("JETPAY_SANDBOX_MAX_ATTEMPTS", "3"),
    ])
    .await;
    let customer = app.customer("outage").await;
    let during = customer.add_card().await;
    let form = customer.form_url(&during).await;

    let lock = app.db.lock().await;
    app.submit_card(&form, SUCCESS).await;
    let started = Instant::now();
    while app.webhook_state().await != WebhookState::Failed {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the sandbox never marked the webhook failed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("webhook failed after {:?} of outage", started.elapsed());
    lock.release().await;

    app.wait_for_state_within(&during, "active", Duration::from_secs(30))
        .await;
    let after = customer.add_card().await;
    app.submit_card(&customer.form_url(&after).await, SUCCESS)
        .await;
    app.wait_for_state_within(&after, "active", Duration::from_secs(30))
        .await;
    assert!(Counters::get(&app.backend.counters.webhook_revivals) >= 1);
    assert_ne!(app.webhook_state().await, WebhookState::Failed);
}

/// Deliveries every 2 s (more often than the background beat) must not keep stale cards from
/// expiring: the beat is a fixed interval, not a sleep that each delivery restarts.
#[tokio::test]
async fn steady_deliveries_do_not_starve_expiry() {
    let app = spawn_app_with(&[
        ("PENDING_TIMEOUT_SECS", "30"),
        ("SWEEP_INTERVAL_SECS", "5"),
        ("CARDS_ADDED_PER_HOUR", "1000"),
        ("IP_RATE_LIMIT_PER_MINUTE", "1000"),
    ])
    .await;
    let forgetful = app.customer("forgetful").await;
    let stale = forgetful.add_card().await;
    let busy = app.customer("busy").await;
    let started = Instant::now();
    let mut delivered = 0;
    while app.card_state(&stale).await == "pending" {
        assert!(
            started.elapsed() < Duration::from_secs(50),
            "a card pending for {:?} under steady traffic never expired ({delivered} deliveries)",
            started.elapsed()
        );
        let card = busy.add_card().await;
        app.submit_card(&busy.form_url(&card).await, SUCCESS).await;
        app.wait_for_state(&card, "active").await;
        delivered += 1;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    assert_eq!(app.card_state(&stale).await, "expired");
    eprintln!(
        "expired after {:?} with {delivered} deliveries meanwhile",
        started.elapsed()
    );
    assert!(delivered >= 10, "{delivered}");
}

/// 40 sign-ups at once (argon2: tens of ms of CPU and ~19 MiB each) must not stall the async
/// workers: a webhook delivery and `/health` stay fast meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_concurrent_sign_ups_do_not_stall_webhooks_or_health() {
    let app = std::sync::Arc::new(
        spawn_app_with(&[
            ("IP_RATE_LIMIT_PER_MINUTE", "1000"),
            ("TRUSTED_CLIENT_IP_HEADER", "X-Forwarded-For"),
        ])
        .await,
    );
    let signups: Vec<_> = (0..40)
        .map(|i| {
            let app = app.clone();
            tokio::spawn(async move {
                common::client()
                    .post(app.url("/api/sign_up"))
                    .header("x-forwarded-for", format!("198.51.100.{i}"))
                    .form(&[
                        ("name", "Load"),
                        (
                            "email",
                            &format!("load-{i}-{}@example.com", uuid::Uuid::new_v4()),
                        ),
                        ("password", "a long password"),
                    ])
                    .send()
                    .await
                    .unwrap()
                    .status()
            })
        })
        .collect();
    let http = common::client();
    let key = app.registration().await.api_key;
    let mut health = Vec::new();
    let mut webhook = Vec::new();
    let started = Instant::now();
    while signups.iter().any(|s| !s.is_finished()) || health.len() < 20 {
        let t = Instant::now();
        assert!(http
            .get(app.url("/health"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
        health.push(t.elapsed());
        let t = Instant::now();
        // An unsigned delivery: the receiver's whole request path, refused with 401.
        assert_eq!(app.deliver_with_key(Some(&key), None, b"{}").await, 401);
        webhook.push(t.elapsed());
        assert!(started.elapsed() < Duration::from_secs(120));
    }
    for s in signups {
        assert!(s.await.unwrap().is_success());
    }
    let p99 = |v: &mut Vec<Duration>| {
        v.sort();
        v[(v.len() * 99).div_ceil(100) - 1]
    };
    let (h, w) = (p99(&mut health), p99(&mut webhook));
    eprintln!(
        "during 40 sign-ups ({:?}): /health p99 {h:?} of {}, webhook p99 {w:?} of {}",
        started.elapsed(),
        health.len(),
        webhook.len()
    );
    assert!(h < Duration::from_millis(100), "/health p99 {h:?}");
    assert!(w < Duration::from_millis(100), "webhook p99 {w:?}");
}
