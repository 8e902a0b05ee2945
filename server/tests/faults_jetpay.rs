//! Jetpay failing while a customer adds a card: unreachable, slower than the client timeout,
//! answering 5xx, answering malformed JSON. Add card must answer the plain sentence, save
//! nothing, leave nothing pending, keep the Add card button for a retry that works once Jetpay
//! is back, and never retry on its own; the webhook registration loop must back off.

mod common;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{any, get},
    Router,
};
use common::{spawn_app_unregistered, Customer, TestApp};
use serde_json::json;

const PLAIN: &str =
    "We couldn't reach our payment provider. Nothing was saved. Try again in a minute.";
/// The slow fake answers after this; the server's Jetpay timeout is 1 s.
const SLOW: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Healthy,
    Slow,
    ServerError,
    Malformed,
}

/// A Jetpay stand-in whose answers the test chooses, counting every request by route.
#[derive(Clone)]
struct FakeJetpay {
    mode: Arc<Mutex<Mode>>,
    /// Only `POST /contact/{id}/creditcards/url` fails (contacts work).
    only_card_url: bool,
    hits: Arc<Mutex<HashMap<&'static str, usize>>>,
}

impl FakeJetpay {
    async fn start(mode: Mode, only_card_url: bool) -> (FakeJetpay, String) {
        let fake = FakeJetpay {
            mode: Arc::new(Mutex::new(mode)),
            only_card_url,
            hits: Default::default(),
        };
        let router = Router::new()
            .route("/contact", any(answer))
            .route("/contact/{id}/creditcards/url", any(answer))
            .route("/webhooks/", any(answer))
            .route("/webhooks/{id}", get(answer))
            .fallback(answer)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        (fake, format!("http://{addr}/"))
    }

    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    fn hits(&self, route: &str) -> usize {
        self.hits.lock().unwrap().get(route).copied().unwrap_or(0)
    }
}

fn route_of(request: &Request) -> &'static str {
    let path = request.uri().path();
    match (request.method().as_str(), path) {
        ("PUT", "/contact") => "contact",
        ("POST", p) if p.ends_with("/creditcards/url") => "card_url",
        ("GET", "/webhooks/") => "list_webhooks",
        ("POST", "/webhooks/") => "create_webhook",
        _ => "other",
    }
}

async fn answer(State(fake): State<FakeJetpay>, request: Request) -> Response {
    let route = route_of(&request);
    *fake.hits.lock().unwrap().entry(route).or_default() += 1;
    let mode = *fake.mode.lock().unwrap();
    let mode = if fake.only_card_url && route == "contact" {
        Mode::Healthy
    } else {
        mode
    };
    match mode {
        Mode::Healthy => {}
        Mode::Slow => tokio::time::sleep(SLOW).await,
        Mode::ServerError => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "application/json")],
                r#"{"detail": "upstream card vault unavailable (internal ref 7f3a)"}"#,
            )
                .into_response()
        }
        Mode::Malformed => {
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                r#"{"url": "http://x/tokenize/abc", "credit_card_id": "#,
            )
                .into_response()
        }
    }
    let body = match route {
        "contact" => json!({"id": uuid::Uuid::new_v4(), "email": "c@example.com", "name": "C",
                            "tags": [], "language": "en"}),
        "card_url" => json!({"url": "http://127.0.0.1:9/tokenize/session",
                             "credit_card_id": uuid::Uuid::new_v4().to_string()}),
        "list_webhooks" => json!([]),
        "create_webhook" => json!({"id": 1, "identifier": uuid::Uuid::new_v4(),
            "callback_url": "http://127.0.0.1/webhooks/jetpay", "state": "active",
            "last_sent_event_id": null, "max_batch_size": 10, "max_wait_seconds": 0}),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    axum::Json(body).into_response()
}

