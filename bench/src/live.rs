//! P1: webhook → live event. With 1,000 streams open (100 customers, 10 tabs each), Jetpay
//! delivers one card's result at a time; each of that customer's streams gets the change, and
//! the time from sending the delivery to each stream's event is one sample.
//!
//! On PostgreSQL the streams are on a second instance and the deliveries go to the first, so the
//! change crosses instances (through `LISTEN`/`NOTIFY`) as it does behind a load balancer.

use std::time::{Duration, Instant};

use futures::StreamExt;
use jetpay::test_util::tokenized_json;
use sqlx::AnyPool;
use tokio::sync::mpsc;

use crate::{
    cpu,
    ingest::Database,
    report::Row,
    server::{
        client, customer_id, post_delivery, quantile, seed_cards, sign_up_many, Running, Signer,
    },
};

const GOAL_P99: Duration = Duration::from_millis(20);
/// How long one round waits for every stream's event before calling it lost.
const ROUND_LIMIT: Duration = Duration::from_secs(5);

pub struct Size {
    pub customers: usize,
    pub streams_per_customer: usize,
    pub rounds: usize,
}

impl Size {
    pub fn full() -> Self {
        Size {
            customers: 100,
            streams_per_customer: 10,
            rounds: 400,
        }
    }

    pub fn smoke() -> Self {
        Size {
            customers: 2,
            streams_per_customer: 2,
            rounds: 4,
        }
    }
}

pub async fn run(database: &Database, size: &Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let url = database.create(dir.path(), "live").await?;
    let result = measure(database, dir.path(), &url, size).await;
    database.drop_database(&url).await;
    result
}

async fn measure(
    database: &Database,
    dir: &std::path::Path,
    url: &str,
    size: &Size,
) -> Result<Row, String> {
    let sandbox_db = dir.join("sandbox.db");
    let first = Running::start(url, &sandbox_db, &[]).await?;
    let two_instances = matches!(database, Database::Postgres(_));
    let second = if two_instances {
        Some(
            Running::start(
                url,
                &dir.join("unused-sandbox.db"),
                &[
                    ("JETPAY_SANDBOX_URL", first.jetpay_url.as_str()),
                    ("JETPAY_SANDBOX_ADDR", ""),
                ],
            )
            .await?,
        )
    } else {
        None
    };
    let registration = first
        .registration
        .clone()
        .ok_or("no webhook registration")?;
    let streams_at = second.as_ref().unwrap_or(&first).base.clone();

    // Customers, signed up over HTTP, each with a contact and a pending card per round.
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.map_err(|e| e.to_string())?;
    let http = client();
    let signed_up = sign_up_many(&http, &first.base, size.customers).await?;
    let cards_each = size.rounds.div_ceil(size.customers);
    let mut customers = Vec::new();
    for (cookie, email) in signed_up {
        let id = customer_id(&pool, &email).await?;
        let (contact, cards) = seed_cards(&pool, &id, cards_each, "pending").await?;
        customers.push((cookie, contact, cards));
    }
    let signer = Signer::of_sandbox(&sandbox_db).await?;
    let deliveries: Vec<(usize, (Vec<u8>, String))> = (0..size.rounds)
        .map(|r| {
            let c = r % size.customers;
            let (_, contact, cards) = &customers[c];
            let event = tokenized_json(
                (r + 1) as i64,
                contact,
                &cards[r / size.customers],
                "succeeded",
            );
            (c, signer.delivery(registration.webhook_id, &[event]))
        })
        .collect();
    let cookies: Vec<String> = customers
        .iter()
        .map(|(cookie, _, _)| cookie.clone())
        .collect();

    let base = first.base.clone();
    let api_key = registration.api_key.clone();
    let streams_per_customer = size.streams_per_customer;
    let client = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime")
            .block_on(follow_and_deliver(
                streams_at,
                cookies,
                streams_per_customer,
                base,
                api_key,
                deliveries,
            ))
    });
    let outcome = client.join().map_err(|_| "client panicked")?;
    first.stop();
    if let Some(second) = &second {
        second.stop();
    }
    let (mut samples, client_cpu, elapsed) = outcome?;
    samples.sort();
    let p50 = quantile(&samples, 0.5);
    let p99 = quantile(&samples, 0.99);
    let max = samples.last().copied().unwrap_or_default();
    let subscribers = size.customers * size.streams_per_customer;
    let place = if two_instances {
        "across two instances on PostgreSQL (delivered to one, streams on the other)"
    } else {
        "on SQLite, one instance"
    };
    Ok(Row {
        id: "P1",
        what: format!("webhook → live event, {subscribers} streams open, {place}"),
        figure: format!("p99 {}", millis(p99)),
        baseline: "– (an absolute goal)".into(),
        ratio: None,
        goal: "p99 ≤ 20 ms",
        met: p99 <= GOAL_P99,
        note: format!(
            "{} events seen by streams over {} deliveries: p50 {}, max {}; load client {:.0}% of a core",
            samples.len(),
            size.rounds,
            millis(p50),
            millis(max),
            client_cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0
        ),
    })
}

fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

type Samples = (Vec<Duration>, Duration, Duration);

/// Opens every stream, then sends the deliveries one after another, each waiting until every
/// stream of its customer has seen the change.
async fn follow_and_deliver(
    streams_at: String,
    cookies: Vec<String>,
    streams_per_customer: usize,
    base: String,
    api_key: String,
    deliveries: Vec<(usize, (Vec<u8>, String))>,
) -> Result<Samples, String> {
    let cpu_before = cpu::this_thread();
    let started = Instant::now();
    let http = client();
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(usize, Instant, String)>();
    let mut opened = Vec::new();
    for (c, cookie) in cookies.iter().enumerate() {
        for _ in 0..streams_per_customer {
            opened.push(open_stream(&http, &streams_at, cookie, c, seen_tx.clone()));
        }
    }
    for result in futures::future::join_all(opened).await {
        result?;
    }
    // Let every stream finish its catch-up read before the clock starts.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let mut samples = Vec::with_capacity(deliveries.len() * streams_per_customer);
    for (customer, delivery) in deliveries {
        let sent = Instant::now();
        let status = post_delivery(&http, &base, &api_key, delivery)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .status();
        if status.as_u16() != 204 {
            return Err(format!("a delivery was answered {status}"));
        }
        let mut waiting = streams_per_customer;
        let deadline = tokio::time::Instant::now() + ROUND_LIMIT;
        while waiting > 0 {
            match tokio::time::timeout_at(deadline, seen.recv()).await {
                Ok(Some((c, at, _))) if c == customer => {
                    samples.push(at.duration_since(sent));
                    waiting -= 1;
                }
                Ok(Some((c, _, event))) => {
                    return Err(format!(
                    "customer {c} got a change while customer {customer}'s was awaited: {event:?}"
                ))
                }
                Ok(None) => return Err("every stream ended".into()),
                Err(_) => {
                    return Err(format!(
                        "{waiting} of {streams_per_customer} streams never got the change"
                    ))
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((samples, cpu::this_thread() - cpu_before, started.elapsed()))
}

/// Opens one live stream and, in the background, reports the moment each card event arrives.
async fn open_stream(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    customer: usize,
    seen: mpsc::UnboundedSender<(usize, Instant, String)>,
) -> Result<(), String> {
    let response = http
        .get(format!("{base}{}", app::live::STREAM_PATH))
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        return Err(format!("a live stream was answered {}", response.status()));
    }
    tokio::spawn(async move {
        let mut body = response.bytes_stream();
        let mut pending = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = Instant::now();
            pending.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = pending.find("\n\n") {
                let event: String = pending.drain(..end + 2).collect();
                if card_event(&event) && seen.send((customer, at, event.clone())).is_err() {
                    return;
                }
            }
        }
    });
    Ok(())
}

fn card_event(event: &str) -> bool {
    event
        .lines()
        .any(|line| line.strip_prefix("event:").map(str::trim) == Some("card"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_card_events_count() {
        assert!(super::card_event("event: card\nid: 3\ndata: {}\n\n"));
        assert!(super::card_event("event:card\ndata: {}\n\n"));
        assert!(!super::card_event(":heartbeat\n\n"));
        assert!(!super::card_event("data: event: card\n\n"));
    }
}
