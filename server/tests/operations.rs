//! What an operator relies on: readiness, Prometheus metrics, request ids, expired sessions
//! cleaned up, and a graceful shutdown (SIGTERM) that loses nothing in flight.

mod common;

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::Method, routing::any, Router};
use common::{
    faults::{fast_sandbox_config, signed_up, start_sandbox, submit_form},
    spawn_app, spawn_app_unregistered, spawn_app_with,
};
use jetpay::test_util::{eventually, SANDBOX_TOKEN};
use jetpay_sandbox::Storage;
use serde_json::Value;
use sqlx::{sqlite::SqliteConnectOptions, ConnectOptions, Connection};

async fn get_json(url: &str) -> (u16, Value) {
    let response = common::client().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn ready_names_every_check_and_turns_ready() {
    let app = spawn_app().await;
    let (status, body) = eventually(Duration::from_secs(20), "ready", || async {
        let (status, body) = get_json(&app.url("/ready")).await;
        (status == 200).then_some((status, body))
    })
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["ready"], true);
    for check in ["database", "migrations", "webhook", "jetpay_keys"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }
    assert_eq!(body["event_gaps_given_up"], serde_json::json!([]));
    // Liveness is separate and plain.
    let health = common::client()
        .get(app.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn not_ready_while_jetpay_is_unreachable_and_says_why() {
    let app = spawn_app_unregistered(&[
        ("JETPAY_BASE_URL", "http://127.0.0.1:9"),
        ("JETPAY_API_TOKEN", "token"),
        ("JETPAY_TIMEOUT_SECS", "1"),
    ])
    .await;
    let (status, body) = get_json(&app.url("/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["ready"], false);
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["migrations"], "ok");
    let not_ready = body["not_ready"].to_string();
    assert!(not_ready.contains("webhook"), "{body}");
    assert!(not_ready.contains("jetpay_keys"), "{body}");
}

async fn metrics_text(url: &str) -> String {
    let response = common::client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_deliveries_events_refusals_calls_and_requests() {
    let app = spawn_app().await;
    let customer = app.customer("metered").await;
    let card = customer.add_card().await;
    let _stream = customer
        .http
        .get(app.url("/account/cards/events"))
        .send()
        .await
        .unwrap();
    app.submit_card(&customer.form_url(&card).await, "4242424242424242")
        .await;
    app.wait_for_state(&card, "active").await;
    assert_eq!(app.deliver(Some("Bearer x.y.z"), b"{}").await, 401);
    assert!(common::client()
        .get(app.url("/health"))
        .send()
        .await
        .unwrap()
        .status()
        .is_success());
    let (status, _) = customer
        .call(
            "sign_in",
            &[
                ("email", "nobody@example.com"),
                ("password", "wrong password"),
            ],
        )
        .await;
    assert_eq!(status, 401);
    let text = eventually(
        Duration::from_secs(10),
        "the webhook state gauge",
        || async {
            let text = metrics_text(&app.url("/metrics")).await;
            text.contains("jetpay_webhook_state{state=\"active\"} 1")
                .then_some(text)
        },
    )
    .await;
    for wanted in [
        "webhook_deliveries_total{result=\"applied\"}",
        "webhook_deliveries_total{result=\"unverified\"}",
        "webhook_verification_failures_total{reason=\"malformed_token\"}",
        "jetpay_events_total{outcome=\"applied\"}",
        "cards_transitions_total{to=\"pending\"}",
        "cards_transitions_total{to=\"active\"}",
        "sign_in_refusals_total{reason=\"wrong_credentials\"}",
        "live_streams_open",
        "jetpay_call_duration_seconds_bucket{endpoint=\"create_tokenization_url\"",
        "http_requests_total{route=\"/webhooks/jetpay\",method=\"POST\",status=\"401\"}",
        "http_request_duration_seconds_bucket{route=\"/health\"",
    ] {
        assert!(text.contains(wanted), "no {wanted} in:\n{text}");
    }
}

#[tokio::test]
async fn metrics_can_have_their_own_listener() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let app = spawn_app_with(&[("METRICS_ADDR", &addr)]).await;
    let public = common::client()
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 404, "metrics on the public listener");
    let text = metrics_text(&format!("http://{addr}/metrics")).await;
    assert!(text.contains("http_requests_total"), "{text}");
}

#[tokio::test]
async fn every_response_has_a_request_id_and_only_a_trusted_proxys_is_kept() {
    let app = spawn_app().await;
    let http = common::client();
    let plain = http.get(app.url("/health")).send().await.unwrap();
    let id = plain.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "{id}");
    // Not behind a configured proxy: a client's id is replaced.
    let spoofed = http
        .get(app.url("/health"))
        .header("x-request-id", "client-chosen")
        .send()
        .await
        .unwrap();
    assert_ne!(spoofed.headers()["x-request-id"], "client-chosen");

    let proxied = spawn_app_with(&[("TRUSTED_CLIENT_IP_HEADER", "X-Forwarded-For")]).await;
    let kept = http
        .get(proxied.url("/health"))
        .header("x-request-id", "proxy-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "proxy-abc-123");
    // Even from the proxy, an id that would break a log line is replaced.
    let odd = http
        .get(proxied.url("/health"))
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(odd.headers()["x-request-id"], "a b\"c");
}

#[tokio::test]
async fn expired_sessions_are_deleted_in_the_background() {
    let app = spawn_app().await;
    let pool = &app.pool;
    // The session stores' own tables: PostgreSQL's has a schema and a timestamp.
    let (table, stale_row) = if app.db.is_postgres() {
        (
            "tower_sessions.session",
            "('stale', '\\x00', to_timestamp(1))",
        )
    } else {
        ("tower_sessions", "('stale', x'00', 1)")
    };
    sqlx::query(&format!(
        "INSERT INTO {table} (id, data, expiry_date) VALUES {stale_row}"
    ))
    .execute(pool)
    .await
    .unwrap();
    let _alive = app.customer("alive").await;
    eventually(
        Duration::from_secs(10),
        "the expired session deleted",
        || async {
            let stale: i64 =
                sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table} WHERE id = 'stale'"))
                    .fetch_one(pool)
                    .await
                    .unwrap();
            (stale == 0).then_some(())
        },
    )
    .await;
    let live: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(live, 1, "the live session is kept");
}

// ---- graceful shutdown of the real binary ---------------------------------------------------

/// A Jetpay that answers the tokenization URL call slowly: a proxy in front of a sandbox.
#[derive(Clone)]
struct SlowJetpay {
    upstream: String,
    http: reqwest::Client,
}

async fn slow_forward(
    State(jetpay): State<SlowJetpay>,
    method: Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    if uri.path().ends_with("/creditcards/url") {
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    let mut request = jetpay.http.request(
        method,
        format!("{}{}", jetpay.upstream.trim_end_matches('/'), uri),
    );
    for name in ["authorization", "content-type", "accept"] {
        if let Some(v) = headers.get(name) {
            request = request.header(name, v);
        }
    }
    let answer = request.body(body).send().await.unwrap();
    let status = answer.status();
    let content_type = answer.headers().get("content-type").cloned();
    let bytes = answer.bytes().await.unwrap();
    let mut response = axum::response::Response::new(axum::body::Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response.headers_mut().insert("content-type", ct);
    }
    response
}

async fn slow_jetpay(upstream: &url::Url) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .fallback(any(slow_forward))
        .with_state(SlowJetpay {
            upstream: upstream.to_string(),
            http: common::client(),
        });
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn start_server(dir: &Path, jetpay: SocketAddr) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_server"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("LEPTOS_SITE_ROOT", dir)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("app.db").display()),
        )
        .env("JETPAY_BASE_URL", format!("http://{jetpay}"))
        .env("JETPAY_API_TOKEN", SANDBOX_TOKEN)
        .env("WEBHOOK_MAX_WAIT_SECONDS", "0")
        .env("SWEEP_INTERVAL_SECS", "1")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("server.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, base)
}

/// The server binary against a slow Jetpay in front of a fresh sandbox, once it is ready.
async fn ready_server(dir: &Path) -> (Child, String, jetpay_sandbox::Sandbox) {
    let sandbox = start_sandbox(fast_sandbox_config(Storage::Memory)).await;
    let jetpay = slow_jetpay(&sandbox.base_url()).await;
    let (child, base) = start_server(dir, jetpay);
    eventually(Duration::from_secs(60), "the server ready", || {
        let url = format!("{base}/ready");
        async move {
            common::client()
                .get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status() == 200)
        }
    })
    .await;
    (child, base, sandbox)
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

async fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    eventually(within, "the server to exit", || {
        let status = child.try_wait().unwrap();
        async move { status }
    })
    .await
}

