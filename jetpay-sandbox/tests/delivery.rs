//! The webhook dispatcher: batching by size and time, signatures, retries and `failed`,
//! replays, key rotation, and every injectable fault.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use jetpay::wire::{NewWebhook, WebhookPatch, WebhookState};
use jetpay::Verifier;
use reqwest::Method;
use serde_json::json;

const SOON: Duration = Duration::from_secs(5);

#[tokio::test]
async fn batches_by_size() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 3, 3600).await;
    let a = h.new_card("4242424242424242").await;
    let b = h.new_card("4000000000000002").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests(), 0, "two events wait for a third");
    let waiting = h.client.get_webhook(hook.identifier).await.unwrap();
    assert_eq!(waiting.state, WebhookState::Scheduled);
    assert_eq!(waiting.last_sent_event_id, None);

    let c = h.new_card("5555555555554444").await;
    let events = receiver.wait_for_events(3, SOON).await;
    let received = receiver.received();
    assert_eq!(received.len(), 1, "one POST with three events");
    assert_eq!(received[0].batch.webhook_id, hook.id);
    let cards: Vec<String> = events
        .iter()
        .map(|e| tokenized(e).unwrap().credit_card_id)
        .collect();
    assert_eq!(cards, vec![a, b, c]);
    let done = h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    assert_eq!(done.last_sent_event_id, Some(events[2].id));
}

#[tokio::test]
async fn batches_by_time() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 1).await;
    let submitted = Instant::now();
    let card = h.new_card("4242424242424242").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(receiver.requests(), 0, "not before max_wait_seconds");
    assert_eq!(
        h.client.get_webhook(hook.identifier).await.unwrap().state,
        WebhookState::Scheduled
    );
    let (_, data) = receiver.wait_for_card(&card, SOON).await;
    assert_eq!(data.credit_card_id, card);
    let took = receiver.received()[0].at - submitted;
    assert!(
        took >= Duration::from_millis(1000),
        "delivered after {took:?}"
    );
    assert!(
        took < Duration::from_millis(3500),
        "but promptly after the wait: {took:?}"
    );
}

#[tokio::test]
async fn max_wait_zero_delivers_at_once_with_the_api_key() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.client
        .create_webhook(&NewWebhook {
            callback_url: receiver.url.clone(),
            callback_api_key: Some("k-123".into()),
            max_batch_size: Some(10),
            max_wait_seconds: Some(0),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    let submitted = Instant::now();
    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&card, SOON).await;
    let r = &receiver.received()[0];
    assert!(
        r.at - submitted < Duration::from_millis(1000),
        "{:?}",
        r.at - submitted
    );
    assert_eq!(r.api_key.as_deref(), Some("k-123"));
}

#[tokio::test]
async fn a_new_webhook_gets_only_events_after_it() {
    let h = Harness::start().await;
    let first = Receiver::start(&h).await;
    h.webhook(&first, 10, 0).await;
    let before = h.new_card("4242424242424242").await;
    first.wait_for_card(&before, SOON).await;
    let second = Receiver::start(&h).await;
    h.webhook(&second, 10, 0).await;
    let after = h.new_card("4242424242424242").await;
    second.wait_for_card(&after, SOON).await;
    first.wait_for_card(&after, SOON).await;
    let seen: Vec<String> = second
        .events()
        .iter()
        .map(|e| tokenized(e).unwrap().credit_card_id)
        .collect();
    assert_eq!(seen, vec![after]);
}

#[tokio::test]
async fn failed_deliveries_are_retried_and_recorded() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    receiver.script(&[Answer::Status(500), Answer::Status(500)]);
    let hook = h.webhook(&receiver, 10, 0).await;
    let card = h.new_card("4242424242424242").await;
    let (event, _) = receiver.wait_for_card(&card, SOON).await;
    assert_eq!(receiver.requests(), 3);
    let hook = h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    assert_eq!(hook.last_sent_event_id, Some(event.id));

    let attempts = h.attempts(&hook).await;
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    let summary: Vec<(i64, &str, Option<i64>)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["status_code"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "failed", Some(500)),
            (2, "failed", Some(500)),
            (3, "delivered", Some(200))
        ]
    );
    for a in &attempts {
        assert_eq!(
            (a["first_event_id"].as_i64(), a["last_event_id"].as_i64()),
            (Some(event.id), Some(event.id))
        );
        assert!(a["latency_ms"].is_i64() && a["started_at"].is_string());
    }

    // The dashboard tells the same story, with no card data beyond brand and last four.
    let page = h
        .http
        .get(h.url("_sandbox"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&card) && page.contains("visa ····4242"));
    assert!(page.contains("<td>500</td>") && page.contains("<strong>delivered</strong>"));
    assert!(page.contains("Up to date: every event has been delivered."));
    assert!(!page.contains("4242424242424242"));
}

