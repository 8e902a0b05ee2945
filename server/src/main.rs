use server::{config::Config, startup::Application};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    let _ = dotenvy::dotenv();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,server=debug")),
        )
        .init();

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
    tracing::info!(addr = %app.local_addr(), "listening");
    if let Err(e) = app.run().await {
        eprintln!("server stopped: {e}");
        std::process::exit(1);
    }
}
