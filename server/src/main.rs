use server::{config::Config, startup::Application};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() {
    let _ = dotenvy::dotenv();
    // `LOG_FORMAT=json`: one JSON object per line, for log shippers.
    let json = std::env::var("LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    server::telemetry::init_tracing(json);

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("could not start: {e}");
            std::process::exit(1);
        }
    };
    let metrics = app.metrics_addr().map_or_else(
        || "/metrics on the main listener".to_owned(),
        |a| a.to_string(),
    );
    tracing::info!(addr = %app.local_addr(), %metrics, "listening");
    if let Err(e) = app.run().await {
        eprintln!("server stopped: {e}");
        std::process::exit(1);
    }
}
