//! Connecting to Jetpay: start the embedded sandbox when no host is configured, build the client
//! and the webhook verifier, and register this server's webhook.

use std::time::Duration;

use app::backend::Store;
use jetpay::{
    wire::{NewWebhook, WebhookPatch, WebhookState},
    ApiToken, Client, ClientConfig,
};
use jetpay_sandbox::{Sandbox, SandboxConfig, Storage};
use url::Url;

use crate::config::{Config, JetpayTarget};

/// The sandbox's API token in development. Not a secret: the sandbox holds no real data.
const SANDBOX_TOKEN: &str = "sandbox-token";

pub struct JetpayConnection {
    pub client: Client,
    /// Kept alive while the server runs; `None` with a real Jetpay.
    pub sandbox: Option<Sandbox>,
}

impl JetpayConnection {
    pub fn is_sandbox(&self) -> bool {
        self.sandbox.is_some()
    }

    /// Origin (scheme, host, port) of Jetpay: the only origin our pages may frame.
    pub fn origin(&self) -> String {
        self.client.base_url().origin().ascii_serialization()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("could not start the embedded Jetpay sandbox: {0}")]
    Sandbox(#[from] jetpay_sandbox::SandboxError),
    #[error("Jetpay client: {0}")]
    Client(#[from] jetpay::Error),
}

pub async fn connect(config: &Config, public_url: &Url) -> Result<JetpayConnection, SetupError> {
    match &config.jetpay {
        JetpayTarget::Remote {
            base_url,
            api_token,
        } => {
            let client = Client::new(ClientConfig {
                timeout: config.jetpay_timeout,
                ..ClientConfig::new(base_url.clone(), ApiToken::new(api_token.clone()))
            })?;
            Ok(JetpayConnection {
                client,
                sandbox: None,
            })
        }
        JetpayTarget::Sandbox {
            listen_addr,
            database,
        } => {
            let sandbox_config = SandboxConfig {
                listen_addr: *listen_addr,
                storage: match database {
                    Some(path) => Storage::File(path.clone()),
                    None => Storage::Memory,
                },
                api_tokens: vec![SANDBOX_TOKEN.to_owned()],
                frame_ancestors: frame_ancestors(public_url),
                // Development wants results at once: no batching wait.
                min_wait_seconds: 0,
                retry_base: Duration::from_millis(500),
                ..SandboxConfig::default()
            };
            let sandbox = jetpay_sandbox::start(sandbox_config).await?;
            tracing::info!(url = %sandbox.base_url(), "embedded Jetpay sandbox started (dashboard at /_sandbox)");
            let client = Client::new(ClientConfig {
                timeout: config.jetpay_timeout,
                ..ClientConfig::new(sandbox.base_url(), ApiToken::new(SANDBOX_TOKEN))
            })?;
            Ok(JetpayConnection {
                client,
                sandbox: Some(sandbox),
            })
        }
    }
}

/// The origins that may frame the sandbox's card form: ours, and in development the other
/// loopback name too, so that opening the site as `localhost` or `127.0.0.1` both work.
fn frame_ancestors(public_url: &Url) -> Vec<String> {
    let ours = public_url.origin().ascii_serialization();
    let other = match public_url.host_str() {
        Some("localhost") => Some("127.0.0.1"),
        Some("127.0.0.1") => Some("localhost"),
        _ => None,
    };
    let mut origins = vec![ours];
    if let Some(other) = other {
        let mut url = public_url.clone();
        if url.set_host(Some(other)).is_ok() {
            origins.push(url.origin().ascii_serialization());
        }
    }
    origins
}

/// Makes sure Jetpay has our webhook (creating it if there is none for our callback URL, waking it
/// if it had failed) and stores its identifier. Retries until it succeeds: the server serves pages
/// meanwhile, and Jetpay keeps events until the webhook exists.
pub async fn register_webhook(
    client: Client,
    store: Store,
    callback_url: String,
    max_wait_seconds: u32,
    max_batch_size: u32,
) {
    let mut delay = Duration::from_millis(500);
    loop {
        match try_register(
            &client,
            &store,
            &callback_url,
            max_wait_seconds,
            max_batch_size,
        )
        .await
        {
            Ok(identifier) => {
                tracing::info!(%identifier, %callback_url, "Jetpay webhook registered");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "could not register the Jetpay webhook");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

async fn try_register(
    client: &Client,
    store: &Store,
    callback_url: &str,
    max_wait_seconds: u32,
    max_batch_size: u32,
) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
    let existing = client
        .list_webhooks()
        .await?
        .into_iter()
        .find(|w| w.callback_url == callback_url);
    let webhook = match existing {
        Some(w) if w.state == WebhookState::Failed => {
            tracing::warn!(identifier = %w.identifier, "our Jetpay webhook had failed; reactivating it");
            client
                .update_webhook(
                    w.identifier,
                    &WebhookPatch {
                        max_wait_seconds: Some(max_wait_seconds),
                        ..Default::default()
                    },
                )
                .await?
        }
        Some(w) => w,
        None => {
            client
                .create_webhook(&NewWebhook {
                    callback_url: callback_url.to_owned(),
                    max_batch_size: Some(max_batch_size),
                    max_wait_seconds: Some(max_wait_seconds),
                    ..Default::default()
                })
                .await?
        }
    };
    let identifier = webhook.identifier.to_string();
    store
        .save_webhook_identifier(callback_url, &identifier)
        .await?;
    Ok(identifier)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_loopback_names_may_frame_the_sandbox_form() {
        let ancestors = |url: &str| frame_ancestors(&Url::parse(url).unwrap());
        assert_eq!(
            ancestors("http://127.0.0.1:3000"),
            ["http://127.0.0.1:3000", "http://localhost:3000"]
        );
        assert_eq!(
            ancestors("http://localhost:3000/"),
            ["http://localhost:3000", "http://127.0.0.1:3000"]
        );
        assert_eq!(
            ancestors("https://shop.example.com"),
            ["https://shop.example.com"]
        );
    }
}
