//! P4: the server-rendered Saved cards page, signed in with 5 cards, over kept-alive
//! connections, against a bare axum + sqlx handler in the same process that does the same reads
//! (session, customer, latest change, cards) and writes the same HTML by hand.
//!
//! Each side is loaded twice: flat out by a few connections for its throughput, then ours at half
//! its own throughput, open loop (requests sent on a clock, not when the last one returned), for
//! its latency.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::State,
    http::{header, HeaderMap, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Router,
};
use sqlx::{AnyPool, SqlitePool};

use crate::{
    cpu,
    report::{thousands, Row},
    server::{client, customer_id, quantile, seed_cards, sign_up, Running},
};

const PAGE: &str = "/account/cards";
const CARDS: usize = 5;
/// Kept-alive connections loading pages at once.
const CONNECTIONS: usize = 4;
const GOAL_RATIO: f64 = 0.5;
const GOAL_P99: Duration = Duration::from_millis(5);

pub struct Size {
    pub seconds: f64,
}

pub async fn run(size: &Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let path = dir.path().join("page.db");
    let url = format!("sqlite://{}", path.display());
    let server = Running::start(&url, &dir.path().join("sandbox.db"), &[]).await?;

    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(&url).await.map_err(|e| e.to_string())?;
    let http = client();
    let (cookie, email) = sign_up(&http, &server.base, 0).await?;
    let id = customer_id(&pool, &email).await?;
    seed_cards(&pool, &id, CARDS, "active").await?;

    let ours_url = format!("{}{PAGE}", server.base);
    let page = load_once(&http, &ours_url, &cookie).await?;
    let bare = bare_server(&url, &page).await?;
    let bare_url = format!("http://{bare}{PAGE}");
    let bare_page = load_once(&http, &bare_url, &cookie).await?;
    if !bare_page.contains("•••• 4242") || !page.contains("4242") {
        return Err("a page lacks the cards".into());
    }

    let seconds = Duration::from_secs_f64(size.seconds);
    let load = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("client runtime")
            .block_on(async move {
                let ours = flat_out(&ours_url, &cookie, seconds).await?;
                let bare = flat_out(&bare_url, &cookie, seconds).await?;
                let paced = paced(&ours_url, &cookie, ours.per_second / 2.0, seconds).await?;
                Ok::<_, String>((ours, bare, paced))
            })
    });
    let (ours, bare, paced) = load.join().map_err(|_| "load client panicked")??;
    server.stop();

    let ratio = ours.per_second / bare.per_second;
    let p99 = paced.p99;
    Ok(Row {
        id: "P4",
        what: format!(
            "Saved cards page (SSR), signed in, {CARDS} cards, {CONNECTIONS} kept-alive connections"
        ),
        figure: format!(
            "{} pages/s; p99 {:.2} ms at half that",
            thousands(ours.per_second),
            p99.as_secs_f64() * 1000.0
        ),
        baseline: format!(
            "{} pages/s (bare axum + sqlx, same reads, HTML by hand)",
            thousands(bare.per_second)
        ),
        ratio: Some(ratio),
        goal: "≥ 0.5×; p99 < 5 ms at half load",
        met: ratio >= GOAL_RATIO && p99 < GOAL_P99,
        note: format!(
            "flat out p50 {:.2} ms (bare {:.2} ms); page {} B, bare {} B; load client {:.0}% of a \
             core flat out, {:.0}% paced",
            ours.p50.as_secs_f64() * 1000.0,
            bare.p50.as_secs_f64() * 1000.0,
            page.len(),
            bare_page.len(),
            ours.client_share * 100.0,
            paced.client_share * 100.0,
        ),
    })
}

async fn load_once(http: &reqwest::Client, url: &str, cookie: &str) -> Result<String, String> {
    let response = http
        .get(url)
        .header("cookie", cookie)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != 200 {
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        return Err(format!("{url} answered {} {location}", response.status()));
    }
    response.text().await.map_err(|e| e.to_string())
}

struct Load {
    per_second: f64,
    p50: Duration,
    p99: Duration,
    client_share: f64,
}

impl Load {
    /// The figures of `samples` taken since `started`, with this thread's CPU since `cpu_before`.
    fn of(mut samples: Vec<Duration>, started: Instant, cpu_before: Duration) -> Load {
        let elapsed = started.elapsed();
        samples.sort();
        Load {
            per_second: samples.len() as f64 / elapsed.as_secs_f64(),
            p50: quantile(&samples, 0.5),
            p99: quantile(&samples, 0.99),
            client_share: (cpu::this_thread() - cpu_before).as_secs_f64() / elapsed.as_secs_f64(),
        }
    }
}

/// `CONNECTIONS` loops, each loading the page as soon as the last one arrived.
async fn flat_out(url: &str, cookie: &str, seconds: Duration) -> Result<Load, String> {
    let http = client();
    let cpu_before = cpu::this_thread();
    let started = Instant::now();
    let loops = (0..CONNECTIONS).map(|_| {
        let http = http.clone();
        async move {
            let mut samples = Vec::new();
            while started.elapsed() < seconds {
                let sent = Instant::now();
                load_once(&http, url, cookie).await?;
                samples.push(sent.elapsed());
            }
            Ok::<_, String>(samples)
        }
    });
    let mut samples = Vec::new();
    for result in futures::future::join_all(loops).await {
        samples.extend(result?);
    }
    Ok(Load::of(samples, started, cpu_before))
}

