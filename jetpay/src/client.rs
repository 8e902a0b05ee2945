//! The HTTP client for the parts of Jetpay's API this project uses.
//!
//! One method per documented endpoint, typed with [`crate::wire`]. Every failure becomes an
//! [`Error`] that says whether retrying can help; nothing here retries by itself, because only
//! the caller knows whether a call is safe to repeat (creating a contact twice is not).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION};
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use url::Url;
use uuid::Uuid;

use crate::error::{truncate_body, Error, MAX_ERROR_BODY_BYTES};
use crate::unspecified;
use crate::wire::{Contact, NewContact, NewWebhook, TokenizationUrl, Webhook, WebhookPatch};

/// Largest successful answer we read. Jetpay's answers are small JSON objects (the webhook list
/// is the longest); a cap keeps a broken or hostile server from making us buffer without end.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// A Jetpay API token. The secret is private and both `Debug` and `Display` print
/// `ApiToken(***)`, so the token cannot reach a log through a struct that holds it; code that
/// really needs the secret calls [`ApiToken::expose`], which is easy to find in review.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn new(token: impl Into<String>) -> Self {
        ApiToken(token.into())
    }

    /// The secret itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

/// What a [`Client`] needs. `Debug` is safe to log: the token prints as `ApiToken(***)`.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The API host, e.g. `https://extapi.demo.jetpay.baselinepayments.com` or the sandbox. A
    /// path prefix is kept (`http://127.0.0.1:8080/jetpay` puts every endpoint under `/jetpay/`).
    pub base_url: Url,
    pub api_token: ApiToken,
    /// Whole-request limit: connect, send, and read the answer.
    pub timeout: Duration,
    /// Limit for establishing the connection alone, so an unreachable host fails fast.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Defaults: 10 s per request, 5 s to connect. These calls sit on a customer's request path
    /// (creating the tokenization URL happens while they wait for the card form), so waiting
    /// longer than this is worse than failing and letting them try again.
    pub fn new(base_url: Url, api_token: ApiToken) -> Self {
        ClientConfig {
            base_url,
            api_token,
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// A Jetpay API client. Cheap to clone (one `Arc`); share one per process so connections are
/// pooled. `Debug` shows the base URL only, never the token.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Normalised to end in `/` so that relative joins keep any path prefix.
    base_url: Url,
    /// `Bearer <token>`, built once and marked sensitive so `reqwest`/`http` redact it in their
    /// own `Debug` output.
    authorization: HeaderValue,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.base_url.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Builds the client. Fails on a base URL that cannot carry API paths (not http(s), no
    /// host, a query or fragment), or a token that cannot be sent in a header.
    pub fn new(config: ClientConfig) -> Result<Client, Error> {
        let base_url = normalise_base_url(config.base_url)?;

        let token = config.api_token.expose();
        if token.trim().is_empty() {
            return Err(Error::Request("the API token is empty".into()));
        }
        // The error says nothing of the value: it is the secret.
        let mut authorization =
            HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                Error::Request("the API token contains characters not allowed in a header".into())
            })?;
        authorization.set_sensitive(true);

        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            // The guide documents no redirects. Following one would resend the token and the
            // body to wherever it points; a 3xx surfaces as `Error::Status` instead.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("jetpay-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Request(format!("could not build the HTTP client: {e}")))?;

        Ok(Client {
            inner: Arc::new(Inner {
                http,
                base_url,
                authorization,
            }),
        })
    }

    /// The base URL requests are made against (with a trailing `/`).
    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// `PUT /contact`. Create a contact once per user and keep its id: the guide treats the
    /// contact as the user's lasting identity at Jetpay.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "create_contact"))]
    pub async fn create_contact(&self, contact: &NewContact) -> Result<Contact, Error> {
        self.timed("create_contact", async move {
            let req = self.request(Method::PUT, "contact")?.json(contact);
            self.send_json(req).await
        })
        .await
    }

    /// `POST /contact/{id}/creditcards/url`, without a body (as in the guide). Store the
    /// returned `credit_card_id` before showing the URL: the card only becomes usable when the
    /// tokenization webhook says so.
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(endpoint = "create_tokenization_url")
    )]
    pub async fn create_tokenization_url(
        &self,
        contact_id: Uuid,
    ) -> Result<TokenizationUrl, Error> {
        self.timed("create_tokenization_url", async move {
            let req = self.request(
                Method::POST,
                &format!("contact/{contact_id}/creditcards/url"),
            )?;
            self.send_json(req).await
        })
        .await
    }

    /// `POST /webhooks/`. A second registration of the same `callback_url` is a validation
    /// error (422 with FastAPI), so callers list first.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "create_webhook"))]
    pub async fn create_webhook(&self, webhook: &NewWebhook) -> Result<Webhook, Error> {
        self.timed("create_webhook", async move {
            let req = self.request(Method::POST, "webhooks/")?.json(webhook);
            self.send_json(req).await
        })
        .await
    }

    /// `GET /webhooks/`.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "list_webhooks"))]
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, Error> {
        self.timed("list_webhooks", async move {
            let req = self.request(Method::GET, "webhooks/")?;
            self.send_json(req).await
        })
        .await
    }

    /// `GET /webhooks/{identifier}`.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "get_webhook"))]
    pub async fn get_webhook(&self, identifier: Uuid) -> Result<Webhook, Error> {
        self.timed("get_webhook", async move {
            let req = self.request(Method::GET, &format!("webhooks/{identifier}"))?;
            self.send_json(req).await
        })
        .await
    }

    /// `PATCH /webhooks/{identifier}`; absent fields stay unchanged.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "update_webhook"))]
    pub async fn update_webhook(
        &self,
        identifier: Uuid,
        patch: &WebhookPatch,
    ) -> Result<Webhook, Error> {
        self.timed("update_webhook", async move {
            let req = self
                .request(Method::PATCH, &format!("webhooks/{identifier}"))?
                .json(patch);
            self.send_json(req).await
        })
        .await
    }

    /// `DELETE /webhooks/{identifier}`. Any 2xx is success; whatever body comes with it is
    /// ignored because the guide does not say what it is.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "delete_webhook"))]
    pub async fn delete_webhook(&self, identifier: Uuid) -> Result<(), Error> {
        self.timed("delete_webhook", async move {
            let req = self.request(Method::DELETE, &format!("webhooks/{identifier}"))?;
            let resp = self.send(req).await?;
            read_limited(resp, MAX_RESPONSE_BYTES).await?;
            Ok(())
        })
        .await
    }

    /// `GET /.well-known/jwks.json`: the public keys that sign webhook JWTs. Sent without the
    /// API token: the keys are public, and the JWKS host is not documented (we assume the API
    /// host, see [`unspecified::JWKS_PATH`]), so the token should not go there.
    #[tracing::instrument(level = "debug", skip_all, fields(endpoint = "jwks"))]
    pub async fn jwks(&self) -> Result<jsonwebtoken::jwk::JwkSet, Error> {
        self.timed("jwks", async move {
            let url = self.url(unspecified::JWKS_PATH)?;
            let req = self
                .inner
                .http
                .get(url)
                .header(ACCEPT, HeaderValue::from_static("application/json"));
            self.send_json(req).await
        })
        .await
    }

    /// Runs one API call, recording its latency and, on failure, its kind per endpoint
    /// (`jetpay_call_duration_seconds`, `jetpay_call_errors_total`).
    async fn timed<T>(
        &self,
        endpoint: &'static str,
        call: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let started = std::time::Instant::now();
        let result = call.await;
        metrics::histogram!("jetpay_call_duration_seconds", "endpoint" => endpoint)
            .record(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            metrics::counter!("jetpay_call_errors_total", "endpoint" => endpoint, "kind" => e.kind())
                .increment(1);
        }
        result
    }

    /// A request to `path` (relative to the base URL) with the token and `Accept` set.
    fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, Error> {
        let url = self.url(path)?;
        Ok(self
            .inner
            .http
            .request(method, url)
            .header(AUTHORIZATION, self.inner.authorization.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json")))
    }

    fn url(&self, path: &str) -> Result<Url, Error> {
        // Relative join: a leading `/` would drop the base URL's path prefix.
        self.inner
            .base_url
            .join(path.trim_start_matches('/'))
            .map_err(|e| Error::InvalidUrl(format!("{path}: {e}")))
    }

    /// Sends and turns a non-2xx answer into [`Error::Status`].
    async fn send(&self, req: RequestBuilder) -> Result<Response, Error> {
        let resp = req.send().await.map_err(Error::from_reqwest)?;
        let status = resp.status();
        tracing::debug!(
            path = %resp.url().path(),
            status = status.as_u16(),
            "jetpay answered"
        );
        if status.is_success() {
            return Ok(resp);
        }
        // Read a little more than we keep so truncation can find a character boundary.
        let body = match read_limited(resp, MAX_ERROR_BODY_BYTES + 4).await {
            Ok((bytes, _)) => truncate_body(&String::from_utf8_lossy(&bytes), MAX_ERROR_BODY_BYTES),
            Err(e) => format!("<body unreadable: {e}>"),
        };
        tracing::warn!(status = status.as_u16(), %body, "jetpay answered with an error");
        Err(Error::Status {
            status: status.as_u16(),
            body,
        })
    }

    async fn send_json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T, Error> {
        let resp = self.send(req).await?;
        let (bytes, truncated) = read_limited(resp, MAX_RESPONSE_BYTES).await?;
        if truncated {
            return Err(Error::Decode(format!(
                "answer larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
    }
}

/// Reads at most `limit` bytes of the body; the flag says whether more was left unread.
async fn read_limited(mut resp: Response, limit: usize) -> Result<(Vec<u8>, bool), Error> {
    let mut buf = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(Error::from_reqwest)? {
        let room = limit - buf.len();
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

fn normalise_base_url(mut url: Url) -> Result<Url, Error> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::InvalidUrl(format!(
            "{url}: scheme must be http or https"
        )));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(Error::InvalidUrl(format!("{url}: no host")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::InvalidUrl(format!(
            "{url}: must not have a query or fragment"
        )));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::serve;
    use crate::wire::WebhookState;
    use axum::body::Bytes;
    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post, put};
    use axum::{Json, Router};
    use std::net::SocketAddr;
    use std::sync::Mutex;

    const TOKEN: &str = "sk_test_very-secret-token";

    fn to_json<T: serde::Serialize>(value: &T) -> serde_json::Value {
        serde_json::to_value(value).expect("wire types serialise")
    }

    fn client_for(addr: SocketAddr) -> Client {
        let url = Url::parse(&format!("http://{addr}")).unwrap();
        Client::new(ClientConfig::new(url, ApiToken::new(TOKEN))).unwrap()
    }

    /// What the fake Jetpay saw of the last request.
    #[derive(Default)]
    struct Seen {
        authorization: Option<String>,
        content_type: Option<String>,
        body: Vec<u8>,
        path: String,
    }

    type Shared = Arc<Mutex<Seen>>;

    fn record(seen: &Shared, path: &str, headers: &HeaderMap, body: &[u8]) {
        let mut s = seen.lock().unwrap();
        s.authorization = headers
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        s.content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        s.body = body.to_vec();
        s.path = path.to_owned();
    }

    fn webhook_json(identifier: Uuid) -> serde_json::Value {
        serde_json::json!({
            "id": 7, "identifier": identifier, "callback_url": "https://example.test/hook",
            "state": "active", "last_sent_event_id": null, "max_batch_size": 10, "max_wait_seconds": 60
        })
    }

    /// A fake Jetpay answering every endpoint the client calls, recording what it saw.
    fn fake_jetpay(seen: Shared) -> Router {
        Router::new()
            .route(
                "/contact",
                put(
                    |State(seen): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                        record(&seen, "/contact", &headers, &body);
                        let new: NewContact = serde_json::from_slice(&body).unwrap();
                        Json(serde_json::json!({
                            "id": "7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e",
                            "email": new.email, "name": new.name, "tags": new.tags,
                            "language": new.language, "extra_field": "ignored"
                        }))
                    },
                ),
            )
            .route(
                "/contact/{id}/creditcards/url",
                post(
                    |State(seen): State<Shared>,
                     Path(id): Path<Uuid>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        record(&seen, &format!("/contact/{id}/creditcards/url"), &headers, &body);
                        Json(serde_json::json!({
                            "url": "https://secure.jetpay.com/tokenize/session_abc",
                            "credit_card_id": "card_456"
                        }))
                    },
                ),
            )
            .route(
                "/webhooks/",
                post(
                    |State(seen): State<Shared>, headers: HeaderMap, body: Bytes| async move {
                        record(&seen, "/webhooks/", &headers, &body);
                        Json(webhook_json(Uuid::nil()))
                    },
                )
                .get(|State(seen): State<Shared>, headers: HeaderMap| async move {
                    record(&seen, "/webhooks/", &headers, b"");
                    Json(serde_json::json!([webhook_json(Uuid::nil())]))
                }),
            )
            .route(
                "/webhooks/{identifier}",
                get(
                    |State(seen): State<Shared>, Path(id): Path<Uuid>, headers: HeaderMap| async move {
                        record(&seen, &format!("/webhooks/{id}"), &headers, b"");
                        Json(webhook_json(id))
                    },
                )
                .patch(
                    |State(seen): State<Shared>,
                     Path(id): Path<Uuid>,
                     headers: HeaderMap,
                     body: Bytes| async move {
                        record(&seen, &format!("/webhooks/{id}"), &headers, &body);
                        let mut w = webhook_json(id);
                        w["max_batch_size"] = serde_json::json!(1);
                        Json(w)
                    },
                )
                .delete(
                    |State(seen): State<Shared>, Path(id): Path<Uuid>, headers: HeaderMap| async move {
                        record(&seen, &format!("/webhooks/{id}"), &headers, b"");
                        StatusCode::NO_CONTENT
                    },
                ),
            )
            .route(
                "/.well-known/jwks.json",
                get(|State(seen): State<Shared>, headers: HeaderMap| async move {
                    record(&seen, "/.well-known/jwks.json", &headers, b"");
                    Json(serde_json::json!({"keys": []}))
                }),
            )
            .with_state(seen)
    }

    async fn fake() -> (Client, Shared) {
        let seen: Shared = Arc::default();
        let addr = serve(fake_jetpay(seen.clone())).await;
        (client_for(addr), seen)
    }

    #[tokio::test]
    async fn create_contact_sends_bearer_token_and_json() {
        let (client, seen) = fake().await;
        let new = NewContact {
            email: "ada@example.com".into(),
            name: "Ada".into(),
            tags: vec![],
            language: "en".into(),
        };
        let contact = client.create_contact(&new).await.unwrap();
        assert_eq!(contact.email, "ada@example.com");
        assert_eq!(
            contact.id,
            "7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e"
                .parse::<Uuid>()
                .unwrap()
        );
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
        assert_eq!(seen.content_type.as_deref(), Some("application/json"));
        let sent: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(sent, to_json(&new));
    }

    #[tokio::test]
    async fn tokenization_url_posts_without_body() {
        let (client, seen) = fake().await;
        let contact = Uuid::new_v4();
        let answer = client.create_tokenization_url(contact).await.unwrap();
        assert_eq!(answer.credit_card_id, "card_456");
        assert_eq!(answer.url, "https://secure.jetpay.com/tokenize/session_abc");
        let seen = seen.lock().unwrap();
        assert_eq!(seen.path, format!("/contact/{contact}/creditcards/url"));
        assert!(seen.body.is_empty());
        assert_eq!(
            seen.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }

    #[tokio::test]
    async fn webhook_management_round_trip() {
        let (client, seen) = fake().await;
        let created = client
            .create_webhook(&NewWebhook {
                callback_url: "https://example.test/hook".into(),
                max_batch_size: Some(5),
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(created.state, WebhookState::Active);
        assert_eq!(created.last_sent_event_id, None);
        let sent: serde_json::Value = serde_json::from_slice(&seen.lock().unwrap().body).unwrap();
        // Absent options are left out, not sent as null: Jetpay applies its defaults.
        assert_eq!(
            sent,
            serde_json::json!({"callback_url": "https://example.test/hook", "max_batch_size": 5})
        );

        assert_eq!(client.list_webhooks().await.unwrap().len(), 1);

        let id = Uuid::new_v4();
        assert_eq!(client.get_webhook(id).await.unwrap().identifier, id);
        assert_eq!(seen.lock().unwrap().path, format!("/webhooks/{id}"));

        let patched = client
            .update_webhook(
                id,
                &WebhookPatch {
                    max_batch_size: Some(1),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(patched.max_batch_size, 1);
        let sent: serde_json::Value = serde_json::from_slice(&seen.lock().unwrap().body).unwrap();
        assert_eq!(sent, serde_json::json!({"max_batch_size": 1}));

        client.delete_webhook(id).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.path, format!("/webhooks/{id}"));
        assert_eq!(
            seen.authorization.as_deref(),
            Some(&*format!("Bearer {TOKEN}"))
        );
    }

    #[tokio::test]
    async fn jwks_is_fetched_without_the_token() {
        let (client, seen) = fake().await;
        let set = client.jwks().await.unwrap();
        assert!(set.keys.is_empty());
        let seen = seen.lock().unwrap();
        assert_eq!(seen.path, "/.well-known/jwks.json");
        assert_eq!(seen.authorization, None);
    }

    #[tokio::test]
    async fn validation_error_keeps_fastapi_body() {
        let detail = serde_json::json!({"detail": [{"loc": ["body", "callback_url"],
            "msg": "callback_url already registered", "type": "value_error"}]});
        let body = detail.clone();
        let addr = serve(Router::new().route(
            "/webhooks/",
            post(move || async move { (StatusCode::UNPROCESSABLE_ENTITY, Json(body)) }),
        ))
        .await;
        let err = client_for(addr)
            .create_webhook(&NewWebhook {
                callback_url: "https://example.test/hook".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        match &err {
            Error::Status { status, body } => {
                assert_eq!(*status, 422);
                let parsed: serde_json::Value = serde_json::from_str(body).unwrap();
                assert_eq!(parsed, detail);
                let parsed: crate::wire::ErrorBody = serde_json::from_str(body).unwrap();
                assert!(parsed.detail.is_array());
            }
            other => panic!("expected Status, got {other:?}"),
        }
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn server_error_is_retryable_and_long_body_truncated() {
        let addr = serve(Router::new().route(
            "/webhooks/",
            get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "x".repeat(100_000)) }),
        ))
        .await;
        let err = client_for(addr).list_webhooks().await.unwrap_err();
        match &err {
            Error::Status { status, body } => {
                assert_eq!(*status, 503);
                assert!(body.len() <= MAX_ERROR_BODY_BYTES + "…[truncated]".len());
                assert!(body.ends_with("…[truncated]"));
            }
            other => panic!("expected Status, got {other:?}"),
        }
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn rate_limited_is_retryable() {
        let addr = serve(Router::new().route(
            "/webhooks/",
            get(|| async { (StatusCode::TOO_MANY_REQUESTS, "slow down") }),
        ))
        .await;
        let err = client_for(addr).list_webhooks().await.unwrap_err();
        assert_eq!(err.status(), Some(429));
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn redirect_is_not_followed() {
        let addr = serve(Router::new().route(
            "/webhooks/",
            get(|| async {
                (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "http://127.0.0.1:9/elsewhere")],
                )
            }),
        ))
        .await;
        let err = client_for(addr).list_webhooks().await.unwrap_err();
        assert_eq!(err.status(), Some(307));
    }

    #[tokio::test]
    async fn undecodable_answer_is_decode_error() {
        let addr = serve(Router::new().route(
            "/webhooks/",
            get(|| async { Json(serde_json::json!({"not": "a list"})) }),
        ))
        .await;
        let err = client_for(addr).list_webhooks().await.unwrap_err();
        assert!(matches!(err, Error::Decode(_)), "{err:?}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn slow_answer_is_timeout() {
        let addr = serve(Router::new().route(
            "/webhooks/",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                Json(serde_json::json!([]))
            }),
        ))
        .await;
        let mut config = ClientConfig::new(
            Url::parse(&format!("http://{addr}")).unwrap(),
            ApiToken::new(TOKEN),
        );
        config.timeout = Duration::from_millis(200);
        let err = Client::new(config)
            .unwrap()
            .list_webhooks()
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Timeout), "{err:?}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn refused_connection_is_connect_error() {
        // Bind then drop, so the port is (almost certainly) closed.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = client_for(addr).list_webhooks().await.unwrap_err();
        assert!(matches!(err, Error::Connect(_)), "{err:?}");
        assert!(err.is_retryable());
        assert!(!format!("{err:?}").contains(TOKEN));
    }

    #[tokio::test]
    async fn base_url_path_prefix_is_kept() {
        let seen: Shared = Arc::default();
        let addr = serve(Router::new().nest("/jetpay", fake_jetpay(seen.clone()))).await;
        let url = Url::parse(&format!("http://{addr}/jetpay")).unwrap();
        let client = Client::new(ClientConfig::new(url, ApiToken::new(TOKEN))).unwrap();
        assert_eq!(client.base_url().path(), "/jetpay/");
        assert_eq!(client.list_webhooks().await.unwrap().len(), 1);
        assert!(client.jwks().await.unwrap().keys.is_empty());
    }

    /// The two hosts the guide documents: both are accepted as they are written, and every
    /// endpoint (the JWKS included, assumed on the API host) lands at the host's root.
    #[test]
    fn documented_hosts_build_the_documented_paths() {
        let contact = Uuid::parse_str("7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e").unwrap();
        for host in [
            "https://extapi.demo.jetpay.baselinepayments.com",
            "https://extapi.jetpay.baselinepayments.com",
        ] {
            let url = Url::parse(host).unwrap();
            let client = Client::new(ClientConfig::new(url, ApiToken::new(TOKEN))).unwrap();
            assert_eq!(client.base_url().as_str(), format!("{host}/"));
            for (path, expected) in [
                ("contact", "/contact".to_owned()),
                (
                    &format!("contact/{contact}/creditcards/url"),
                    format!("/contact/{contact}/creditcards/url"),
                ),
                ("webhooks/", "/webhooks/".to_owned()),
                (unspecified::JWKS_PATH, "/.well-known/jwks.json".to_owned()),
            ] {
                assert_eq!(
                    client.url(path).unwrap().as_str(),
                    format!("{host}{expected}")
                );
            }
        }
    }

    #[test]
    fn token_never_shows_in_debug_or_display() {
        let token = ApiToken::new(TOKEN);
        assert_eq!(format!("{token:?}"), "ApiToken(***)");
        assert_eq!(format!("{token}"), "ApiToken(***)");
        assert_eq!(token.expose(), TOKEN);

        let config = ClientConfig::new(Url::parse("https://example.test").unwrap(), token);
        let config_debug = format!("{config:?}");
        assert!(!config_debug.contains(TOKEN), "{config_debug}");
        assert!(config_debug.contains("ApiToken(***)"));
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.connect_timeout, Duration::from_secs(5));

        let client = Client::new(config).unwrap();
        let client_debug = format!("{client:?}");
        assert!(!client_debug.contains(TOKEN), "{client_debug}");
        assert!(!client_debug.contains("secret"), "{client_debug}");
        assert!(client_debug.contains("example.test"));
        let cloned = format!("{:?}", client.clone());
        assert!(!cloned.contains(TOKEN));
    }

    #[test]
    fn bad_configuration_is_rejected() {
        let token = || ApiToken::new(TOKEN);
        for bad in [
            "ftp://example.test",
            "mailto:someone@example.test",
            "https://example.test/?a=b",
        ] {
            let err =
                Client::new(ClientConfig::new(Url::parse(bad).unwrap(), token())).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl(_)), "{bad}: {err:?}");
        }
        let url = Url::parse("https://example.test").unwrap();
        let err = Client::new(ClientConfig::new(url.clone(), ApiToken::new(""))).unwrap_err();
        assert!(matches!(err, Error::Request(_)));
        let err =
            Client::new(ClientConfig::new(url, ApiToken::new("line\nbreak-secret"))).unwrap_err();
        assert!(!format!("{err:?}").contains("break-secret"));
    }
}