async fn db_state(dir: &Path, card: &str) -> String {
    let mut db = SqliteConnectOptions::new()
        .filename(dir.join("app.db"))
        .connect()
        .await
        .unwrap();
    let state = sqlx::query_scalar("SELECT state FROM cards WHERE id = $1")
        .bind(card)
        .fetch_one(&mut db)
        .await
        .unwrap();
    db.close().await.unwrap();
    state
}

/// SIGTERM while an Add card waits on a slow Jetpay: the customer still gets their form (no
/// error), the pending card is committed, an open live stream is told to reconnect, and the
/// process exits cleanly.
#[tokio::test]
async fn sigterm_during_add_card_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, _sandbox) = ready_server(dir.path()).await;
    let http = signed_up(&base, "shutdown").await;
    let mut stream = http
        .get(format!("{base}/account/cards/events"))
        .send()
        .await
        .unwrap();
    let add = tokio::spawn({
        let http = http.clone();
        let base = base.clone();
        async move {
            let response = http
                .post(format!("{base}/api/add_card"))
                .form(&[("replaces", "")])
                .send()
                .await
                .unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(400)).await;
    sigterm(&child);
    let (status, body) = add.await.unwrap();
    assert!(status.is_success(), "the customer saw {status}: {body}");
    let card: String = serde_json::from_str(&body).unwrap();
    let mut streamed = String::new();
    while let Ok(Ok(Some(chunk))) =
        tokio::time::timeout(Duration::from_secs(10), stream.chunk()).await
    {
        streamed.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        streamed.contains("retry:"),
        "no reconnect hint: {streamed:?}"
    );
    let exit = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(db_state(dir.path(), &card).await, "pending");
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("shutting down"), "{log}");
}

