//! Two server processes on one PostgreSQL database, against one sandbox: every instance behaves
//! the same, changes cross between them, and coordination holds when they race or one dies.
//!
//! These tests need PostgreSQL (`TEST_POSTGRES_URL`, which the test command sets); their names
//! start with `two_instances_` so a run on SQLite alone can leave them out (see the README).

mod common;

use std::time::{Duration, Instant};

use common::{
    db::{postgres_server, TestDatabase},
    faults::{fast_sandbox_config, signed_up, start_sandbox, submit_form, SandboxAdmin},
    process::{add_card, free_port, round_robin, ServerProcess},
};
use jetpay::test_util::eventually;
use jetpay_sandbox::{Sandbox, Storage};
use serde_json::{json, Value};
use tokio::sync::mpsc;

const SUCCESS: &str = "4242424242424242";

struct Cluster {
    a: ServerProcess,
    b: ServerProcess,
    /// Where Jetpay delivers and customers connect: a round-robin proxy, or one instance.
    public: String,
    sandbox: Sandbox,
    admin: SandboxAdmin,
    database: TestDatabase,
    _dir: tempfile::TempDir,
}

/// How Jetpay reaches the two instances.
enum Front {
    /// A round-robin proxy in front of both, as a load balancer.
    Proxy,
    /// Straight to instance A (so a test knows which instance applies deliveries).
    InstanceA,
}

impl Cluster {
    async fn start(front: Front) -> Cluster {
        let server = postgres_server().expect(
            "two instances need PostgreSQL: set TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432 \
             (the test command does)",
        );
        // KEEP_TEST_DIRS=1 keeps the instances' logs (a.log, b.log) for a failed run.
        let dir = tempfile::Builder::new()
            .disable_cleanup(std::env::var_os("KEEP_TEST_DIRS").is_some())
            .tempdir()
            .unwrap();
        eprintln!("instances' logs: {}", dir.path().display());
        let database = TestDatabase::create_postgres(server).await;
        let sandbox = start_sandbox(fast_sandbox_config(Storage::File(
            dir.path().join("jetpay.db"),
        )))
        .await;
        let admin = SandboxAdmin::new(&sandbox.base_url());
        let jetpay = sandbox.base_url().to_string();
        // Both instances must tell Jetpay the same callback URL, so they share one webhook; the
        // ports are chosen before either starts.
        let (port_a, port_b) = (free_port(), free_port());
        let (base_a, base_b) = (format!("127.0.0.1:{port_a}"), format!("127.0.0.1:{port_b}"));
        let public = match front {
            Front::Proxy => round_robin(vec![base_a.clone(), base_b.clone()]).await,
            Front::InstanceA => format!("http://{base_a}"),
        };
        let instance = |name: &str, addr: &str| {
            ServerProcess::new(
                dir.path().join(format!("{name}.log")),
                &database.url(),
                &jetpay,
                Some(&public),
                &[("LEPTOS_SITE_ADDR", addr)],
            )
        };
        let mut a = instance("a", &base_a);
        let mut b = instance("b", &base_b);
        a.base = format!("http://{base_a}");
        b.base = format!("http://{base_b}");
        tokio::join!(a.start(), b.start());
        let callback = format!("{public}/webhooks/jetpay");
        admin.wait_for_webhook(&callback).await;
        Cluster {
            a,
            b,
            public,
            sandbox,
            admin,
            database,
            _dir: dir,
        }
    }
}

