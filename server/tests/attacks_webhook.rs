//! Attacks on and bad input to `POST /webhooks/jetpay`, over HTTP against the real server.
//!
//! `webhook.rs` covers tokens an attacker can make without Jetpay's key (no header, Basic, alg
//! none, HS256 keyed with the public key, forged RS256, unknown and missing kid). Here the
//! embedded sandbox keeps its signing key in a SQLite file, so the test reads the key the server
//! trusts and signs whatever claims and bodies it likes: that reaches every check *behind* the
//! signature (expiry, issuer, subject, claims, payload hash, payload parsing), which an attacker
//! without Jetpay's key never gets to, and which a compromised or buggy Jetpay could still hit.

mod common;

use app::backend::store::EventOutcome;
use std::{path::Path, time::Duration};

use app::backend::Counters;
use common::{spawn_app_with, Customer, TestApp};
use jetpay::test_util::{batch, claims_for, eventually, now, tokenized_json};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::{pkcs1::EncodeRsaPrivateKey, pkcs8::DecodePrivateKey, RsaPrivateKey};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CARD_EVENT: &str = jetpay::unspecified::CARD_TOKENIZED_EVENT;

/// A running app whose sandbox signing key the test holds.
struct Signed {
    app: TestApp,
    kid: String,
    key: EncodingKey,
    /// Our webhook's id at the sandbox: what Jetpay puts in `webhookId`.
    webhook_id: i64,
    /// The owner's contact of each pending card made here, by Jetpay card id.
    contacts: std::sync::Mutex<std::collections::HashMap<String, String>>,
    _dir: tempfile::TempDir,
}

async fn spawn_signed() -> Signed {
    spawn_signed_with(&[]).await
}

async fn spawn_signed_with(extra: &[(&str, &str)]) -> Signed {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sandbox.db");
    let mut vars = vec![("JETPAY_SANDBOX_DB", path.to_str().unwrap())];
    vars.extend_from_slice(extra);
    let app = spawn_app_with(&vars).await;
    let (kid, key) = sandbox_key(&path).await;
    let webhook_id = app.registration().await.webhook_id;
    Signed {
        app,
        kid,
        key,
        webhook_id,
        contacts: Default::default(),
        _dir: dir,
    }
}

