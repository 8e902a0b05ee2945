//! Verification of webhook deliveries.
//!
//! Every delivery carries `Authorization: Bearer <jwt>`, an RS256 token whose `payload_hash`
//! claim binds it to the exact request body. A delivery is only trusted after all of these hold,
//! in this order (cheap, key-free checks first, so a forged request costs us no JWKS fetch):
//!
//! 1. the header is a bearer token that parses as a JWT;
//! 2. its `alg` is RS256 — anything else (`none`, HS256 keyed with our public key, …) is refused
//!    before any key is looked up, which is what defeats algorithm-confusion attacks;
//! 3. it names a `kid` that is in Jetpay's JWKS (refetched at most once per
//!    [`Verifier::with_min_refetch_interval`] on an unknown `kid`, so key rotation works and a
//!    flood of bogus `kid`s cannot make us hammer Jetpay);
//! 4. the signature verifies with that key;
//! 5. `exp` (with [`unspecified::JWT_LEEWAY_SECONDS`] of leeway), `iss`, `sub` are right,
//!    `jti`, `iat`, `payload_hash` are present, and `exp - iat` is no longer than
//!    [`unspecified::JWT_MAX_LIFETIME_SECONDS`];
//! 6. `payload_hash` equals base64url(SHA-256(body)), compared in constant time;
//! 7. the body is a non-empty [`WebhookBatch`].
//!
//! Replays of a whole delivery within its ~90 s lifetime are not rejected here: deliveries are
//! at-least-once anyway, so receivers must be idempotent by event id.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::client::Client;
use crate::unspecified;
use crate::wire::{WebhookBatch, WebhookClaims};

/// Default for [`Verifier::with_min_refetch_interval`].
pub const DEFAULT_MIN_REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Claims the verifier insists on, in the order it reports them missing.
const REQUIRED_CLAIMS: [&str; 6] = ["jti", "iat", "exp", "iss", "sub", "payload_hash"];

/// Why a delivery was refused. Every variant means "answer 401 and do not process"; they differ
/// only so the log says what was wrong.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VerifyError {
    #[error("no Authorization header")]
    MissingAuthorization,
    #[error("Authorization is not a Bearer token")]
    NotBearer,
    #[error("the bearer token is not a well-formed JWT")]
    MalformedToken,
    #[error("the JWT header has no kid")]
    MissingKid,
    #[error("JWT algorithm {0} is not accepted (RS256 only)")]
    UnsupportedAlgorithm(String),
    #[error("no signing key with kid {0:?}")]
    UnknownKid(String),
    #[error("signing keys unavailable: {0}")]
    KeysUnavailable(String),
    #[error("the JWT signature is invalid")]
    InvalidSignature,
    #[error("the JWT has expired")]
    Expired,
    #[error("the JWT is not valid yet")]
    NotYetValid,
    /// `exp - iat` is longer than Jetpay ever issues (about 90 s): a token that stays valid for
    /// hours is one Jetpay did not make, or one that a leak would keep useful.
    #[error("the JWT lives {0} s, longer than Jetpay's tokens ever do")]
    LifetimeTooLong(i64),
    #[error("the JWT issuer is not {:?}", unspecified::JWT_ISSUER)]
    WrongIssuer,
    #[error("the JWT subject is not {:?}", unspecified::JWT_SUBJECT)]
    WrongSubject,
    #[error("the JWT lacks the {0} claim")]
    MissingClaim(String),
    #[error("payload_hash does not match the request body")]
    PayloadHashMismatch,
    #[error("the body is not a webhook batch: {0}")]
    InvalidPayload(String),
}

impl VerifyError {
    /// A short label per variant for metrics (`webhook_verification_failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingAuthorization => "missing_authorization",
            VerifyError::NotBearer => "not_bearer",
            VerifyError::MalformedToken => "malformed_token",
            VerifyError::MissingKid => "missing_kid",
            VerifyError::UnsupportedAlgorithm(_) => "unsupported_algorithm",
            VerifyError::UnknownKid(_) => "unknown_kid",
            VerifyError::KeysUnavailable(_) => "keys_unavailable",
            VerifyError::InvalidSignature => "invalid_signature",
            VerifyError::Expired => "expired",
            VerifyError::NotYetValid => "not_yet_valid",
            VerifyError::LifetimeTooLong(_) => "lifetime_too_long",
            VerifyError::WrongIssuer => "wrong_issuer",
            VerifyError::WrongSubject => "wrong_subject",
            VerifyError::MissingClaim(_) => "missing_claim",
            VerifyError::PayloadHashMismatch => "payload_hash_mismatch",
            VerifyError::InvalidPayload(_) => "invalid_payload",
        }
    }
}