/// A live card stream's events as they arrive: (change, when).
async fn follow(base: &str, http: &reqwest::Client) -> mpsc::UnboundedReceiver<(Value, Instant)> {
    let mut response = http
        .get(format!("{base}/account/cards/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut text = String::new();
        while let Ok(Some(bytes)) = response.chunk().await {
            let at = Instant::now();
            text.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = text.find("\n\n") {
                let frame: String = text.drain(..end + 2).collect();
                if !frame.contains("event: card") {
                    continue;
                }
                if let Some(data) = frame.lines().find_map(|l| l.strip_prefix("data: ")) {
                    if sender
                        .send((serde_json::from_str(data).unwrap(), at))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    receiver
}

/// Waits for the stream's next change of `card` with `announcement`.
async fn next_change(
    stream: &mut mpsc::UnboundedReceiver<(Value, Instant)>,
    card: &str,
    announcement: &str,
) -> Instant {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (change, at) = tokio::time::timeout_at(deadline, stream.recv())
            .await
            .unwrap_or_else(|_| panic!("no {announcement} for {card} within 15 s"))
            .expect("stream open");
        if change["card_id"] == card && change["announcement"] == announcement {
            return at;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_a_webhook_applied_by_one_reaches_a_stream_on_the_other() {
    let cluster = Cluster::start(Front::InstanceA).await;
    let (a, b) = (&cluster.a.base, &cluster.b.base);
    // Signed up on B; the same session works on A (sessions are in the database).
    let http = signed_up(b, "crossing").await;
    let mut on_a = follow(a, &http).await;
    let mut on_b = follow(b, &http).await;
    let form = common::client();
    let mut extra_ms = Vec::new();
    let mut end_to_end_ms = Vec::new();
    for _ in 0..20 {
        let (card, url) = add_card(b, &http).await;
        let submitted = Instant::now();
        assert_eq!(submit_form(&form, &url, SUCCESS).await, 200);
        // Jetpay delivers to A only; B hears of it through the database.
        let (at_a, at_b) = tokio::join!(
            next_change(&mut on_a, &card, "activated"),
            next_change(&mut on_b, &card, "activated")
        );
        extra_ms.push(at_b.saturating_duration_since(at_a).as_secs_f64() * 1000.0);
        end_to_end_ms.push(at_b.duration_since(submitted).as_secs_f64() * 1000.0);
    }
    let deliveries_to_b = cluster.b.metric("webhook_deliveries_total").await;
    assert_eq!(deliveries_to_b, 0.0, "B received deliveries itself");
    extra_ms.sort_by(f64::total_cmp);
    end_to_end_ms.sort_by(f64::total_cmp);
    println!(
        "A→B: 20 activations applied by A; B's stream got each {:.1} ms (median) / {:.1} ms (p95) / \
         {:.1} ms (max) after A's stream; form submit → B's stream {:.0} ms median",
        percentile(&extra_ms, 0.5),
        percentile(&extra_ms, 0.95),
        percentile(&extra_ms, 1.0),
        percentile(&end_to_end_ms, 0.5),
    );
    assert!(
        percentile(&extra_ms, 1.0) < 1000.0,
        "B heard of a change more than a second after A: {extra_ms:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_a_dropped_listen_connection_loses_no_change() {
    let cluster = Cluster::start(Front::InstanceA).await;
    let (a, b) = (&cluster.a.base, &cluster.b.base);
    let http = signed_up(a, "listener").await;
    let mut on_b = follow(b, &http).await;
    let pool = cluster.database.pool().await;
    for round in 0..3 {
        let (card, _) = add_card(a, &http).await;
        next_change(&mut on_b, &card, "added").await;
        // Cut every instance's LISTEN connection, then change a card on A at once: its
        // notification goes nowhere, and B must find the change in the log when it listens again.
        let cut: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = current_database() AND query LIKE 'LISTEN%') AS t",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert!(cut >= 2, "round {round}: {cut} listeners cut");
        let response = http
            .post(format!("{a}/api/remove_card"))
            .form(&[("card_id", card.as_str())])
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        next_change(&mut on_b, &card, "removed").await;
    }
}

/// Loads the Saved cards page `n` times at once on each instance; how many loads failed.
async fn burst(cluster: &Cluster, http: &reqwest::Client, n: usize) -> usize {
    let loads = [&cluster.a.base, &cluster.b.base]
        .into_iter()
        .flat_map(|base| {
            (0..n).map(move |_| async move {
                http.get(format!("{base}/account/cards"))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        });
    futures::future::join_all(loads)
        .await
        .into_iter()
        .filter(|status| !matches!(status, Ok(s) if s.is_success()))
        .count()
}

/// A database restart or failover drops every connection the instances hold. The pools check a
/// connection that sat idle before handing it out, so the first requests afterwards (customers'
/// and Jetpay's) are served, not failed on a dead connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_the_first_requests_after_the_database_drops_their_connections() {
    let cluster = Cluster::start(Front::InstanceA).await;
    let b = &cluster.b.base;
    let http = signed_up(b, "failover").await;
    let mut on_b = follow(b, &http).await;
    let form = common::client();
    let pool = cluster.database.pool().await;
    // Pages loaded in bursts fill both pools with connections, most of them idle afterwards.
    assert_eq!(burst(&cluster, &http, 16).await, 0);
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'saved-cards'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(open >= 8, "{open} connections");
    let cut: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'saved-cards') AS t",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // Longer than the pools' idle recheck (one second), as a restart takes at the least.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let failed = burst(&cluster, &http, 16).await;
    assert_eq!(
        failed, 0,
        "{failed} of 32 page loads failed after {cut} connections were cut"
    );
    // And Jetpay's delivery to A (its webhook) is applied at its first attempt.
    let (card, url) = add_card(b, &http).await;
    assert_eq!(submit_form(&form, &url, SUCCESS).await, 200);
    next_change(&mut on_b, &card, "activated").await;
    let callback = format!("{}/webhooks/jetpay", cluster.public);
    let identifier = cluster.admin.webhook_identifier(&callback).await;
    let attempts = cluster.admin.attempts(&identifier).await;
    let outcomes: Vec<&Value> = attempts.iter().map(|a| &a["outcome"]).collect();
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| *o == "delivered"),
        "a delivery failed: {outcomes:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_concurrent_first_add_card_creates_one_contact_at_jetpay() {
    let cluster = Cluster::start(Front::Proxy).await;
    let (a, b) = (&cluster.a.base, &cluster.b.base);
    for i in 0..8 {
        let http = signed_up(a, &format!("racer{i}")).await;
        // Both instances at once, each asked for the customer's first card.
        let ((card_a, _), (card_b, _)) = tokio::join!(add_card(a, &http), add_card(b, &http));
        assert_ne!(card_a, card_b);
    }
    let contacts = cluster.admin.contacts().await;
    println!(
        "8 customers, each adding two cards at once on two instances: {} contacts at Jetpay",
        contacts.len()
    );
    assert_eq!(contacts.len(), 8, "one contact per customer: {contacts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sigkill_one_mid_flood_while_the_other_serves() {
    const CUSTOMERS: usize = 8;
    const CARDS_EACH: usize = 3;
    let mut cluster = Cluster::start(Front::Proxy).await;
    let (a, b) = (cluster.a.base.clone(), cluster.b.base.clone());
    let mut customers = Vec::new();
    let mut cards = Vec::new();
    for i in 0..CUSTOMERS {
        let http = signed_up(&a, &format!("flood{i}")).await;
        for j in 0..CARDS_EACH {
            let base = if (i + j) % 2 == 0 { &a } else { &b };
            cards.push(add_card(base, &http).await);
        }
        customers.push(http);
    }
    let total = cards.len();
    cluster.admin.faults(&json!({"pause": true})).await;
    let form = common::client();
    for (card, url) in &cards {
        assert_eq!(submit_form(&form, url, SUCCESS).await, 200, "{card}");
    }
    let log = eventually(
        Duration::from_secs(30),
        "every result in the log",
        || async {
            let log = cluster.admin.events_after(0).await;
            (log.len() >= total).then_some(log)
        },
    )
    .await;
    cluster
        .admin
        .faults(&json!({"delay_ms": 40, "duplicate": 2, "resume": true}))
        .await;

    let pool = cluster.database.pool().await;
    let recorded = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM jetpay_events")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let threshold = (total / 3) as i64;
    eventually(Duration::from_secs(60), "the flood under way", || async {
        (recorded().await >= threshold).then_some(())
    })
    .await;
    cluster.a.kill();
    let killed_at = recorded().await;
    assert!(
        killed_at < total as i64,
        "the flood was over before the kill"
    );

    // B serves the customers of A meanwhile: pages, and the rest of the flood.
    for http in &customers {
        let response = http
            .post(format!("{b}/api/list_cards"))
            .form(&[("x", "")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    eventually(Duration::from_secs(90), "every event recorded", || async {
        (recorded().await == total as i64).then_some(())
    })
    .await;
    cluster.admin.clear_faults().await;

    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.state, (SELECT COUNT(*) FROM card_changes x WHERE x.card_id = c.id) FROM cards c",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let active = rows.iter().filter(|(s, _)| s == "active").count();
    let doubled = rows.iter().filter(|(_, n)| *n != 2).count();
    let ids: Vec<i64> = sqlx::query_scalar("SELECT event_id FROM jetpay_events ORDER BY event_id")
        .fetch_all(&pool)
        .await
        .unwrap();
    let log_ids: Vec<i64> = log.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    println!(
        "two instances, A killed at {killed_at} of {total} events: {} recorded, {active} active, \
         {doubled} doubled",
        ids.len()
    );
    assert_eq!(ids, log_ids, "every event id exactly once");
    assert_eq!((active, doubled), (total, 0));
    let _ = &cluster.public;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_only_the_leader_asks_jetpay_to_replay() {
    let cluster = Cluster::start(Front::Proxy).await;
    let (a, b) = (&cluster.a.base, &cluster.b.base);
    let http = signed_up(a, "holes").await;
    let form = common::client();
    // One result delivered first: a hole is a missing id after one we have.
    let (first, url) = add_card(a, &http).await;
    assert_eq!(submit_form(&form, &url, SUCCESS).await, 200);
    let pool = cluster.database.pool().await;
    let active = |card: String| {
        let pool = pool.clone();
        async move {
            eventually(Duration::from_secs(30), "the result applied", || async {
                let state: String = sqlx::query_scalar("SELECT state FROM cards WHERE id = $1")
                    .bind(&card)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                (state == "active").then_some(())
            })
            .await
        }
    };
    active(first).await;
    for round in 0..3 {
        // The first delivery of each round is lost on the way (Jetpay thinks it was delivered):
        // a hole the leader must ask Jetpay to replay.
        cluster
            .admin
            .faults(&json!({"drop": true, "count": 1}))
            .await;
        let mut cards = Vec::new();
        for _ in 0..2 {
            let (card, url) = add_card(if round % 2 == 0 { a } else { b }, &http).await;
            assert_eq!(submit_form(&form, &url, SUCCESS).await, 200);
            cards.push(card);
        }
        for card in cards {
            active(card).await;
        }
    }
    let replays = (
        cluster.a.metric("jetpay_replay_requests_total").await,
        cluster.b.metric("jetpay_replay_requests_total").await,
    );
    let leaders = (
        cluster.a.metric("jobs_leader").await,
        cluster.b.metric("jobs_leader").await,
    );
    println!("replay requests (A, B): {replays:?}; leader (A, B): {leaders:?}");
    assert!(
        matches!(leaders, (1.0, 0.0) | (0.0, 1.0)),
        "exactly one leader: {leaders:?}"
    );
    assert!(
        replays.0 == 0.0 || replays.1 == 0.0,
        "both instances asked Jetpay to replay: {replays:?}"
    );
    assert!(
        replays.0 + replays.1 >= 3.0,
        "every hole was replayed on request"
    );
    cluster.sandbox.shutdown().await;
}