async fn app_against(base: &str) -> TestApp {
    spawn_app_unregistered(&[
        ("JETPAY_BASE_URL", base),
        ("JETPAY_API_TOKEN", "fake-token"),
        ("JETPAY_TIMEOUT_SECS", "1"),
        ("WEBHOOK_MAX_WAIT_SECONDS", "0"),
    ])
    .await
}

/// One failing Add card: the plain sentence, quickly, and nothing saved or pending.
async fn add_card_fails_plainly(app: &TestApp, customer: &Customer) {
    let started = Instant::now();
    let (status, body) = customer.call("add_card", &[]).await;
    let took = started.elapsed();
    assert!(!status.is_success(), "{status} {body}");
    assert!(body.contains(PLAIN), "{body}");
    for internal in [
        "detail",
        "7f3a",
        "HTTP",
        "Jetpay",
        "decode",
        "timeout",
        "127.0.0.1",
    ] {
        assert!(!body.contains(internal), "{internal:?} leaked: {body}");
    }
    assert!(
        took < Duration::from_secs(5),
        "Add card took {took:?}: the Jetpay timeout is 1 s"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM card_changes").await, 0);
}

/// The page still offers Add card: the way to retry.
async fn page_offers_add_card(app: &TestApp, customer: &Customer) {
    let page = customer
        .http
        .get(app.url("/account/cards"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Add card"), "no Add card button on the page");
}

/// How many times a loop that starts at once and then waits 0.5 s, 1 s, 2 s, … can have tried
/// within `elapsed`, plus one for timing slack.
fn backoff_bound(elapsed: Duration) -> usize {
    let mut at = Duration::ZERO;
    let mut delay = Duration::from_millis(500);
    let mut tries = 0;
    while at <= elapsed {
        tries += 1;
        at += delay;
        delay *= 2;
    }
    tries + 1
}

async fn scenario(mode: Mode, only_card_url: bool) {
    let (fake, base) = FakeJetpay::start(mode, only_card_url).await;
    let started = Instant::now();
    let app = app_against(&base).await;
    let customer = app.customer("jetpay-down").await;

    add_card_fails_plainly(&app, &customer).await;
    add_card_fails_plainly(&app, &customer).await;
    page_offers_add_card(&app, &customer).await;

    // One Jetpay call per click, never retried behind the customer's back.
    if only_card_url {
        assert_eq!(fake.hits("contact"), 1, "the contact is created once");
        assert_eq!(fake.hits("card_url"), 2);
    } else {
        assert_eq!(fake.hits("contact"), 2);
        assert_eq!(fake.hits("card_url"), 0);
    }
    // The webhook registration loop backs off instead of hammering.
    let registrations = fake.hits("list_webhooks");
    assert!(registrations >= 1, "registration was never tried");
    assert!(
        registrations <= backoff_bound(started.elapsed()),
        "{registrations} registration attempts in {:?}",
        started.elapsed()
    );

    // Jetpay is back: the same button works, and exactly one card is pending.
    fake.set(Mode::Healthy);
    let card = customer.add_card().await;
    assert_eq!(app.card_state(&card).await, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 1);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers WHERE jetpay_contact_id IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn jetpay_answering_5xx() {
    scenario(Mode::ServerError, false).await;
}

#[tokio::test]
async fn jetpay_answering_5xx_for_the_card_url_only() {
    scenario(Mode::ServerError, true).await;
}

#[tokio::test]
async fn jetpay_slower_than_the_timeout() {
    scenario(Mode::Slow, true).await;
}

#[tokio::test]
async fn jetpay_answering_malformed_json() {
    scenario(Mode::Malformed, true).await;
}

#[tokio::test]
async fn jetpay_unreachable() {
    // A port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let app = app_against(&format!("http://{closed}/")).await;
    let customer = app.customer("jetpay-unreachable").await;
    add_card_fails_plainly(&app, &customer).await;
    add_card_fails_plainly(&app, &customer).await;
    page_offers_add_card(&app, &customer).await;
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers WHERE jetpay_contact_id IS NOT NULL")
            .await,
        0
    );
}
