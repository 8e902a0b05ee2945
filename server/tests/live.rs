//! The live card stream: only the signed-in customer's changes, resumable with Last-Event-ID.

mod common;

use std::time::Duration;

use common::{spawn_app, Customer, TestApp};
use jetpay::test_util::eventually;

/// Reads SSE frames until `want` `card` events arrived (or the deadline passes); returns their ids.
async fn read_card_ids(
    app: &TestApp,
    customer: &Customer,
    last_event_id: Option<i64>,
    want: usize,
) -> Vec<i64> {
    let mut request = customer.http.get(app.url("/account/cards/events"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id.to_string());
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut ids = Vec::new();
    while ids.len() < want {
        let chunk = tokio::time::timeout_at(deadline, response.chunk()).await;
        match chunk {
            Ok(Ok(Some(bytes))) => text.push_str(&String::from_utf8_lossy(&bytes)),
            _ => break,
        }
        ids = text
            .split("\n\n")
            .filter(|frame| frame.contains("event: card"))
            .filter_map(|frame| frame.lines().find_map(|l| l.strip_prefix("id: ")))
            .map(|id| id.parse().unwrap())
            .collect();
    }
    ids
}

#[tokio::test]
async fn a_reconnecting_stream_gets_exactly_what_it_missed_and_only_its_own() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    alice.add_card().await;
    bob.add_card().await;
    alice.add_card().await;
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT seq FROM card_changes c JOIN customers u ON u.id = c.customer_id WHERE u.email = $1 ORDER BY seq",
    )
    .bind(&alice.email)
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(seqs.len(), 2);

    // Resuming after the first change replays the second, and none of Bob's.
    let ids = read_card_ids(&app, &alice, Some(seqs[0]), 1).await;
    assert_eq!(ids, vec![seqs[1]]);
    // From the start, both.
    let ids = read_card_ids(&app, &alice, Some(0), 2).await;
    assert_eq!(ids, seqs);
}

#[tokio::test]
async fn live_changes_reach_the_owner_stream_only() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    let card = alice.add_card().await;
    let latest: i64 = app.count("SELECT MAX(seq) FROM card_changes").await;

    let alice_reader = read_card_ids(&app, &alice, Some(latest), 1);
    let bob_reader = read_card_ids(&app, &bob, Some(latest), 1);
    let submit = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.submit_card(&alice.form_url(&card).await, "4242424242424242")
            .await;
    };
    let (alice_ids, bob_ids, ()) = tokio::join!(alice_reader, bob_reader, submit);
    assert_eq!(alice_ids.len(), 1, "alice sees her card turn active");
    assert!(bob_ids.is_empty(), "bob sees nothing: {bob_ids:?}");
}

#[tokio::test]
async fn the_stream_needs_a_signed_in_customer() {
    let app = spawn_app().await;
    let response = reqwest::get(app.url("/account/cards/events"))
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// A page that was away long enough to miss hundreds of changes gets every one of them on
/// reconnect, in order (catch-up used to stop at 500).
#[tokio::test]
async fn catch_up_after_a_long_disconnect_delivers_every_change() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let card = alice.add_card().await;
    let customer: String = sqlx::query_scalar("SELECT customer_id FROM cards WHERE id = $1")
        .bind(&card)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let from: i64 = app.count("SELECT MAX(seq) FROM card_changes").await;
    for _ in 0..600 {
        sqlx::query(
            "INSERT INTO card_changes (customer_id, card_id, announcement, created_at) VALUES ($1, $2, '', 0)",
        )
        .bind(&customer)
        .bind(&card)
        .execute(&app.pool)
        .await
        .unwrap();
    }
    let ids = read_card_ids(&app, &alice, Some(from), 600).await;
    assert_eq!(ids.len(), 600);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(*ids.last().unwrap(), from + 600);
}

/// Reads a stream until the server ends it; `None` if it is still open at the deadline.
async fn ends_within(mut response: reqwest::Response, limit: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout_at(started + limit, response.chunk()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(_) => return Some(started.elapsed()),
            Err(_) => return None,
        }
    }
}

/// Signing out (here from another tab of the same browser) ends the open live stream: a page
/// left open must not keep receiving card changes for a signed-out session.
#[tokio::test]
async fn the_stream_ends_when_its_session_signs_out() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let response = alice.open_stream().await;
    assert_eq!(response.status(), 200);
    let (status, body) = alice.call("sign_out", &[]).await;
    assert!(
        status.is_success() || status.is_redirection(),
        "{status} {body}"
    );
    let ended = ends_within(response, Duration::from_secs(10)).await;
    assert!(ended.is_some(), "the stream outlived its session");
    eprintln!("stream ended {:?} after sign-out", ended.unwrap());
}

/// Sessions are checked for all streams at once: a sign-out ends every stream of that session
/// and no other customer's.
#[tokio::test]
async fn a_sign_out_ends_that_sessions_streams_and_no_others() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    let alices = [alice.open_stream().await, alice.open_stream().await];
    let bobs = [bob.open_stream().await, bob.open_stream().await];
    for response in alices.iter().chain(&bobs) {
        assert_eq!(response.status(), 200);
    }
    let (status, body) = alice.call("sign_out", &[]).await;
    assert!(
        status.is_success() || status.is_redirection(),
        "{status} {body}"
    );
    let ended = futures::future::join_all(
        alices.map(|response| ends_within(response, Duration::from_secs(10))),
    )
    .await;
    assert!(ended.iter().all(Option::is_some), "{ended:?}");
    // Two more checks' worth of time: Bob's streams stay open.
    let kept = futures::future::join_all(
        bobs.map(|response| ends_within(response, server::live::SESSION_CHECK * 2)),
    )
    .await;
    assert!(kept.iter().all(Option::is_none), "{kept:?}");
}

/// One customer holds a bounded number of streams; one more is refused until one closes.
#[tokio::test]
async fn a_customer_gets_a_bounded_number_of_streams() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let mut streams = Vec::new();
    for _ in 0..server::live::MAX_STREAMS_PER_CUSTOMER {
        let response = alice.open_stream().await;
        assert_eq!(response.status(), 200);
        streams.push(response);
    }
    let refused = alice.open_stream().await;
    assert_eq!(refused.status(), 429);
    // Bob is not affected by Alice's tabs.
    let bob = app.customer("bob").await;
    assert_eq!(bob.open_stream().await.status(), 200);
    drop(streams.pop());
    eventually(
        Duration::from_secs(5),
        "a closed stream's slot given back",
        || async {
            let response = alice.open_stream().await;
            (response.status() == 200).then_some(response)
        },
    )
    .await;
}