/// base64url, without padding, of SHA-256 of `body`: the `payload_hash` claim that binds a
/// token to one request body. Public so a signer (the sandbox) computes exactly the same thing.
pub fn payload_hash(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

/// Verifies webhook deliveries. Cheap to clone (one `Arc`), so one instance can be shared by
/// every request handler and the JWKS cache is shared with it.
#[derive(Clone)]
pub struct Verifier {
    shared: Arc<Shared>,
    min_refetch_interval: Duration,
}

struct Shared {
    /// Where keys come from; `None` for a fixed set ([`Verifier::with_keys`]).
    source: Option<Client>,
    /// Usable keys by `kid`. A plain lock: it is never held across an `await`.
    keys: RwLock<HashMap<String, DecodingKey>>,
    /// Serialises fetches, so concurrent deliveries with the same new `kid` cause one fetch.
    fetch: tokio::sync::Mutex<FetchState>,
}

#[derive(Default)]
struct FetchState {
    last_attempt: Option<Instant>,
    /// Why the last fetch failed, if it did: then an unknown `kid` is reported as
    /// `KeysUnavailable` (our problem, worth a retry by Jetpay) rather than `UnknownKid`.
    last_error: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<String> = self.read_keys().keys().cloned().collect();
        f.debug_struct("Verifier")
            .field("source", &self.shared.source)
            .field("kids", &kids)
            .field("min_refetch_interval", &self.min_refetch_interval)
            .finish()
    }
}

impl Verifier {
    /// Keys come from `client.jwks()`, fetched on first use and again when a token names a
    /// `kid` we do not have (Jetpay rotated its keys).
    pub fn new(client: Client) -> Self {
        Self::build(Some(client), HashMap::new())
    }

    /// A fixed key set, never refetched: for tests, and for pinning keys out of band.
    pub fn with_keys(keys: JwkSet) -> Self {
        Self::build(None, usable_keys(&keys))
    }

    /// How soon after one JWKS fetch an unknown `kid` may cause another (default 30 s). Tokens
    /// with a made-up `kid` are free to send; this bounds what they cost Jetpay and us.
    pub fn with_min_refetch_interval(mut self, d: Duration) -> Self {
        self.min_refetch_interval = d;
        self
    }

    fn build(source: Option<Client>, keys: HashMap<String, DecodingKey>) -> Self {
        Verifier {
            shared: Arc::new(Shared {
                source,
                keys: RwLock::new(keys),
                fetch: tokio::sync::Mutex::new(FetchState::default()),
            }),
            min_refetch_interval: DEFAULT_MIN_REFETCH_INTERVAL,
        }
    }

    /// Checks a delivery: `authorization` is the raw `Authorization` header value (if any),
    /// `body` the raw request body exactly as received — hash it before any JSON parsing or
    /// re-encoding, or the hash cannot match.
    pub async fn verify(
        &self,
        authorization: Option<&str>,
        body: &[u8],
    ) -> Result<WebhookBatch, VerifyError> {
        let token = bearer_token(authorization)?;
        let kid = rs256_kid(token)?;
        let key = self.key_for(&kid).await?;
        let claims = decode_claims(token, &key)?;

        let expected = payload_hash(body);
        // Tolerate `=` padding: the guide says "base64url" without saying whether it pads.
        let given = claims.payload_hash.trim_end_matches('=');
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(VerifyError::PayloadHashMismatch);
        }