/// The sandbox's current signing key, straight from its database.
async fn sandbox_key(path: &Path) -> (String, EncodingKey) {
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(path);
    let pool = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let (kid, pem): (String, String) =
        sqlx::query_as("SELECT kid, private_key_pem FROM signing_keys WHERE is_current = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    let private = RsaPrivateKey::from_pkcs8_pem(&pem).unwrap();
    let der = private.to_pkcs1_der().unwrap();
    (kid, EncodingKey::from_rsa_der(der.as_bytes()))
}

impl Signed {
    fn token_with(&self, alg: Algorithm, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(alg);
        header.kid = Some(kid.to_owned());
        format!("Bearer {}", encode(&header, claims, &self.key).unwrap())
    }

    fn token(&self, claims: &Value) -> String {
        self.token_with(Algorithm::RS256, &self.kid, claims)
    }

    /// A genuinely signed Authorization header for `body`.
    fn auth(&self, body: &[u8]) -> String {
        self.token(&claims_for(body))
    }

    async fn pending_card(&self, name: &str) -> (Customer, String, String) {
        let customer = self.app.customer(name).await;
        let card = customer.add_card().await;
        let jetpay_card = self.app.jetpay_card_id(&card).await;
        let contact = self.app.contact_of(&jetpay_card).await;
        self.contacts
            .lock()
            .unwrap()
            .insert(jetpay_card.clone(), contact);
        (customer, card, jetpay_card)
    }

    /// A tokenization event as Jetpay sends it: with the card owner's contact when the card was
    /// made here, a contact of nobody's otherwise.
    fn tokenized(&self, id: i64, jetpay_card: &str, state: &str) -> Value {
        let contact = self
            .contacts
            .lock()
            .unwrap()
            .get(jetpay_card)
            .cloned()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        tokenized_json(id, &contact, jetpay_card, state)
    }

    /// A batch for our webhook.
    fn batch(&self, events: Vec<Value>) -> Vec<u8> {
        batch(self.webhook_id, &events)
    }

    async fn assert_nothing_changed(&self, card: &str) {
        assert_eq!(self.app.card_state(card).await, "pending");
        assert_eq!(
            self.app.count("SELECT COUNT(*) FROM jetpay_events").await,
            0
        );
    }

    async fn assert_healthy(&self) {
        let response = common::client()
            .get(self.app.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }

    async fn deliver_as(&self, content_type: Option<&str>, auth: Option<&str>, body: &[u8]) -> u16 {
        let mut request = common::client()
            .post(self.app.url("/webhooks/jetpay"))
            .body(body.to_vec());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        if let Some(a) = auth {
            request = request.header("authorization", a);
        }
        // Jetpay sends our callback API key on every delivery of our webhook.
        let key = self.app.registration().await.api_key;
        request = request.header(jetpay::unspecified::CALLBACK_API_KEY_HEADER, key);
        request.send().await.unwrap().status().as_u16()
    }
}

#[tokio::test]
async fn claims_signed_with_the_trusted_key_but_wrong_are_refused() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("claims").await;
    let body = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    let now = now();

    let with = |key: &str, value: Value| {
        let mut c = claims_for(&body);
        c[key] = value;
        c
    };
    let without = |key: &str| {
        let mut c = claims_for(&body);
        c.as_object_mut().unwrap().remove(key);
        c
    };
    // Leeway is 10 s: these are well outside it.
    let mut attempts: Vec<(String, String)> = vec![
        ("expired".into(), s.token(&with("exp", json!(now - 120)))),
        (
            "issued in the future".into(),
            s.token(&with("iat", json!(now + 600))),
        ),
        (
            "not valid before the future".into(),
            s.token(&with("nbf", json!(now + 600))),
        ),
        (
            "wrong iss".into(),
            s.token(&with("iss", json!("jetpay-evil"))),
        ),
        (
            "iss of wrong type".into(),
            s.token(&with("iss", json!(["jetpay"]))),
        ),
        ("wrong sub".into(), s.token(&with("sub", json!("charge")))),
        ("jti not a UUID".into(), s.token(&with("jti", json!("1")))),
        (
            "exp as a string".into(),
            s.token(&with("exp", json!("never"))),
        ),
        (
            "payload_hash of another body".into(),
            s.token(&with(
                "payload_hash",
                json!(jetpay::verify::payload_hash(b"{}")),
            )),
        ),
        (
            "payload_hash as hex".into(),
            s.token(&with(
                "payload_hash",
                json!(format!("{:x}", {
                    use sha2::Digest;
                    sha2::Sha256::digest(&body)
                })),
            )),
        ),
        (
            "empty payload_hash".into(),
            s.token(&with("payload_hash", json!(""))),
        ),
        (
            "null payload_hash".into(),
            s.token(&with("payload_hash", Value::Null)),
        ),
        (
            "RS512 with Jetpay's key".into(),
            s.token_with(Algorithm::RS512, &s.kid, &claims_for(&body)),
        ),
        (
            "PS256 with Jetpay's key".into(),
            s.token_with(Algorithm::PS256, &s.kid, &claims_for(&body)),
        ),
        (
            "Jetpay's key under another kid".into(),
            s.token_with(Algorithm::RS256, "another-kid", &claims_for(&body)),
        ),
        ("valid token with its signature cut off".into(), {
            let t = s.auth(&body);
            t[..t.rfind('.').unwrap() + 1].to_owned()
        }),
        ("valid token with header and claims swapped".into(), {
            let t = s.auth(&body);
            let parts: Vec<&str> = t["Bearer ".len()..].split('.').collect();
            format!("Bearer {}.{}.{}", parts[1], parts[0], parts[2])
        }),
    ];
    for claim in ["jti", "iat", "exp", "iss", "sub", "payload_hash"] {
        attempts.push((format!("no {claim}"), s.token(&without(claim))));
    }

    let total = attempts.len();
    for (what, authorization) in &attempts {
        let status = s
            .deliver_as(Some("application/json"), Some(authorization), &body)
            .await;
        assert_eq!(status, 401, "{what}");
    }
    // The valid token for this body, but the body changed: a space, a field, a different event.
    let authorization = s.auth(&body);
    let mut spaced = body.clone();
    spaced.push(b' ');
    let other = s.batch(vec![s.tokenized(1_000_001, &jetpay_card, "succeeded")]);
    for changed in [&spaced, &other, &body[..body.len() - 1].to_vec()] {
        assert_eq!(
            s.deliver_as(Some("application/json"), Some(&authorization), changed)
                .await,
            401
        );
    }
    s.assert_nothing_changed(&card).await;
    s.assert_healthy().await;
    eprintln!(
        "refused {} of {} forged-claim deliveries",
        total + 3,
        total + 3
    );

    // The control: the same key and body with the right claims is accepted, so the refusals
    // above were about the claims, not about a key the server does not trust.
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&authorization), &body)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
}

