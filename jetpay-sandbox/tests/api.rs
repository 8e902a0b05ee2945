//! The API as a platform backend sees it through the `jetpay` client: auth, contacts,
//! tokenization URLs, webhook management, errors, the JWKS.

mod common;

use common::*;
use jetpay::test_util::eventually;
use jetpay::wire::{NewContact, NewWebhook, WebhookPatch, WebhookState};
use reqwest::Method;
use serde_json::{json, Value};

fn detail_issues(body: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(body).expect("JSON error body");
    let issues = v["detail"].as_array().expect("detail is a list").clone();
    for i in &issues {
        assert!(
            i["loc"].is_array() && i["msg"].is_string() && i["type"].is_string(),
            "{i}"
        );
    }
    issues
}

#[tokio::test]
async fn every_api_route_needs_a_valid_bearer_token() {
    let h = Harness::start().await;
    let wrong = client_for(&h.sandbox, "not-the-token");
    let (status, body) = status_of(
        wrong
            .create_contact(&NewContact {
                email: "a@example.com".into(),
                name: "A".into(),
                tags: vec![],
                language: "en".into(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["detail"].is_string(), "{body}");
    assert_eq!(status_of(wrong.list_webhooks().await.unwrap_err()).0, 401);
    assert_eq!(
        status_of(
            wrong
                .create_tokenization_url(random_id())
                .await
                .unwrap_err()
        )
        .0,
        401
    );

    // No header at all.
    for (method, path) in [
        (Method::PUT, "contact"),
        (Method::POST, "webhooks/"),
        (Method::GET, "webhooks/"),
        (Method::POST, "_sandbox/faults"),
        (Method::POST, "_sandbox/keys/rotate"),
    ] {
        let res = h
            .http
            .request(method.clone(), h.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {path}");
        assert_eq!(res.headers()["www-authenticate"], "Bearer");
        let v: Value = res.json().await.unwrap();
        assert!(v["detail"].is_string());
    }

    // Public: the JWKS (fetched by the client without a token) and the dashboard.
    assert!(!wrong.jwks().await.unwrap().keys.is_empty());
    let dash = h.http.get(h.url("_sandbox")).send().await.unwrap();
    assert_eq!(dash.status(), 200);
    assert!(dash.text().await.unwrap().contains("Jetpay sandbox"));
}

#[tokio::test]
async fn contact_and_tokenization_url() {
    let h = Harness::start().await;
    let contact = h.contact().await;
    assert_eq!(contact.email, "ada@example.com");
    assert_eq!(contact.name, "Ada Lovelace");
    let other = h.contact().await;
    assert_ne!(contact.id, other.id, "each PUT creates a new contact");

    let a = h.client.create_tokenization_url(contact.id).await.unwrap();
    let b = h.client.create_tokenization_url(contact.id).await.unwrap();
    let prefix = h.url("tokenize/");
    assert!(
        a.url.starts_with(&prefix),
        "{} should start with {prefix}",
        a.url
    );
    assert!(
        a.url.len() > prefix.len() + 20,
        "session ids are long and random"
    );
    assert_ne!(a.url, b.url);
    assert_ne!(a.credit_card_id, b.credit_card_id);
    uuid::Uuid::parse_str(&a.credit_card_id).expect("credit card id is a UUID");
}

#[tokio::test]
async fn unknown_contact_and_webhook_are_404() {
    let h = Harness::start().await;
    let (status, body) = status_of(
        h.client
            .create_tokenization_url(random_id())
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 404);
    assert!(body.contains("detail"));
    assert_eq!(
        status_of(h.client.get_webhook(random_id()).await.unwrap_err()).0,
        404
    );
    assert_eq!(
        status_of(
            h.client
                .update_webhook(random_id(), &WebhookPatch::default())
                .await
                .unwrap_err()
        )
        .0,
        404
    );
    assert_eq!(
        status_of(h.client.delete_webhook(random_id()).await.unwrap_err()).0,
        404
    );
}

#[tokio::test]
async fn invalid_input_is_422_with_fastapi_detail() {
    let h = Harness::start().await;
    let (status, body) = status_of(
        h.client
            .create_contact(&NewContact {
                email: "not-an-email".into(),
                name: "X".into(),
                tags: vec![],
                language: "en".into(),
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422);
    assert_eq!(detail_issues(&body)[0]["loc"], json!(["body", "email"]));

    // Malformed JSON and missing fields.
    let res = h
        .http
        .put(h.url("contact"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    detail_issues(&res.text().await.unwrap());
    let (status, body) = h.admin(Method::POST, "webhooks/", Some(json!({}))).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "callback_url"]));
    assert_eq!(body["detail"][0]["type"], "missing");

    // Out-of-range webhook settings, all reported at once.
    let (status, body) = h
        .admin(
            Method::POST,
            "webhooks/",
            Some(json!({
                "callback_url": "not a url", "max_batch_size": 101, "max_wait_seconds": 3601,
                "replay_from_timestamp": "last tuesday"
            })),
        )
        .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = body["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["loc"][1].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "callback_url",
            "max_batch_size",
            "max_wait_seconds",
            "replay_from_timestamp"
        ]
    );
    let err = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: "http://127.0.0.1:9/x".into(),
            max_batch_size: Some(0),
            ..NewWebhook::default()
        })
        .await
        .unwrap_err();
    assert_eq!(status_of(err).0, 422);

    // A path parameter that is not a UUID.
    let res = h
        .http
        .post(h.url("contact/not-a-uuid/creditcards/url"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 422);
    let issues = detail_issues(&res.text().await.unwrap());
    assert_eq!(issues[0]["loc"], json!(["path", "identifier"]));
}

#[tokio::test]
async fn min_wait_seconds_is_enforced_as_documented_by_default() {
    let mut config = test_config();
    config.min_wait_seconds = 60;
    let h = Harness::with(config).await;
    let err = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: "http://127.0.0.1:9/hook".into(),
            max_wait_seconds: Some(59),
            ..NewWebhook::default()
        })
        .await
        .unwrap_err();
    let (status, body) = status_of(err);
    assert_eq!(status, 422);
    assert_eq!(
        detail_issues(&body)[0]["loc"],
        json!(["body", "max_wait_seconds"])
    );
    let ok = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: "http://127.0.0.1:9/hook".into(),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    assert_eq!((ok.max_batch_size, ok.max_wait_seconds), (10, 60));
}

#[tokio::test]
async fn webhook_management_and_duplicate_callback_url() {
    let h = Harness::start().await;
    let created = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: "http://127.0.0.1:9/one".into(),
            callback_api_key: Some("secret-key".into()),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    assert_eq!(created.state, WebhookState::Active);
    assert_eq!(created.last_sent_event_id, None);
    assert_eq!(
        (created.max_batch_size, created.max_wait_seconds),
        (10, 60),
        "documented defaults"
    );
    assert_eq!(created.callback_url, "http://127.0.0.1:9/one");

    let (status, body) = status_of(
        h.client
            .create_webhook(&NewWebhook {
                callback_url: "http://127.0.0.1:9/one".into(),
                ..NewWebhook::default()
            })
            .await
            .unwrap_err(),
    );
    assert_eq!(status, 422, "duplicate callback_url");
    assert_eq!(
        detail_issues(&body)[0]["loc"],
        json!(["body", "callback_url"])
    );

    let second = h
        .client
        .create_webhook(&NewWebhook {
            callback_url: "http://127.0.0.1:9/two".into(),
            max_batch_size: Some(1),
            max_wait_seconds: Some(0),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    assert!(second.id > created.id);
    assert_ne!(second.identifier, created.identifier);

    let listed = h.client.list_webhooks().await.unwrap();
    assert_eq!(listed, vec![created.clone(), second.clone()]);
    assert_eq!(
        h.client.get_webhook(second.identifier).await.unwrap(),
        second
    );

    let patched = h
        .client
        .update_webhook(
            created.identifier,
            &WebhookPatch {
                max_batch_size: Some(50),
                max_wait_seconds: Some(120),
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (patched.max_batch_size, patched.max_wait_seconds),
        (50, 120)
    );
    assert_eq!(patched.callback_url, created.callback_url);

    let err = h
        .client
        .update_webhook(
            created.identifier,
            &WebhookPatch {
                callback_url: Some("http://127.0.0.1:9/two".into()),
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(status_of(err).0, 422, "PATCH onto another webhook's URL");

    h.client.delete_webhook(created.identifier).await.unwrap();
    assert_eq!(
        status_of(h.client.get_webhook(created.identifier).await.unwrap_err()).0,
        404
    );
    assert_eq!(h.client.list_webhooks().await.unwrap(), vec![second]);
}

#[tokio::test]
async fn jwks_lists_rs256_keys_and_rotation_keeps_the_old_one() {
    let h = Harness::start().await;
    let res = h
        .http
        .get(h.url(".well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let jwks: Value = res.json().await.unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    let key = &keys[0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["use"].as_str(),
            key["alg"].as_str()
        ),
        (Some("RSA"), Some("sig"), Some("RS256"))
    );
    assert_eq!(key["e"], "AQAB");
    assert!(key["n"].as_str().unwrap().len() >= 342, "2048-bit modulus");
    let old_kid = key["kid"].as_str().unwrap().to_owned();

    let (status, rotated) = h.admin(Method::POST, "_sandbox/keys/rotate", None).await;
    assert_eq!(status, 200);
    let new_kid = rotated["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["previous_kid"], old_kid.as_str());

    let set = h.client.jwks().await.unwrap();
    let kids: Vec<String> = set
        .keys
        .iter()
        .filter_map(|k| k.common.key_id.clone())
        .collect();
    assert_eq!(kids, vec![old_kid, new_kid]);
}

#[tokio::test]
async fn the_event_log_is_listed_as_delivered_in_id_order() {
    let h = Harness::start().await;
    let (status, _) = h
        .admin(Method::GET, "_sandbox/events?after=0&limit=5", None)
        .await;
    assert_eq!(status, 200);
    let a = h.new_card("4242424242424242").await;
    let b = h.new_card("4000000000000002").await;
    let within = std::time::Duration::from_secs(10);
    let events = eventually(within, "two events in the log", || async {
        let (status, body) = h.admin(Method::GET, "_sandbox/events", None).await;
        assert_eq!(status, 200, "{body}");
        let events = body.as_array().unwrap().clone();
        (events.len() == 2).then_some(events)
    })
    .await;
    let first = events[0]["id"].as_i64().unwrap();
    assert_eq!(events[1]["id"].as_i64().unwrap(), first + 1);
    let cards: Vec<&str> = events
        .iter()
        .map(|e| e["data"]["creditCardId"].as_str().unwrap())
        .collect();
    // The card service may finish them in either order; both are there, each once.
    assert!(cards.contains(&a.as_str()) && cards.contains(&b.as_str()));
    assert!(events
        .iter()
        .all(|e| e["type"] == jetpay::unspecified::CARD_TOKENIZED_EVENT
            && e["createdAt"].is_string()));
    let (_, after) = h
        .admin(
            Method::GET,
            &format!("_sandbox/events?after={first}&limit=1"),
            None,
        )
        .await;
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["id"].as_i64().unwrap(), first + 1);
    let no_token = h.http.get(h.url("_sandbox/events")).send().await.unwrap();
    assert_eq!(no_token.status(), 401);
}
