//! P3: memory, read from `/proc/<pid>/status` (VmRSS) of server processes of their own:
//! - 10,000 idle live streams held open on our server (1,000 customers, 10 tabs each) against a
//!   bare axum SSE broadcaster holding the same number of streams with the same heartbeat;
//! - our server left idle after 100 sign-ups (argon2 takes ~19 MiB per hash while it runs).
//!
//! Our side is the `server` binary built beside this one, run as production runs it: with Jetpay
//! in another process (here the `jetpay-sandbox` binary beside it), so that the embedded
//! sandbox, a development convenience, adds neither its code nor its memory to ours.
//! `cargo leptos build --release` builds that server without the sandbox, as shipped. The
//! baseline is this binary started as `bench serve-bare-sse`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use futures::{stream, StreamExt};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::{
    cpu,
    report::Row,
    server::{client, sign_up_many},
};

const MIB: f64 = 1024.0 * 1024.0;
const GOAL_IDLE_MIB: f64 = 50.0;
/// Idle time before the idle reading: the allocator's chance to give freed memory back.
const SETTLE: Duration = Duration::from_secs(5);
pub const BARE_SSE_MODE: &str = "serve-bare-sse";

pub struct Size {
    pub customers: usize,
    pub streams_per_customer: usize,
    pub sign_ups: usize,
}

impl Size {
    pub fn full() -> Self {
        Size {
            customers: 1_000,
            streams_per_customer: 10,
            sign_ups: 100,
        }
    }

    pub fn smoke() -> Self {
        Size {
            customers: 2,
            streams_per_customer: 2,
            sign_ups: 2,
        }
    }
}

/// A child process killed when dropped.
struct Process {
    child: Child,
    base: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn rss_mib(&self) -> Result<f64, String> {
        self.status_mib("VmRSS:")
    }

    /// A size line of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`), in MiB.
    fn status_mib(&self, field: &str) -> Result<f64, String> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .map_err(|e| e.to_string())?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map(|kib| kib * 1024.0 / MIB)
            .ok_or_else(|| "no VmRSS".into())
    }

    /// Starts `command` (which listens on `port`) and waits until `path` answers.
    async fn spawn(mut command: Command, port: u16, path: &str) -> Result<Process, String> {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| e.to_string())?;
        let mut process = Process {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        process.wait_until_up(path).await?;
        Ok(process)
    }

    async fn wait_until_up(&mut self, path: &str) -> Result<(), String> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("the server exited: {status}"));
            }
            if let Ok(response) = http.get(format!("{}{path}", self.base)).send().await {
                if response.status().is_success() {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the server never answered".into())
    }
}

fn free_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

/// The binary `name` next to this one (target/release or target/debug), which `build` makes.
fn binary_beside(name: &str, build: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = exe.with_file_name(name);
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!(
            "{} not found: build it first (`{build}`)",
            binary.display()
        ))
    }
}

/// The token our server presents to the sandbox.
const JETPAY_TOKEN: &str = "bench-token";

/// Jetpay for our server: the sandbox as a process of its own.
async fn start_jetpay(dir: &Path) -> Result<Process, String> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("jetpay.log")).map_err(|e| e.to_string())?;
    let mut command = Command::new(binary_beside(
        "jetpay-sandbox",
        "cargo build --release -p jetpay-sandbox",
    )?);
    command
        .arg("serve")
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--db")
        .arg(dir.join("sandbox.db"))
        .arg("--api-token")
        .arg(JETPAY_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    Process::spawn(command, port, "/.well-known/jwks.json").await
}

async fn start_ours(dir: &Path, jetpay: &Process) -> Result<Process, String> {
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("server.log")).map_err(|e| e.to_string())?;
    let mut command = Command::new(binary_beside("server", "cargo leptos build --release")?);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}"))
        .env("JETPAY_BASE_URL", &jetpay.base)
        .env("JETPAY_API_TOKEN", JETPAY_TOKEN)
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("app.db").display()),
        )
        .env("IP_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    Process::spawn(command, port, "/ready").await
}

async fn start_bare() -> Result<Process, String> {
    let port = free_port()?;
    let mut command = Command::new(std::env::current_exe().map_err(|e| e.to_string())?);
    command.arg(BARE_SSE_MODE).arg(port.to_string());
    Process::spawn(command, port, "/health").await
}

/// Signs up `count` customers; their session cookies.
async fn sign_ups(base: &str, count: usize) -> Result<Vec<String>, String> {
    let signed_up = sign_up_many(&client(), base, count).await?;
    Ok(signed_up.into_iter().map(|(cookie, _)| cookie).collect())
}

/// Opens a stream as a browser's EventSource does and returns the connection once the answer's
/// head has arrived (the body then stays open, idle but for heartbeats).
async fn open_stream(base: &str, path: &str, cookie: &str) -> Result<TcpStream, String> {
    let addr = base.trim_start_matches("http://");
    let mut connection = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\nCookie: {cookie}\r\n\r\n"
    );
    connection
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = connection
            .read(&mut buffer)
            .await
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("the stream closed before its head".into());
        }
        head.extend_from_slice(&buffer[..n]);
    }
    if !head.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "a stream was answered {}",
            String::from_utf8_lossy(&head[..head.len().min(40)])
        ));
    }
    Ok(connection)
}

