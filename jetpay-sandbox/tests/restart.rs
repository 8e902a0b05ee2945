//! With file storage, a restart loses nothing: contacts, cards still processing, undelivered
//! events, webhooks and the signing key all survive.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use jetpay::wire::WebhookState;
use jetpay_sandbox::Storage;

#[tokio::test]
async fn state_survives_a_restart() {
    let dir = std::env::temp_dir().join(format!("jetpay-sandbox-restart-{}", uuid::Uuid::new_v4()));
    let mut config = test_config();
    config.storage = Storage::File(dir.join("nested").join("sandbox.db"));
    config.max_attempts = 1000;

    let h = Harness::with(config.clone()).await;
    let receiver = Receiver::start(&h).await;
    // The receiver is "down" for now: everything stays undelivered.
    receiver.script(&[Answer::Status(503); 1000]);
    let hook = h.webhook(&receiver, 10, 0).await;
    let kid = h.client.jwks().await.unwrap().keys[0]
        .common
        .key_id
        .clone()
        .unwrap();
    let (contact, url) = h.card_url().await;
    let (status, _) = h.submit_card(&url.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::OK);
    h.wait_for_state(&hook, WebhookState::BackingOff, Duration::from_secs(5))
        .await;
    // A slow card (1 s) is still processing when the sandbox stops.
    let slow = h.new_card("4000000000003220").await;
    let unused = h.client.create_tokenization_url(contact.id).await.unwrap();
    h.sandbox.shutdown().await;

    receiver.clear_script();
    let h = Harness::with(config).await;
    assert_eq!(
        h.client.jwks().await.unwrap().keys[0]
            .common
            .key_id
            .as_deref(),
        Some(kid.as_str()),
        "same signing key"
    );
    assert_eq!(
        h.client.get_webhook(hook.identifier).await.unwrap().id,
        hook.id
    );
    let (first, data) = receiver
        .wait_for_card(&url.credit_card_id, Duration::from_secs(5))
        .await;
    assert_eq!(data.contact_id, contact.id);
    let (second, _) = receiver.wait_for_card(&slow, Duration::from_secs(5)).await;
    assert!(second.id > first.id, "ids continue after the restart");
    assert_eq!(receiver.received()[0].kid.as_deref(), Some(kid.as_str()));

    // The contact and an unused URL are still there; a used one is still used.
    h.client
        .create_tokenization_url(contact.id)
        .await
        .expect("contact survived");
    let port = h.sandbox.local_addr().port();
    assert_eq!(
        h.http
            .get(moved(&unused.url, port))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        h.http
            .get(moved(&url.url, port))
            .send()
            .await
            .unwrap()
            .status(),
        410
    );
    h.sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// A URL handed out before the restart, on the new port.
fn moved(url: &str, port: u16) -> url::Url {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(port)).unwrap();
    u
}
