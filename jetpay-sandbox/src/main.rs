//! `jetpay-sandbox`: the Jetpay stand-in as its own process (`serve`, also with no subcommand,
//! so existing scripts keep working), and subcommands that act on a running sandbox (`trigger`,
//! `resend`, `fail-next`, `pause`, `resume`, `tail`, `rotate`; see `cli.rs`). Every option can
//! also be set by environment variable; `--help` lists them.

#![forbid(unsafe_code)]

mod cli;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use jetpay::unspecified;
use jetpay_sandbox::{SandboxConfig, Storage};
use tracing_subscriber::EnvFilter;

/// A local stand-in for Jetpay: API, hosted card form, card service, event log and signed,
/// batched webhooks. With no subcommand (or `serve`) it runs until Ctrl-C; the dashboard is at
/// /_sandbox. The other subcommands act on a running sandbox.
#[derive(Debug, Parser)]
#[command(
    name = "jetpay-sandbox",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Args,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the sandbox (the default when no subcommand is given).
    Serve(Args),
    #[command(flatten)]
    Control(cli::Control),
}

/// Options of `serve`.
#[derive(Debug, clap::Args)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "JETPAY_SANDBOX_LISTEN", default_value = "127.0.0.1:4010")]
    listen: SocketAddr,

    /// SQLite file holding the sandbox's state (created if missing), or `:memory:` for a
    /// sandbox that forgets everything when it stops.
    #[arg(
        long,
        env = "JETPAY_SANDBOX_DB",
        default_value = "./data/jetpay-sandbox.db"
    )]
    db: String,

    /// API bearer token(s) accepted, comma-separated.
    #[arg(
        long = "api-token",
        env = "JETPAY_SANDBOX_API_TOKENS",
        value_delimiter = ',',
        default_value = "sandbox-token",
        hide_env_values = true
    )]
    api_tokens: Vec<String>,

    /// Base URL used in the URLs the sandbox hands out (e.g. when behind a proxy). Default:
    /// http://<bound address>/.
    #[arg(long, env = "JETPAY_SANDBOX_PUBLIC_URL")]
    public_url: Option<url::Url>,

    /// Origin(s) allowed to frame the hosted card form and to receive its postMessage,
    /// comma-separated.
    #[arg(
        long = "frame-ancestor",
        env = "JETPAY_SANDBOX_FRAME_ANCESTORS",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:3000,http://localhost:3000"
    )]
    frame_ancestors: Vec<String>,

    /// Card service time for a normal card, in milliseconds.
    #[arg(long, env = "JETPAY_SANDBOX_PROCESSING_MS", default_value_t = 300)]
    processing_ms: u64,

    /// Card service time for the slow test card (4000 0000 0000 3220), in milliseconds.
    #[arg(
        long,
        env = "JETPAY_SANDBOX_SLOW_PROCESSING_MS",
        default_value_t = 5000
    )]
    slow_processing_ms: u64,

    /// Lifetime of a tokenization URL, in seconds.
    #[arg(long, env = "JETPAY_SANDBOX_URL_TTL_SECONDS", default_value_t = unspecified::TOKENIZATION_URL_TTL_SECONDS)]
    url_ttl_seconds: u64,

    /// Lowest max_wait_seconds a webhook may ask for (Jetpay documents 60; 0 allows immediate
    /// delivery in development).
    #[arg(long, env = "JETPAY_SANDBOX_MIN_WAIT_SECONDS", default_value_t = 60)]
    min_wait_seconds: u32,

    /// First retry delay after a failed delivery, in milliseconds; doubles per attempt with
    /// full jitter, capped at one hour.
    #[arg(long, env = "JETPAY_SANDBOX_RETRY_BASE_MS", default_value_t = unspecified::RETRY_BASE_SECONDS * 1000)]
    retry_base_ms: u64,

    /// Failed deliveries in a row after which a webhook goes to `failed`.
    #[arg(long, env = "JETPAY_SANDBOX_MAX_ATTEMPTS", default_value_t = unspecified::MAX_DELIVERY_ATTEMPTS)]
    max_attempts: u32,

    /// Seconds a receiver has to answer 2xx before the delivery counts as failed.
    #[arg(long, env = "JETPAY_SANDBOX_DELIVERY_TIMEOUT_SECONDS", default_value_t = unspecified::DELIVERY_TIMEOUT_SECONDS)]
    delivery_timeout_seconds: u64,

    /// Log filter, tracing's EnvFilter syntax (e.g. `info`, `jetpay_sandbox=debug`).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

impl Args {
    fn into_config(self) -> SandboxConfig {
        SandboxConfig {
            listen_addr: self.listen,
            storage: if self.db == ":memory:" {
                Storage::Memory
            } else {
                Storage::File(PathBuf::from(self.db))
            },
            api_tokens: self.api_tokens,
            public_url: self.public_url,
            frame_ancestors: self.frame_ancestors,
            processing_time: Duration::from_millis(self.processing_ms),
            slow_processing_time: Duration::from_millis(self.slow_processing_ms),
            url_ttl: Duration::from_secs(self.url_ttl_seconds),
            min_wait_seconds: self.min_wait_seconds,
            retry_base: Duration::from_millis(self.retry_base_ms),
            max_attempts: self.max_attempts,
            delivery_timeout: Duration::from_secs(self.delivery_timeout_seconds),
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        Some(Command::Control(control)) => cli::run(control).await,
    }
}

async fn serve(args: Args) -> std::process::ExitCode {
    let filter = EnvFilter::try_new(&args.log).unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let sandbox = match jetpay_sandbox::start(args.into_config()).await {
        Ok(sandbox) => sandbox,
        Err(e) => {
            eprintln!("jetpay-sandbox: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "Jetpay sandbox on {} (dashboard: {}_sandbox). Ctrl-C to stop.",
        sandbox.base_url(),
        sandbox.base_url()
    );
    if let Err(e) = tokio::signal::ctrl_c().await {
        eprintln!("jetpay-sandbox: cannot wait for Ctrl-C: {e}");
    }
    sandbox.shutdown().await;
    std::process::ExitCode::SUCCESS
}
