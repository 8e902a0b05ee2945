//! The randomized scenario runner: many customers add cards with random test cards while
//! Jetpay's deliveries are randomly delayed, duplicated (up to 3×), reordered within a batch,
//! dropped (and then replayed because the server notices the gap), failed and retried, or held
//! back (paused) so that batches form. After each scenario every card must be in exactly the
//! state Jetpay's event log implies, every event applied once, and no card may ever have been
//! seen moving backwards.
//!
//! `SCENARIOS` (default 24) sets how many scenarios run; `SCENARIO_LANES` (default 3) how many
//! independent server + Jetpay pairs run them side by side; `SCENARIO_SEED` replays a run (the
//! seed is printed). The 10,000-scenario run:
//!
//! ```sh
//! SCENARIOS=10000 SCENARIO_LANES=8 cargo test --release -p server --test faults_scenarios -- --nocapture
//! ```

mod common;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use common::{
    faults::{fast_sandbox_config, spawn_app_against, start_sandbox, submit_form, SandboxAdmin},
    Customer, TestApp,
};
use jetpay_sandbox::{Sandbox, Storage};
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::time::Instant;

const CUSTOMERS_PER_LANE: usize = 4;
const PENDING_CAP: usize = 3;
const MAX_CARDS: usize = 6;

/// Test cards with their expected result (`None`: succeeds).
const CARDS: [(&str, Option<&str>); 9] = [
    ("4242424242424242", None),
    ("5555555555554444", None),
    ("378282246310005", None),
    ("4000000000000002", Some("card_declined")),
    ("4000000000000119", Some("processing_error")),
    ("4000000000000069", Some("expired_card")),
    ("4000000000000127", Some("incorrect_cvc")),
    ("4000000000003220", None),
    ("6011111111111117", None),
];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---- the judge: what Jetpay's log implies against what the server holds ----------------------

/// One tokenization result in Jetpay's event log.
#[derive(Debug, Clone)]
struct LogEvent {
    id: i64,
    jetpay_card_id: String,
    succeeded: bool,
    last4: Option<String>,
}

/// What the server holds for one card of a scenario.
#[derive(Debug, Clone, Default)]
struct CardRecord {
    card_id: String,
    jetpay_card_id: String,
    /// Every distinct state seen while polling, in order, ending with the final state.
    seen: Vec<String>,
    last4: Option<String>,
    /// Rows in `card_changes` for the card (1 for "added", 1 per applied result).
    changes: i64,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Verdict {
    lost: usize,
    doubled: usize,
    backwards: usize,
    wrong: usize,
    problems: Vec<String>,
}

impl Verdict {
    fn add(&mut self, other: Verdict) {
        self.lost += other.lost;
        self.doubled += other.doubled;
        self.backwards += other.backwards;
        self.wrong += other.wrong;
        self.problems.extend(other.problems);
    }

