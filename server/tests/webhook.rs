//! The webhook receiver over HTTP against the real server and the embedded sandbox.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{body::Bytes, extract::State, http::HeaderMap, routing::post, Router};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use common::{spawn_app, TestApp};
use jetpay::{
    test_util::{batch, claims_for, eventually, tokenized_json, SANDBOX_TOKEN},
    wire::{NewContact, NewWebhook},
    ApiToken, Client, ClientConfig,
};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use rsa::{
    pkcs1::EncodeRsaPrivateKey, pkcs8::EncodePublicKey, BigUint, RsaPrivateKey, RsaPublicKey,
};
use serde_json::json;

const SUCCESS: &str = "4242424242424242";

fn sandbox_client(app: &TestApp) -> Client {
    Client::new(ClientConfig::new(
        app.sandbox.clone(),
        ApiToken::new(SANDBOX_TOKEN),
    ))
    .unwrap()
}

/// A success event for `jetpay_card_id`, as Jetpay would send it to our webhook.
async fn success_batch(app: &TestApp, event_id: i64, jetpay_card_id: &str) -> Vec<u8> {
    let contact = app.contact_of(jetpay_card_id).await;
    let event = tokenized_json(event_id, &contact, jetpay_card_id, "succeeded");
    batch(app.registration().await.webhook_id, &[event])
}

fn own_key() -> EncodingKey {
    let key = RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    EncodingKey::from_rsa_pem(key.to_pkcs1_pem(Default::default()).unwrap().as_bytes()).unwrap()
}

#[tokio::test]
async fn invalid_tokens_get_401_and_change_nothing() {
    let app = spawn_app().await;
    let customer = app.customer("mallory-target").await;
    let card = customer.add_card().await;
    let body = success_batch(&app, 1_000_000, &app.jetpay_card_id(&card).await).await;

    let jwks = sandbox_client(&app).jwks().await.unwrap();
    let jwk = &jwks.keys[0];
    let kid = jwk.common.key_id.clone().unwrap();
    let public_pem = match &jwk.algorithm {
        jsonwebtoken::jwk::AlgorithmParameters::RSA(rsa) => {
            let n = BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(&rsa.n).unwrap());
            let e = BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(&rsa.e).unwrap());
            RsaPublicKey::new(n, e)
                .unwrap()
                .to_public_key_pem(Default::default())
                .unwrap()
        }
        other => panic!("unexpected key {other:?}"),
    };

    let b64 = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(&v).unwrap());
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT", "kid": kid})),
        b64(claims_for(&body))
    );
    let mut hs_header = Header::new(Algorithm::HS256);
    hs_header.kid = Some(kid.clone());
    let hs256_with_public_key = encode(
        &hs_header,
        &claims_for(&body),
        &EncodingKey::from_secret(public_pem.as_bytes()),
    )
    .unwrap();
    let mut rs_header = Header::new(Algorithm::RS256);
    rs_header.kid = Some(kid.clone());
    let forged_with_real_kid = encode(&rs_header, &claims_for(&body), &own_key()).unwrap();
    let mut unknown_kid = Header::new(Algorithm::RS256);
    unknown_kid.kid = Some("not-a-jetpay-key".into());
    let forged_unknown_kid = encode(&unknown_kid, &claims_for(&body), &own_key()).unwrap();
    let no_kid = encode(
        &Header::new(Algorithm::RS256),
        &claims_for(&body),
        &own_key(),
    )
    .unwrap();

    let attempts: Vec<(&str, Option<String>)> = vec![
        ("no Authorization header", None),
        (
            "Basic scheme",
            Some("Basic YWxhZGRpbjpvcGVuc2VzYW1l".into()),
        ),
        ("garbage token", Some("Bearer not.a.jwt".into())),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "HS256 signed with the public key",
            Some(format!("Bearer {hs256_with_public_key}")),
        ),
        (
            "RS256 by another key under Jetpay's kid",
            Some(format!("Bearer {forged_with_real_kid}")),
        ),
        (
            "RS256 by a key not in the JWKS",
            Some(format!("Bearer {forged_unknown_kid}")),
        ),
        ("no kid", Some(format!("Bearer {no_kid}"))),
    ];
    for (what, authorization) in &attempts {
        let status = app.deliver(authorization.as_deref(), &body).await;
        assert_eq!(status, 401, "{what}");
    }
    assert_eq!(app.card_state(&card).await, "pending");
    assert_eq!(app.count("SELECT COUNT(*) FROM jetpay_events").await, 0);
}

