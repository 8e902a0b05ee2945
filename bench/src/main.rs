//! The benchmark tool: starts the real server (port 0, embedded sandbox) and measures the
//! performance goals of `BENCHMARKS.md`, each beside a baseline measured in the same run, and
//! prints every figure, its baseline and the ratio.
//!
//! ```sh
//! cargo leptos build --release                      # the server P3 runs (as shipped), the WASM P5 weighs
//! cargo build --release -p bench -p jetpay-sandbox  # the tool; Jetpay for P3's server
//! ./target/release/bench                            # every goal, full size
//! ./target/release/bench p2 p4                      # some goals
//! cargo run -p bench -- --smoke                     # seconds: what the test command runs
//! ```
//!
//! PostgreSQL figures need `BENCH_POSTGRES_URL` (or `TEST_POSTGRES_URL`), e.g.
//! `postgres://postgres@127.0.0.1:5432`; a database is created for the run and dropped after.

mod cpu;
mod ingest;
mod live;
mod memory;
mod page;
mod report;
mod server;
mod wasm;

use std::process::ExitCode;

use report::Row;

/// The server binary's allocator: the in-process server and every bare baseline allocate as
/// the shipped server does, so a ratio measures code, not allocators.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const GOALS: [&str; 5] = ["p1", "p2", "p3", "p4", "p5"];

fn main() -> ExitCode {
    // The first argument is the program's own path; options start with `--`; the rest name goals.
    let args: Vec<String> = std::env::args().collect();
    let given = args.get(1..).unwrap_or_default();
    if given.first().map(String::as_str) == Some(memory::BARE_SSE_MODE) {
        let port = given.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        memory::serve_bare_sse(port);
        return ExitCode::SUCCESS;
    }
    let smoke = given.iter().any(|a| a == "--smoke");
    let chosen: Vec<String> = given
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.to_lowercase())
        .collect();
    if let Some(unknown) = chosen.iter().find(|c| !GOALS.contains(&c.as_str())) {
        eprintln!("unknown goal {unknown}: choose among {}", GOALS.join(", "));
        return ExitCode::FAILURE;
    }
    let wants = |id: &str| chosen.is_empty() || chosen.iter().any(|c| c == id);
    let postgres = std::env::var("BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("TEST_POSTGRES_URL"))
        .ok()
        .filter(|url| !url.is_empty());
    let mut databases = vec![ingest::Database::Sqlite];
    match &postgres {
        Some(url) => databases.push(ingest::Database::Postgres(url.clone())),
        None => eprintln!(
            "PostgreSQL figures (P1 across two instances, P2) skipped: set BENCH_POSTGRES_URL"
        ),
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    let mut record = |what: &str, result: Result<Row, String>| match result {
        Ok(row) => {
            println!("{what}: done");
            rows.push(row)
        }
        Err(e) => {
            eprintln!("{what} failed: {e}");
            failed = true;
        }
    };
    runtime.block_on(async {
        if wants("p1") {
            let size = if smoke {
                live::Size::smoke()
            } else {
                live::Size::full()
            };
            for database in &databases {
                record(
                    &format!("P1 ({})", database.name()),
                    live::run(database, &size).await,
                );
            }
        }
        if wants("p2") {
            // Long enough that a second of a noisy host's stolen time moves the rate little:
            // 20,000 events took about one second on PostgreSQL, and runs spread 15.6k–19.4k.
            let events = if smoke { 1_000 } else { 60_000 };
            for database in &databases {
                record(
                    &format!("P2 ({})", database.name()),
                    ingest::run(database, events).await,
                );
            }
        }
        if wants("p3") {
            let size = if smoke {
                memory::Size::smoke()
            } else {
                memory::Size::full()
            };
            record("P3 (streams)", memory::streams(&size).await);
            record("P3 (idle)", memory::idle(&size).await);
        }
        if wants("p4") {
            let size = page::Size {
                seconds: if smoke { 0.3 } else { 5.0 },
            };
            record("P4", page::run(&size).await);
        }
        if wants("p5") {
            record("P5", wasm::run());
        }
    });
    report::print(&rows, smoke);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
