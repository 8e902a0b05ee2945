//! The server binary killed with SIGKILL in the middle of a flood of webhook batches, three times,
//! and restarted on the same database and port: every card ends where Jetpay's event log says,
//! every event id is recorded exactly once, and no card changed twice.
//!
//! Jetpay is a sandbox in this test process with file storage, so its event log, cursors and
//! retries carry on across the server's deaths.

mod common;

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use common::faults::{fast_sandbox_config, signed_up, start_sandbox, submit_form, SandboxAdmin};
use jetpay::test_util::{eventually, SANDBOX_TOKEN};
use jetpay_sandbox::Storage;
use serde_json::{json, Value};
use sqlx::{sqlite::SqliteConnectOptions, SqlitePool};

const CUSTOMERS: usize = 12;
const CARDS_EACH: usize = 3;
const NUMBERS: [&str; 4] = [
    "4242424242424242",
    "4000000000000002",
    "5555555555554444",
    "4000000000000127",
];

struct Server {
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    base: String,
}

impl Server {
    fn new(dir: &Path, jetpay: &str) -> Server {
        // A free port, kept across restarts so the webhook's callback URL stays the same.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let env = [
            ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
            ("PUBLIC_URL", base.clone()),
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.join("app.db").display()),
            ),
            ("JETPAY_BASE_URL", jetpay.to_owned()),
            ("JETPAY_API_TOKEN", SANDBOX_TOKEN.to_owned()),
            ("WEBHOOK_MAX_WAIT_SECONDS", "0".to_owned()),
            ("WEBHOOK_MAX_BATCH_SIZE", "2".to_owned()),
            ("GAP_GRACE_SECS", "1".to_owned()),
            ("SWEEP_INTERVAL_SECS", "1".to_owned()),
            // One address adds every card of the flood.
            ("IP_RATE_LIMIT_PER_MINUTE", "10000".to_owned()),
            ("CARDS_ADDED_PER_HOUR", "10000".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Server {
            env,
            log: dir.join("server.log"),
            child: None,
            base,
        }
    }

    async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("server binary starts");
        self.child = Some(child);
        let health = format!("{}/health", self.base);
        let http = reqwest::Client::new();
        eventually(
            Duration::from_secs(60),
            "the server answers /health",
            || {
                let request = http.get(&health).send();
                async move { request.await.ok().filter(|r| r.status().is_success()) }
            },
        )
        .await;
    }

    /// SIGKILL: no shutdown code runs.
    fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn add_card(base: &str, http: &reqwest::Client) -> (String, String) {
    let response = http
        .post(format!("{base}/api/add_card"))
        .form(&[("replaces", "")])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "add_card: {status} {body}");
    let card: String = serde_json::from_str(&body).unwrap();
    let response = http
        .post(format!("{base}/api/list_cards"))
        .form(&[("x", "")])
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    let url = page["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == card.as_str())
        .and_then(|c| c["form_url"].as_str())
        .expect("form url")
        .to_owned();
    (card, url)
}

async fn recorded_events(db: &SqlitePool) -> i64 {
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
    let mut server = Server::new(dir.path(), sandbox.base_url().as_str());
    server.start().await;
    let callback = format!("{}/webhooks/jetpay", server.base);
    eventually(Duration::from_secs(30), "webhook registered", || async {
        admin
            .webhooks()
            .await
            .into_iter()
            .any(|w| w["callback_url"] == callback.as_str())
            .then_some(())
    })
    .await;

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
    let form = reqwest::Client::new();
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

    let db = SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(dir.path().join("app.db"))
            .read_only(true),
    )
    .await
    .unwrap();
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
