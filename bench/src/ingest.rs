//! P2: webhook ingest, from HTTP request to durable commit, batches of 100 events, against the
//! same rows written in-process by bare SQL in one transaction per batch (the baseline).
//!
//! Both sides start from the same seeded database: customers with contacts and pending cards.
//! Each event activates one card, so every event writes what a real one writes: its id and
//! outcome, the card, and a change for live pages.

use std::time::Instant;

use futures::{stream, StreamExt};
use jetpay::test_util::tokenized_json;
use serde_json::Value;
use sqlx::{AnyPool, Connection};

use crate::{
    cpu,
    report::{thousands, Row},
    server::{now_ms, placeholders, post_delivery, seed_cards, Running, Signer},
};

const BATCH: usize = 100;
const CARDS_PER_CUSTOMER: usize = 100;
/// Deliveries in flight at once, as Jetpay's dispatcher and retries would have.
const CONCURRENCY: usize = 4;
const GOAL_EVENTS_PER_SECOND: f64 = 20_000.0;
const GOAL_RATIO: f64 = 0.5;

#[derive(Clone)]
pub enum Database {
    Sqlite,
    /// A PostgreSQL server; the run makes its own databases there and drops them.
    Postgres(String),
}

impl Database {
    pub fn name(&self) -> &'static str {
        match self {
            Database::Sqlite => "SQLite",
            Database::Postgres(_) => "PostgreSQL",
        }
    }

    /// A new, empty database's URL.
    pub async fn create(&self, dir: &std::path::Path, label: &str) -> Result<String, String> {
        match self {
            Database::Sqlite => Ok(format!("sqlite://{}/{label}.db", dir.display())),
            Database::Postgres(server) => {
                let name = format!("bench_{label}_{}", uuid::Uuid::new_v4().simple());
                let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!("{server}/{name}"))
            }
        }
    }

    pub async fn drop_database(&self, url: &str) {
        if let Database::Postgres(server) = self {
            let name = url.rsplit('/').next().unwrap_or_default();
            if let Ok(mut admin) = sqlx::PgConnection::connect(&format!("{server}/postgres")).await
            {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        }
    }
}

/// The cards a run activates: (Jetpay card id, owner's contact), in event order.
type Cards = Vec<(String, String)>;

pub async fn run(database: &Database, events: usize) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ours = database.create(dir.path(), "server").await?;
    let bare = database.create(dir.path(), "baseline").await?;
    let result = measure(database, dir.path(), &ours, &bare, events).await;
    database.drop_database(&ours).await;
    database.drop_database(&bare).await;
    result
}

async fn measure(
    database: &Database,
    dir: &std::path::Path,
    ours: &str,
    bare: &str,
    events: usize,
) -> Result<Row, String> {
    let sandbox_db = dir.join("sandbox.db");
    let server = Running::start(ours, &sandbox_db, &[]).await?;
    let registration = server
        .registration
        .clone()
        .ok_or("no webhook registration")?;

    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(ours).await.map_err(|e| e.to_string())?;
    let cards = seed(database, &pool, events).await?;
    let signer = Signer::of_sandbox(&sandbox_db).await?;
    let deliveries: Vec<(Vec<u8>, String)> = cards
        .chunks(BATCH)
        .enumerate()
        .map(|(b, chunk)| {
            let events: Vec<Value> = chunk
                .iter()
                .enumerate()
                .map(|(i, (card, contact))| {
                    tokenized_json((b * BATCH + i + 1) as i64, contact, card, "succeeded")
                })
                .collect();
            signer.delivery(registration.webhook_id, &events)
        })
        .collect();

    // The load client on a thread (and runtime) of its own, so its CPU is its own.
    let base = server.base.clone();
    let api_key = registration.api_key.clone();
    let server_cpu_before = cpu::this_process();
    let client = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime");
        runtime.block_on(deliver(base, api_key, deliveries))
    });
    let (elapsed, client_cpu, statuses) = client.join().map_err(|_| "client panicked")?;
    server.stop();
    let process_cpu = cpu::this_process().saturating_sub(server_cpu_before);
    if let Some(bad) = statuses.iter().find(|s| **s != 204) {
        return Err(format!("a delivery was answered {bad}"));
    }
    let active: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM cards WHERE state = 'active'")
        .fetch_one(&pool)
        .await
        .map_err(|e| e.to_string())?;
    if active as usize != events {
        return Err(format!("{active} of {events} cards active after ingest"));
    }
    let ours_per_second = events as f64 / elapsed.as_secs_f64();

    migrate_like_ours(database, bare).await?;
    let bare_pool = AnyPool::connect(bare).await.map_err(|e| e.to_string())?;
    let bare_cards = seed(database, &bare_pool, events).await?;
    // As many transactions in flight as the server had deliveries, where the database lets
    // writers overlap (PostgreSQL); SQLite has one writer, so one at a time.
    let in_flight = match database {
        Database::Sqlite => 1,
        Database::Postgres(_) => CONCURRENCY,
    };
    let bare_per_second = write_in_process(&bare_pool, &bare_cards, in_flight).await?;

    let ratio = ours_per_second / bare_per_second;
    let client_share = client_cpu.as_secs_f64() / elapsed.as_secs_f64();
    let server_share = process_cpu.saturating_sub(client_cpu).as_secs_f64() / elapsed.as_secs_f64();
    Ok(Row {
        id: "P2",
        what: format!(
            "webhook ingest on {}: JWT verify + durable commit, batches of {BATCH}",
            database.name()
        ),
        figure: format!("{} events/s", thousands(ours_per_second)),
        baseline: format!(
            "{} events/s (same rows, bare SQL in-process, one transaction per batch)",
            thousands(bare_per_second)
        ),
        ratio: Some(ratio),
        goal: "≥ 20,000 events/s and ≥ 0.5×",
        met: ours_per_second >= GOAL_EVENTS_PER_SECOND && ratio >= GOAL_RATIO,
        note: format!(
            "{events} events, {CONCURRENCY} deliveries in flight; load client {:.0}% of a core, \
             server {:.0}% (2 cores)",
            client_share * 100.0,
            server_share * 100.0
        ),
    })
}

