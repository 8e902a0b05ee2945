//! Typed configuration read from the environment (and an optional `.env`) once at start.
//!
//! Every variable is parsed here; a bad value stops the server with a message that names the
//! variable, what was wrong and what a good value looks like.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use url::Url;

/// Where the server gets Jetpay from.
#[derive(Debug, Clone, PartialEq)]
pub enum JetpayTarget {
    /// `JETPAY_BASE_URL` and `JETPAY_API_TOKEN` set: a real Jetpay host.
    Remote { base_url: Url, api_token: String },
    /// Neither set: start the embedded sandbox on its own port (a different origin, as in
    /// production).
    Sandbox {
        listen_addr: SocketAddr,
        /// `None`: in memory (tests); otherwise a SQLite file that survives restarts.
        database: Option<PathBuf>,
    },
    /// `JETPAY_SANDBOX_URL` set (development only): another instance's embedded sandbox, so that
    /// several instances of one development setup share one Jetpay.
    SharedSandbox { base_url: Url },
}

impl JetpayTarget {
    /// Whether this Jetpay is a sandbox (test mode: no real card is charged).
    pub fn is_sandbox(&self) -> bool {
        matches!(
            self,
            JetpayTarget::Sandbox { .. } | JetpayTarget::SharedSandbox { .. }
        )
    }
}

#[derive(Clone, PartialEq)]
pub struct Config {
    /// `LEPTOS_SITE_ADDR`: where the app listens. cargo-leptos sets it from `Cargo.toml`.
    pub listen_addr: SocketAddr,
    /// `LEPTOS_SITE_ROOT`: the folder with the built site (`pkg/`, favicon, …).
    pub site_root: PathBuf,
    /// `LEPTOS_ENV`: `PROD` in production (secure cookies, no dev conveniences), `DEV` otherwise.
    pub production: bool,
    /// `DATABASE_URL`: SQLite by default.
    pub database_url: String,
    /// `PUBLIC_URL`: how browsers and Jetpay reach this server; the webhook URL is built from it.
    /// Defaults to `http://<listen address>`.
    pub public_url: Option<Url>,
    pub jetpay: JetpayTarget,
    /// `PENDING_TIMEOUT_SECS`: a pending card with no result after this long expires.
    pub pending_timeout: Duration,
    /// `WEBHOOK_MAX_WAIT_SECONDS` / `WEBHOOK_MAX_BATCH_SIZE`: what we ask Jetpay for when we
    /// register our webhook. Defaults: 60 and 10 (Jetpay's), 0 and 10 with the sandbox.
    pub webhook_max_wait_seconds: u32,
    pub webhook_max_batch_size: u32,
    /// `GAP_GRACE_SECS`: how long a hole in the received event ids may stay before we ask Jetpay
    /// to replay (deliveries can arrive out of order for a while).
    pub gap_grace: Duration,
    /// `SWEEP_INTERVAL_SECS`: how often stale pending cards are expired and gaps checked.
    pub sweep_interval: Duration,
    /// `JETPAY_TIMEOUT_SECS`: the whole-request limit of every call to Jetpay (default 10). Add
    /// card waits on these calls, so a slow Jetpay fails the request instead of hanging it.
    pub jetpay_timeout: Duration,
    /// `GAP_MAX_REPLAYS`: replay requests for one hole in the event ids before we give it up
    /// (default 5, with doubling pauses from `GAP_GRACE_SECS`).
    pub gap_max_replays: u32,
    /// `JETPAY_SANDBOX_RETRY_BASE_MS`: the embedded sandbox's first retry pause (default 500).
    /// Tests shorten it to reach Jetpay's `failed` state in seconds.
    pub sandbox_retry_base: Duration,
    /// `JETPAY_SANDBOX_MAX_ATTEMPTS`: failed deliveries in a row before the embedded sandbox
    /// marks a webhook `failed` (default: `jetpay::unspecified::MAX_DELIVERY_ATTEMPTS`).
    pub sandbox_max_attempts: u32,
    /// `TRUSTED_CLIENT_IP_HEADER`: behind a reverse proxy, the header it sets to the client's
    /// address (e.g. `X-Forwarded-For`; its last entry is used). Unset: the peer address, and any
    /// such header from the client is ignored.
    pub trusted_client_ip_header: Option<axum::http::HeaderName>,
    /// `IP_RATE_LIMIT_PER_MINUTE`: sign-ups, sign-ins and Add cards per client IP per minute,
    /// each (default 30).
    pub ip_requests_per_minute: u32,
    /// `CARDS_ADDED_PER_HOUR`: tokenization URLs a customer may ask for per hour (default 10).
    pub cards_added_per_hour: u32,
    /// `METRICS_ADDR`: serve `/metrics` on this address only (e.g. a private interface). Unset:
    /// `/metrics` is on the main listener.
    pub metrics_addr: Option<SocketAddr>,
    /// `SHUTDOWN_GRACE_SECS`: after SIGTERM / Ctrl-C, how long in-flight requests may take to
    /// finish before the process exits anyway (default 20).
    pub shutdown_grace: Duration,
    /// `LEPTOS_OUTPUT_NAME` / `LEPTOS_SITE_PKG_DIR` / `LEPTOS_RELOAD_PORT`: the site's file names,
    /// as cargo-leptos sets them (defaults: the workspace's `saved-cards`, `pkg`, 3001).
    pub output_name: String,
    pub site_pkg_dir: String,
    pub reload_port: u32,
}

