//! `Verifier::verify` with a fixed key set (`Verifier::with_keys`), three ways:
//!
//! - byte 0 % 3 == 0: an arbitrary `Authorization` header and body (what anyone can send);
//! - == 1: a genuine token for an arbitrary body, so the fuzzer reaches the payload parser
//!   behind the signature; `Ok` exactly when the body is a non-empty batch;
//! - == 2: arbitrary claims JSON, genuinely signed, and a body: `Ok` only if the claims are
//!   right and bind this body. In the claims, `"NOW"` and `"EXP"` become the current time and
//!   90 s later, and `"HASH"` the body's payload hash, so seeds stay valid as time passes.
//!
//! The rest of the input is split at the first 0xff byte (never valid UTF-8) into the header or
//! claims part and the body.
#![no_main]

use std::sync::OnceLock;

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use jetpay::{
    verify::payload_hash,
    wire::{WebhookBatch, WebhookClaims},
    Verifier, VerifyError,
};
use jsonwebtoken::{jwk::JwkSet, Algorithm, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;
use rsa::{pkcs1::EncodeRsaPrivateKey, traits::PublicKeyParts, RsaPrivateKey};

const KID: &str = "fuzz-key";

struct Fixture {
    verifier: Verifier,
    key: EncodingKey,
    runtime: tokio::runtime::Runtime,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let private = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).expect("keygen");
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({"keys": [{
            "kty": "RSA", "kid": KID, "use": "sig", "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
        }]}))
        .expect("JWKS");
        let der = private.to_pkcs1_der().expect("der");
        Fixture {
            verifier: Verifier::with_keys(jwks),
            key: EncodingKey::from_rsa_der(der.as_bytes()),
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime"),
        }
    })
}

fn signed(f: &Fixture, claims: &[u8]) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KID.into());
    let header = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).expect("header"));
    let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &f.key, Algorithm::RS256).expect("sign");
    format!("Bearer {message}.{signature}")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
}

/// Fills the `"NOW"`, `"EXP"` and `"HASH"` placeholders.
fn fill(claims: &[u8], body: &[u8]) -> Vec<u8> {
    let now = now();
    String::from_utf8_lossy(claims)
        .replace("\"NOW\"", &now.to_string())
        .replace("\"EXP\"", &(now + 90).to_string())
        .replace("\"HASH\"", &format!("\"{}\"", payload_hash(body)))
        .into_bytes()
}

fn good_claims(body: &[u8]) -> Vec<u8> {
    let now = now();
    serde_json::to_vec(&serde_json::json!({
        "jti": "7b0e3c1e-3c7a-4a8e-9d1c-2f1d2b3c4d5e", "iat": now, "exp": now + 90,
        "iss": "jetpay", "sub": "webhook", "payload_hash": payload_hash(body)}))
    .expect("claims")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let f = fixture();
    let (first, body) = match rest.iter().position(|&b| b == 0xff) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (rest, &[][..]),
    };
    let verify = |auth: &str, body: &[u8]| f.runtime.block_on(f.verifier.verify(Some(auth), body));
    match mode % 3 {
        0 => {
            let auth = String::from_utf8_lossy(first);
            if let Ok(batch) = verify(&auth, body) {
                // Nobody without the key can make an accepted delivery.
                panic!("accepted an unsigned delivery: {auth:?} {batch:?}");
            }
        }
        1 => {
            let body = rest;
            let result = verify(&signed(f, &good_claims(body)), body);
            match serde_json::from_slice::<WebhookBatch>(body) {
                Ok(batch) if !batch.events.is_empty() => assert_eq!(result, Ok(batch)),
                _ => assert!(
                    matches!(result, Err(VerifyError::InvalidPayload(_))),
                    "{result:?}"
                ),
            }
        }
        _ => {
            let claims = fill(first, body);
            if let Ok(batch) = verify(&signed(f, &claims), body) {
                // As the verifier reads them: through a map (a repeated key keeps its last value).
                let value: serde_json::Value =
                    serde_json::from_slice(&claims).expect("accepted claims are JSON");
                let claims: WebhookClaims =
                    serde_json::from_value(value).expect("accepted claims parse");
                assert_eq!(claims.iss, "jetpay");
                assert_eq!(claims.sub, "webhook");
                assert_eq!(
                    claims.payload_hash.trim_end_matches('='),
                    payload_hash(body)
                );
                assert!(!batch.events.is_empty());
            }
        }
    }
});