    fn clean(&self) -> bool {
        self.lost + self.doubled + self.backwards + self.wrong == 0
    }
}

/// Compares the server's cards and recorded event ids with the event log.
/// `applied`: event id → how many rows `jetpay_events` has for it and with which outcome.
fn judge(log: &[LogEvent], cards: &[CardRecord], applied: &HashMap<i64, (i64, String)>) -> Verdict {
    let mut v = Verdict::default();
    let by_card: HashMap<&str, &LogEvent> =
        log.iter().map(|e| (e.jetpay_card_id.as_str(), e)).collect();
    for e in log {
        match applied.get(&e.id) {
            None => {
                v.lost += 1;
                v.problems.push(format!("event {} never recorded", e.id));
            }
            Some((n, _)) if *n != 1 => {
                v.doubled += 1;
                v.problems
                    .push(format!("event {} recorded {n} times", e.id));
            }
            Some((_, outcome)) if outcome != "applied" => {
                v.wrong += 1;
                v.problems
                    .push(format!("event {} recorded as {outcome}, not applied", e.id));
            }
            Some(_) => {}
        }
    }
    for card in cards {
        let event = by_card.get(card.jetpay_card_id.as_str());
        let implied = match event {
            None => "pending",
            Some(e) if e.succeeded => "active",
            Some(_) => "failed",
        };
        let last = card.seen.last().map(String::as_str).unwrap_or("missing");
        if last != implied {
            if last == "pending" {
                v.lost += 1;
            } else {
                v.wrong += 1;
            }
            v.problems.push(format!(
                "card {} is {last}, Jetpay's log implies {implied}",
                card.card_id
            ));
        }
        // Seen states must be a prefix of pending → (active | failed): never back, never twice.
        let forward = match card.seen.as_slice() {
            [] | [_] => true,
            [first, second] => first == "pending" && second != "pending",
            _ => false,
        };
        if !forward {
            v.backwards += 1;
            v.problems
                .push(format!("card {} moved {:?}", card.card_id, card.seen));
        }
        let expected_changes = 1 + i64::from(event.is_some());
        if card.changes > expected_changes {
            v.doubled += 1;
            v.problems.push(format!(
                "card {} has {} changes, expected {expected_changes}",
                card.card_id, card.changes
            ));
        }
        if let Some(e) = event {
            if card.last4 != e.last4 {
                v.wrong += 1;
                v.problems.push(format!(
                    "card {} shows last four {:?}, the event says {:?}",
                    card.card_id, card.last4, e.last4
                ));
            }
        }
    }
    v
}

fn log_event(v: &Value) -> Option<LogEvent> {
    if v["type"] != jetpay::unspecified::CARD_TOKENIZED_EVENT {
        return None;
    }
    Some(LogEvent {
        id: v["id"].as_i64()?,
        jetpay_card_id: v["data"]["creditCardId"].as_str()?.to_owned(),
        succeeded: v["data"]["state"] == jetpay::unspecified::TOKENIZATION_SUCCEEDED,
        last4: v["data"]["last4"].as_str().map(str::to_owned),
    })
}

// ---- scenarios ----------------------------------------------------------------------------

#[derive(Debug)]
struct Plan {
    /// (customer index, card number; `None` = the form is never submitted)
    cards: Vec<(usize, Option<&'static str>)>,
    faults: Value,
    pause: bool,
}

fn plan(rng: &mut StdRng) -> Plan {
    let n = rng.gen_range(1..=MAX_CARDS);
    let mut per_customer = [0usize; CUSTOMERS_PER_LANE];
    let mut cards = Vec::with_capacity(n);
    while cards.len() < n {
        let c = rng.gen_range(0..CUSTOMERS_PER_LANE);
        if per_customer[c] == PENDING_CAP {
            continue;
        }
        per_customer[c] += 1;
        let number = (!rng.gen_bool(0.05)).then(|| CARDS.choose(rng).unwrap().0);
        cards.push((c, number));
    }
    let mut faults = serde_json::Map::new();
    if rng.gen_bool(0.3) {
        faults.insert("delay_ms".into(), json!(rng.gen_range(1..150)));
    }
    if rng.gen_bool(0.4) {
        faults.insert("duplicate".into(), json!(rng.gen_range(2..=3)));
    }
    if rng.gen_bool(0.3) {
        let how = if rng.gen_bool(0.5) {
            "reverse"
        } else {
            "shuffle"
        };
        faults.insert("reorder".into(), json!(how));
    }
    let drop = rng.gen_bool(0.25);
    if drop {
        faults.insert("drop".into(), json!(true));
    }
    // A drop for good would also drop every replay: drops are always counted.
    if drop || rng.gen_bool(0.5) {
        faults.insert("count".into(), json!(rng.gen_range(1..=2)));
    }
    if rng.gen_bool(0.35) {
        faults.insert("fail_times".into(), json!(rng.gen_range(1..=3)));
    }
    Plan {
        cards,
        faults: Value::Object(faults),
        pause: rng.gen_bool(0.4),
    }
}

struct Lane {
    app: TestApp,
    _sandbox: Sandbox,
    admin: SandboxAdmin,
    customers: Vec<Customer>,
    form: reqwest::Client,
    /// Every card this lane created, for the final whole-log check.
    all_cards: Vec<(String, String)>,
    /// The newest event id of this lane's Jetpay log seen so far.
    log_end: i64,
}

#[derive(Debug, Default, Clone)]
struct Figures {
    scenarios: usize,
    cards: usize,
    events: usize,
    verdict: Verdict,
    deliveries: usize,
    dropped: usize,
    failed: usize,
    copies: usize,
}

impl Lane {
    async fn start() -> Lane {
        let sandbox = start_sandbox(fast_sandbox_config(Storage::Memory)).await;
        let base = sandbox.base_url();
        // Batches of up to 5, so a pause gathers several events into one delivery.
        let app = spawn_app_against(&base, 5, &[]).await;
        let mut customers = Vec::new();
        for i in 0..CUSTOMERS_PER_LANE {
            customers.push(app.customer(&format!("scenario{i}")).await);
        }
        let mut lane = Lane {
            app,
            _sandbox: sandbox,
            admin: SandboxAdmin::new(&base),
            customers,
            form: reqwest::Client::new(),
            all_cards: Vec::new(),
            log_end: 0,
        };
        // One result delivered without faults first. The server finds a lost delivery by the
        // hole it leaves in the event ids (or, at the end, by Jetpay's last_sent_event_id);
        // before it has received anything at all there is no id to compare with, so a drop of
        // the very first delivery to a new webhook would go unnoticed (a known limitation).
        let warm_up = lane.customers[0].add_card().await;
        let url = lane.customers[0].form_url(&warm_up).await;
        assert_eq!(submit_form(&lane.form, &url, "4242424242424242").await, 200);
        lane.app.wait_for_state(&warm_up, "active").await;
        let jetpay_card_id = lane.app.jetpay_card_id(&warm_up).await;
        lane.all_cards.push((warm_up, jetpay_card_id));
        lane.log_end = lane
            .admin
            .events_after(0)
            .await
            .last()
            .and_then(|e| e["id"].as_i64())
            .unwrap_or(0);
        lane
    }