#[tokio::test]
async fn a_slow_receiver_counts_as_a_failure() {
    let mut config = test_config();
    config.delivery_timeout = Duration::from_millis(300);
    let h = Harness::with(config).await;
    let receiver = Receiver::start(&h).await;
    receiver.script(&[Answer::Hang(Duration::from_secs(1))]);
    let hook = h.webhook(&receiver, 10, 0).await;
    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&card, SOON).await;
    let attempts = h.attempts(&hook).await;
    assert_eq!(attempts[0]["outcome"], "failed");
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("no answer within 300 ms"),
        "{attempts:?}"
    );
    assert_eq!(attempts.last().unwrap()["outcome"], "delivered");
}

#[tokio::test]
async fn gives_up_after_max_attempts_until_patched() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    receiver.script(&[Answer::Status(503); 4]);
    let hook = h.webhook(&receiver, 10, 0).await;
    let card = h.new_card("4242424242424242").await;
    let failed = h.wait_for_state(&hook, WebhookState::Failed, SOON).await;
    assert_eq!(failed.last_sent_event_id, None);
    assert_eq!(
        h.attempts(&hook).await.len(),
        4,
        "max_attempts for tests is 4"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.requests(), 4, "no more tries once failed");

    let patched = h
        .client
        .update_webhook(hook.identifier, &WebhookPatch::default())
        .await
        .unwrap();
    assert_ne!(patched.state, WebhookState::Failed);
    receiver.wait_for_card(&card, SOON).await;
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;
}

#[tokio::test]
async fn replay_from_event_id_and_by_patch() {
    let h = Harness::start().await;
    let first = Receiver::start(&h).await;
    let hook = h.webhook(&first, 10, 0).await;
    for _ in 0..3 {
        h.new_card("4242424242424242").await;
    }
    let events = first.wait_for_events(3, SOON).await;
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;

    // A new webhook replaying from the second event (inclusive).
    let second = Receiver::start(&h).await;
    h.client
        .create_webhook(&NewWebhook {
            callback_url: second.url.clone(),
            max_wait_seconds: Some(0),
            replay_from_event_id: Some(events[1].id),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    let replayed = second.wait_for_events(2, SOON).await;
    assert_eq!(replayed, events[1..].to_vec(), "same ids, times and data");

    // PATCH rewinds the first webhook to the start.
    h.client
        .update_webhook(
            hook.identifier,
            &WebhookPatch {
                replay_from_event_id: Some(events[0].id),
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap();
    let again = first.wait_for_events(6, SOON).await;
    assert_eq!(again[3..], events[..]);
    let hook = h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    assert_eq!(hook.last_sent_event_id, Some(events[2].id));
}

#[tokio::test]
async fn replay_from_timestamp() {
    let h = Harness::start().await;
    let first = Receiver::start(&h).await;
    h.webhook(&first, 10, 0).await;
    h.new_card("4242424242424242").await;
    first.wait_for_events(1, SOON).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let from = chrono::Utc::now();
    h.new_card("4242424242424242").await;
    h.new_card("4242424242424242").await;
    let all = first.wait_for_events(3, SOON).await;

    let second = Receiver::start(&h).await;
    h.client
        .create_webhook(&NewWebhook {
            callback_url: second.url.clone(),
            max_wait_seconds: Some(0),
            replay_from_timestamp: Some(from),
            ..NewWebhook::default()
        })
        .await
        .unwrap();
    let replayed = second.wait_for_events(2, SOON).await;
    assert_eq!(replayed, all[1..].to_vec());
    assert!(replayed.iter().all(|e| e.created_at >= from));
}

#[tokio::test]
async fn deliveries_use_a_rotated_key() {
    let h = Harness::start().await;
    let receiver = Receiver::with_verifier(
        Verifier::new(h.client.clone()).with_min_refetch_interval(Duration::ZERO),
    )
    .await;
    h.webhook(&receiver, 10, 0).await;
    let before = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&before, SOON).await;
    let (_, rotated) = h.admin(Method::POST, "_sandbox/keys/rotate", None).await;
    let after = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&after, SOON).await;
    let kids: Vec<Option<String>> = receiver.received().into_iter().map(|r| r.kid).collect();
    assert_eq!(kids[1].as_deref(), rotated["kid"].as_str());
    assert_eq!(kids[0].as_deref(), rotated["previous_kid"].as_str());
}

#[tokio::test]
async fn fault_delay() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 0).await;
    h.faults(json!({"delay_ms": 700, "count": 1})).await;
    let submitted = Instant::now();
    let slow = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&slow, SOON).await;
    assert!(receiver.received()[0].at - submitted >= Duration::from_millis(700));
    // Used up after one delivery.
    let fast = h.new_card("4242424242424242").await;
    let t = Instant::now();
    receiver.wait_for_card(&fast, SOON).await;
    assert!(t.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn fault_duplicate() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 0).await;
    h.faults(json!({"duplicate": 3, "count": 1})).await;
    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_events(3, SOON).await;
    let received = receiver.received();
    assert_eq!(received.len(), 3);
    assert!(
        received.iter().all(|r| r.raw == received[0].raw),
        "the same batch each time"
    );
    assert_eq!(
        tokenized(&received[0].batch.events[0])
            .unwrap()
            .credit_card_id,
        card
    );
}