/// An `Authorization` header of the right shape whose JOSE header or claims is JSON nested very
/// deeply: the JWT library parses it, and must neither crash nor overflow the stack.
#[tokio::test]
async fn deeply_nested_json_inside_the_token_is_refused() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("nested-token").await;
    let body = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
    let nested = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    let nested_b64 = URL_SAFE_NO_PAD.encode(nested.as_bytes());
    let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"RS256","kid":"{}"}}"#, s.kid));
    let claims = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims_for(&body)).unwrap());
    for token in [
        format!("Bearer {nested_b64}.{claims}.c2ln"),
        format!("Bearer {header}.{nested_b64}.c2ln"),
        // Signed for real with Jetpay's key, 20k levels of nesting inside an extra claim: the
        // signature holds, so the claims are parsed.
        {
            let mut c = serde_json::to_string(&claims_for(&body)).unwrap();
            c.pop();
            c.push_str(&format!(r#","extra":{nested}}}"#));
            let message = format!("{header}.{}", URL_SAFE_NO_PAD.encode(c.as_bytes()));
            let signature =
                jsonwebtoken::crypto::sign(message.as_bytes(), &s.key, Algorithm::RS256).unwrap();
            format!("Bearer {message}.{signature}")
        },
    ] {
        let status = s
            .deliver_as(Some("application/json"), Some(&token), &body)
            .await;
        assert!(status == 401 || status == 431, "{status}");
        s.assert_healthy().await;
    }
    s.assert_nothing_changed(&card).await;
}

#[tokio::test]
async fn bodies_over_one_mib_get_413_and_change_nothing_and_one_mib_is_accepted() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("big").await;
    let limit = server::webhook::MAX_BODY_BYTES;
    let padded = |len: usize| {
        // JSON allows trailing whitespace; the signature covers it like any other byte.
        let mut body = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
        body.resize(len, b' ');
        body
    };

    let over = padded(limit + 1);
    let auth = s.auth(&over);
    // Declared length, genuinely signed.
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&auth), &over)
            .await,
        413
    );
    // No Authorization at all: the size limit still holds (whichever answer comes first, no
    // processing happens).
    let status = s.deliver_as(Some("application/json"), None, &over).await;
    assert!(status == 413 || status == 401, "{status}");
    // Chunked, so the server cannot know the length up front: 16 MiB offered.
    assert_eq!(chunked_post(&s.app, &auth, 16 * 1024 * 1024).await, 413);
    // A Content-Length that lies (says small, sends more) is just a malformed request.
    s.assert_nothing_changed(&card).await;
    s.assert_healthy().await;

    let exact = padded(limit);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&exact)), &exact)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
}

/// Sends `total` bytes of `[` chunked to the webhook over a raw connection and returns the status
/// (the server may answer and close before everything is sent).
async fn chunked_post(app: &TestApp, auth: &str, total: usize) -> u16 {
    let addr = format!(
        "{}:{}",
        app.base.host_str().unwrap(),
        app.base.port().unwrap()
    );
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /webhooks/jetpay HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Authorization: {auth}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        app.base.authority()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'['; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {text:?}"))
}