impl std::fmt::Debug for Config {
    /// Never prints the API token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let jetpay = match &self.jetpay {
            JetpayTarget::Remote { base_url, .. } => {
                format!("Remote {{ base_url: {base_url}, api_token: *** }}")
            }
            other => format!("{other:?}"),
        };
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("site_root", &self.site_root)
            .field("production", &self.production)
            .field("database_url", &redact_password(&self.database_url))
            .field("public_url", &self.public_url)
            .field("jetpay", &jetpay)
            .field("pending_timeout", &self.pending_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("configuration: {variable} is {value:?}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub value: String,
    pub problem: String,
}

fn bad(variable: &'static str, value: &str, problem: &str) -> ConfigError {
    ConfigError {
        variable,
        value: value.to_owned(),
        problem: problem.to_owned(),
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Reads the given variables; separate from [`Config::from_env`] so tests need not touch the
    /// process environment.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let get = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
        let listen_addr = parse(
            "LEPTOS_SITE_ADDR",
            get("LEPTOS_SITE_ADDR").unwrap_or("127.0.0.1:3000"),
            "expected an address and port such as 127.0.0.1:3000",
        )?;
        let site_root = PathBuf::from(get("LEPTOS_SITE_ROOT").unwrap_or("target/site"));
        let production = match get("LEPTOS_ENV").map(str::to_ascii_uppercase).as_deref() {
            None | Some("DEV") | Some("DEVELOPMENT") => false,
            Some("PROD") | Some("PRODUCTION") => true,
            Some(other) => return Err(bad("LEPTOS_ENV", other, "expected DEV or PROD")),
        };
        let database_url = get("DATABASE_URL")
            .unwrap_or("sqlite://data/saved-cards.db")
            .to_owned();
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme))
        {
            return Err(bad(
                "DATABASE_URL",
                &redact_password(&database_url),
                "expected sqlite://data/saved-cards.db or postgres://user@host/database",
            ));
        }
        let public_url = get("PUBLIC_URL")
            .map(|v| parse_url("PUBLIC_URL", v))
            .transpose()?;
        let jetpay = match (get("JETPAY_BASE_URL"), get("JETPAY_API_TOKEN")) {
            (Some(url), Some(token)) => JetpayTarget::Remote {
                base_url: parse_url("JETPAY_BASE_URL", url)?,
                api_token: token.to_owned(),
            },
            (Some(_), None) => {
                return Err(bad(
                    "JETPAY_API_TOKEN",
                    "",
                    "must be set when JETPAY_BASE_URL is (create one in the Jetpay dashboard)",
                ))
            }
            (None, Some(_)) => {
                return Err(bad(
                    "JETPAY_BASE_URL",
                    "",
                    "must be set when JETPAY_API_TOKEN is, e.g. https://extapi.demo.jetpay.baselinepayments.com",
                ))
            }
            (None, None) if get("JETPAY_SANDBOX_URL").is_some() => JetpayTarget::SharedSandbox {
                base_url: parse_url(
                    "JETPAY_SANDBOX_URL",
                    get("JETPAY_SANDBOX_URL").unwrap_or_default(),
                )?,
            },
            (None, None) if !cfg!(feature = "sandbox") => {
                return Err(bad(
                    "JETPAY_BASE_URL",
                    "",
                    "must be set (with JETPAY_API_TOKEN): this build has no embedded sandbox",
                ))
            }
            (None, None) => JetpayTarget::Sandbox {
                listen_addr: parse(
                    "JETPAY_SANDBOX_ADDR",
                    get("JETPAY_SANDBOX_ADDR").unwrap_or("127.0.0.1:3002"),
                    "expected an address and port such as 127.0.0.1:3002",
                )?,
                database: match get("JETPAY_SANDBOX_DB").unwrap_or("data/jetpay-sandbox.db") {
                    "memory" => None,
                    path => Some(PathBuf::from(path)),
                },
            },
        };
        let sandbox = jetpay.is_sandbox();
        if production {
            check_production(&jetpay, public_url.as_ref())?;
        }
        let secs = |name: &'static str, default: u64| -> Result<Duration, ConfigError> {
            get(name)
                .map(|v| parse::<u64>(name, v, "expected a whole number of seconds"))
                .transpose()
                .map(|v| Duration::from_secs(v.unwrap_or(default)))
        };
        let webhook_max_wait_seconds = get("WEBHOOK_MAX_WAIT_SECONDS")
            .map(|v| {
                parse(
                    "WEBHOOK_MAX_WAIT_SECONDS",
                    v,
                    "expected 60 to 3600 (0 and up with the sandbox)",
                )
            })
            .transpose()?
            .unwrap_or(if sandbox { 0 } else { 60 });
        let webhook_max_batch_size: u32 = get("WEBHOOK_MAX_BATCH_SIZE")
            .map(|v| parse("WEBHOOK_MAX_BATCH_SIZE", v, "expected 1 to 100"))
            .transpose()?
            .unwrap_or(10);
        if !(1..=100).contains(&webhook_max_batch_size) {
            return Err(bad(
                "WEBHOOK_MAX_BATCH_SIZE",
                &webhook_max_batch_size.to_string(),
                "expected 1 to 100",
            ));
        }
        Ok(Self {
            listen_addr,
            site_root,
            production,
            database_url,
            public_url,
            jetpay,
            pending_timeout: secs("PENDING_TIMEOUT_SECS", 15 * 60)?,
            webhook_max_wait_seconds,
            webhook_max_batch_size,
            gap_grace: secs("GAP_GRACE_SECS", if sandbox { 5 } else { 180 })?,
            sweep_interval: secs("SWEEP_INTERVAL_SECS", 5)?,
            jetpay_timeout: match secs("JETPAY_TIMEOUT_SECS", 10)? {
                t if t.is_zero() || t > Duration::from_secs(300) => {
                    return Err(bad(
                        "JETPAY_TIMEOUT_SECS",
                        &t.as_secs().to_string(),
                        "expected 1 to 300 seconds",
                    ))
                }
                t => t,
            },
            gap_max_replays: get("GAP_MAX_REPLAYS")
                .map(|v| parse("GAP_MAX_REPLAYS", v, "expected a whole number such as 5"))
                .transpose()?
                .unwrap_or(5),
            sandbox_retry_base: Duration::from_millis(
                get("JETPAY_SANDBOX_RETRY_BASE_MS")
                    .map(|v| {
                        parse(
                            "JETPAY_SANDBOX_RETRY_BASE_MS",
                            v,
                            "expected milliseconds such as 500",
                        )
                    })
                    .transpose()?
                    .unwrap_or(500),
            ),
            sandbox_max_attempts: positive(
                "JETPAY_SANDBOX_MAX_ATTEMPTS",
                get("JETPAY_SANDBOX_MAX_ATTEMPTS"),
                jetpay::unspecified::MAX_DELIVERY_ATTEMPTS,
            )?,
            trusted_client_ip_header: get("TRUSTED_CLIENT_IP_HEADER")
                .map(|v| {
                    parse(
                        "TRUSTED_CLIENT_IP_HEADER",
                        v,
                        "expected a header name such as X-Forwarded-For",
                    )
                })
                .transpose()?,
            ip_requests_per_minute: positive(
                "IP_RATE_LIMIT_PER_MINUTE",
                get("IP_RATE_LIMIT_PER_MINUTE"),
                30,
            )?,
            cards_added_per_hour: positive(
                "CARDS_ADDED_PER_HOUR",
                get("CARDS_ADDED_PER_HOUR"),
                10,
            )?,
            metrics_addr: get("METRICS_ADDR")
                .map(|v| {
                    parse(
                        "METRICS_ADDR",
                        v,
                        "expected an address and port such as 127.0.0.1:9100",
                    )
                })
                .transpose()?,
            shutdown_grace: secs("SHUTDOWN_GRACE_SECS", 20)?,
            // cargo-leptos sets it at build time too (`.cargo/config.toml`), so a binary run by
            // hand still finds its files.
            output_name: get("LEPTOS_OUTPUT_NAME")
                .or(option_env!("LEPTOS_OUTPUT_NAME"))
                .unwrap_or("saved-cards")
                .to_owned(),
            site_pkg_dir: get("LEPTOS_SITE_PKG_DIR").unwrap_or("pkg").to_owned(),
            reload_port: get("LEPTOS_RELOAD_PORT")
                .map(|v| parse("LEPTOS_RELOAD_PORT", v, "expected a port such as 3001"))
                .transpose()?
                .unwrap_or(3001),
        })
    }

    /// The demo customer (with its password shown on the sign-in page) exists only against the
    /// embedded sandbox outside production: never next to a real Jetpay.
    pub fn seeds_demo_customer(&self) -> bool {
        !self.production && self.jetpay.is_sandbox()
    }
}