#[tokio::test]
async fn fault_reorder() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 3, 3600).await;
    h.faults(json!({"reorder": "reverse"})).await;
    for _ in 0..3 {
        h.new_card("4242424242424242").await;
    }
    let events = receiver.wait_for_events(3, SOON).await;
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "reversed: {ids:?}");
}

#[tokio::test]
async fn fault_drop_then_replay_recovers() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    h.faults(json!({"drop": true, "count": 1})).await;
    let lost = h.new_card("4000000000000002").await;
    let hook_now = loop {
        let w = h.client.get_webhook(hook.identifier).await.unwrap();
        if w.last_sent_event_id.is_some() {
            break w;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(receiver.requests(), 0, "dropped: never sent");
    assert_eq!(h.attempts(&hook).await[0]["outcome"], "dropped");
    let next = h.new_card("4242424242424242").await;
    let (event, _) = receiver.wait_for_card(&next, SOON).await;
    assert_eq!(
        event.id,
        hook_now.last_sent_event_id.unwrap() + 1,
        "a gap the platform can see"
    );

    h.client
        .update_webhook(
            hook.identifier,
            &WebhookPatch {
                replay_from_event_id: hook_now.last_sent_event_id,
                ..WebhookPatch::default()
            },
        )
        .await
        .unwrap();
    receiver.wait_for_card(&lost, SOON).await;
}

#[tokio::test]
async fn fault_fail_times() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    h.faults(json!({"fail_times": 2})).await;
    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&card, SOON).await;
    assert_eq!(
        receiver.requests(),
        1,
        "the failures were simulated, not sent"
    );
    let outcomes: Vec<String> = h
        .attempts(&hook)
        .await
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["failed", "failed", "delivered"]);
}

#[tokio::test]
async fn fault_pause_and_resume() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    let state = h.faults(json!({"pause": true})).await;
    assert_eq!(state["paused"], true);
    let card = h.new_card("4242424242424242").await;
    h.wait_for_state(&hook, WebhookState::Scheduled, SOON).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.requests(), 0);
    h.faults(json!({"resume": true})).await;
    receiver.wait_for_card(&card, SOON).await;
}

#[tokio::test]
async fn fault_deliver_early_on_submit() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    // Without the fault this webhook would wait an hour.
    h.webhook(&receiver, 10, 3600).await;
    h.faults(json!({"deliver_early": true})).await;
    let (_, url) = h.card_url().await;
    let (status, _) = h.submit_card(&url.url, "4000000000000002").await;
    assert_eq!(status, StatusCode::OK);
    let events = receiver.events();
    assert_eq!(events.len(), 1, "delivered before the form answered");
    assert_eq!(
        tokenized(&events[0]).unwrap().credit_card_id,
        url.credit_card_id
    );
    receiver.assert_all_verified();
}

#[tokio::test]
async fn fault_deliver_early_when_the_url_is_created() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 10, 3600).await;
    let state = h
        .faults(json!({"deliver_early": 1, "deliver_early_at": "url_created"}))
        .await;
    assert_eq!(state["deliver_early"], 1);
    let (_, url) = h.card_url().await;
    let events = receiver.events();
    assert_eq!(events.len(), 1, "the event beat the URL's answer");
    let data = tokenized(&events[0]).unwrap();
    assert_eq!(data.credit_card_id, url.credit_card_id);
    assert_eq!(data.last4.as_deref(), Some("4242"));
    assert_eq!(h.http.get(&url.url).send().await.unwrap().status(), 410);
    let (_, after) = h.card_url().await;
    assert_eq!(
        h.http.get(&after.url).send().await.unwrap().status(),
        200,
        "used up"
    );
}

#[tokio::test]
async fn faults_can_be_read_cleared_and_are_checked() {
    let h = Harness::start().await;
    h.faults(json!({"drop": true, "pause": true, "reorder": "shuffle"}))
        .await;
    let (status, now) = h.admin(Method::GET, "_sandbox/faults", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (
            now["drop"].as_bool(),
            now["paused"].as_bool(),
            now["reorder"].as_str()
        ),
        (Some(true), Some(true), Some("shuffle"))
    );
    let (status, cleared) = h.admin(Method::DELETE, "_sandbox/faults", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        (cleared["drop"].as_bool(), cleared["paused"].as_bool()),
        (Some(false), Some(false))
    );
    let (status, body) = h
        .admin(Method::POST, "_sandbox/faults", Some(json!({"dorp": true})))
        .await;
    assert_eq!(status, 422, "{body}");
}
