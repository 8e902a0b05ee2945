//! Card operations through the server functions, as a page without WASM would call them.

mod common;

use common::spawn_app;

#[tokio::test]
async fn one_customer_cannot_read_remove_or_default_another_customers_card() {
    let app = spawn_app().await;
    let alice = app.customer("alice").await;
    let bob = app.customer("bob").await;
    let card = alice.add_card().await;
    app.submit_card(&alice.form_url(&card).await, "4242424242424242")
        .await;
    app.wait_for_state(&card, "active").await;

    assert!(bob.cards().await["cards"].as_array().unwrap().is_empty());
    let (status, body) = bob.call("remove_card", &[("card_id", &card)]).await;
    assert!(!status.is_success(), "{status} {body}");
    assert!(body.contains("isn't in your saved cards"), "{body}");
    let (status, _) = bob.call("make_default_card", &[("card_id", &card)]).await;
    assert!(!status.is_success());

    let cards = alice.cards().await;
    assert_eq!(cards["cards"][0]["id"], card.as_str());
    assert_eq!(cards["cards"][0]["state"], "active");
    assert_eq!(cards["cards"][0]["is_default"], true);
    assert_eq!(app.card_state(&card).await, "active");
}

#[tokio::test]
async fn signed_out_callers_cannot_add_or_list_cards() {
    let app = spawn_app().await;
    let stranger = common::client();
    let response = stranger
        .post(app.url("/api/add_card"))
        .form(&[("x", "")])
        .send()
        .await
        .unwrap();
    assert!(!response.status().is_success());
    assert!(response.text().await.unwrap().contains("Please sign in"));
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 0);
}

#[tokio::test]
async fn a_customer_cannot_pile_up_pending_cards() {
    let app = spawn_app().await;
    let carol = app.customer("carol").await;
    for _ in 0..3 {
        carol.add_card().await;
    }
    let (status, body) = carol.call("add_card", &[]).await;
    assert!(!status.is_success());
    assert!(body.contains("3 cards being verified"), "{body}");
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 3);
    // Exactly one Jetpay contact for the customer, however many cards.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM customers WHERE jetpay_contact_id IS NOT NULL")
            .await,
        1
    );
}

#[tokio::test]
async fn concurrent_first_adds_create_exactly_one_jetpay_contact() {
    let app = spawn_app().await;
    let dan = app.customer("dan").await;
    let (a, b, c) = tokio::join!(dan.add_card(), dan.add_card(), dan.add_card());
    assert_ne!(a, b);
    assert_ne!(b, c);
    let contact: String =
        sqlx::query_scalar("SELECT jetpay_contact_id FROM customers WHERE email = $1")
            .bind(&dan.email)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert!(uuid::Uuid::parse_str(&contact).is_ok(), "{contact}");
    assert_eq!(app.count("SELECT COUNT(*) FROM cards").await, 3);
}

#[tokio::test]
async fn cross_origin_server_function_posts_are_refused() {
    let app = spawn_app().await;
    let response = common::client()
        .post(app.url("/api/sign_in"))
        .header("origin", "https://evil.example")
        .form(&[("email", "demo@example.com"), ("password", "demo-password")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}
