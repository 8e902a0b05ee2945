//! The card lifecycle's guarded transitions, against a real SQLite database.
#![cfg(feature = "ssr")]

use app::backend::store::{EventOutcome, Store};
use chrono::Utc;
use jetpay::wire::Event;
use serde_json::json;

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    store
        .insert_customer("c1", "c1@example.com", "C One", "x")
        .await
        .unwrap();
    store
        .insert_customer("c2", "c2@example.com", "C Two", "x")
        .await
        .unwrap();
    (store, dir)
}

fn tokenized(id: i64, jetpay_card: &str, state: &str) -> Event {
    let mut data = json!({"creditCardId": jetpay_card, "contactId": uuid::Uuid::new_v4(), "state": state,
                          "brand": "visa", "last4": "4242", "expMonth": 12, "expYear": 2034});
    if state == "failed" {
        data["failureReason"] = json!("card_declined");
    }
    Event {
        id,
        created_at: Utc::now(),
        event_type: jetpay::unspecified::CARD_TOKENIZED_EVENT.into(),
        data,
    }
}

async fn state(store: &Store, card: &str) -> String {
    sqlx::query_scalar("SELECT state FROM cards WHERE id = $1")
        .bind(card)
        .fetch_one(store.pool())
        .await
        .unwrap()
}

async fn add(store: &Store, customer: &str, card: &str) {
    store
        .insert_pending_card(
            customer,
            card,
            &format!("jp-{card}"),
            "http://jetpay/form",
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failure_after_success_is_ignored_and_recorded() {
    let (store, _dir) = store().await;
    add(&store, "c1", "a").await;
    let (outcomes, changes) = store
        .apply_events(&[tokenized(1, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(1, EventOutcome::Applied)]);
    assert_eq!(changes.len(), 1);
    let (outcomes, changes) = store
        .apply_events(&[tokenized(2, "jp-a", "failed")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(2, EventOutcome::Ignored)]);
    assert!(changes.is_empty());
    assert_eq!(state(&store, "a").await, "active");
    assert_eq!(
        store.event_outcome(2).await.unwrap().as_deref(),
        Some("ignored")
    );
}

#[tokio::test]
async fn a_success_after_expiry_activates_the_card() {
    let (store, _dir) = store().await;
    add(&store, "c1", "a").await;
    let expired = store.expire_stale(i64::MAX).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(state(&store, "a").await, "expired");
    store
        .apply_events(&[tokenized(7, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert_eq!(state(&store, "a").await, "active");
}

#[tokio::test]
async fn duplicates_in_and_across_batches_apply_once() {
    let (store, _dir) = store().await;
    add(&store, "c1", "a").await;
    let batch = [
        tokenized(3, "jp-a", "succeeded"),
        tokenized(3, "jp-a", "succeeded"),
    ];
    let (outcomes, changes) = store.apply_events(&batch).await.unwrap();
    assert_eq!(
        outcomes,
        vec![(3, EventOutcome::Applied), (3, EventOutcome::Duplicate)]
    );
    assert_eq!(changes.len(), 1);
    let (outcomes, changes) = store.apply_events(&batch[..1]).await.unwrap();
    assert_eq!(outcomes, vec![(3, EventOutcome::Duplicate)]);
    assert!(changes.is_empty());
}

#[tokio::test]
async fn first_active_card_is_default_and_removing_it_promotes_the_newest_other() {
    let (store, _dir) = store().await;
    for card in ["a", "b", "c"] {
        add(&store, "c1", card).await;
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    store
        .apply_events(&[
            tokenized(1, "jp-a", "succeeded"),
            tokenized(2, "jp-b", "succeeded"),
            tokenized(3, "jp-c", "succeeded"),
        ])
        .await
        .unwrap();
    let default =
        |cards: Vec<app::model::CardView>| cards.into_iter().find(|c| c.is_default).map(|c| c.id);
    assert_eq!(
        default(store.list_cards("c1", 0, 1).await.unwrap()).as_deref(),
        Some("a")
    );
    store.remove_card("c1", "a").await.unwrap();
    assert_eq!(
        default(store.list_cards("c1", 0, 1).await.unwrap()).as_deref(),
        Some("c")
    );
    store.make_default("c1", "b").await.unwrap();
    assert_eq!(
        default(store.list_cards("c1", 0, 1).await.unwrap()).as_deref(),
        Some("b")
    );
}

#[tokio::test]
async fn owner_checks_on_every_card_operation() {
    let (store, _dir) = store().await;
    add(&store, "c1", "a").await;
    store
        .apply_events(&[tokenized(1, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert!(store.remove_card("c2", "a").await.is_err());
    assert!(store.make_default("c2", "a").await.is_err());
    assert!(store.card("c2", "a", 0, 1).await.unwrap().is_none());
    assert!(store.list_cards("c2", 0, 1).await.unwrap().is_empty());
    assert_eq!(state(&store, "a").await, "active");
}

#[tokio::test]
async fn unknown_types_and_unknown_cards_are_recorded() {
    let (store, _dir) = store().await;
    let unknown_type = Event {
        id: 1,
        created_at: Utc::now(),
        event_type: "transactions.credits.created".into(),
        data: json!({"state": "requested"}),
    };
    let (outcomes, _) = store
        .apply_events(&[unknown_type, tokenized(2, "jp-nobody", "succeeded")])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            (1, EventOutcome::UnknownType),
            (2, EventOutcome::UnknownCard)
        ]
    );
}

#[tokio::test]
async fn gaps_in_event_ids_are_found() {
    let (store, _dir) = store().await;
    assert_eq!(store.first_missing_event_id().await.unwrap(), None);
    let unknown = |id| Event {
        id,
        created_at: Utc::now(),
        event_type: "x".into(),
        data: json!({}),
    };
    store
        .apply_events(&[unknown(5), unknown(6), unknown(9)])
        .await
        .unwrap();
    assert_eq!(store.first_missing_event_id().await.unwrap(), Some(7));
    store.apply_events(&[unknown(7), unknown(8)]).await.unwrap();
    assert_eq!(store.first_missing_event_id().await.unwrap(), None);
}

#[tokio::test]
async fn a_result_that_arrives_before_the_pending_row_is_applied_when_the_row_is_written() {
    let (store, _dir) = store().await;
    let (outcomes, _) = store
        .apply_events(&[tokenized(1, "jp-early", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(1, EventOutcome::UnknownCard)]);
    let changes = store
        .insert_pending_card("c1", "early", "jp-early", "http://jetpay/form", None)
        .await
        .unwrap();
    assert_eq!(state(&store, "early").await, "active");
    assert_eq!(changes.len(), 2, "added, then activated");
    // A later duplicate of that event changes nothing.
    let (outcomes, changes) = store
        .apply_events(&[tokenized(1, "jp-early", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(1, EventOutcome::Duplicate)]);
    assert!(changes.is_empty());
}
