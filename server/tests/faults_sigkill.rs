//! The server binary killed with SIGKILL in the middle of a flood of webhook batches, three times,
//! and restarted on the same database and port: every card ends where Jetpay's event log says,
//! every event id is recorded exactly once, and no card changed twice.
//!
//! Jetpay is a sandbox in this test process with file storage, so its event log, cursors and
//! retries carry on across the server's deaths. The database is SQLite, or PostgreSQL when the
//! suite runs on it (`TEST_POSTGRES_URL`).

mod common;

use std::{collections::HashMap, time::Duration};

use common::{
    db::TestDatabase,
    faults::{fast_sandbox_config, signed_up, start_sandbox, submit_form, SandboxAdmin},
    process::{add_card, ServerProcess},
};
use jetpay::test_util::eventually;
use jetpay_sandbox::Storage;
use serde_json::json;
use sqlx::AnyPool;

const CUSTOMERS: usize = 12;
const CARDS_EACH: usize = 3;
const NUMBERS: [&str; 4] = [
    "4242424242424242",
    "4000000000000002",
    "5555555555554444",
    "4000000000000127",
];

async fn recorded_events(db: &AnyPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM jetpay_events")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_flood_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = start_sandbox(fast_sandbox_config(Storage::File(
        dir.path().join("jetpay.db"),
    )))
    .await;
    let admin = SandboxAdmin::new(&sandbox.base_url());
    let database = TestDatabase::create(dir.path()).await;
    let mut server = ServerProcess::new(
        dir.path().join("server.log"),
        &database.url(),
        sandbox.base_url().as_str(),
        None,
        &[],
    );
    server.start().await;
    let callback = format!("{}/webhooks/jetpay", server.base);
    admin.wait_for_webhook(&callback).await;

    // Many customers, each with the most pending cards allowed.
    let base = server.base.clone();
    let customers = futures::future::join_all((0..CUSTOMERS).map(|i| {
        let base = base.clone();
        async move { signed_up(&base, &format!("flood{i}")).await }
    }))
    .await;
    let mut cards = Vec::new();
    for http in &customers {
        for _ in 0..CARDS_EACH {
            cards.push(add_card(&base, http).await);
        }
    }

    // Every result queued at Jetpay, then released as a flood of small, slowed, doubled batches.
    admin.faults(&json!({"pause": true})).await;
    let form = common::client();
    for (i, (_, url)) in cards.iter().enumerate() {
        assert_eq!(
            submit_form(&form, url, NUMBERS[i % NUMBERS.len()]).await,
            200
        );
    }
    let total = cards.len();
    let log = eventually(
        Duration::from_secs(30),
        "every result in the log",
        || async {
            let log = admin.events_after(0).await;
            (log.len() >= total).then_some(log)
        },
    )
    .await;
    admin
        .faults(&json!({"delay_ms": 40, "duplicate": 2, "resume": true}))
        .await;

    let db = database.pool().await;
    let mut killed_at = Vec::new();
    // Three kills at random points of the flood (a kill may land between our commit and our
    // answer: Jetpay then retries a batch we already have).
    for fifth in 1..=3 {
        let threshold = rand::Rng::gen_range(
            &mut rand::thread_rng(),
            total * fifth / 5..total * (fifth + 1) / 5,
        ) as i64;
        let seen = eventually(Duration::from_secs(60), "the flood under way", || async {
            let n = recorded_events(&db).await;
            (n >= threshold).then_some(n)
        })
        .await;
        server.kill();
        killed_at.push(recorded_events(&db).await);
        assert!(
            seen < total as i64,
            "the flood was over before the kill; nothing tested"
        );
        server.start().await;
    }

    // Everything lands after the second restart.
    eventually(Duration::from_secs(90), "every event recorded", || async {
        (recorded_events(&db).await == total as i64).then_some(())
    })
    .await;
    admin.clear_faults().await;

    let implied: HashMap<String, &str> = log
        .iter()
        .map(|e| {
            let state = if e["data"]["state"] == "succeeded" {
                "active"
            } else {
                "failed"
            };
            (
                e["data"]["creditCardId"].as_str().unwrap().to_owned(),
                state,
            )
        })
        .collect();
    let mut wrong = 0;
    let mut doubled = 0;
    for (card, _) in &cards {
        let (state, jetpay_card_id): (String, String) =
            sqlx::query_as("SELECT state, jetpay_card_id FROM cards WHERE id = $1")
                .bind(card)
                .fetch_one(&db)
                .await
                .unwrap();
        let changes: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM card_changes WHERE card_id = $1")
                .bind(card)
                .fetch_one(&db)
                .await
                .unwrap();
        wrong += usize::from(implied.get(&jetpay_card_id) != Some(&state.as_str()));
        doubled += usize::from(changes != 2);
    }
    let ids: Vec<(i64, String)> =
        sqlx::query_as("SELECT event_id, outcome FROM jetpay_events ORDER BY event_id")
            .fetch_all(&db)
            .await
            .unwrap();
    let log_ids: Vec<i64> = log.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    let recorded_ids: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
    let applied = ids.iter().filter(|(_, o)| o == "applied").count();
    println!(
        "SIGKILL run: {} cards, {} events, killed at {:?} events recorded, then {} recorded \
         ({} applied); wrong {wrong}, doubled {doubled}",
        cards.len(),
        log.len(),
        killed_at,
        recorded_ids.len(),
        applied
    );
    assert_eq!(recorded_ids, log_ids, "every event id exactly once");
    assert_eq!(applied, total);
    assert_eq!((wrong, doubled), (0, 0));
    sandbox.shutdown().await;
}
