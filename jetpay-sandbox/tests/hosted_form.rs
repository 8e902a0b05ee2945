//! The hosted card form and the card service: what a customer types, what the platform's
//! webhook then receives.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::*;
use jetpay::unspecified;
use jetpay::wire::TokenizationState;
use jetpay_sandbox::Storage;

#[tokio::test]
async fn form_is_frameable_labelled_and_self_contained() {
    let h = Harness::start().await;
    let (_, url) = h.card_url().await;
    let res = h.http.get(&url.url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("frame-ancestors 'self' {FRAME_ORIGIN}")),
        "{csp}"
    );
    assert!(csp.contains("default-src 'none'"));
    assert!(
        res.headers().get("x-frame-options").is_none(),
        "framing is governed by the CSP"
    );
    let html = res.text().await.unwrap();
    for (id, label, autocomplete) in [
        ("card_number", "Card number", "cc-number"),
        ("expiry", "Expiry date", "cc-exp"),
        ("cvc", "Security code (CVC)", "cc-csc"),
        ("name", "Name on card", "cc-name"),
        ("postal_code", "Postal code", "postal-code"),
    ] {
        assert!(
            html.contains(&format!(r#"<label for="{id}">{label}"#)),
            "label for {id}"
        );
        assert!(html.contains(&format!(r#"id="{id}" name="{id}""#)));
        assert!(html.contains(&format!(r#"autocomplete="{autocomplete}""#)));
    }
    assert_eq!(html.matches(r#"inputmode="numeric""#).count(), 3);
    assert!(html.contains(r#"<html lang="en">"#));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http"),
        "no external assets"
    );
}

/// Number, brand, last four, and on failure the reason and the start of the message.
type Case = (
    &'static str,
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

#[tokio::test]
async fn every_test_card_gives_its_documented_event() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 100, 0).await;

    let cases: [Case; 10] = [
        ("4242 4242 4242 4242", "visa", "4242", None),
        ("5555 5555 5555 4444", "mastercard", "4444", None),
        ("3782 822463 10005", "amex", "0005", None),
        ("4000 0000 0000 0002", "visa", "0002", Some(("card_declined", "The card was declined by the bank."))),
        ("4000 0000 0000 0119", "visa", "0119", Some(("processing_error", "We couldn't verify the card because of a processing error. Try again in a few minutes."))),
        ("4000 0000 0000 0069", "visa", "0069", Some(("expired_card", ""))),
        ("4000 0000 0000 0127", "visa", "0127", Some(("incorrect_cvc", ""))),
        ("4000 0000 0000 3220", "visa", "3220", None),
        ("4111 1111 1111 1111", "visa", "1111", None),
        ("6011 1111 1111 1117", "discover", "1117", None),
    ];
    let mut cards = Vec::new();
    for (number, ..) in cases {
        let (contact, url) = h.card_url().await;
        let (status, page) = h.submit_card(&url.url, number).await;
        assert_eq!(status, StatusCode::OK, "{number}: {page}");
        assert!(page.contains("Card received. We're verifying it…"));
        assert!(page.contains(unspecified::HOSTED_FORM_SUBMITTED_MESSAGE));
        assert!(page.contains(&url.credit_card_id));
        assert!(
            page.contains(FRAME_ORIGIN),
            "postMessage goes to the configured origin"
        );
        cards.push((contact.id, url.credit_card_id));
    }

    for ((number, brand, last4, failure), (contact_id, card_id)) in cases.into_iter().zip(&cards) {
        let (event, data) = receiver
            .wait_for_card(card_id, Duration::from_secs(5))
            .await;
        assert_eq!(event.event_type, unspecified::CARD_TOKENIZED_EVENT);
        assert_eq!(&data.contact_id, contact_id, "{number}");
        assert_eq!(data.brand.as_deref(), Some(brand), "{number}");
        assert_eq!(data.last4.as_deref(), Some(last4), "{number}");
        assert_eq!(data.exp_month, Some(12));
        match failure {
            None => {
                assert_eq!(data.state, TokenizationState::Succeeded, "{number}");
                assert_eq!(data.failure_reason, None);
            }
            Some((reason, message)) => {
                assert_eq!(data.state, TokenizationState::Failed, "{number}");
                assert_eq!(data.failure_reason.as_deref(), Some(reason));
                let text = data.failure_message.unwrap();
                assert!(
                    text.starts_with(message) && !text.is_empty(),
                    "{number}: {text}"
                );
            }
        }
    }

    // The slow card arrives after the others, and ids ascend without gaps.
    let events = receiver.events();
    let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), cases.len());
    assert_eq!(
        sorted.last().unwrap() - sorted[0],
        cases.len() as i64 - 1,
        "no gaps: {ids:?}"
    );
    let slow = events
        .iter()
        .position(|e| tokenized(e).unwrap().last4.as_deref() == Some("3220"))
        .unwrap();
    assert_eq!(slow, events.len() - 1, "slow card comes last");
    for r in receiver.received() {
        assert!(
            r.batch.events.windows(2).all(|w| w[0].id < w[1].id),
            "ascending in a batch"
        );
        let at = r.raw.find("\"createdAt\":\"").unwrap() + 13;
        let stamp = &r.raw[at..at + 27];
        assert!(
            stamp.ends_with('Z') && stamp.as_bytes()[19] == b'.',
            "microseconds: {stamp}"
        );
    }
}

#[tokio::test]
async fn urls_are_single_use() {
    let h = Harness::start().await;
    let (_, url) = h.card_url().await;
    let (status, _) = h.submit_card(&url.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::OK);
    let res = h.http.get(&url.url).send().await.unwrap();
    assert_eq!(res.status(), 410);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("already been used or has expired"));
    let (status, _) = h.submit_card(&url.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::GONE, "a second submit is refused too");
    let res = h
        .http
        .get(h.url("tokenize/no-such-session"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn urls_expire() {
    let mut config = test_config();
    config.url_ttl = Duration::from_millis(300);
    let h = Harness::with(config).await;
    let (_, url) = h.card_url().await;
    assert_eq!(h.http.get(&url.url).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let res = h.http.get(&url.url).send().await.unwrap();
    assert_eq!(res.status(), 410);
    let (status, _) = h.submit_card(&url.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::GONE);
}

#[tokio::test]
async fn invalid_details_are_shown_again_with_messages() {
    let h = Harness::start().await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 1, 0).await;
    let (_, url) = h.card_url().await;
    let (status, page) = h
        .post_form(
            &url.url,
            &[
                ("card_number", "4242 4242 4242 4241"),
                ("expiry", "01/20"),
                ("cvc", "12"),
                ("name", "Ada <b>Lovelace</b>"),
                ("postal_code", "H2X 1Y4"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("This card number isn't valid. Check it and try again."));
    assert!(page.contains("This card has expired. Check the date or use another card."));
    assert!(page.contains("The security code is the 3 digits on the back of the card."));
    assert!(page.contains(r#"aria-invalid="true" aria-describedby="card_number-error""#));
    assert!(
        page.contains(r#"id="error-summary""#)
            && !page.contains(r#"aria-labelledby="error-summary-title" hidden"#)
    );
    assert!(
        page.contains(r#"value="Ada &lt;b&gt;Lovelace&lt;/b&gt;""#),
        "name kept, escaped"
    );
    assert!(page.contains(r#"value="H2X 1Y4""#));
    assert!(page.contains(r#"value="01/20""#));
    assert!(!page.contains("4241"), "the card number is not echoed");

    // Amex wants four digits.
    let (status, page) = h
        .post_form(
            &url.url,
            &[
                ("card_number", "378282246310005"),
                ("expiry", "12/40"),
                ("cvc", "123"),
                ("name", "A"),
                ("postal_code", "12345"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("The security code is the 4 digits on the front of the card."));

    // Nothing was used up or produced.
    assert_eq!(h.http.get(&url.url).send().await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.requests(), 0);
    let (status, _) = h.submit_card(&url.url, "4242424242424242").await;
    assert_eq!(status, StatusCode::OK);
}

/// PCI hygiene: the full card number appears nowhere in the database files.
#[tokio::test]
async fn card_number_and_cvc_are_never_stored() {
    let dir = std::env::temp_dir().join(format!("jetpay-sandbox-pci-{}", uuid::Uuid::new_v4()));
    let mut config = test_config();
    config.storage = Storage::File(dir.join("sandbox.db"));
    let h = Harness::with(config).await;
    let receiver = Receiver::start(&h).await;
    h.webhook(&receiver, 1, 0).await;
    let (_, url) = h.card_url().await;
    let (status, _) = h
        .post_form(
            &url.url,
            &[
                ("card_number", "5105 1051 0510 5100"),
                ("expiry", "11/39"),
                ("cvc", "731"),
                ("name", "Grace Hopper"),
                ("postal_code", "10001"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, data) = receiver
        .wait_for_card(&url.credit_card_id, Duration::from_secs(5))
        .await;
    assert_eq!(
        (data.brand.as_deref(), data.last4.as_deref()),
        (Some("mastercard"), Some("5100"))
    );
    assert!(!receiver.received()[0].raw.contains("5105105105105100"));
    h.sandbox.shutdown().await;

    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        text.contains("5100"),
        "the last four are kept (sanity check of the search)"
    );
    assert!(!text.contains("5105105105105100") && !text.contains("5105 1051"));
    // (A 3-digit CVC cannot be searched for reliably: any timestamp may contain it. The
    // schema has no column that could hold it.)
    let _ = std::fs::remove_dir_all(&dir);
}