        let batch: WebhookBatch =
            serde_json::from_slice(body).map_err(|e| VerifyError::InvalidPayload(e.to_string()))?;
        if batch.events.is_empty() {
            return Err(VerifyError::InvalidPayload(
                "the batch has no events (Jetpay never sends an empty one)".into(),
            ));
        }
        Ok(batch)
    }

    /// Whether any signing key is loaded.
    pub fn has_keys(&self) -> bool {
        !self.read_keys().is_empty()
    }

    /// Loads Jetpay's keys now if none are loaded (at start, and for readiness), instead of on
    /// the first delivery. Bounded by the same refetch interval as an unknown `kid`.
    pub async fn ensure_keys(&self) -> bool {
        if self.has_keys() {
            return true;
        }
        // A kid nobody uses: triggers a (rate-limited) fetch, then reports what is loaded.
        let _ = self.key_for("").await;
        self.has_keys()
    }

    fn read_keys(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, DecodingKey>> {
        // A panic elsewhere while holding the lock cannot leave the map half-written (we only
        // ever replace it whole), so a poisoned lock is still good to read.
        self.shared
            .keys
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        self.read_keys().get(kid).cloned()
    }

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, VerifyError> {
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let Some(client) = &self.shared.source else {
            return Err(VerifyError::UnknownKid(kid.to_owned()));
        };

        let mut state = self.shared.fetch.lock().await;
        // Another delivery may have fetched while we waited for the lock.
        if let Some(key) = self.cached(kid) {
            return Ok(key);
        }
        let due = state
            .last_attempt
            .is_none_or(|t| t.elapsed() >= self.min_refetch_interval);
        if due {
            // Counted from the attempt, not its success: a failing JWKS endpoint is not
            // retried faster than a working one.
            state.last_attempt = Some(Instant::now());
            match client.jwks().await {
                Ok(set) => {
                    let keys = usable_keys(&set);
                    tracing::info!(kids = ?keys.keys().collect::<Vec<_>>(), "fetched Jetpay JWKS");
                    // Replace, not merge: a key Jetpay withdrew must stop verifying.
                    *self
                        .shared
                        .keys
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = keys;
                    state.last_error = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not fetch Jetpay JWKS");
                    state.last_error = Some(e.to_string());
                }
            }
            if let Some(key) = self.cached(kid) {
                return Ok(key);
            }
        }
        match &state.last_error {
            Some(e) => Err(VerifyError::KeysUnavailable(e.clone())),
            None => Err(VerifyError::UnknownKid(kid.to_owned())),
        }
    }
}

/// Keeps the keys that can verify RS256: RSA, with a `kid`, not marked for another algorithm
/// or for encryption. Anything else in the set is ignored, so a token naming it is `UnknownKid`.
fn usable_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = &jwk.common.key_id else {
            continue;
        };
        if !matches!(jwk.algorithm, AlgorithmParameters::RSA(_)) {
            continue;
        }
        if jwk
            .common
            .key_algorithm
            .is_some_and(|alg| alg != KeyAlgorithm::RS256)
        {
            continue;
        }
        if jwk
            .common
            .public_key_use
            .as_ref()
            .is_some_and(|u| *u != PublicKeyUse::Signature)
        {
            continue;
        }
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.entry(kid.clone()).or_insert(key);
            }
            Err(e) => tracing::warn!(kid, error = %e, "ignoring unusable JWK"),
        }
    }
    keys
}

/// The token from `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
fn bearer_token(authorization: Option<&str>) -> Result<&str, VerifyError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingAuthorization)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(VerifyError::NotBearer);
    }
    let token = rest.trim();
    if token.is_empty() {
        return Err(VerifyError::MalformedToken);
    }
    Ok(token)
}

/// Reads the JOSE header and insists on RS256 before anything else happens; returns the `kid`.
fn rs256_kid(token: &str) -> Result<String, VerifyError> {
    let header = match jsonwebtoken::decode_header(token) {
        Ok(header) => header,
        // `jsonwebtoken` has no `none` algorithm, so such a header does not even parse. Look
        // at the raw `alg` to say "unsupported algorithm" rather than "malformed".
        Err(_) => {
            return Err(match raw_alg(token) {
                Some(alg) if alg != "RS256" => VerifyError::UnsupportedAlgorithm(alg),
                _ => VerifyError::MalformedToken,
            })
        }
    };
    if header.alg != Algorithm::RS256 {
        return Err(VerifyError::UnsupportedAlgorithm(format!(
            "{:?}",
            header.alg
        )));
    }
    header
        .kid
        .filter(|kid| !kid.is_empty())
        .ok_or(VerifyError::MissingKid)
}

