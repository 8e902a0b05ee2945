//! Connecting to Jetpay: start the embedded sandbox when no host is configured, build the client
//! and the webhook verifier, and register this server's webhook.

use std::{sync::Arc, time::Duration};

use app::backend::{store::WebhookRegistration, Backend, Store};
use jetpay::{
    wire::{NewWebhook, WebhookPatch, WebhookState},
    ApiToken, Client, ClientConfig,
};
#[cfg(feature = "sandbox")]
use jetpay_sandbox::{Sandbox, SandboxConfig, Storage};
use url::Url;

use crate::config::{Config, JetpayTarget};

/// The sandbox's API token in development. Not a secret: the sandbox holds no real data.
const SANDBOX_TOKEN: &str = "sandbox-token";

pub struct JetpayConnection {
    pub client: Client,
    /// A sandbox, embedded or another instance's: customers see "Test mode".
    test_mode: bool,
    /// Kept alive while the server runs; `None` with a real Jetpay.
    #[cfg(feature = "sandbox")]
    pub sandbox: Option<Sandbox>,
}

impl JetpayConnection {
    pub fn is_sandbox(&self) -> bool {
        self.test_mode
    }

    /// Origin (scheme, host, port) of Jetpay: the only origin our pages may frame.
    pub fn origin(&self) -> String {
        self.client.base_url().origin().ascii_serialization()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[cfg(feature = "sandbox")]
    #[error("could not start the embedded Jetpay sandbox: {0}")]
    Sandbox(#[from] jetpay_sandbox::SandboxError),
    #[error("Jetpay client: {0}")]
    Client(#[from] jetpay::Error),
}

/// `public_url` is where the sandbox's hosted form may be framed from (unused without it).
#[cfg_attr(not(feature = "sandbox"), allow(unused_variables))]
pub async fn connect(config: &Config, public_url: &Url) -> Result<JetpayConnection, SetupError> {
    match &config.jetpay {
        JetpayTarget::Remote {
            base_url,
            api_token,
        } => Ok(JetpayConnection {
            client: client(config, base_url.clone(), api_token)?,
            test_mode: false,
            #[cfg(feature = "sandbox")]
            sandbox: None,
        }),
        JetpayTarget::SharedSandbox { base_url } => Ok(JetpayConnection {
            client: client(config, base_url.clone(), SANDBOX_TOKEN)?,
            test_mode: true,
            #[cfg(feature = "sandbox")]
            sandbox: None,
        }),
        #[cfg(not(feature = "sandbox"))]
        JetpayTarget::Sandbox { .. } => {
            unreachable!("configuration refuses the sandbox in a build without it")
        }
        #[cfg(feature = "sandbox")]
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
                // Ours, and the other loopback names: the site opens as `localhost` too.
                frame_ancestors: crate::security::dev_origins(public_url),
                // Development wants results at once: no batching wait.
                min_wait_seconds: 0,
                retry_base: config.sandbox_retry_base,
                max_attempts: config.sandbox_max_attempts,
                ..SandboxConfig::default()
            };
            let sandbox = jetpay_sandbox::start(sandbox_config).await?;
            tracing::info!(url = %sandbox.base_url(), "embedded Jetpay sandbox started (dashboard at /_sandbox)");
            Ok(JetpayConnection {
                client: client(config, sandbox.base_url(), SANDBOX_TOKEN)?,
                test_mode: true,
                sandbox: Some(sandbox),
            })
        }
    }
}

/// Makes sure Jetpay has our webhook (creating it if there is none for our callback URL, waking it
/// if it had failed), that it carries our callback API key, and stores the registration. Retries
/// until it succeeds: the server serves pages meanwhile, and Jetpay keeps events until the
/// webhook exists. Only the instance that leads the background jobs registers (`leads`), so two
/// instances starting together never register two webhooks.
pub async fn register_webhook(
    backend: Arc<Backend>,
    webhook: WebhookSettings,
    mut leads: tokio::sync::watch::Receiver<bool>,
) {
    if leads.wait_for(|leads| *leads).await.is_err() {
        return;
    }
    let mut delay = Duration::from_millis(500);
    loop {
        match try_register(&backend.jetpay, &backend.store, &webhook, None).await {
            Ok((registration, state)) => {
                // Readiness knows the state at once, not only after the next beat.
                backend.set_webhook_state(state);
                tracing::info!(
                    identifier = %registration.identifier,
                    webhook_id = registration.webhook_id,
                    callback_url = %webhook.callback_url,
                    "Jetpay webhook registered"
                );
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

/// What we ask Jetpay for when registering.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub callback_url: String,
    pub max_wait_seconds: u32,
    pub max_batch_size: u32,
}

/// A fresh callback API key: 256 bits, URL-safe. Jetpay sends it back on every delivery of our
/// webhook, which is how we tell our deliveries from other companies' (all signed alike).
fn new_api_key() -> String {
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(43)
        .map(char::from)
        .collect()
}

/// One registration attempt. `replay_from` (inclusive) is passed when reviving a failed webhook,
/// so Jetpay resends from the first event we are missing.
pub async fn try_register(
    client: &Client,
    store: &Store,
    settings: &WebhookSettings,
    replay_from: Option<i64>,
) -> Result<(WebhookRegistration, WebhookState), Box<dyn std::error::Error + Send + Sync>> {
    let callback_url = settings.callback_url.as_str();
    let api_key = match store.webhook_api_key(callback_url).await? {
        Some(key) => key,
        None => new_api_key(),
    };
    let existing = client
        .list_webhooks()
        .await?
        .into_iter()
        .find(|w| w.callback_url == callback_url);
    let webhook = match existing {
        Some(w) => {
            if w.state == WebhookState::Failed {
                tracing::warn!(identifier = %w.identifier, replay_from, "our Jetpay webhook had failed; reviving it");
            }
            // Any PATCH also wakes a failed webhook; it always (re)sets our key, so a webhook
            // registered by an older version (or with another key) ends up with ours.
            client
                .update_webhook(
                    w.identifier,
                    &WebhookPatch {
                        callback_api_key: Some(api_key.clone()),
                        max_wait_seconds: Some(settings.max_wait_seconds),
                        replay_from_event_id: replay_from,
                        ..Default::default()
                    },
                )
                .await?
        }
        None => {
            client
                .create_webhook(&NewWebhook {
                    callback_url: callback_url.to_owned(),
                    callback_api_key: Some(api_key.clone()),
                    max_batch_size: Some(settings.max_batch_size),
                    max_wait_seconds: Some(settings.max_wait_seconds),
                    ..Default::default()
                })
                .await?
        }
    };
    let registration = WebhookRegistration {
        identifier: webhook.identifier.to_string(),
        webhook_id: webhook.id,
        api_key,
    };
    store
        .save_webhook_registration(callback_url, &registration)
        .await?;
    Ok((registration, webhook.state))
}

/// A Jetpay client at `base_url` with the configured timeout.
fn client(config: &Config, base_url: Url, token: &str) -> Result<Client, jetpay::Error> {
    Client::new(ClientConfig {
        timeout: config.jetpay_timeout,
        ..ClientConfig::new(base_url, ApiToken::new(token))
    })
}
