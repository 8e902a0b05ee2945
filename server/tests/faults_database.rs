//! The database failing under a webhook delivery: locked by another writer past the busy
//! timeout, or failing outright mid-transaction (standing in for a full disk). The webhook must
//! answer non-2xx so Jetpay retries, apply nothing of the batch, and apply it exactly once when
//! Jetpay's retry comes after the database is back.

mod common;

use std::time::Duration;

use common::{faults::SandboxAdmin, spawn_app, TestApp};
use jetpay::test_util::eventually;
use serde_json::Value;

/// Jetpay's attempts to deliver to our webhook, as the sandbox recorded them.
async fn our_attempts(app: &TestApp, admin: &SandboxAdmin) -> Vec<Value> {
    let identifier = admin.webhook_identifier(&app.url("/webhooks/jetpay")).await;
    admin.attempts(&identifier).await
}

/// A pending card and its Jetpay form, not yet submitted. Signing up and adding a card write
/// to the database, so this happens before the database is broken.
async fn pending_card(app: &TestApp) -> (String, String) {
    let customer = app.customer("db-fault").await;
    let card = customer.add_card().await;
    let url = customer.form_url(&card).await;
    (card, url)
}

/// Nothing of the batch is in the database.
async fn nothing_applied(app: &TestApp, card: &str) {
    assert_eq!(app.card_state(card).await, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM jetpay_events").await, 0);
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM card_changes WHERE card_id = $1")
        .bind(card)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, 1, "only the 'added' change");
}

/// After the retry: applied once.
async fn applied_once(app: &TestApp, admin: &SandboxAdmin, card: &str, refused_with: i64) {
    app.wait_for_state(card, "active").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM jetpay_events").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jetpay_events WHERE outcome = 'applied'")
            .await,
        1
    );
    let changes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM card_changes WHERE card_id = $1")
        .bind(card)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(changes, 2, "added, then active: once");
    let attempts = eventually(Duration::from_secs(10), "a delivered attempt", || async {
        let a = our_attempts(app, admin).await;
        a.iter().any(|a| a["outcome"] == "delivered").then_some(a)
    })
    .await;
    let codes: Vec<Option<i64>> = attempts.iter().map(|a| a["status_code"].as_i64()).collect();
    assert_eq!(codes.first(), Some(&Some(refused_with)), "{codes:?}");
    assert_eq!(
        attempts.last().unwrap()["outcome"],
        "delivered",
        "{codes:?}"
    );
}

#[tokio::test]
async fn a_locked_database_gets_503_then_the_retry_applies_once() {
    let app = spawn_app().await;
    let admin = SandboxAdmin::new(&app.sandbox);
    let (card, form_url) = pending_card(&app).await;

    // Another writer holds the database past the store's 5 s busy timeout while Jetpay delivers.
    let locker = app.db.lock().await;
    app.submit_card(&form_url, "4242424242424242").await;
    let refused = eventually(Duration::from_secs(30), "a refused delivery", || async {
        our_attempts(&app, &admin)
            .await
            .into_iter()
            .find(|a| a["outcome"] == "failed")
    })
    .await;
    assert_eq!(refused["status_code"], 503, "{refused}");
    // The server waited for the lock (the store's 5 s busy timeout) before giving up.
    assert!(
        refused["latency_ms"].as_i64().unwrap() >= 4_000,
        "refused without waiting for the lock: {refused}"
    );
    nothing_applied(&app, &card).await;

    locker.release().await;
    applied_once(&app, &admin, &card, 503).await;
}

#[tokio::test]
async fn a_failing_database_gets_503_and_nothing_half_applied() {
    let app = spawn_app().await;
    let admin = SandboxAdmin::new(&app.sandbox);
    let (card, form_url) = pending_card(&app).await;

    // The result's card update succeeds, then recording the change fails: the whole batch must
    // roll back (as with a full disk: an error after the first write of the transaction).
    sqlx::query("ALTER TABLE card_changes RENAME TO card_changes_away")
        .execute(&app.pool)
        .await
        .unwrap();
    app.submit_card(&form_url, "4242424242424242").await;
    let refused = eventually(Duration::from_secs(30), "a refused delivery", || async {
        our_attempts(&app, &admin)
            .await
            .into_iter()
            .find(|a| a["outcome"] == "failed")
    })
    .await;
    assert_eq!(refused["status_code"], 503, "{refused}");
    assert_eq!(app.card_state(&card).await, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM jetpay_events").await, 0);

    sqlx::query("ALTER TABLE card_changes_away RENAME TO card_changes")
        .execute(&app.pool)
        .await
        .unwrap();
    nothing_applied(&app, &card).await;
    applied_once(&app, &admin, &card, 503).await;
}