async fn open_streams(
    base: &str,
    path: &str,
    cookies: &[String],
    per_cookie: usize,
) -> Result<Vec<TcpStream>, String> {
    let wanted: Vec<&String> = cookies
        .iter()
        .flat_map(|c| std::iter::repeat_n(c, per_cookie))
        .collect();
    stream::iter(wanted)
        .map(|cookie| open_stream(base, path, cookie))
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

pub async fn streams(size: &Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let streams = size.customers * size.streams_per_customer;
    let cpu_before = cpu::this_process();
    let started = Instant::now();

    let jetpay = start_jetpay(dir.path()).await?;
    let ours = start_ours(dir.path(), &jetpay).await?;
    let cookies = sign_ups(&ours.base, size.customers).await?;
    let held = open_streams(
        &ours.base,
        app::live::STREAM_PATH,
        &cookies,
        size.streams_per_customer,
    )
    .await?;
    let idle_cpu = cpu::of_process(ours.child.id());
    tokio::time::sleep(SETTLE).await;
    let idle_cpu =
        (cpu::of_process(ours.child.id()) - idle_cpu).as_secs_f64() / SETTLE.as_secs_f64();
    let ours_mib = ours.rss_mib()?;
    let ours_anon = ours.status_mib("RssAnon:")?;
    drop(held);
    drop(ours);

    let bare = start_bare().await?;
    let anyone = vec![String::new()];
    let held = open_streams(&bare.base, "/events", &anyone, streams).await?;
    tokio::time::sleep(SETTLE).await;
    let bare_mib = bare.rss_mib()?;
    let bare_anon = bare.status_mib("RssAnon:")?;
    drop(held);
    drop(bare);

    let ratio = ours_mib / bare_mib;
    Ok(Row {
        id: "P3",
        what: format!(
            "memory with {streams} idle live streams ({} customers)",
            size.customers
        ),
        figure: format!("{ours_mib:.0} MiB RSS"),
        baseline: format!("{bare_mib:.0} MiB (bare axum SSE broadcaster, same streams)"),
        ratio: Some(ratio),
        goal: "≤ 1.0×",
        met: ratio <= 1.0,
        note: format!(
            "read {} s after the last stream opened; anonymous memory {ours_anon:.0} MiB against \
             {bare_anon:.0} MiB (the rest is the program's own code, mapped from its file); the \
             server used {:.0}% of a core holding the streams idle; this process (the client) \
             used {:.1} s of CPU in {:.0} s",
            SETTLE.as_secs(),
            idle_cpu * 100.0,
            (cpu::this_process() - cpu_before).as_secs_f64(),
            started.elapsed().as_secs_f64()
        ),
    })
}

pub async fn idle(size: &Size) -> Result<Row, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let jetpay = start_jetpay(dir.path()).await?;
    let ours = start_ours(dir.path(), &jetpay).await?;
    let fresh = ours.rss_mib()?;
    sign_ups(&ours.base, size.sign_ups).await?;
    let busy = ours.rss_mib()?;
    tokio::time::sleep(SETTLE).await;
    let idle = ours.rss_mib()?;
    Ok(Row {
        id: "P3",
        what: format!("memory of the idle server after {} sign-ups", size.sign_ups),
        figure: format!("{idle:.0} MiB RSS"),
        baseline: format!("{fresh:.0} MiB just started"),
        ratio: None,
        goal: "< 50 MiB",
        met: idle < GOAL_IDLE_MIB,
        note: format!(
            "{busy:.0} MiB right after the last sign-up; read again after {} s idle",
            SETTLE.as_secs()
        ),
    })
}

/// The baseline server: `GET /events` streams a broadcast channel's messages with the same
/// heartbeat as ours; nothing else. Runs until killed.
pub fn serve_bare_sse(port: u16) {
    use axum::{
        response::sse::{Event, KeepAlive, Sse},
        routing::get,
        Router,
    };
    use std::convert::Infallible;
    use tokio_stream::wrappers::BroadcastStream;

    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let (changes, _) = tokio::sync::broadcast::channel::<String>(64);
            let router = Router::new()
                .route("/health", get(|| async { "ok" }))
                .route(
                    "/events",
                    get(move || {
                        let receiver = changes.subscribe();
                        async move {
                            let events = BroadcastStream::new(receiver).map(|change| {
                                Ok::<_, Infallible>(
                                    Event::default().data(change.unwrap_or_default()),
                                )
                            });
                            Sse::new(events).keep_alive(
                                KeepAlive::new()
                                    .interval(server::live::HEARTBEAT)
                                    .text("heartbeat"),
                            )
                        }
                    }),
                );
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bare server binds");
            axum::serve(listener, router)
                .await
                .expect("bare server runs");
        });
}
