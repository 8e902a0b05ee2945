//! The benchmark tool: starts the real server (port 0, embedded sandbox) and measures the
//! performance goals of `BENCHMARKS.md`, each beside a baseline measured in the same run, and
//! prints every figure, its baseline and the ratio.
//!
//! ```sh
//! cargo leptos build --release --bin-features sandbox   # P5 reads the release WASM it builds
//! cargo run --release -p bench                           # every goal, full size
//! cargo run --release -p bench -- p2                     # one goal
//! cargo run -p bench -- --smoke                          # seconds: what the test command runs
//! ```
//!
//! PostgreSQL figures need `BENCH_POSTGRES_URL` (or `TEST_POSTGRES_URL`), e.g.
//! `postgres://postgres@127.0.0.1:5432`; a database is created for the run and dropped after.

mod cpu;
mod ingest;
mod report;
mod wasm;

use std::process::ExitCode;

use report::Row;

fn main() -> ExitCode {
    // The first argument is the program's own path; options start with `--`; the rest name goals.
    let args: Vec<String> = std::env::args().collect();
    let given = args.get(1..).unwrap_or_default();
    let smoke = given.iter().any(|a| a == "--smoke");
    let chosen: Vec<&str> = given
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(String::as_str)
        .collect();
    let wants = |id: &str| chosen.is_empty() || chosen.contains(&id);
    let postgres = std::env::var("BENCH_POSTGRES_URL")
        .or_else(|_| std::env::var("TEST_POSTGRES_URL"))
        .ok()
        .filter(|url| !url.is_empty());

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut rows: Vec<Row> = Vec::new();
    let mut failed = false;
    runtime.block_on(async {
        if wants("p2") {
            let events = if smoke { 1_000 } else { 20_000 };
            let mut databases = vec![ingest::Database::Sqlite];
            match &postgres {
                Some(url) => databases.push(ingest::Database::Postgres(url.clone())),
                None => eprintln!("P2 on PostgreSQL skipped: set BENCH_POSTGRES_URL"),
            }
            for database in databases {
                match ingest::run(&database, events).await {
                    Ok(row) => rows.push(row),
                    Err(e) => {
                        eprintln!("P2 ({}) failed: {e}", database.name());
                        failed = true;
                    }
                }
            }
        }
        if wants("p5") {
            match wasm::run() {
                Ok(row) => rows.push(row),
                Err(e) => {
                    eprintln!("P5 failed: {e}");
                    failed = true;
                }
            }
        }
    });
    report::print(&rows, smoke);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