#[tokio::test]
async fn malformed_truncated_and_deeply_nested_bodies_are_refused_signed_or_not() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("malformed").await;
    let good = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes();
    let deep_objects =
        |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n)).into_bytes();
    let deep_in_data = {
        let mut body = br#"{"webhookId":1,"events":[{"id":1000000,"createdAt":"2026-11-25T10:15:30Z","type":"x","data":"#.to_vec();
        body.extend(deep(100_000));
        body.extend(b"}]}");
        body
    };
    let bodies: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("not JSON", b"not json".to_vec()),
        ("lone brace", b"{".to_vec()),
        ("truncated genuine batch", good[..good.len() / 2].to_vec()),
        ("truncated by one byte", good[..good.len() - 1].to_vec()),
        ("null", b"null".to_vec()),
        ("array", b"[]".to_vec()),
        ("empty object", b"{}".to_vec()),
        ("no events", br#"{"webhookId":1}"#.to_vec()),
        ("events null", br#"{"webhookId":1,"events":null}"#.to_vec()),
        ("events an object", br#"{"webhookId":1,"events":{}}"#.to_vec()),
        ("empty events", br#"{"webhookId":1,"events":[]}"#.to_vec()),
        ("no webhookId", serde_json::to_vec(&json!({"events": [s.tokenized(1_000_000, &jetpay_card, "succeeded")]})).unwrap()),
        ("webhookId a string", serde_json::to_vec(&json!({"webhookId": "1", "events": [s.tokenized(1_000_000, &jetpay_card, "succeeded")]})).unwrap()),
        ("100k nested arrays", deep(100_000)),
        ("100k unclosed arrays", b"[".repeat(100_000)),
        ("50k nested objects", deep_objects(50_000)),
        ("100k nested arrays inside data", deep_in_data),
        ("invalid UTF-8", {
            let mut b = good.clone();
            let at = b.iter().position(|&c| c == b'v').unwrap(); // in "visa"
            b[at] = 0xff;
            b
        }),
        ("UTF-8 BOM first", [b"\xef\xbb\xbf".as_slice(), &good].concat()),
        ("trailing garbage", [good.as_slice(), b"}"].concat()),
        ("two batches", [good.as_slice(), &good].concat()),
        ("NUL bytes", vec![0; 4096]),
        ("huge number id", br#"{"webhookId":1,"events":[{"id":1e999999,"createdAt":"2026-11-25T10:15:30Z","type":"x","data":{}}]}"#.to_vec()),
        ("webhookId overflows i64", br#"{"webhookId":99999999999999999999999,"events":[]}"#.to_vec()),
    ];
    let mut refused = 0;
    for (what, body) in &bodies {
        let unsigned = s.deliver_as(Some("application/json"), None, body).await;
        assert_eq!(unsigned, 401, "{what}, unsigned");
        let signed = s
            .deliver_as(Some("application/json"), Some(&s.auth(body)), body)
            .await;
        assert_eq!(signed, 401, "{what}, signed");
        s.assert_healthy().await;
        refused += 2;
    }
    s.assert_nothing_changed(&card).await;
    eprintln!("refused {refused} of {} bad bodies", bodies.len() * 2);
}

#[tokio::test]
async fn content_type_does_not_matter_the_signature_does() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("ctype").await;
    let body = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    // Unsigned, whatever it claims to be: refused.
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/json; charset=utf-16"),
        Some("application/xml"),
    ] {
        assert_eq!(s.deliver_as(ct, None, &body).await, 401, "{ct:?}");
    }
    // A form-encoded body a browser could post cross-site: no token, refused.
    let form = b"webhookId=1&events=x".to_vec();
    assert_eq!(
        s.deliver_as(Some("application/x-www-form-urlencoded"), None, &form)
            .await,
        401
    );
    // GET and other methods are not a delivery.
    let get = common::client()
        .get(s.app.url("/webhooks/jetpay"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    s.assert_nothing_changed(&card).await;

    // Signed by Jetpay but labelled text/plain: the token binds the exact bytes, and refusing
    // would only make Jetpay retry the same bytes until it gave up; so it is applied.
    assert_eq!(
        s.deliver_as(Some("text/plain"), Some(&s.auth(&body)), &body)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
}

#[tokio::test]
async fn a_huge_batch_is_applied_when_signed_and_refused_before_parsing_when_not() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("huge").await;
    // Compact events (about 170 bytes each), so 5,000 fit under the 1 MiB limit.
    let nobody = uuid::Uuid::new_v4().to_string();
    let owner = s.app.contact_of(&jetpay_card).await;
    let event = |id: i64, card: &str, contact: &str| {
        json!({"id": id, "createdAt": "2026-11-25T10:15:30Z", "type": CARD_EVENT,
               "data": {"creditCardId": card, "contactId": contact, "state": "succeeded"}})
    };
    let mut events: Vec<Value> = (0..4_999)
        .map(|i| event(2_000_000 + i, &format!("c{i}"), &nobody))
        .collect();
    events.push(event(2_004_999, &jetpay_card, &owner));
    let body = s.batch(events);
    assert!(
        body.len() < server::webhook::MAX_BODY_BYTES,
        "{}",
        body.len()
    );

    // Not signed, or signed for other bytes: refused by the hash check, before any JSON parsing.
    assert_eq!(
        s.deliver_as(Some("application/json"), None, &body).await,
        401
    );
    let other = s.auth(b"{}");
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&other), &body)
            .await,
        401
    );
    s.assert_nothing_changed(&card).await;

    // Genuinely signed: one transaction, well inside Jetpay's 15 s answer deadline even here.
    let started = std::time::Instant::now();
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&body)), &body)
            .await,
        204
    );
    eprintln!("5,000-event batch applied in {:?}", started.elapsed());
    assert_eq!(
        s.app.count("SELECT COUNT(*) FROM jetpay_events").await,
        5_000
    );
    assert_eq!(
        s.app
            .count("SELECT COUNT(*) FROM jetpay_events WHERE outcome = 'unknown_card'")
            .await,
        4_999
    );
    assert_eq!(s.app.card_state(&card).await, "active");
    s.assert_healthy().await;
}