/// Sends every delivery, `CONCURRENCY` at a time; returns the wall time, this thread's CPU and
/// each answer's status.
async fn deliver(
    base: String,
    api_key: String,
    deliveries: Vec<(Vec<u8>, String)>,
) -> (std::time::Duration, std::time::Duration, Vec<u16>) {
    let http = reqwest::Client::new();
    let cpu_before = cpu::this_thread();
    let started = Instant::now();
    let statuses: Vec<u16> = stream::iter(deliveries)
        .map(|delivery| {
            let request = post_delivery(&http, &base, &api_key, delivery);
            async move {
                match request.send().await {
                    Ok(response) => response.status().as_u16(),
                    Err(_) => 0,
                }
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    (
        started.elapsed(),
        cpu::this_thread().saturating_sub(cpu_before),
        statuses,
    )
}

/// Customers with contacts, each with pending cards: the same rows Add card leaves; then, on
/// PostgreSQL, the statistics autovacuum gathers within a minute of such a load. Planned without
/// them, the baseline's card update filtered every seeded card for each batch of 100 (30× slower
/// at 20,000 cards). SQLite keeps no statistics unless an application asks, and ours does not.
async fn seed(database: &Database, pool: &AnyPool, events: usize) -> Result<Cards, String> {
    let mut cards = Vec::with_capacity(events);
    for c in 0..events.div_ceil(CARDS_PER_CUSTOMER) {
        let customer = uuid::Uuid::new_v4().to_string();
        sqlx::query(
            "INSERT INTO customers (id, email, name, password_hash, created_at) \
             VALUES ($1, $2, 'Bench', 'x', $3)",
        )
        .bind(&customer)
        .bind(format!("bench{c}@example.com"))
        .bind(now_ms())
        .execute(pool)
        .await
        .map_err(|e| e.to_string())?;
        let count = CARDS_PER_CUSTOMER.min(events - cards.len());
        let (contact, mine) = seed_cards(pool, &customer, count, "pending").await?;
        cards.extend(mine.into_iter().map(|jetpay| (jetpay, contact.clone())));
    }
    if let Database::Postgres(_) = database {
        sqlx::query("ANALYZE")
            .execute(pool)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(cards)
}

/// The baseline's schema is the app's own: the store creates it.
async fn migrate_like_ours(_database: &Database, url: &str) -> Result<(), String> {
    app::backend::store::connect(url)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The same rows the server writes per event, by bare SQL, one transaction per batch (`in_flight`
/// at once): record the ids, move the cards, log the changes.
async fn write_in_process(pool: &AnyPool, cards: &Cards, in_flight: usize) -> Result<f64, String> {
    let started = Instant::now();
    let results: Vec<Result<(), String>> = stream::iter(cards.chunks(BATCH).enumerate())
        .map(|(b, chunk)| write_batch(pool, b, chunk))
        .buffer_unordered(in_flight)
        .collect()
        .await;
    results.into_iter().collect::<Result<(), String>>()?;
    Ok(cards.len() as f64 / started.elapsed().as_secs_f64())
}

/// One batch's rows in one transaction.
async fn write_batch(pool: &AnyPool, b: usize, chunk: &[(String, String)]) -> Result<(), String> {
    let now = now_ms();
    let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
    let ids: Vec<i64> = (0..chunk.len())
        .map(|i| (b * BATCH + i + 1) as i64)
        .collect();
    let sql = format!(
        "INSERT INTO jetpay_events (event_id, event_type, outcome, received_at) VALUES {}",
        placeholders(
            ids.len(),
            1,
            ", 'contacts.creditcards.tokenized', 'applied', $0"
        )
    );
    let mut events = sqlx::query(&sql).bind(now);
    for id in &ids {
        events = events.bind(*id);
    }
    events.execute(&mut *tx).await.map_err(|e| e.to_string())?;
    let sql = format!(
        "UPDATE cards SET state = 'active', brand = 'visa', last4 = '4242', form_url = NULL, \
         updated_at = $1 WHERE state IN ('pending', 'expired') AND jetpay_card_id IN ({}) \
         RETURNING id, customer_id",
        (2..chunk.len() + 2)
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut moved = sqlx::query_as(&sql).bind(now);
    for (card, _) in chunk {
        moved = moved.bind(card.clone());
    }
    let rows: Vec<(String, String)> = moved.fetch_all(&mut *tx).await.map_err(|e| e.to_string())?;
    let sql = format!(
        "INSERT INTO card_changes (customer_id, card_id, event_id, announcement, created_at) \
         VALUES {}",
        placeholders(rows.len(), 3, ", 'activated', $0")
    );
    let mut changes = sqlx::query(&sql).bind(now);
    for ((card, customer), id) in rows.iter().zip(&ids) {
        changes = changes.bind(customer.clone()).bind(card.clone()).bind(*id);
    }
    changes.execute(&mut *tx).await.map_err(|e| e.to_string())?;
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(())
}
