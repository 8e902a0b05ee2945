//! Helpers for this crate's unit tests alone: one RSA key pair per test binary, token signing,
//! and throwaway HTTP servers on loopback. What other crates' tests share is in
//! [`crate::test_util`].

use std::net::SocketAddr;
use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::RsaPrivateKey;

pub struct TestKey {
    /// SPKI PEM of the public key: what an attacker would feed to HS256 as the secret.
    pub public_pem: String,
    /// base64url modulus and exponent, as they appear in a JWK.
    pub n: String,
    pub e: String,
    pub encoding: EncodingKey,
}

/// The key pair, made once: 2048-bit keygen takes a noticeable moment even optimised.
pub fn key() -> &'static TestKey {
    static KEY: OnceLock<TestKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("keygen");
        let public = private.to_public_key();
        let private_pem = private.to_pkcs1_pem(LineEnding::LF).expect("pem");
        TestKey {
            public_pem: public.to_public_key_pem(LineEnding::LF).expect("pem"),
            n: URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            e: URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
            encoding: EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("encoding key"),
        }
    })
}

/// The public key as a JWK under `kid`.
pub fn jwk(kid: &str) -> serde_json::Value {
    let k = key();
    serde_json::json!({"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": k.n, "e": k.e})
}

/// A JWKS holding the test key under each of `kids`.
pub fn jwks_json(kids: &[&str]) -> serde_json::Value {
    serde_json::json!({"keys": kids.iter().map(|k| jwk(k)).collect::<Vec<_>>()})
}

pub fn jwks(kids: &[&str]) -> JwkSet {
    serde_json::from_value(jwks_json(kids)).expect("valid JWKS")
}

/// An RS256 token over `claims`, with `kid` in the header when given.
pub fn sign(kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key().encoding).expect("sign")
}

/// Serves `router` on an ephemeral loopback port for the rest of the test.
pub async fn serve(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    addr
}