/// Records every delivery Jetpay makes to it: a second real webhook receiver, so tests get
/// genuinely signed batches to replay.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<(String, Bytes)>>>);

async fn capture(State(c): State<Capture>, headers: HeaderMap, body: Bytes) -> &'static str {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    c.0.lock().unwrap().push((auth, body));
    "ok"
}

async fn start_capture(app: &TestApp) -> Capture {
    let captured = Capture::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new()
        .route("/", post(capture))
        .with_state(captured.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    sandbox_client(app)
        .create_webhook(&NewWebhook {
            callback_url: format!("http://{addr}/"),
            max_wait_seconds: Some(0),
            max_batch_size: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    captured
}

async fn captured_delivery_for(captured: &Capture, jetpay_card_id: &str) -> (String, Bytes) {
    let what = format!("a delivery captured for {jetpay_card_id}");
    eventually(Duration::from_secs(10), &what, || async {
        captured
            .0
            .lock()
            .unwrap()
            .iter()
            .find(|(_, body)| String::from_utf8_lossy(body).contains(jetpay_card_id))
            .cloned()
    })
    .await
}

/// Jetpay signs every company's deliveries with the same keys. A batch Jetpay genuinely signed
/// for another webhook (here a second receiver registered at the sandbox, standing in for another
/// company's), forwarded to us, must be refused: with no callback API key, with a wrong one, and
/// even with ours (had it leaked), because its `webhookId` is not our webhook's.
#[tokio::test]
async fn a_batch_jetpay_signed_for_another_webhook_is_refused() {
    let app = spawn_app().await;
    let captured = start_capture(&app).await;
    let customer = app.customer("forwarded").await;
    let card = customer.add_card().await;
    app.submit_card(&customer.form_url(&card).await, SUCCESS)
        .await;
    app.wait_for_state(&card, "active").await;

    let jetpay_card = app.jetpay_card_id(&card).await;
    let (authorization, body) = captured_delivery_for(&captured, &jetpay_card).await;
    let ours = app.registration().await;
    let events_before = app.count("SELECT COUNT(*) FROM jetpay_events").await;
    let changes_before = app.count("SELECT COUNT(*) FROM card_changes").await;
    for key in [None, Some("not-our-key"), Some(ours.api_key.as_str())] {
        assert_eq!(
            app.deliver_with_key(key, Some(&authorization), &body).await,
            401,
            "forwarded with key {:?}",
            key.map(|_| "…")
        );
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jetpay_events").await,
        events_before
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM card_changes").await,
        changes_before
    );
}

#[tokio::test]
async fn an_event_for_a_card_we_do_not_know_is_recorded_and_acknowledged() {
    let app = spawn_app().await;
    // A card created at Jetpay by someone else (another platform of the same company).
    let jetpay = sandbox_client(&app);
    let contact = jetpay
        .create_contact(&NewContact {
            email: "stranger@example.com".into(),
            name: "Stranger".into(),
            tags: vec![],
            language: "en".into(),
        })
        .await
        .unwrap();
    let url = jetpay.create_tokenization_url(contact.id).await.unwrap();
    app.submit_card(&url.url, SUCCESS).await;

    for _ in 0..200 {
        if app
            .count("SELECT COUNT(*) FROM jetpay_events WHERE outcome = 'unknown_card'")
            .await
            == 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.count("SELECT COUNT(*) FROM jetpay_events WHERE outcome = 'unknown_card'")
            .await,
        1
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 0);
    // Acknowledged: Jetpay counts it as delivered.
    let webhooks = jetpay.list_webhooks().await.unwrap();
    let ours = webhooks
        .iter()
        .find(|w| w.callback_url == app.url("/webhooks/jetpay"))
        .unwrap();
    assert!(ours.last_sent_event_id.is_some());
}

#[tokio::test]
async fn a_result_delivered_before_the_pending_card_is_committed_is_not_lost() {
    let app = spawn_app().await;
    let customer = app.customer("early").await;
    let response = common::client()
        .post(app.sandbox.join("_sandbox/faults").unwrap())
        .bearer_auth(SANDBOX_TOKEN)
        .json(&json!({"deliver_early": 1, "deliver_early_at": "url_created"}))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    // Jetpay delivers the result while the URL call is still in flight: the server acknowledges an
    // event for a card it has not committed yet.
    let card = customer.add_card().await;
    app.wait_for_state(&card, "active").await;
    assert_eq!(app.count("SELECT COUNT(*) FROM early_results").await, 0);
}