#[tokio::test]
async fn events_with_missing_fields_are_recorded_as_malformed_and_the_batch_still_applies() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("missing").await;
    let ts = "2026-11-25T10:15:30.123456Z";
    let events = vec![
        // Known type, `data` without the card id.
        json!({"id": 10, "createdAt": ts, "type": CARD_EVENT, "data": {"state": "succeeded"}}),
        // Known type, no `data` at all.
        json!({"id": 11, "createdAt": ts, "type": CARD_EVENT}),
        // No `type`.
        json!({"id": 12, "createdAt": ts, "data": {}}),
        // No `createdAt`.
        json!({"id": 13, "type": CARD_EVENT, "data": {"creditCardId": "x", "contactId": uuid::Uuid::new_v4(), "state": "succeeded"}}),
        // A state nobody defined.
        json!({"id": 14, "createdAt": ts, "type": CARD_EVENT, "data": {"creditCardId": jetpay_card, "contactId": uuid::Uuid::new_v4(), "state": "maybe"}}),
        // `createdAt` that is not a time, `type` that is not a string.
        json!({"id": 15, "createdAt": "yesterday", "type": 7, "data": {}}),
        // Not an object at all, and one with no id: nothing to record them under.
        json!("event"),
        json!({"createdAt": ts, "type": CARD_EVENT, "data": {}}),
        // And the one good event, last.
        s.tokenized(16, &jetpay_card, "succeeded"),
    ];
    let body = s.batch(events);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&body)), &body)
            .await,
        204
    );
    for id in 10..=15 {
        assert_eq!(
            s.app
                .backend
                .store
                .event_outcome(id)
                .await
                .unwrap()
                .map(EventOutcome::as_str),
            Some("malformed"),
            "event {id}"
        );
    }
    assert_eq!(
        s.app
            .backend
            .store
            .event_outcome(16)
            .await
            .unwrap()
            .map(EventOutcome::as_str),
        Some("applied")
    );
    assert_eq!(s.app.count("SELECT COUNT(*) FROM jetpay_events").await, 7);
    assert_eq!(s.app.card_state(&card).await, "active");
    s.assert_healthy().await;
}

/// A batch genuinely signed with Jetpay's key but for another webhook (another company's: Jetpay
/// signs every company's deliveries alike) is refused whatever callback API key it carries, and
/// records nothing; the same events in a batch for our webhook then apply.
#[tokio::test]
async fn a_signed_batch_for_another_webhook_is_refused_and_records_nothing() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("foreign").await;
    let events = vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")];
    let foreign = batch(s.webhook_id + 1, &events);
    let auth = s.auth(&foreign);
    let ours = s.app.registration().await.api_key;
    for key in [None, Some("another-companys-key"), Some(ours.as_str())] {
        assert_eq!(
            s.app.deliver_with_key(key, Some(&auth), &foreign).await,
            401
        );
    }
    s.assert_nothing_changed(&card).await;

    // Our own webhook's batch, without our key or with a wrong one: also refused.
    let body = s.batch(events);
    let auth = s.auth(&body);
    for key in [None, Some("wrong")] {
        assert_eq!(s.app.deliver_with_key(key, Some(&auth), &body).await, 401);
    }
    s.assert_nothing_changed(&card).await;
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&auth), &body)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
}

/// An event id first seen in a foreign batch must not turn our real event with that id into a
/// "duplicate" (event ids are per company: another company's batch reuses ours).
#[tokio::test]
async fn a_foreign_event_id_does_not_poison_our_real_event() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("poison").await;
    let poison = batch(
        s.webhook_id + 7,
        &[s.tokenized(1_000_000, "someone-elses-card", "failed")],
    );
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&poison)), &poison)
            .await,
        401
    );
    let real = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&real)), &real)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
    assert_eq!(
        s.app
            .backend
            .store
            .event_outcome(1_000_000)
            .await
            .unwrap()
            .map(EventOutcome::as_str),
        Some("applied")
    );
}