/// The `alg` string of a JOSE header that `jsonwebtoken` refused to parse. Used only to choose
/// the error message; never to accept anything.
fn raw_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    value.get("alg")?.as_str().map(str::to_owned)
}

/// Signature, then the claims. `jsonwebtoken` checks the signature, `exp`, `iss` and `sub`; we
/// check the presence of the rest, and `iat`, which it ignores.
fn decode_claims(token: &str, key: &DecodingKey) -> Result<WebhookClaims, VerifyError> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = unspecified::JWT_LEEWAY_SECONDS;
    validation.set_required_spec_claims(&["exp", "iss", "sub"]);
    validation.set_issuer(&[unspecified::JWT_ISSUER]);
    validation.sub = Some(unspecified::JWT_SUBJECT.to_owned());
    validation.validate_exp = true;
    // `nbf` is not among Jetpay's claims, but honour it if it ever appears.
    validation.validate_nbf = true;
    // Jetpay sends no `aud`; there is no audience of ours to check it against.
    validation.validate_aud = false;

    let data =
        jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, key, &validation)
            .map_err(|e| map_jwt_error(e.into_kind()))?;

    for claim in REQUIRED_CLAIMS {
        if data
            .claims
            .get(claim)
            .is_none_or(serde_json::Value::is_null)
        {
            return Err(VerifyError::MissingClaim(claim.to_owned()));
        }
    }
    // Present but of the wrong type (a `jti` that is not a UUID, a string `iat`): the token
    // is not one Jetpay would make.
    let claims: WebhookClaims = serde_json::from_value(serde_json::Value::Object(data.claims))
        .map_err(|_| VerifyError::MalformedToken)?;

    let now = chrono::Utc::now().timestamp();
    let leeway = i64::try_from(unspecified::JWT_LEEWAY_SECONDS).unwrap_or(i64::MAX);
    if claims.iat > now.saturating_add(leeway) {
        return Err(VerifyError::NotYetValid);
    }
    let lifetime = claims.exp.saturating_sub(claims.iat);
    if lifetime > unspecified::JWT_MAX_LIFETIME_SECONDS {
        return Err(VerifyError::LifetimeTooLong(lifetime));
    }
    Ok(claims)
}