/// Production fails closed: no fake payment provider, and a public URL browsers reach over TLS
/// (secure cookies, HSTS and Jetpay's callback all depend on it).
fn check_production(jetpay: &JetpayTarget, public_url: Option<&Url>) -> Result<(), ConfigError> {
    if let JetpayTarget::SharedSandbox { base_url } = jetpay {
        return Err(bad(
            "JETPAY_SANDBOX_URL",
            base_url.as_str(),
            "is for development only: production never uses a sandbox",
        ));
    }
    if matches!(jetpay, JetpayTarget::Sandbox { .. }) {
        return Err(bad(
            "JETPAY_BASE_URL",
            "",
            "must be set (with JETPAY_API_TOKEN) when LEPTOS_ENV=PROD: production never uses the embedded sandbox",
        ));
    }
    match public_url {
        None => Err(bad(
            "PUBLIC_URL",
            "",
            "must be set to the https URL browsers and Jetpay use when LEPTOS_ENV=PROD",
        )),
        Some(url) if url.scheme() != "https" => Err(bad(
            "PUBLIC_URL",
            url.as_str(),
            "must be an https URL when LEPTOS_ENV=PROD",
        )),
        Some(_) => Ok(()),
    }
}

fn positive(variable: &'static str, value: Option<&str>, default: u32) -> Result<u32, ConfigError> {
    match value.map(|v| (v, v.parse::<u32>())) {
        None => Ok(default),
        Some((_, Ok(n))) if n > 0 => Ok(n),
        Some((v, _)) => Err(bad(variable, v, "expected a whole number above 0")),
    }
}

