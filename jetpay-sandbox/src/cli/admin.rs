//! A small client for the sandbox's admin endpoints, and its failures in words.

use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Method;
use serde_json::Value;
use url::Url;

use jetpay::wire::Webhook;

use super::Conn;

/// How long one request may take; the sandbox is local, so anything slower is a problem.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A refused request: its status and the sandbox's `detail`, in words.
#[derive(Debug)]
pub enum Failure {
    /// Not an HTTP answer: the sentence says why.
    Transport(String),
    Status(u16, String),
}

/// A small client for the admin endpoints. The token is only ever in a sensitive header.
pub struct Admin {
    http: reqwest::Client,
    pub base: Url,
    authorization: HeaderValue,
}

/// The URL without any user or password, for messages.
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// The `detail` of a FastAPI-shaped error body, in words.
fn detail(body: &Value) -> String {
    match body.get("detail") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(issues)) => issues
            .iter()
            .map(|i| {
                let field = i
                    .get("loc")
                    .and_then(Value::as_array)
                    .and_then(|l| l.last())
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let msg = i.get("msg").and_then(Value::as_str).unwrap_or("invalid");
                if field.is_empty() {
                    msg.to_owned()
                } else {
                    format!("{field}: {msg}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}

impl Admin {
    pub fn new(conn: &Conn) -> Result<Self, String> {
        if !matches!(conn.url.scheme(), "http" | "https") {
            return Err(format!(
                "--url must be an http(s) URL, not {}",
                shown(&conn.url)
            ));
        }
        let mut base = conn.url.clone();
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", conn.token.trim()))
            .map_err(|_| "the token contains characters not allowed in a header".to_owned())?;
        authorization.set_sensitive(true);
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(3))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jetpay-sandbox-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Admin {
            http,
            base,
            authorization,
        })
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Failure::Transport(format!("bad path {path}: {e}")))?;
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.authorization.clone());
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
            } else if e.is_connect() {
                "connection refused or host unreachable".to_owned()
            } else {
                e.without_url().to_string()
            };
            Failure::Transport(format!(
                "cannot reach the sandbox at {} ({why}). Is it running? The app's dev server embeds \
                 one on http://127.0.0.1:3002; `jetpay-sandbox serve` listens on \
                 http://127.0.0.1:4010. Point --url (or JETPAY_SANDBOX_URL) at it.",
                shown(&self.base)
            ))
        })?;
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(Failure::Status(status, detail(&body)))
        }
    }

    /// A failure in words; `not_found` says what a 404 means for this request.
    pub fn explain(&self, failure: Failure, not_found: &str) -> String {
        match failure {
            Failure::Transport(why) => why,
            Failure::Status(401, detail) => format!(
                "the sandbox at {} refused the token (401 {detail}). Pass a token it accepts with \
                 --token or JETPAY_SANDBOX_TOKEN (the app's embedded sandbox accepts sandbox-token).",
                shown(&self.base)
            ),
            Failure::Status(404, detail) => format!("{not_found} (404 {detail})"),
            Failure::Status(409, detail) => format!("refused: {detail} (409)"),
            Failure::Status(422, detail) => format!("refused: {detail} (422)"),
            Failure::Status(status, detail) => format!(
                "the sandbox at {} answered {status}: {detail}",
                shown(&self.base)
            ),
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        not_found: &str,
    ) -> Result<Value, String> {
        self.send(method, path, body)
            .await
            .map_err(|f| self.explain(f, not_found))
    }

    /// The webhook chosen by `--webhook` (id or identifier), or the only one registered.
    pub async fn webhook(&self, choice: Option<&str>) -> Result<Webhook, String> {
        let list = self
            .call(
                Method::GET,
                "webhooks/",
                None,
                "this server has no webhook API",
            )
            .await?;
        let hooks: Vec<Webhook> = serde_json::from_value(list)
            .map_err(|e| format!("unexpected webhook list from the sandbox: {e}"))?;
        let listing = || {
            hooks
                .iter()
                .map(|w| format!("{} ({})", w.id, w.callback_url))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match choice {
            Some(choice) => hooks
                .iter()
                .find(|w| w.id.to_string() == choice || w.identifier.to_string() == choice)
                .cloned()
                .ok_or_else(|| format!("no webhook {choice}; registered: {}", listing())),
            None => match hooks.as_slice() {
                [] => Err(format!(
                    "no webhook is registered at {}: start the app (it registers one) or POST /webhooks/",
                    shown(&self.base)
                )),
                [only] => Ok(only.clone()),
                _ => Err(format!(
                    "{} webhooks are registered: {}. Choose one with --webhook <id>.",
                    hooks.len(),
                    listing()
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn details_in_words() {
        assert_eq!(
            detail(&json!({"detail": "Invalid API token"})),
            "Invalid API token"
        );
        assert_eq!(
            detail(
                &json!({"detail": [{"loc": ["body", "to_event_id"], "msg": "too high", "type": "value_error"}]})
            ),
            "to_event_id: too high"
        );
        assert_eq!(detail(&Value::Null), "");
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        let url = Url::parse("http://user:secret@127.0.0.1:3002/").unwrap();
        assert_eq!(shown(&url), "http://127.0.0.1:3002/");
    }
}
