//! The server binary as a separate process (killed with SIGKILL, or run twice on one database),
//! and a round-robin TCP proxy to put in front of several of them, as a load balancer would.

use std::{
    path::PathBuf,
    process::{Child, Command},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

use jetpay::test_util::{eventually, SANDBOX_TOKEN};

/// A free port on loopback (kept across restarts, so a webhook's callback URL stays the same).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct ServerProcess {
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
    /// Where this process listens.
    pub base: String,
}

impl ServerProcess {
    /// A server on `database_url` against the Jetpay at `jetpay`, telling Jetpay and browsers
    /// `public_url` (its own address when `None`; a proxy's when it runs behind one). Tuned for
    /// floods: small, immediate batches, a fast beat, no per-address limits.
    pub fn new(
        log: PathBuf,
        database_url: &str,
        jetpay: &str,
        public_url: Option<&str>,
        extra: &[(&str, &str)],
    ) -> ServerProcess {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut env: Vec<(String, String)> = [
            ("LEPTOS_SITE_ADDR", format!("127.0.0.1:{port}")),
            ("PUBLIC_URL", public_url.unwrap_or(&base).to_owned()),
            ("DATABASE_URL", database_url.to_owned()),
            ("JETPAY_BASE_URL", jetpay.to_owned()),
            ("JETPAY_API_TOKEN", SANDBOX_TOKEN.to_owned()),
            ("WEBHOOK_MAX_WAIT_SECONDS", "0".to_owned()),
            ("WEBHOOK_MAX_BATCH_SIZE", "2".to_owned()),
            ("GAP_GRACE_SECS", "1".to_owned()),
            ("SWEEP_INTERVAL_SECS", "1".to_owned()),
            // One address adds every card of the flood.
            ("IP_RATE_LIMIT_PER_MINUTE", "10000".to_owned()),
            ("CARDS_ADDED_PER_HOUR", "10000".to_owned()),
            (
                "RUST_LOG",
                std::env::var("TEST_SERVER_LOG").unwrap_or("warn".into()),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        ServerProcess {
            env,
            log,
            child: None,
            base,
        }
    }

    /// Starts the process and waits until it answers `/health`.
    pub async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_server"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("server binary starts");
        self.child = Some(child);
        let health = format!("{}/health", self.base);
        let http = super::client();
        eventually(
            Duration::from_secs(60),
            "the server answers /health",
            || {
                let request = http.get(&health).send();
                async move { request.await.ok().filter(|r| r.status().is_success()) }
            },
        )
        .await;
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("server running");
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
    }

    /// A counter's value in this process's `/metrics` (0 when it was never incremented).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = super::client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            + 0.0
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Adds a card as `http`'s customer at `base`; returns its id and Jetpay's form URL.
pub async fn add_card(base: &str, http: &reqwest::Client) -> (String, String) {
    let response = http
        .post(format!("{base}/api/add_card"))
        .form(&[("replaces", "")])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "add_card: {status} {body}");
    let card: String = serde_json::from_str(&body).unwrap();
    let response = http
        .post(format!("{base}/api/list_cards"))
        .form(&[("x", "")])
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    let url = page["cards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == card.as_str())
        .and_then(|c| c["form_url"].as_str())
        .expect("form url")
        .to_owned();
    (card, url)
}

/// A round-robin TCP proxy: each new connection goes to the next upstream that accepts it (an
/// upstream that refuses, e.g. a killed instance, is skipped), as a load balancer with health
/// checks would. Runs until the test ends.
pub async fn round_robin(upstreams: Vec<String>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let next = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                continue;
            };
            let upstreams = upstreams.clone();
            let next = next.clone();
            tokio::spawn(async move {
                let first = next.fetch_add(1, Ordering::Relaxed);
                for i in 0..upstreams.len() {
                    let upstream = &upstreams[(first + i) % upstreams.len()];
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                }
            });
        }
    });
    format!("http://{address}")
}