/// SIGTERM while a webhook delivery is being applied (held up by a locked database): the
/// delivery still commits and is answered 2xx, so Jetpay does not even need to retry.
#[tokio::test]
async fn sigterm_during_a_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, _sandbox) = ready_server(dir.path()).await;
    let http = signed_up(&base, "shutdown").await;
    let response = http
        .post(format!("{base}/api/add_card"))
        .form(&[("replaces", "")])
        .send()
        .await
        .unwrap();
    let card: String = serde_json::from_str(&response.text().await.unwrap()).unwrap();
    let page: Value = http
        .post(format!("{base}/api/list_cards"))
        .form(&[("x", "")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let form = page["cards"][0]["form_url"].as_str().unwrap().to_owned();

    let db = common::db::TestDatabase::Sqlite {
        url: format!("sqlite://{}/app.db", dir.path().display()),
    };
    let lock = db.lock().await;
    assert_eq!(
        submit_form(&common::client(), &form, "4242424242424242").await,
        200
    );
    // Let the delivery reach the server and wait on the lock, then stop the server.
    tokio::time::sleep(Duration::from_millis(800)).await;
    sigterm(&child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.release().await;
    let exit = wait_exit(&mut child, Duration::from_secs(30)).await;
    assert!(exit.success(), "{exit:?}");
    assert_eq!(db_state(dir.path(), &card).await, "active");
}

/// A gauge set as the server starts (this instance leads the background jobs) is in `/metrics`
/// of a fresh process: the recorder is installed before anything can set one.
#[tokio::test]
async fn gauges_set_at_start_reach_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let sandbox = start_sandbox(fast_sandbox_config(Storage::Memory)).await;
    let mut server = common::process::ServerProcess::new(
        dir.path().join("server.log"),
        &format!("sqlite://{}/app.db", dir.path().display()),
        sandbox.base_url().as_str(),
        None,
        &[],
    );
    server.start().await;
    eventually(
        Duration::from_secs(10),
        "jobs_leader 1 in /metrics",
        || async {
            let text = metrics_text(&format!("{}/metrics", server.base)).await;
            text.lines().any(|l| l == "jobs_leader 1").then_some(())
        },
    )
    .await;
}