/// An event whose `contactId` is not the contact of the card's owner (a forwarded event, or one
/// crafted from another customer's) is recorded as refused and moves nothing.
#[tokio::test]
async fn an_event_naming_another_customers_contact_is_refused() {
    let s = spawn_signed().await;
    let (_victim, card, jetpay_card) = s.pending_card("victim").await;
    let (_other, _other_card, other_jetpay_card) = s.pending_card("other").await;
    let other_contact = s.contacts.lock().unwrap()[&other_jetpay_card].clone();
    let mut event = s.tokenized(1_000_000, &jetpay_card, "succeeded");
    event["data"]["contactId"] = json!(other_contact);
    event["data"]["last4"] = json!("0000");
    let body = s.batch(vec![event]);
    let changes_before = s.app.count("SELECT COUNT(*) FROM card_changes").await;
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&body)), &body)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "pending");
    assert_eq!(
        s.app
            .backend
            .store
            .event_outcome(1_000_000)
            .await
            .unwrap()
            .map(EventOutcome::as_str),
        Some("refused")
    );
    assert_eq!(
        s.app.count("SELECT COUNT(*) FROM card_changes").await,
        changes_before
    );
    // The owner's genuine result still lands.
    let body = s.batch(vec![s.tokenized(1_000_001, &jetpay_card, "succeeded")]);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&body)), &body)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
}

/// A token signed with Jetpay's key but valid for a year (Jetpay's live about 90 s) is refused.
#[tokio::test]
async fn a_token_with_a_far_future_exp_is_refused() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("far-future").await;
    let body = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    let mut claims = claims_for(&body);
    claims["exp"] = json!(now() + 365 * 24 * 3600);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.token(&claims)), &body)
            .await,
        401
    );
    s.assert_nothing_changed(&card).await;
}

/// The same genuinely signed batch delivered three times is applied once.
#[tokio::test]
async fn the_same_signed_batch_three_times_is_applied_once() {
    let s = spawn_signed().await;
    let (_customer, card, jetpay_card) = s.pending_card("thrice").await;
    let body = s.batch(vec![s.tokenized(1_000_000, &jetpay_card, "succeeded")]);
    let auth = s.auth(&body);
    let changes_before = s.app.count("SELECT COUNT(*) FROM card_changes").await;
    for _ in 0..3 {
        assert_eq!(
            s.deliver_as(Some("application/json"), Some(&auth), &body)
                .await,
            204
        );
    }
    assert_eq!(s.app.count("SELECT COUNT(*) FROM jetpay_events").await, 1);
    assert_eq!(
        s.app.count("SELECT COUNT(*) FROM card_changes").await,
        changes_before + 1
    );
    assert_eq!(s.app.card_state(&card).await, "active");
}

/// A hole in the event ids that Jetpay never fills (here: ids it never issued, as an event that
/// arrived without an integer id would leave) is asked for a bounded number of times with
/// growing pauses, then given up: logged, counted, recorded, and never asked for again.
#[tokio::test]
async fn a_permanent_hole_gets_bounded_replays_then_is_given_up() {
    let s = spawn_signed_with(&[("GAP_GRACE_SECS", "1"), ("GAP_MAX_REPLAYS", "3")]).await;
    let (_customer, card, jetpay_card) = s.pending_card("hole").await;
    let body = s.batch(vec![
        s.tokenized(1_000_000, "someone-elses-card", "succeeded"),
        s.tokenized(1_000_002, &jetpay_card, "succeeded"),
    ]);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&body)), &body)
            .await,
        204
    );
    assert_eq!(s.app.card_state(&card).await, "active");
    let counters = &s.app.backend.counters;
    let started = std::time::Instant::now();
    eventually(Duration::from_secs(60), "the hole given up", || async {
        (Counters::get(&counters.gaps_given_up) > 0).then_some(())
    })
    .await;
    eprintln!("gave the hole up after {:?}", started.elapsed());
    assert_eq!(Counters::get(&counters.replays_requested), 3);
    assert_eq!(
        s.app.backend.store.given_up_gaps().await.unwrap(),
        vec![1_000_001]
    );
    // Later deliveries do not revive the hole.
    let later = s.batch(vec![s.tokenized(1_000_003, "x", "succeeded")]);
    assert_eq!(
        s.deliver_as(Some("application/json"), Some(&s.auth(&later)), &later)
            .await,
        204
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(Counters::get(&counters.replays_requested), 3);
    assert_eq!(Counters::get(&counters.gaps_given_up), 1);
}