fn map_jwt_error(kind: ErrorKind) -> VerifyError {
    match kind {
        ErrorKind::InvalidSignature | ErrorKind::Provider(_) => VerifyError::InvalidSignature,
        ErrorKind::ExpiredSignature => VerifyError::Expired,
        ErrorKind::ImmatureSignature => VerifyError::NotYetValid,
        ErrorKind::InvalidIssuer => VerifyError::WrongIssuer,
        ErrorKind::InvalidSubject => VerifyError::WrongSubject,
        ErrorKind::MissingRequiredClaim(claim) => VerifyError::MissingClaim(claim),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            VerifyError::UnsupportedAlgorithm("RS256 with a non-RSA key".into())
        }
        ErrorKind::InvalidRsaKey(reason) => {
            VerifyError::KeysUnavailable(format!("invalid RSA key in the JWKS: {reason}"))
        }
        ErrorKind::InvalidKeyFormat => {
            VerifyError::KeysUnavailable("invalid key format in the JWKS".into())
        }
        _ => VerifyError::MalformedToken,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{ApiToken, ClientConfig};
    use crate::test_util::{claims_for, now};
    use crate::testkit::{jwks, jwks_json, key, serve, sign};
    use axum::extract::State;
    use axum::routing::get;
    use axum::{Json, Router};
    use jsonwebtoken::{EncodingKey, Header};
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    const KID: &str = "key-2026-01";

    fn body() -> Vec<u8> {
        br#"{"webhookId":123,"events":[{"id":45678,"createdAt":"2026-01-22T10:15:30.123456Z","type":"contacts.creditcards.tokenized","data":{"creditCardId":"card_456","contactId":"7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e","state":"succeeded"}}]}"#.to_vec()
    }

    fn verifier() -> Verifier {
        Verifier::with_keys(jwks(&[KID]))
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    /// Signs `claims` with the test key under `KID` and verifies it against `body`.
    async fn check(claims: &serde_json::Value, body: &[u8]) -> Result<WebhookBatch, VerifyError> {
        let auth = bearer(&sign(Some(KID), claims));
        verifier().verify(Some(&auth), body).await
    }

    fn b64(value: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
    }

    #[tokio::test]
    async fn valid_delivery_is_accepted() {
        let body = body();
        let batch = check(&claims_for(&body), &body).await.unwrap();
        assert_eq!(batch.webhook_id, 123);
        assert_eq!(batch.events.len(), 1);
        assert_eq!(
            batch.events[0].event_type,
            unspecified::CARD_TOKENIZED_EVENT
        );
    }

    #[tokio::test]
    async fn lowercase_scheme_and_padded_hash_are_accepted() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["payload_hash"] = format!("{}=", payload_hash(&body)).into();
        let auth = format!("bearer {}", sign(Some(KID), &claims));
        verifier().verify(Some(&auth), &body).await.unwrap();
    }

    #[tokio::test]
    async fn missing_authorization() {
        assert_eq!(
            verifier().verify(None, &body()).await.unwrap_err(),
            VerifyError::MissingAuthorization
        );
        assert_eq!(
            verifier().verify(Some("  "), &body()).await.unwrap_err(),
            VerifyError::MissingAuthorization
        );
    }

    #[tokio::test]
    async fn basic_scheme_is_not_bearer() {
        assert_eq!(
            verifier()
                .verify(Some("Basic dXNlcjpwYXNzd29yZA=="), &body())
                .await
                .unwrap_err(),
            VerifyError::NotBearer
        );
        // A JWT without any scheme is not accepted either.
        let token = sign(Some(KID), &claims_for(&body()));
        assert_eq!(
            verifier().verify(Some(&token), &body()).await.unwrap_err(),
            VerifyError::NotBearer
        );
    }

    #[tokio::test]
    async fn garbage_is_malformed() {
        for auth in [
            "Bearer",
            "Bearer ",
            "Bearer not-a-jwt",
            "Bearer a.b.c",
            "Bearer aGVsbG8.e30.c2ln", // header is "hello", not JSON
        ] {
            assert_eq!(
                verifier().verify(Some(auth), &body()).await.unwrap_err(),
                VerifyError::MalformedToken,
                "{auth}"
            );
        }
    }

    #[tokio::test]
    async fn alg_none_is_refused() {
        let body = body();
        let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": KID});
        let token = format!("{}.{}.", b64(&header), b64(&claims_for(&body)));
        assert_eq!(
            verifier()
                .verify(Some(&bearer(&token)), &body)
                .await
                .unwrap_err(),
            VerifyError::UnsupportedAlgorithm("none".into())
        );
    }

    #[tokio::test]
    async fn hs256_keyed_with_the_public_key_is_refused() {
        // The classic algorithm-confusion forgery: HMAC with the RSA public key as the secret.
        let body = body();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(KID.into());
        let forged = jsonwebtoken::encode(
            &header,
            &claims_for(&body),
            &EncodingKey::from_secret(key().public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier()
                .verify(Some(&bearer(&forged)), &body)
                .await
                .unwrap_err(),
            VerifyError::UnsupportedAlgorithm("HS256".into())
        );
    }

    #[tokio::test]
    async fn other_rsa_algorithms_are_refused() {
        let body = body();
        let mut header = Header::new(Algorithm::RS512);
        header.kid = Some(KID.into());
        let token = jsonwebtoken::encode(&header, &claims_for(&body), &key().encoding).unwrap();
        assert_eq!(
            verifier()
                .verify(Some(&bearer(&token)), &body)
                .await
                .unwrap_err(),
            VerifyError::UnsupportedAlgorithm("RS512".into())
        );
    }

    #[tokio::test]
    async fn missing_kid() {
        let body = body();
        let auth = bearer(&sign(None, &claims_for(&body)));
        assert_eq!(
            verifier().verify(Some(&auth), &body).await.unwrap_err(),
            VerifyError::MissingKid
        );
    }

    #[tokio::test]
    async fn unknown_kid_with_static_keys() {
        let body = body();
        let auth = bearer(&sign(Some("someone-elses-key"), &claims_for(&body)));
        assert_eq!(
            verifier().verify(Some(&auth), &body).await.unwrap_err(),
            VerifyError::UnknownKid("someone-elses-key".into())
        );
    }

    #[tokio::test]
    async fn tampered_claims_fail_the_signature() {
        // Swap in the hash of a different body while keeping the original signature.
        let body = body();
        let token = sign(Some(KID), &claims_for(&body));
        let parts: Vec<&str> = token.split('.').collect();
        let other = b"{\"webhookId\":1,\"events\":[]}";
        let forged = format!("{}.{}.{}", parts[0], b64(&claims_for(other)), parts[2]);
        assert_eq!(
            verifier()
                .verify(Some(&bearer(&forged)), other)
                .await
                .unwrap_err(),
            VerifyError::InvalidSignature
        );
        // And a signature that is not even base64.
        let broken = format!("{}.{}.!!!", parts[0], parts[1]);
        assert!(verifier()
            .verify(Some(&bearer(&broken)), &body)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn expired_beyond_leeway() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["iat"] = (now() - 200).into();
        claims["exp"] = (now() - 100).into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::Expired
        );
    }

    #[tokio::test]
    async fn expired_within_leeway_is_accepted() {
        let body = body();
        let mut claims = claims_for(&body);
        let leeway = unspecified::JWT_LEEWAY_SECONDS as i64;
        claims["iat"] = (now() - 100).into();
        claims["exp"] = (now() - leeway / 2).into();
        check(&claims, &body).await.unwrap();
    }

    #[tokio::test]
    async fn issued_in_the_future_is_not_yet_valid() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["iat"] = (now() + 3600).into();
        claims["exp"] = (now() + 3690).into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::NotYetValid
        );

        let mut claims = claims_for(&body);
        claims["nbf"] = (now() + 3600).into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::NotYetValid
        );
    }

    #[tokio::test]
    async fn far_future_exp_is_too_long_lived() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["exp"] = (now() + 365 * 24 * 3600).into();
        assert!(matches!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::LifetimeTooLong(_)
        ));
        // The longest lifetime allowed is still accepted.
        let mut claims = claims_for(&body);
        claims["exp"] = (now() + unspecified::JWT_MAX_LIFETIME_SECONDS).into();
        check(&claims, &body).await.unwrap();
    }

    #[tokio::test]
    async fn clock_skew_within_leeway_is_accepted() {
        // Jetpay's clock a few seconds ahead of ours: `iat` is in our future.
        let body = body();
        let mut claims = claims_for(&body);
        let skew = unspecified::JWT_LEEWAY_SECONDS as i64 - 2;
        claims["iat"] = (now() + skew).into();
        claims["exp"] = (now() + skew + 90).into();
        check(&claims, &body).await.unwrap();
    }

    #[tokio::test]
    async fn wrong_issuer() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["iss"] = "not-jetpay".into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::WrongIssuer
        );
    }

    #[tokio::test]
    async fn wrong_subject() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["sub"] = "payment".into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::WrongSubject
        );
    }

    #[tokio::test]
    async fn each_required_claim_is_required() {
        let body = body();
        for claim in REQUIRED_CLAIMS {
            let mut claims = claims_for(&body);
            claims.as_object_mut().unwrap().remove(claim);
            assert_eq!(
                check(&claims, &body).await.unwrap_err(),
                VerifyError::MissingClaim(claim.into()),
                "{claim}"
            );
        }
        let mut claims = claims_for(&body);
        claims["jti"] = serde_json::Value::Null;
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::MissingClaim("jti".into())
        );
    }

    #[tokio::test]
    async fn claim_of_wrong_type_is_malformed() {
        let body = body();
        let mut claims = claims_for(&body);
        claims["jti"] = "not-a-uuid".into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::MalformedToken
        );
    }

    #[tokio::test]
    async fn body_changed_by_one_byte() {
        let body = body();
        let claims = claims_for(&body);
        let mut changed = body.clone();
        let at = changed.iter().position(|&b| b == b'3').unwrap(); // 123 -> 023
        changed[at] = b'0';
        assert_eq!(
            check(&claims, &changed).await.unwrap_err(),
            VerifyError::PayloadHashMismatch
        );
        let mut claims = claims_for(&body);
        claims["payload_hash"] = "".into();
        assert_eq!(
            check(&claims, &body).await.unwrap_err(),
            VerifyError::PayloadHashMismatch
        );
    }

    #[tokio::test]
    async fn signed_body_that_is_not_a_batch() {
        for body in [
            b"not json".to_vec(),
            br#"{"webhookId":1}"#.to_vec(),
            br#"{"webhookId":1,"events":[]}"#.to_vec(),
        ] {
            let err = check(&claims_for(&body), &body).await.unwrap_err();
            assert!(matches!(err, VerifyError::InvalidPayload(_)), "{err:?}");
        }
    }

    #[test]
    fn payload_hash_is_base64url_sha256() {
        // SHA-256 of the empty string is e3b0c442…b855: standard base64
        // "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", here URL-safe and unpadded.
        assert_eq!(
            payload_hash(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[test]
    fn non_signing_keys_are_ignored() {
        let mut set = jwks_json(&["good", "enc", "hs"]);
        set["keys"][1]["use"] = "enc".into();
        set["keys"][2]["alg"] = "RS512".into();
        let set: JwkSet = serde_json::from_value(set).unwrap();
        let keys = usable_keys(&set);
        assert_eq!(keys.keys().collect::<Vec<_>>(), vec!["good"]);
    }

    /// A fake JWKS endpoint whose key set can change, counting fetches.
    #[derive(Clone)]
    struct Jwks {
        hits: Arc<AtomicUsize>,
        set: Arc<Mutex<serde_json::Value>>,
    }

    async fn jwks_server(kids: &[&str]) -> (SocketAddr, Jwks) {
        let state = Jwks {
            hits: Arc::default(),
            set: Arc::new(Mutex::new(jwks_json(kids))),
        };
        let router = Router::new()
            .route(
                unspecified::JWKS_PATH,
                get(|State(s): State<Jwks>| async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    Json(s.set.lock().unwrap().clone())
                }),
            )
            .with_state(state.clone());
        (serve(router).await, state)
    }

    fn client_for(addr: SocketAddr) -> Client {
        let url = url::Url::parse(&format!("http://{addr}")).unwrap();
        Client::new(ClientConfig::new(url, ApiToken::new("unused"))).unwrap()
    }

    #[tokio::test]
    async fn keys_are_fetched_once_and_cached() {
        let (addr, jwks) = jwks_server(&[KID]).await;
        let verifier = Verifier::new(client_for(addr));
        let body = body();
        for _ in 0..3 {
            let auth = bearer(&sign(Some(KID), &claims_for(&body)));
            verifier.verify(Some(&auth), &body).await.unwrap();
        }
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_kid_refetches_exactly_once_per_interval() {
        let (addr, jwks) = jwks_server(&[KID]).await;
        let verifier =
            // 1 s: long enough that a loaded machine cannot cross it between two calls.
            Verifier::new(client_for(addr)).with_min_refetch_interval(Duration::from_millis(1000));
        let body = body();
        let auth = bearer(&sign(Some(KID), &claims_for(&body)));
        verifier.verify(Some(&auth), &body).await.unwrap();
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);

        let unknown = bearer(&sign(Some("not-in-the-jwks"), &claims_for(&body)));
        // Within the interval of the first fetch: refused without asking Jetpay.
        assert_eq!(
            verifier.verify(Some(&unknown), &body).await.unwrap_err(),
            VerifyError::UnknownKid("not-in-the-jwks".into())
        );
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Concurrent deliveries with the same unknown kid share exactly one refetch…
        for r in verify_concurrently(&verifier, &unknown, &body, 4).await {
            assert_eq!(
                r.unwrap_err(),
                VerifyError::UnknownKid("not-in-the-jwks".into())
            );
        }
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
        // …and later ones within the interval cause none.
        assert_eq!(
            verifier.verify(Some(&unknown), &body).await.unwrap_err(),
            VerifyError::UnknownKid("not-in-the-jwks".into())
        );
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
        // Known keys keep working from the cache meanwhile.
        verifier.verify(Some(&auth), &body).await.unwrap();
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn default_refetch_interval_is_30s() {
        assert_eq!(verifier().min_refetch_interval, Duration::from_secs(30));
        assert_eq!(DEFAULT_MIN_REFETCH_INTERVAL, Duration::from_secs(30));
    }

    #[tokio::test]
    async fn unknown_kid_on_cold_cache_fetches_exactly_once() {
        let (addr, jwks) = jwks_server(&["some-other-key"]).await;
        let verifier = Verifier::new(client_for(addr));
        let body = body();
        let auth = bearer(&sign(Some(KID), &claims_for(&body)));
        for _ in 0..3 {
            assert_eq!(
                verifier.verify(Some(&auth), &body).await.unwrap_err(),
                VerifyError::UnknownKid(KID.into())
            );
        }
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn rotated_key_is_picked_up_after_the_interval() {
        let (addr, jwks) = jwks_server(&["old"]).await;
        let verifier =
            // 1 s: long enough that a loaded machine cannot cross it between two calls.
            Verifier::new(client_for(addr)).with_min_refetch_interval(Duration::from_millis(1000));
        let body = body();
        let old = bearer(&sign(Some("old"), &claims_for(&body)));
        verifier.verify(Some(&old), &body).await.unwrap();

        *jwks.set.lock().unwrap() = jwks_json(&["new"]);
        let new = bearer(&sign(Some("new"), &claims_for(&body)));
        // Within the interval: not refetched yet.
        assert_eq!(
            verifier.verify(Some(&new), &body).await.unwrap_err(),
            VerifyError::UnknownKid("new".into())
        );
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 1);

        tokio::time::sleep(Duration::from_millis(1100)).await;
        verifier.verify(Some(&new), &body).await.unwrap();
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
        // The withdrawn key no longer verifies, and asking for it does not refetch (interval).
        assert_eq!(
            verifier.verify(Some(&old), &body).await.unwrap_err(),
            VerifyError::UnknownKid("old".into())
        );
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn algorithm_is_refused_before_any_key_fetch() {
        let (addr, jwks) = jwks_server(&[KID]).await;
        let verifier = Verifier::new(client_for(addr));
        let body = body();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("unknown-kid".into());
        let forged = jsonwebtoken::encode(
            &header,
            &claims_for(&body),
            &EncodingKey::from_secret(key().public_pem.as_bytes()),
        )
        .unwrap();
        assert_eq!(
            verifier
                .verify(Some(&bearer(&forged)), &body)
                .await
                .unwrap_err(),
            VerifyError::UnsupportedAlgorithm("HS256".into())
        );
        assert_eq!(jwks.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn unreachable_jwks_is_keys_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let verifier = Verifier::new(client_for(addr));
        let body = body();
        let auth = bearer(&sign(Some(KID), &claims_for(&body)));
        let err = verifier.verify(Some(&auth), &body).await.unwrap_err();
        assert!(matches!(err, VerifyError::KeysUnavailable(_)), "{err:?}");
        // Still unavailable (not "unknown kid") while the interval keeps us from retrying.
        let err = verifier.verify(Some(&auth), &body).await.unwrap_err();
        assert!(matches!(err, VerifyError::KeysUnavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn failing_jwks_endpoint_is_keys_unavailable() {
        let router = Router::new().route(
            unspecified::JWKS_PATH,
            get(|| async { (axum::http::StatusCode::BAD_GATEWAY, "upstream down") }),
        );
        let addr = serve(router).await;
        let verifier = Verifier::new(client_for(addr));
        let body = body();
        let auth = bearer(&sign(Some(KID), &claims_for(&body)));
        let err = verifier.verify(Some(&auth), &body).await.unwrap_err();
        assert!(matches!(err, VerifyError::KeysUnavailable(_)), "{err:?}");
    }

    #[test]
    fn debug_lists_kids_only() {
        let text = format!("{:?}", verifier());
        assert!(text.contains(KID), "{text}");
    }

    /// Runs `n` verifications at once on the same verifier.
    async fn verify_concurrently(
        verifier: &Verifier,
        auth: &str,
        body: &[u8],
        n: usize,
    ) -> Vec<Result<WebhookBatch, VerifyError>> {
        let mut handles = Vec::new();
        for _ in 0..n {
            let verifier = verifier.clone();
            let auth = auth.to_owned();
            let body = body.to_vec();
            handles.push(tokio::spawn(async move {
                verifier.verify(Some(&auth), &body).await
            }));
        }
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    }
}
