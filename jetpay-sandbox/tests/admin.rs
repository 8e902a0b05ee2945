//! The developer-control endpoints (`/_sandbox/cards/{id}/result`, resend, pause, resume, the
//! attempt feed) and the dashboard's buttons that post to them.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use jetpay::wire::WebhookState;
use reqwest::Method;
use serde_json::{json, Value};

const SOON: Duration = Duration::from_secs(5);

async fn result(h: &Harness, card: &str, body: Value) -> (StatusCode, Value) {
    h.admin(
        Method::POST,
        &format!("_sandbox/cards/{card}/result"),
        Some(body),
    )
    .await
}

#[tokio::test]
async fn control_endpoints_need_the_token() {
    let h = Harness::start().await;
    let id = random_id();
    for (method, path) in [
        (Method::POST, format!("_sandbox/cards/{id}/result")),
        (Method::POST, format!("_sandbox/webhooks/{id}/resend")),
        (Method::POST, format!("_sandbox/webhooks/{id}/pause")),
        (Method::POST, format!("_sandbox/webhooks/{id}/resume")),
        (Method::GET, "_sandbox/attempts".to_owned()),
        (Method::GET, "_sandbox/cards/pending".to_owned()),
    ] {
        let res = h
            .http
            .request(method.clone(), h.url(&path))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "{method} {path}");
    }
}

