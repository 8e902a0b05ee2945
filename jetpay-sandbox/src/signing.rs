//! Webhook signing: RSA keys kept in the database, RS256 JWTs, and the JWKS that publishes the
//! public halves.
//!
//! The key is made once and stored, so a platform that cached the JWKS keeps verifying after a
//! sandbox restart. Rotation adds a key and keeps the old ones listed, as a real issuer would
//! while tokens signed with them may still be in flight.

use std::sync::RwLock;

use axum::extract::State;
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use sqlx::SqlitePool;
use uuid::Uuid;

use jetpay::unspecified;
use jetpay::wire::WebhookClaims;

use crate::error::{ApiError, SandboxError};
use crate::state::AppState;
use crate::store::format_time;

const KEY_BITS: usize = 2048;

struct Key {
    kid: String,
    encoding: EncodingKey,
    n: String,
    e: String,
}

impl Key {
    fn from_private(private: &RsaPrivateKey) -> Result<Self, String> {
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
        let encoding = EncodingKey::from_rsa_der(der.as_bytes());
        Ok(Key {
            kid: thumbprint(&n, &e),
            encoding,
            n,
            e,
        })
    }
}

/// RFC 7638 JWK thumbprint: a `kid` that is stable for the key and says nothing else.
fn thumbprint(n: &str, e: &str) -> String {
    let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// base64url (no padding) of SHA-256 of the exact body bytes: the `payload_hash` claim.
pub fn payload_hash(body: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(body))
}

/// All keys, the last one signs.
pub struct Signer {
    keys: RwLock<Vec<Key>>,
}

impl Signer {
    /// Loads the stored keys, or makes and stores the first one.
    pub async fn load_or_create(pool: &SqlitePool) -> Result<Self, SandboxError> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT private_key_pem FROM signing_keys ORDER BY is_current ASC, created_at ASC",
        )
        .fetch_all(pool)
        .await?;
        let mut keys = Vec::with_capacity(rows.len().max(1));
        for (pem,) in rows {
            let private = RsaPrivateKey::from_pkcs8_pem(&pem)
                .map_err(|e| SandboxError::Key(format!("stored key does not parse: {e}")))?;
            keys.push(Key::from_private(&private).map_err(SandboxError::Key)?);
        }
        let signer = Signer {
            keys: RwLock::new(keys),
        };
        if signer.keys.read().expect("key lock").is_empty() {
            signer.add_key(pool).await.map_err(SandboxError::Key)?;
        }
        Ok(signer)
    }

    /// Makes a new key, stores it as the current one, and starts signing with it.
    pub async fn add_key(&self, pool: &SqlitePool) -> Result<String, String> {
        let private = tokio::task::spawn_blocking(|| {
            RsaPrivateKey::new(&mut rand::rngs::OsRng, KEY_BITS).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| e.to_string())??;
        let pem = private
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| e.to_string())?;
        let key = Key::from_private(&private)?;
        let kid = key.kid.clone();

        let mut tx = pool.begin().await.map_err(|e| e.to_string())?;
        sqlx::query("UPDATE signing_keys SET is_current = 0")
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, private_key_pem, created_at, is_current) VALUES (?, ?, ?, 1)",
        )
        .bind(&kid)
        .bind(pem.as_str())
        .bind(format_time(Utc::now()))
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        tx.commit().await.map_err(|e| e.to_string())?;

        self.keys.write().expect("key lock").push(key);
        tracing::info!(kid = %kid, "new webhook signing key");
        Ok(kid)
    }

    pub fn current_kid(&self) -> String {
        self.keys
            .read()
            .expect("key lock")
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default()
    }

    /// A fresh JWT for one delivery of `body`.
    pub fn sign(&self, body: &[u8]) -> Result<String, String> {
        let keys = self.keys.read().expect("key lock");
        let key = keys.last().ok_or("no signing key")?;
        let iat = Utc::now().timestamp();
        let claims = WebhookClaims {
            jti: Uuid::new_v4(),
            iat,
            exp: iat + unspecified::JWT_LIFETIME_SECONDS,
            iss: unspecified::JWT_ISSUER.to_owned(),
            sub: unspecified::JWT_SUBJECT.to_owned(),
            payload_hash: payload_hash(body),
        };
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, &claims, &key.encoding).map_err(|e| e.to_string())
    }

    /// A standard JWKS with every key, newest last.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .keys
            .read()
            .expect("key lock")
            .iter()
            .map(|k| {
                json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": k.kid, "n": k.n, "e": k.e})
            })
            .collect();
        json!({ "keys": keys })
    }
}

/// `GET /.well-known/jwks.json` (no auth, like any JWKS).
pub async fn jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.signer.jwks())
}

/// `POST /_sandbox/keys/rotate`: a new signing key; the old ones stay in the JWKS.
pub async fn rotate(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let (kid, previous) = rotate_key(&state).await?;
    state.record_action(
        true,
        format!("Rotated the signing key: new kid {kid} (previous {previous} stays in the JWKS)."),
    );
    Ok(Json(json!({ "kid": kid, "previous_kid": previous })))
}

/// Makes a new signing key; answers the new and the previous `kid`.
pub async fn rotate_key(state: &AppState) -> Result<(String, String), ApiError> {
    let previous = state.signer.current_kid();
    let kid = state
        .signer
        .add_key(&state.pool)
        .await
        .map_err(ApiError::Internal)?;
    Ok((kid, previous))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_hash_is_base64url_sha256_without_padding() {
        // SHA-256("") = e3b0c442…, base64url without '='.
        assert_eq!(
            payload_hash(b""),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
    }

    #[tokio::test]
    async fn signs_a_token_the_jwks_verifies() {
        let pool = crate::store::open(&crate::config::Storage::Memory)
            .await
            .unwrap();
        let signer = Signer::load_or_create(&pool).await.unwrap();
        let body = br#"{"webhookId":1,"events":[]}"#;
        let token = signer.sign(body).unwrap();

        let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(signer.jwks()).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, Algorithm::RS256);
        let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
        let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
        let mut validation = jsonwebtoken::Validation::new(Algorithm::RS256);
        validation.set_issuer(&[unspecified::JWT_ISSUER]);
        let data = jsonwebtoken::decode::<WebhookClaims>(&token, &key, &validation).unwrap();
        assert_eq!(data.claims.sub, unspecified::JWT_SUBJECT);
        assert_eq!(data.claims.payload_hash, payload_hash(body));
        assert_eq!(
            data.claims.exp - data.claims.iat,
            unspecified::JWT_LIFETIME_SECONDS
        );

        // The key survives a reload from the database.
        let again = Signer::load_or_create(&pool).await.unwrap();
        assert_eq!(again.current_kid(), signer.current_kid());
    }
}