    async fn card_row(&self, card_id: &str) -> (String, Option<String>, i64) {
        let pool = self.app.backend.store.pool();
        let (state, last4): (String, Option<String>) =
            sqlx::query_as("SELECT state, last4 FROM cards WHERE id = $1")
                .bind(card_id)
                .fetch_one(pool)
                .await
                .unwrap();
        let changes: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM card_changes WHERE card_id = $1")
                .bind(card_id)
                .fetch_one(pool)
                .await
                .unwrap();
        (state, last4, changes)
    }

    async fn recorded(&self, ids: &[i64]) -> HashMap<i64, (i64, String)> {
        let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) else {
            return HashMap::new();
        };
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT event_id, COUNT(*), MIN(outcome) FROM jetpay_events \
             WHERE event_id BETWEEN $1 AND $2 GROUP BY event_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(self.app.backend.store.pool())
        .await
        .unwrap();
        rows.into_iter().map(|(id, n, o)| (id, (n, o))).collect()
    }

    /// Runs one scenario and judges it.
    async fn run(&mut self, index: usize, seed: u64, figures: &mut Figures) {
        let mut rng =
            StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let plan = plan(&mut rng);
        let log_before = self.log_end;
        self.admin.clear_faults().await;
        let mut faults = plan.faults.clone();
        if plan.pause {
            faults["pause"] = json!(true);
        }
        self.admin.faults(&faults).await;

        // Every customer of the plan adds their cards at once.
        let adds = plan.cards.iter().map(|(customer, number)| {
            let customer = &self.customers[*customer];
            let form = &self.form;
            async move {
                let card_id = customer.add_card().await;
                if let Some(number) = number {
                    let url = customer.form_url(&card_id).await;
                    let status = submit_form(form, &url, number).await;
                    assert_eq!(status, 200, "hosted form refused a test card");
                }
                card_id
            }
        });
        let card_ids: Vec<String> = futures::future::join_all(adds).await;
        let mut records = Vec::new();
        for card_id in &card_ids {
            let jetpay_card_id = self.app.jetpay_card_id(card_id).await;
            self.all_cards
                .push((card_id.clone(), jetpay_card_id.clone()));
            records.push(CardRecord {
                card_id: card_id.clone(),
                jetpay_card_id,
                ..CardRecord::default()
            });
        }
        let submitted = plan.cards.iter().filter(|(_, n)| n.is_some()).count();

        // Jetpay's side: wait for every result to be in its log (delivery may be paused).
        let deadline = Instant::now() + Duration::from_secs(30);
        let log: Vec<LogEvent> = loop {
            let log: Vec<LogEvent> = self
                .admin
                .events_after(log_before)
                .await
                .iter()
                .filter_map(log_event)
                .collect();
            if log.len() >= submitted || Instant::now() > deadline {
                break log;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        if plan.pause {
            self.admin.faults(&json!({"resume": true})).await;
        }

        // Our side: poll until every card is where the log says, recording each state seen.
        let implied: HashMap<&str, &'static str> = log
            .iter()
            .map(|e| {
                (
                    e.jetpay_card_id.as_str(),
                    if e.succeeded { "active" } else { "failed" },
                )
            })
            .collect();
        let ids: Vec<i64> = log.iter().map(|e| e.id).collect();
        self.log_end = ids.iter().copied().max().unwrap_or(log_before);
        let deadline = Instant::now() + Duration::from_secs(45);
        loop {
            let mut done = true;
            for record in &mut records {
                let (state, last4, changes) = self.card_row(&record.card_id).await;
                if record.seen.last() != Some(&state) {
                    record.seen.push(state.clone());
                }
                record.last4 = last4;
                record.changes = changes;
                let want = implied
                    .get(record.jetpay_card_id.as_str())
                    .copied()
                    .unwrap_or("pending");
                done &= state == want;
            }
            let recorded = self.recorded(&ids).await;
            done &= ids.iter().all(|id| recorded.contains_key(id));
            if done || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.admin.clear_faults().await;
        let recorded = self.recorded(&ids).await;
        let mut verdict = judge(&log, &records, &recorded);
        if log.len() != submitted {
            verdict.lost += submitted.abs_diff(log.len());
            verdict.problems.push(format!(
                "{submitted} cards submitted but {} results in Jetpay's log",
                log.len()
            ));
        }
        if !verdict.clean() {
            verdict
                .problems
                .insert(0, format!("scenario {index} (seed {seed}): {plan:?}"));
        }
        // Abandoned forms stay pending (nothing implies otherwise); the customer removes them.
        for ((customer, number), card_id) in plan.cards.iter().zip(&card_ids) {
            if number.is_none() {
                let (status, body) = self.customers[*customer]
                    .call("remove_card", &[("card_id", card_id)])
                    .await;
                assert!(status.is_success(), "remove_card: {status} {body}");
            }
        }
        figures.scenarios += 1;
        figures.cards += records.len();
        figures.events += log.len();
        figures.verdict.add(verdict);
    }

    /// The whole run of this lane against the whole log: every event once, nothing extra.
    async fn final_check(&self, figures: &mut Figures) {
        let log: Vec<LogEvent> = self
            .admin
            .events_after(0)
            .await
            .iter()
            .filter_map(log_event)
            .collect();
        let ids: Vec<i64> = log.iter().map(|e| e.id).collect();
        // Late copies of duplicated deliveries may still be in flight: let them land first.
        let webhook = self
            .admin
            .webhooks()
            .await
            .into_iter()
            .find(|w| w["callback_url"] == self.app.url("/webhooks/jetpay"))
            .expect("our webhook");
        let identifier = webhook["identifier"].as_str().unwrap().to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let w = self.admin.webhooks().await;
            let idle = w.iter().all(|w| w["state"] == "active");
            if idle || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut cards = Vec::new();
        for (card_id, jetpay_card_id) in &self.all_cards {
            let (state, last4, changes) = self.card_row(card_id).await;
            // Removed cards were abandoned ones (checked pending before removal).
            if state == "removed" {
                continue;
            }
            cards.push(CardRecord {
                card_id: card_id.clone(),
                jetpay_card_id: jetpay_card_id.clone(),
                seen: vec![state],
                last4,
                changes,
            });
        }
        let recorded = self.recorded(&ids).await;
        let total: i64 = self.app.count("SELECT COUNT(*) FROM jetpay_events").await;
        let mut verdict = judge(&log, &cards, &recorded);
        if total as usize != log.len() {
            verdict.wrong += 1;
            verdict.problems.push(format!(
                "{total} event ids recorded, Jetpay's log has {}",
                log.len()
            ));
        }
        figures.verdict.add(verdict);
        for a in self.admin.attempts(&identifier).await {
            match a["outcome"].as_str() {
                Some("dropped") => figures.dropped += 1,
                Some("failed") => figures.failed += 1,
                _ => {}
            }
            if a["note"].as_str().is_some_and(|n| n.contains("duplicate")) {
                figures.copies += 1;
            }
            figures.deliveries += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_faults_never_lose_double_or_reverse_a_result() {
    let total = env_number("SCENARIOS", 24);
    let lanes = env_number("SCENARIO_LANES", 3).clamp(1, total.max(1));
    let seed = std::env::var("SCENARIO_SEED")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("scenario runner: {total} scenarios on {lanes} lanes, SCENARIO_SEED={seed}");
    let started = std::time::Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..lanes {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut lane = Lane::start().await;
            let mut figures = Figures::default();
            loop {
                let index = next.fetch_add(1, Ordering::SeqCst);
                if index >= total {
                    break;
                }
                lane.run(index, seed, &mut figures).await;
                if index > 0 && index.is_multiple_of(500) {
                    println!(
                        "  … {index} scenarios started, {:?} elapsed",
                        started.elapsed()
                    );
                }
            }
            lane.final_check(&mut figures).await;
            figures
        }));
    }
    let mut all = Figures::default();
    for task in tasks {
        let f = task.await.expect("lane panicked");
        all.scenarios += f.scenarios;
        all.cards += f.cards;
        all.events += f.events;
        all.deliveries += f.deliveries;
        all.dropped += f.dropped;
        all.failed += f.failed;
        all.copies += f.copies;
        all.verdict.add(f.verdict);
    }
    let v = &all.verdict;
    println!(
        "scenarios {}, cards {}, events {}, delivery attempts {} (dropped {}, failed {}, duplicated {}); \
         lost {}, doubled {}, backwards {}, wrong {}; {:.1?} (SCENARIO_SEED={seed})",
        all.scenarios,
        all.cards,
        all.events,
        all.deliveries,
        all.dropped,
        all.failed,
        all.copies,
        v.lost,
        v.doubled,
        v.backwards,
        v.wrong,
        started.elapsed()
    );
    for p in v.problems.iter().take(30) {
        println!("  {p}");
    }
    assert_eq!(all.scenarios, total);
    assert!(
        v.clean(),
        "lost {}, doubled {}, backwards {}, wrong {}",
        v.lost,
        v.doubled,
        v.backwards,
        v.wrong
    );
    // The runner exercised what it claims to.
    if total >= 20 {
        assert!(all.events > 0 && all.dropped + all.failed + all.copies > 0);
    }
}

/// The judge itself can fail: a lost, a doubled and a backwards card are each counted.
#[test]
fn the_judge_catches_lost_doubled_and_backwards_results() {
    let log = vec![
        LogEvent {
            id: 1,
            jetpay_card_id: "j1".into(),
            succeeded: true,
            last4: Some("4242".into()),
        },
        LogEvent {
            id: 2,
            jetpay_card_id: "j2".into(),
            succeeded: false,
            last4: Some("0002".into()),
        },
        LogEvent {
            id: 3,
            jetpay_card_id: "j3".into(),
            succeeded: true,
            last4: Some("4444".into()),
        },
    ];
    let card = |id: &str, seen: &[&str], changes: i64, last4: &str| CardRecord {
        card_id: id.into(),
        jetpay_card_id: format!("j{}", &id[1..]),
        seen: seen.iter().map(|s| s.to_string()).collect(),
        last4: Some(last4.into()),
        changes,
    };
    let applied: HashMap<i64, (i64, String)> = [
        (1, (1, "applied".into())),
        (2, (1, "applied".into())),
        (3, (1, "applied".into())),
    ]
    .into();
    let good = vec![
        card("c1", &["pending", "active"], 2, "4242"),
        card("c2", &["failed"], 2, "0002"),
        card("c3", &["active"], 2, "4444"),
    ];
    assert!(judge(&log, &good, &applied).clean());

    let mut missing = applied.clone();
    missing.remove(&3);
    let lost = vec![
        card("c1", &["pending", "active"], 2, "4242"),
        card("c2", &["failed"], 2, "0002"),
        card("c3", &["pending"], 1, "4444"),
    ];
    let v = judge(&log, &lost, &missing);
    assert_eq!(v.lost, 2, "{v:?}");

    let doubled = vec![
        card("c1", &["active"], 3, "4242"),
        card("c2", &["failed"], 2, "0002"),
        card("c3", &["active"], 2, "4444"),
    ];
    assert_eq!(judge(&log, &doubled, &applied).doubled, 1);

    let backwards = vec![
        card("c1", &["pending", "active", "failed"], 2, "4242"),
        card("c2", &["failed"], 2, "0002"),
        card("c3", &["active"], 2, "4444"),
    ];
    let v = judge(&log, &backwards, &applied);
    assert_eq!((v.backwards, v.wrong), (1, 1), "{v:?}");
}
