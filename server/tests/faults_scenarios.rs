//! The randomized scenario runner: many customers add cards with random test cards while
//! Jetpay's deliveries are randomly delayed, duplicated (up to 3×), reordered within a batch,
//! dropped (and then replayed because the server notices the gap), failed and retried, or held
//! back (paused) so that batches form; some scenarios fail deliveries for longer than Jetpay's
//! retry budget (the webhook goes `failed` and the server must revive it), and some customers
//! remove a card while its result is on the way. Meanwhile every lane has steady traffic (a
//! customer adding a card every second) and a second webhook at the same Jetpay whose genuinely
//! signed batches are forwarded to our server, which must refuse every one. After each scenario
//! every card must be in exactly the state Jetpay's event log implies, every event applied once
//! (counted as changes made per event, which can exceed one), and no card may ever have been
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
use jetpay_sandbox::{Sandbox, SandboxConfig, Storage};
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
    /// Rows in `card_changes` for the card (1 for "added", 1 per applied result, 1 for
    /// "removed").
    changes: i64,
    /// The customer removed it while its result was on the way.
    removed: bool,
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
/// `applied`: event id → how many changes it made to cards (its applications) and the outcome
/// recorded for it.
fn judge(log: &[LogEvent], cards: &[CardRecord], applied: &HashMap<i64, (i64, String)>) -> Verdict {
    let mut v = Verdict::default();
    let by_card: HashMap<&str, &LogEvent> =
        log.iter().map(|e| (e.jetpay_card_id.as_str(), e)).collect();
    let removed: std::collections::HashSet<&str> = cards
        .iter()
        .filter(|c| c.removed)
        .map(|c| c.jetpay_card_id.as_str())
        .collect();
    for e in log {
        let card_removed = removed.contains(e.jetpay_card_id.as_str());
        match applied.get(&e.id) {
            None => {
                v.lost += 1;
                v.problems.push(format!("event {} never recorded", e.id));
            }
            Some((n, _)) if *n > 1 => {
                v.doubled += 1;
                v.problems.push(format!("event {} applied {n} times", e.id));
            }
            // A result that lands after the customer removed the card changes nothing.
            Some((0, outcome)) if card_removed && outcome == "ignored" => {}
            Some((1, outcome)) if outcome == "applied" => {}
            Some((n, outcome)) => {
                v.wrong += 1;
                v.problems.push(format!(
                    "event {} recorded as {outcome} with {n} applications",
                    e.id
                ));
            }
        }
    }
    for card in cards {
        let event = by_card.get(card.jetpay_card_id.as_str());
        let implied = match event {
            _ if card.removed => "removed",
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
        // Seen states must be a prefix of pending → (active | failed) (→ removed, when the
        // customer removed it): never back, never twice.
        let seen = match card.seen.split_last() {
            Some((last, before)) if card.removed && last == "removed" => before,
            _ => card.seen.as_slice(),
        };
        let forward = match seen {
            [] | [_] => true,
            [first, second] => first == "pending" && second != "pending",
            _ => false,
        };
        if !forward {
            v.backwards += 1;
            v.problems
                .push(format!("card {} moved {:?}", card.card_id, card.seen));
        }
        let applied_here = event
            .and_then(|e| applied.get(&e.id))
            .map_or(0, |(n, _)| *n);
        let expected_changes = 1 + applied_here.min(1) + i64::from(card.removed);
        if card.changes > expected_changes {
            v.doubled += 1;
            v.problems.push(format!(
                "card {} has {} changes, expected {expected_changes}",
                card.card_id, card.changes
            ));
        }
        if let Some(e) = event.filter(|_| applied_here > 0) {
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
    /// (customer index, card number; `None` = the form is never submitted, whether the
    /// customer removes the card right after submitting it)
    cards: Vec<(usize, Option<&'static str>, bool)>,
    faults: Value,
    pause: bool,
    /// Deliveries fail for longer than Jetpay's retry budget: the webhook goes `failed`.
    outage: bool,
}

/// Failed attempts in a row after which the lanes' Jetpay marks a webhook `failed`.
const LANE_MAX_ATTEMPTS: u32 = 5;

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
        let remove = number.is_some() && rng.gen_bool(0.1);
        cards.push((c, number, remove));
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
    let outage = rng.gen_bool(0.08);
    if outage {
        // Two webhooks share the failures; enough for ours to exhaust its budget.
        faults.insert("fail_times".into(), json!(3 * LANE_MAX_ATTEMPTS));
    } else if rng.gen_bool(0.35) {
        faults.insert("fail_times".into(), json!(rng.gen_range(1..=3)));
    }
    Plan {
        cards,
        faults: Value::Object(faults),
        pause: rng.gen_bool(0.4),
        outage,
    }
}

/// Counts of the forwarded foreign batches: every one must be refused.
#[derive(Debug, Default)]
struct Forwarded {
    refused: AtomicUsize,
    accepted: AtomicUsize,
}

#[derive(Clone)]
struct Forwarder {
    target: String,
    our_key: String,
    counts: Arc<Forwarded>,
    http: reqwest::Client,
}

/// The second webhook's receiver: forwards what Jetpay genuinely signed for it to our server,
/// once as is and once with our callback API key (as if it had leaked), and counts the answers.
async fn forward(
    axum::extract::State(f): axum::extract::State<Forwarder>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> &'static str {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    for key in [None, Some(&f.our_key)] {
        let mut request = f
            .http
            .post(&f.target)
            .header("content-type", "application/json")
            .header("authorization", &authorization)
            .body(body.clone());
        if let Some(key) = key {
            request = request.header(jetpay::unspecified::CALLBACK_API_KEY_HEADER, key);
        }
        match request.send().await.map(|r| r.status().as_u16()) {
            Ok(401) => f.counts.refused.fetch_add(1, Ordering::SeqCst),
            _ => f.counts.accepted.fetch_add(1, Ordering::SeqCst),
        };
    }
    "ok"
}

async fn start_forwarder(app: &TestApp, jetpay: &url::Url) -> Arc<Forwarded> {
    let counts = Arc::new(Forwarded::default());
    let forwarder = Forwarder {
        target: app.callback_url(),
        our_key: app.registration().await.api_key,
        counts: counts.clone(),
        http: common::client(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = axum::Router::new()
        .route("/", axum::routing::post(forward))
        .with_state(forwarder);
    tokio::spawn(async move { axum::serve(listener, router).await });
    jetpay::Client::new(jetpay::ClientConfig::new(
        jetpay.clone(),
        jetpay::ApiToken::new(jetpay::test_util::SANDBOX_TOKEN),
    ))
    .unwrap()
    .create_webhook(&jetpay::wire::NewWebhook {
        callback_url: format!("http://{addr}/"),
        callback_api_key: Some("another-companys-key".into()),
        max_wait_seconds: Some(0),
        max_batch_size: Some(5),
        ..Default::default()
    })
    .await
    .unwrap();
    counts
}

/// A customer adding a card every second for the whole run: deliveries more often than the
/// server's background beat. Records what it added, for the final check.
fn steady_traffic(
    customer: Customer,
    added: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    app_jetpay_ids: TestAppIds,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let form = common::client();
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (status, body) = customer.call("add_card", &[]).await;
            // Refused while earlier ones wait (pending cap during a pause): try again later.
            let Ok(card_id) = serde_json::from_str::<String>(&body).map_err(|_| status) else {
                continue;
            };
            let Some(url) = app_jetpay_ids.form_url(&customer, &card_id).await else {
                continue;
            };
            if submit_form(&form, &url, "4242424242424242").await == 200 {
                let jetpay_card_id = app_jetpay_ids.jetpay_card_id(&card_id).await;
                added.lock().unwrap().push((card_id, jetpay_card_id));
            }
        }
    })
}

/// What the steady-traffic task needs of the app (its pool), without borrowing the lane.
#[derive(Clone)]
struct TestAppIds {
    pool: sqlx::AnyPool,
}

impl TestAppIds {
    async fn jetpay_card_id(&self, card_id: &str) -> String {
        sqlx::query_scalar("SELECT jetpay_card_id FROM cards WHERE id = $1")
            .bind(card_id)
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    async fn form_url(&self, customer: &Customer, card_id: &str) -> Option<String> {
        let (status, body) = customer.call("list_cards", &[]).await;
        if !status.is_success() {
            return None;
        }
        let page: Value = serde_json::from_str(&body).ok()?;
        page["cards"]
            .as_array()?
            .iter()
            .find(|c| c["id"] == card_id)
            .and_then(|c| c["form_url"].as_str())
            .map(str::to_owned)
    }
}

struct Lane {
    app: TestApp,
    _sandbox: Sandbox,
    forwarded: Arc<Forwarded>,
    steady: Arc<std::sync::Mutex<Vec<(String, String)>>>,
    steady_task: tokio::task::JoinHandle<()>,
    admin: SandboxAdmin,
    customers: Vec<Customer>,
    form: reqwest::Client,
    /// Every card this lane created, for the final whole-log check.
    all_cards: Vec<(String, String)>,
    /// Cards removed while their result was on the way.
    removed_cards: Vec<(String, String)>,
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
    foreign_refused: usize,
    foreign_accepted: usize,
    outages: usize,
    revivals: u64,
    removed: usize,
    steady_cards: usize,
}

impl Lane {
    async fn start() -> Lane {
        let sandbox = start_sandbox(SandboxConfig {
            max_attempts: LANE_MAX_ATTEMPTS,
            ..fast_sandbox_config(Storage::Memory)
        })
        .await;
        let base = sandbox.base_url();
        // Batches of up to 5, so a pause gathers several events into one delivery. The runner
        // adds far more cards per customer and address than a person would.
        let app = spawn_app_against(
            &base,
            5,
            &[
                ("CARDS_ADDED_PER_HOUR", "1000000"),
                ("IP_RATE_LIMIT_PER_MINUTE", "1000000"),
            ],
        )
        .await;
        let mut customers = Vec::new();
        for i in 0..CUSTOMERS_PER_LANE {
            customers.push(app.customer(&format!("scenario{i}")).await);
        }
        let forwarded = start_forwarder(&app, &base).await;
        let steady = Arc::new(std::sync::Mutex::new(Vec::new()));
        let steady_task = steady_traffic(
            app.customer("steady").await,
            steady.clone(),
            TestAppIds {
                pool: app.pool.clone(),
            },
        );
        let mut lane = Lane {
            app,
            _sandbox: sandbox,
            forwarded,
            steady,
            steady_task,
            admin: SandboxAdmin::new(&base),
            customers,
            form: common::client(),
            all_cards: Vec::new(),
            removed_cards: Vec::new(),
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
        let pool = &self.app.pool;
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
        // Applications are the changes an event made to cards: a primary key on the event id
        // cannot count those, so "applied once" is checked where it could fail.
        let rows: Vec<(i64, i64, String)> = sqlx::query_as(
            "SELECT e.event_id, (SELECT COUNT(*) FROM card_changes c WHERE c.event_id = e.event_id), \
             e.outcome FROM jetpay_events e WHERE e.event_id BETWEEN $1 AND $2",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(&self.app.pool)
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
        let adds = plan.cards.iter().map(|(customer, number, remove)| {
            let customer = &self.customers[*customer];
            let form = &self.form;
            async move {
                let card_id = customer.add_card().await;
                if let Some(number) = number {
                    let url = customer.form_url(&card_id).await;
                    let status = submit_form(form, &url, number).await;
                    assert_eq!(status, 200, "hosted form refused a test card");
                }
                if *remove {
                    // Changed their mind while the result is on the way.
                    let (status, body) =
                        customer.call("remove_card", &[("card_id", &card_id)]).await;
                    assert!(status.is_success(), "remove_card: {status} {body}");
                }
                card_id
            }
        });
        let card_ids: Vec<String> = futures::future::join_all(adds).await;
        let mut records = Vec::new();
        for ((_, _, removed), card_id) in plan.cards.iter().zip(&card_ids) {
            let jetpay_card_id = self.app.jetpay_card_id(card_id).await;
            if *removed {
                self.removed_cards
                    .push((card_id.clone(), jetpay_card_id.clone()));
            } else {
                self.all_cards
                    .push((card_id.clone(), jetpay_card_id.clone()));
            }
            records.push(CardRecord {
                card_id: card_id.clone(),
                jetpay_card_id,
                removed: *removed,
                ..CardRecord::default()
            });
        }
        let submitted = plan.cards.iter().filter(|(_, n, _)| n.is_some()).count();
        let ours: std::collections::HashSet<String> =
            records.iter().map(|r| r.jetpay_card_id.clone()).collect();

        // Jetpay's side: wait for every result to be in its log (delivery may be paused).
        let deadline = Instant::now() + Duration::from_secs(30);
        let log: Vec<LogEvent> = loop {
            let log: Vec<LogEvent> = self
                .admin
                .events_after(log_before)
                .await
                .iter()
                .filter_map(log_event)
                // The steady customer's results are judged at the end of the run.
                .filter(|e| ours.contains(&e.jetpay_card_id))
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
        self.log_end = self
            .admin
            .events_after(log_before)
            .await
            .last()
            .and_then(|e| e["id"].as_i64())
            .unwrap_or(log_before);
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
                let want = match implied.get(record.jetpay_card_id.as_str()) {
                    _ if record.removed => "removed",
                    Some(state) => state,
                    None => "pending",
                };
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
        for ((customer, number, _), card_id) in plan.cards.iter().zip(&card_ids) {
            if number.is_none() {
                let (status, body) = self.customers[*customer]
                    .call("remove_card", &[("card_id", card_id)])
                    .await;
                assert!(status.is_success(), "remove_card: {status} {body}");
            }
        }
        figures.scenarios += 1;
        figures.outages += usize::from(plan.outage);
        figures.removed += records.iter().filter(|r| r.removed).count();
        figures.cards += records.len();
        figures.events += log.len();
        figures.verdict.add(verdict);
    }

    /// The whole run of this lane against the whole log: every event once, nothing extra.
    async fn final_check(&mut self, figures: &mut Figures) {
        self.steady_task.abort();
        let steady = self.steady.lock().unwrap().clone();
        figures.steady_cards += steady.len();
        self.all_cards.extend(steady);
        // The steady customer's last results may still be on their way.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log_cards: HashMap<String, bool> = self
                .admin
                .events_after(0)
                .await
                .iter()
                .filter_map(log_event)
                .map(|e| (e.jetpay_card_id, e.succeeded))
                .collect();
            let mut settled = true;
            for (card_id, jetpay_card_id) in &self.all_cards {
                let (state, _, _) = self.card_row(card_id).await;
                let want = match log_cards.get(jetpay_card_id) {
                    Some(true) => "active",
                    Some(false) => "failed",
                    None => "pending",
                };
                settled &= state == want || state == "removed";
            }
            if settled || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let log: Vec<LogEvent> = self
            .admin
            .events_after(0)
            .await
            .iter()
            .filter_map(log_event)
            .collect();
        let ids: Vec<i64> = log.iter().map(|e| e.id).collect();
        // Late copies of duplicated deliveries may still be in flight: let them land first.
        let identifier = self
            .admin
            .webhook_identifier(&self.app.url("/webhooks/jetpay"))
            .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let w = self.admin.webhooks().await;
            let idle = w
                .iter()
                .filter(|w| w["identifier"] == identifier.as_str())
                .all(|w| w["state"] == "active");
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
                removed: false,
            });
        }
        for (card_id, jetpay_card_id) in &self.removed_cards {
            let (state, last4, changes) = self.card_row(card_id).await;
            cards.push(CardRecord {
                card_id: card_id.clone(),
                jetpay_card_id: jetpay_card_id.clone(),
                seen: vec![state],
                last4,
                changes,
                removed: true,
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
        figures.foreign_refused += self.forwarded.refused.load(Ordering::SeqCst);
        figures.foreign_accepted += self.forwarded.accepted.load(Ordering::SeqCst);
        figures.revivals +=
            app::backend::Counters::get(&self.app.backend.counters.webhook_revivals);
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
        all.foreign_refused += f.foreign_refused;
        all.foreign_accepted += f.foreign_accepted;
        all.outages += f.outages;
        all.revivals += f.revivals;
        all.removed += f.removed;
        all.steady_cards += f.steady_cards;
        all.verdict.add(f.verdict);
    }
    let v = &all.verdict;
    println!(
        "scenarios {}, cards {} ({} removed mid-activation, {} steady-traffic), events {}, \
         delivery attempts {} (dropped {}, failed {}, duplicated {}); outages {} (webhook revived {}×); \
         foreign batches refused {} of {}; \
         lost {}, doubled {}, backwards {}, wrong {}; {:.1?} (SCENARIO_SEED={seed})",
        all.scenarios,
        all.cards,
        all.removed,
        all.steady_cards,
        all.events,
        all.deliveries,
        all.dropped,
        all.failed,
        all.copies,
        all.outages,
        all.revivals,
        all.foreign_refused,
        all.foreign_refused + all.foreign_accepted,
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
    assert_eq!(all.foreign_accepted, 0, "a foreign batch was accepted");
    assert!(all.foreign_refused > 0, "no foreign batch was tried");
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
        removed: false,
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
    // An event applied twice (two changes made by it) is doubled even with one row for it.
    let mut twice = applied.clone();
    twice.insert(1, (2, "applied".into()));
    assert_eq!(judge(&log, &good, &twice).doubled, 1);

    let backwards = vec![
        card("c1", &["pending", "active", "failed"], 2, "4242"),
        card("c2", &["failed"], 2, "0002"),
        card("c3", &["active"], 2, "4444"),
    ];
    let v = judge(&log, &backwards, &applied);
    assert_eq!((v.backwards, v.wrong), (1, 1), "{v:?}");
}