fn parse<T: std::str::FromStr>(
    variable: &'static str,
    value: &str,
    expected: &str,
) -> Result<T, ConfigError> {
    value.parse().map_err(|_| bad(variable, value, expected))
}

/// A database URL fit for logs: a password in it is replaced by `***`.
pub fn redact_password(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

fn parse_url(variable: &'static str, value: &str) -> Result<Url, ConfigError> {
    let url: Url = parse(
        variable,
        value,
        "expected an absolute URL such as https://example.com",
    )?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(bad(
            variable,
            value,
            "expected an http or https URL with a host",
        ));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = Config::from_vars(&vars(&[])).unwrap();
        assert_eq!(config.listen_addr, "127.0.0.1:3000".parse().unwrap());
        assert_eq!(config.site_root, PathBuf::from("target/site"));
        assert!(matches!(config.jetpay, JetpayTarget::Sandbox { .. }));
        assert_eq!(config.webhook_max_wait_seconds, 0);
        assert_eq!(config.database_url, "sqlite://data/saved-cards.db");
        assert_eq!(config.jetpay_timeout, Duration::from_secs(10));
    }

    #[test]
    fn bad_address_names_the_variable() {
        let err = Config::from_vars(&vars(&[("LEPTOS_SITE_ADDR", "localhost")])).unwrap_err();
        assert_eq!(err.variable, "LEPTOS_SITE_ADDR");
        assert!(err.to_string().contains("LEPTOS_SITE_ADDR"), "{err}");
        assert!(err.to_string().contains("127.0.0.1:3000"), "{err}");
    }

    #[test]
    fn remote_jetpay_needs_both_variables_and_hides_the_token() {
        let err = Config::from_vars(&vars(&[(
            "JETPAY_BASE_URL",
            "https://extapi.demo.jetpay.baselinepayments.com",
        )]))
        .unwrap_err();
        assert_eq!(err.variable, "JETPAY_API_TOKEN");
        let config = Config::from_vars(&vars(&[
            (
                "JETPAY_BASE_URL",
                "https://extapi.demo.jetpay.baselinepayments.com",
            ),
            ("JETPAY_API_TOKEN", "s3cret-token"),
        ]))
        .unwrap();
        assert!(matches!(config.jetpay, JetpayTarget::Remote { .. }));
        assert_eq!(config.webhook_max_wait_seconds, 60);
        assert!(!format!("{config:?}").contains("s3cret-token"));
    }

    const REAL_JETPAY: [(&str, &str); 2] = [
        (
            "JETPAY_BASE_URL",
            "https://extapi.demo.jetpay.baselinepayments.com",
        ),
        ("JETPAY_API_TOKEN", "token"),
    ];

    #[test]
    fn production_refuses_the_sandbox() {
        let err = Config::from_vars(&vars(&[
            ("LEPTOS_ENV", "PROD"),
            ("PUBLIC_URL", "https://cards.example.com"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "JETPAY_BASE_URL");
        assert!(err.to_string().contains("sandbox"), "{err}");
    }

    #[test]
    fn production_requires_an_https_public_url() {
        let mut pairs = REAL_JETPAY.to_vec();
        pairs.push(("LEPTOS_ENV", "PROD"));
        let err = Config::from_vars(&vars(&pairs)).unwrap_err();
        assert_eq!(err.variable, "PUBLIC_URL");
        pairs.push(("PUBLIC_URL", "http://cards.example.com"));
        let err = Config::from_vars(&vars(&pairs)).unwrap_err();
        assert_eq!(err.variable, "PUBLIC_URL");
        assert!(err.to_string().contains("https"), "{err}");
        pairs.pop();
        pairs.push(("PUBLIC_URL", "https://cards.example.com"));
        let config = Config::from_vars(&vars(&pairs)).unwrap();
        assert!(config.production);
        assert!(!config.seeds_demo_customer());
    }

    #[test]
    fn production_requires_the_token_too() {
        let err = Config::from_vars(&vars(&[
            ("LEPTOS_ENV", "PROD"),
            ("PUBLIC_URL", "https://cards.example.com"),
            (
                "JETPAY_BASE_URL",
                "https://extapi.jetpay.baselinepayments.com",
            ),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "JETPAY_API_TOKEN");
    }

    #[test]
    fn demo_customer_only_with_the_sandbox_outside_production() {
        assert!(Config::from_vars(&vars(&[])).unwrap().seeds_demo_customer());
        // A real Jetpay in DEV: still no demo account with a published password.
        assert!(!Config::from_vars(&vars(&REAL_JETPAY))
            .unwrap()
            .seeds_demo_customer());
        // A second development instance on the first one's sandbox; never in production.
        let mut second = vec![("JETPAY_SANDBOX_URL", "http://127.0.0.1:3002")];
        let config = Config::from_vars(&vars(&second)).unwrap();
        assert!(config.seeds_demo_customer());
        assert!(matches!(config.jetpay, JetpayTarget::SharedSandbox { .. }));
        second.extend([
            ("LEPTOS_ENV", "PROD"),
            ("PUBLIC_URL", "https://cards.example.com"),
        ]);
        let err = Config::from_vars(&vars(&second)).unwrap_err();
        assert_eq!(err.variable, "JETPAY_SANDBOX_URL");
    }

    #[test]
    fn bad_numbers_and_urls_name_their_variable() {
        for (name, value) in [
            ("PENDING_TIMEOUT_SECS", "soon"),
            ("WEBHOOK_MAX_BATCH_SIZE", "500"),
            ("PUBLIC_URL", "example.com"),
            ("DATABASE_URL", "mysql://x"),
            ("LEPTOS_ENV", "staging"),
            ("JETPAY_TIMEOUT_SECS", "0"),
            ("JETPAY_TIMEOUT_SECS", "ten"),
            ("GAP_MAX_REPLAYS", "-1"),
            ("IP_RATE_LIMIT_PER_MINUTE", "0"),
            ("CARDS_ADDED_PER_HOUR", "many"),
            ("METRICS_ADDR", "9100"),
            ("SHUTDOWN_GRACE_SECS", "soon"),
            ("TRUSTED_CLIENT_IP_HEADER", "bad header"),
        ] {
            let err = Config::from_vars(&vars(&[(name, value)])).unwrap_err();
            assert_eq!(err.variable, name);
        }
    }
}