#[tokio::test]
async fn trigger_endpoint_validates_and_answers_the_event() {
    let h = Harness::start().await;
    let (contact, url) = h.card_url().await;
    let card = url.credit_card_id.as_str();

    let (status, body) = result(&h, &random_id().to_string(), json!({"state": "succeeded"})).await;
    assert_eq!(
        (status, body["detail"].as_str()),
        (StatusCode::NOT_FOUND, Some("Credit card not found"))
    );
    let (status, body) = result(
        &h,
        card,
        json!({"state": "failed", "failure_reason": "stolen"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body["detail"][0]["msg"]
        .as_str()
        .unwrap()
        .contains("card_declined, processing_error, expired_card, incorrect_cvc"));
    let (status, _) = result(
        &h,
        card,
        json!({"state": "succeeded", "failure_reason": "card_declined"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = result(&h, card, json!({"state": "tokenized"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // "failed" without a reason is a decline, with the card service's message.
    let (status, body) = result(&h, card, json!({"state": "failed"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["form_submitted"], false);
    let data = &body["event"]["data"];
    assert_eq!(data["state"], "failed");
    assert_eq!(data["failureReason"], "card_declined");
    assert_eq!(data["failureMessage"], "The card was declined by the bank.");
    assert_eq!(data["contactId"], contact.id.to_string());

    let (status, body) = result(&h, card, json!({"state": "succeeded"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        body["detail"],
        format!("Credit card {card} already has a result: failed")
    );
}

#[tokio::test]
async fn attempt_feed_pages_by_id() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 1, 0).await;
    for _ in 0..3 {
        let card = h.new_card("4242424242424242").await;
        receiver.wait_for_card(&card, SOON).await;
        h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    }
    let (_, all) = h.admin(Method::GET, "_sandbox/attempts", None).await;
    let ids: Vec<i64> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    let (_, after) = h
        .admin(
            Method::GET,
            &format!("_sandbox/attempts?after={}", ids[0]),
            None,
        )
        .await;
    assert_eq!(after.as_array().unwrap().len(), 2);
    let (_, last) = h.admin(Method::GET, "_sandbox/attempts?last=1", None).await;
    assert_eq!(last[0]["id"].as_i64(), Some(ids[2]));
    assert_eq!(last[0]["outcome"], "delivered");
}

#[tokio::test]
async fn deleting_a_webhook_drops_its_resends() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&card, SOON).await;
    let path = format!("_sandbox/webhooks/{}/pause", hook.identifier);
    assert_eq!(h.admin(Method::POST, &path, None).await.0, StatusCode::OK);
    let path = format!("_sandbox/webhooks/{}/resend", hook.identifier);
    let (status, body) = h
        .admin(Method::POST, &path, Some(json!({"from_event_id": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body["queued"],
        json!({"from_event_id": 1, "to_event_id": 1, "events": 1})
    );
    assert_eq!(body["paused"], true);
    h.client.delete_webhook(hook.identifier).await.unwrap();
    let (status, _) = h
        .admin(Method::POST, &path, Some(json!({"from_event_id": 1})))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// The dashboard page and the value of its form secret.
async fn dashboard(h: &Harness) -> (String, String) {
    let res = h
        .http
        .get(h.url("_sandbox?refresh=off"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["x-frame-options"], "DENY");
    let page = res.text().await.unwrap();
    let secret = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("forms carry the secret")
        .to_owned();
    (page, secret)
}

/// Posts a dashboard form; answers the status and the page it redirects to.
async fn press(h: &Harness, action: &str, fields: &[(&str, &str)]) -> (u16, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = http
        .post(h.url(&format!("_sandbox/actions/{action}")))
        .form(fields)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let location = res
        .headers()
        .get("location")
        .map(|l| l.to_str().unwrap().to_owned());
    let page = match location {
        Some(location) => {
            assert!(location.starts_with("/_sandbox?done="), "{location}");
            assert!(location.ends_with("&refresh=off"), "{location}");
            h.http
                .get(h.url(&location[1..]))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
        None => res.text().await.unwrap(),
    };
    (status, page)
}

/// The text of the page's status message.
fn notice(page: &str) -> &str {
    page.split("<p role=\"status\" class=\"notice ok\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no success notice in the page"))
}

#[tokio::test]
async fn dashboard_buttons_act_on_the_sandbox() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    let (_, url) = h.card_url().await;
    let card = url.credit_card_id.clone();
    let identifier = hook.identifier.to_string();

    let (page, csrf) = dashboard(&h).await;
    assert!(page.contains(&format!(
        "aria-label=\"Succeed card {card}\">Succeed</button>"
    )));
    assert!(page.contains(&format!(
        "aria-label=\"Decline: card {card}\">Decline</button>"
    )));
    assert!(page.contains("<label for=\"fail-n\">Deliveries to fail</label>"));
    assert!(
        !page.contains("http-equiv=\"refresh\""),
        "refresh=off stops refreshing"
    );
    let base = [("csrf", csrf.as_str()), ("refresh", "off")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&str, &str)> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };

    // Pause the webhook, trigger a decline: nothing arrives.
    let mut fields = with(&[]);
    fields.push(("webhook", &identifier));
    let (status, page) = press(&h, "pause", &fields).await;
    assert_eq!(status, 303);
    assert!(
        notice(&page).starts_with(&format!("Paused webhook {}", hook.id)),
        "{}",
        notice(&page)
    );
    assert!(page.contains(&format!(
        "aria-label=\"Resume webhook {}\">Resume</button>",
        hook.id
    )));
    let mut fields = with(&[("result", "card_declined")]);
    fields.push(("card_id", &card));
    let (_, page) = press(&h, "trigger", &fields).await;
    assert!(
        notice(&page).contains(&format!("card {card} failed (card_declined)")),
        "{}",
        notice(&page)
    );
    assert!(page.contains("No card is waiting for a result."));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.requests(), 0);

    // Fail the next attempt, resume: one failure, then the delivery.
    let (_, page) = press(&h, "fail-next", &with(&[("n", "1")])).await;
    assert!(notice(&page).starts_with("The next delivery attempt (to any webhook) will fail"));
    let mut fields = with(&[]);
    fields.push(("webhook", &identifier));
    press(&h, "resume", &fields).await;
    let (_, data) = receiver.wait_for_card(&card, SOON).await;
    assert_eq!(data.failure_reason.as_deref(), Some("card_declined"));
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    let outcomes: Vec<String> = h
        .attempts(&hook)
        .await
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["failed", "delivered"]);

    // Resend event 1 from its row's button.
    let mut fields = with(&[("from", "1")]);
    fields.push(("webhook", &identifier));
    let (_, page) = press(&h, "resend", &fields).await;
    assert!(notice(&page).starts_with(&format!("Queued event 1 for webhook {}", hook.id)));
    receiver.wait_for_events(2, SOON).await;

    // Rotate: the JWKS gains the kid the page shows.
    let before = h.client.jwks().await.unwrap().keys.len();
    let (_, page) = press(&h, "rotate", &with(&[])).await;
    let kid = notice(&page)
        .strip_prefix("Rotated the signing key: new kid ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap()
        .to_owned();
    let jwks = h.client.jwks().await.unwrap();
    assert_eq!(jwks.keys.len(), before + 1);
    assert!(jwks.find(&kid).is_some());

    // A refused action is said on the page, as an error.
    let mut fields = with(&[("result", "succeeded")]);
    fields.push(("card_id", &card));
    let (status, page) = press(&h, "trigger", &fields).await;
    assert_eq!(status, 303);
    assert!(
        page.contains("<p role=\"status\" class=\"notice error\">Could not trigger: Credit card")
    );
}

#[tokio::test]
async fn dashboard_forms_refuse_other_sites() {
    let h = Harness::start().await;
    let (_, url) = h.card_url().await;
    let (_, csrf) = dashboard(&h).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let post = |secret: &str, site: &str| {
        http.post(h.url("_sandbox/actions/trigger"))
            .header("sec-fetch-site", site)
            .form(&[
                ("csrf", secret),
                ("card_id", url.credit_card_id.as_str()),
                ("result", "succeeded"),
            ])
            .send()
    };
    assert_eq!(post("", "same-origin").await.unwrap().status(), 403);
    assert_eq!(post("guess", "same-origin").await.unwrap().status(), 403);
    assert_eq!(post(&csrf, "cross-site").await.unwrap().status(), 403);
    let (status, events) = h.admin(Method::GET, "_sandbox/events", None).await;
    assert_eq!(status, 200);
    assert_eq!(events, json!([]), "nothing was triggered");
    assert_eq!(post(&csrf, "same-origin").await.unwrap().status(), 303);
    let (_, events) = h.admin(Method::GET, "_sandbox/events", None).await;
    assert_eq!(events.as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_paused_webhook_and_its_queued_resend_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("jetpay-sandbox-controls-{}", random_id()));
    let mut config = test_config();
    config.storage = jetpay_sandbox::Storage::File(dir.join("sandbox.db"));
    let h = Harness::with(config.clone()).await;
    let receiver = Receiver::start(&h).await;
    let hook = h.webhook(&receiver, 10, 0).await;
    let card = h.new_card("4242424242424242").await;
    receiver.wait_for_card(&card, SOON).await;
    h.wait_for_state(&hook, WebhookState::Active, SOON).await;
    let pause = format!("_sandbox/webhooks/{}/pause", hook.identifier);
    assert_eq!(h.admin(Method::POST, &pause, None).await.0, StatusCode::OK);
    let resend = format!("_sandbox/webhooks/{}/resend", hook.identifier);
    let (status, _) = h
        .admin(Method::POST, &resend, Some(json!({"from_event_id": 1})))
        .await;
    assert_eq!(status, StatusCode::OK);
    h.sandbox.shutdown().await;

    let h = Harness::with(config).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.requests(), 1, "still paused after the restart");
    let page = h
        .http
        .get(h.url("_sandbox"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Paused (resume it to deliver); 0 events waiting."));
    let resume = format!("_sandbox/webhooks/{}/resume", hook.identifier);
    let (status, body) = h.admin(Method::POST, &resume, None).await;
    assert_eq!(
        (status, body["paused"].as_bool()),
        (StatusCode::OK, Some(false))
    );
    let events = receiver.wait_for_events(2, SOON).await;
    assert_eq!(events[1].id, 1, "the queued resend went out");
    h.sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn dashboard_pauses_every_webhook_with_the_global_fault() {
    let h = Harness::start().await;
    let (_, csrf) = dashboard(&h).await;
    let fields = [
        ("csrf", csrf.as_str()),
        ("refresh", "off"),
        ("webhook", "all"),
    ];
    let (_, page) = press(&h, "pause", &fields).await;
    assert!(notice(&page).starts_with("Paused every webhook (fault pause)"));
    assert!(page.contains("<button>Resume every webhook</button>"));
    let (_, faults) = h.admin(Method::GET, "_sandbox/faults", None).await;
    assert_eq!(faults["paused"], true);
    press(&h, "resume", &fields).await;
    let (_, faults) = h.admin(Method::GET, "_sandbox/faults", None).await;
    assert_eq!(faults["paused"], false);
}