/// Pages requested at `rate` per second on a clock, whatever the answers' pace.
async fn paced(url: &str, cookie: &str, rate: f64, seconds: Duration) -> Result<Load, String> {
    let http = client();
    let cpu_before = cpu::this_thread();
    let started = Instant::now();
    let mut clock = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1.0)));
    let mut requests = Vec::new();
    while started.elapsed() < seconds {
        clock.tick().await;
        let (http, url, cookie) = (http.clone(), url.to_owned(), cookie.to_owned());
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            load_once(&http, &url, &cookie)
                .await
                .map(|_| sent.elapsed())
        }));
    }
    let mut samples = Vec::new();
    for request in requests {
        samples.push(request.await.map_err(|e| e.to_string())??);
    }
    Ok(Load::of(samples, started, cpu_before))
}

/// The baseline: one handler, its own pool on the same database, the page's shell copied from
/// ours (everything outside `<main>`) and the cards written by hand.
struct Bare {
    pool: SqlitePool,
    head: String,
    foot: String,
}

async fn bare_server(url: &str, ours: &str) -> Result<std::net::SocketAddr, String> {
    let (head, foot) = match (ours.find("<main"), ours.find("</main>")) {
        (Some(start), Some(end)) => (ours[..start].to_owned(), ours[end + 7..].to_owned()),
        _ => return Err("our page has no <main>".into()),
    };
    let pool = SqlitePool::connect(url).await.map_err(|e| e.to_string())?;
    let router = Router::new()
        .route(PAGE, get(bare_page))
        .with_state(Arc::new(Bare { pool, head, foot }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(addr)
}

type CardRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
);

async fn bare_page(State(bare): State<Arc<Bare>>, headers: HeaderMap) -> Response {
    match render(&bare, &headers).await {
        Ok(Some(html)) => Html(html).into_response(),
        Ok(None) => (StatusCode::SEE_OTHER, [(header::LOCATION, "/sign-in")]).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn render(bare: &Bare, headers: &HeaderMap) -> Result<Option<String>, sqlx::Error> {
    let Some(session_id) = headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split("; ").find_map(|c| {
                c.strip_prefix(server::startup::SESSION_COOKIE)?
                    .strip_prefix('=')
            })
        })
    else {
        return Ok(None);
    };
    // Bound as tower-sessions binds it, so the comparison is the same.
    let now = time::OffsetDateTime::now_utc();
    let Some((data,)): Option<(Vec<u8>,)> =
        sqlx::query_as("SELECT data FROM tower_sessions WHERE id = ? AND expiry_date > ?")
            .bind(session_id)
            .bind(now)
            .fetch_optional(&bare.pool)
            .await?
    else {
        return Ok(None);
    };
    let Some(customer) = customer_in(&data) else {
        return Ok(None);
    };
    let (name,): (String,) = sqlx::query_as("SELECT name FROM customers WHERE id = ?")
        .bind(&customer)
        .fetch_one(&bare.pool)
        .await?;
    let (seq,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(seq), 0) FROM card_changes WHERE customer_id = ?")
            .bind(&customer)
            .fetch_one(&bare.pool)
            .await?;
    let cards: Vec<CardRow> = sqlx::query_as(
        "SELECT id, state, brand, last4, exp_month, exp_year, is_default, nickname FROM cards \
         WHERE customer_id = ? AND state <> 'removed' ORDER BY created_at DESC, id DESC",
    )
    .bind(&customer)
    .fetch_all(&bare.pool)
    .await?;

    let mut html = String::with_capacity(bare.head.len() + bare.foot.len() + 4096);
    html.push_str(&bare.head);
    html.push_str("<main><h1>Saved cards</h1><p class=\"who\">");
    escape_into(&mut html, &name);
    html.push_str(&format!("</p><ul class=\"cards\" data-seq=\"{seq}\">"));
    for (id, state, brand, last4, month, year, is_default, nickname) in &cards {
        html.push_str(&format!(
            "<li class=\"card {state}\" id=\"card-{id}\"><span class=\"brand\">"
        ));
        escape_into(&mut html, brand.as_deref().unwrap_or("Card"));
        html.push_str("</span> •••• ");
        escape_into(&mut html, last4.as_deref().unwrap_or(""));
        if let (Some(month), Some(year)) = (month, year) {
            html.push_str(&format!(
                " <span class=\"expiry\">{month:02}/{}</span>",
                year % 100
            ));
        }
        if let Some(nickname) = nickname {
            html.push_str(" <span class=\"nickname\">");
            escape_into(&mut html, nickname);
            html.push_str("</span>");
        }
        if *is_default {
            html.push_str(" <span class=\"default\">Default</span>");
        }
        html.push_str(&format!(
            "<form method=\"post\" action=\"/api/remove_card\"><input type=\"hidden\" \
             name=\"card_id\" value=\"{id}\"><button>Remove</button></form></li>"
        ));
    }
    html.push_str("</ul></main>");
    html.push_str(&bare.foot);
    Ok(Some(html))
}

/// The customer id in a session record (tower-sessions stores it as MessagePack).
fn customer_in(data: &[u8]) -> Option<String> {
    let record: tower_sessions::session::Record = rmp_serde::from_slice(data).ok()?;
    record
        .data
        .get(app::session::CUSTOMER_KEY)?
        .as_str()
        .map(str::to_owned)
}

fn escape_into(html: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '&' => html.push_str("&amp;"),
            '"' => html.push_str("&quot;"),
            _ => html.push(c),
        }
    }
}
