//! The card lifecycle's guarded transitions, against a real SQLite database.
#![cfg(feature = "ssr")]

use app::backend::store::{CardId, CustomerId, EventOutcome, Store};
use chrono::Utc;
use jetpay::{test_util, wire::Event};
use serde_json::json;

/// The Jetpay contacts of customers c1 and c2.
const C1_CONTACT: &str = "0b6f1a52-6a43-4bb3-9c51-2f4dd1f0a001";
const C2_CONTACT: &str = "0b6f1a52-6a43-4bb3-9c51-2f4dd1f0a002";

async fn store() -> (Store, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = app::backend::store::connect(&format!("sqlite://{}/t.db", dir.path().display()))
        .await
        .unwrap();
    store
        .insert_customer(&cu("c1"), "c1@example.com", "C One", "x")
        .await
        .unwrap();
    store
        .insert_customer(&cu("c2"), "c2@example.com", "C Two", "x")
        .await
        .unwrap();
    for (customer, contact) in [("c1", C1_CONTACT), ("c2", C2_CONTACT)] {
        store
            .set_contact_id_if_missing(&cu(customer), contact)
            .await
            .unwrap();
    }
    (store, dir)
}

fn cu(id: &str) -> CustomerId {
    CustomerId::new(id)
}

fn ca(id: &str) -> CardId {
    CardId::new(id)
}

/// A tokenization result for one of c1's cards, as Jetpay sends it (with c1's contact).
fn tokenized(id: i64, jetpay_card: &str, state: &str) -> Event {
    test_util::tokenized(id, C1_CONTACT, jetpay_card, state)
}

async fn state(store: &Store, card: &str) -> String {
    store
        .card_state(&ca(card))
        .await
        .unwrap()
        .expect("card stored")
        .as_str()
        .to_owned()
}

async fn add(store: &Store, customer: &str, card: &str) {
    store
        .insert_pending_card(
            &cu(customer),
            &ca(card),
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
        store
            .event_outcome(2)
            .await
            .unwrap()
            .map(EventOutcome::as_str),
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
        default(store.list_cards(&cu("c1"), 0, 1).await.unwrap()).as_deref(),
        Some("a")
    );
    store.remove_card(&cu("c1"), &ca("a")).await.unwrap();
    assert_eq!(
        default(store.list_cards(&cu("c1"), 0, 1).await.unwrap()).as_deref(),
        Some("c")
    );
    store.make_default(&cu("c1"), &ca("b")).await.unwrap();
    assert_eq!(
        default(store.list_cards(&cu("c1"), 0, 1).await.unwrap()).as_deref(),
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
    assert!(store.remove_card(&cu("c2"), &ca("a")).await.is_err());
    assert!(store.make_default(&cu("c2"), &ca("a")).await.is_err());
    assert!(store
        .card(&cu("c2"), &ca("a"), 0, 1)
        .await
        .unwrap()
        .is_none());
    assert!(store.list_cards(&cu("c2"), 0, 1).await.unwrap().is_empty());
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
async fn event_ids_are_read_forward_from_a_position() {
    let (store, _dir) = store().await;
    assert_eq!(store.oldest_event_id().await.unwrap(), None);
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
    assert_eq!(store.oldest_event_id().await.unwrap(), Some(5));
    assert_eq!(store.event_ids_after(4, 10).await.unwrap(), vec![5, 6, 9]);
    assert_eq!(store.event_ids_after(5, 1).await.unwrap(), vec![6]);
    assert!(store.given_up_gaps().await.unwrap().is_empty());
    store.give_up_gap(7, 5).await.unwrap();
    store.give_up_gap(7, 5).await.unwrap();
    assert_eq!(store.given_up_gaps().await.unwrap(), vec![7]);
}

#[tokio::test]
async fn an_event_for_another_contact_is_refused_and_changes_nothing() {
    let (store, _dir) = store().await;
    add(&store, "c1", "a").await;
    // Jetpay's card id is c1's, but the event says the card belongs to c2's contact.
    let (outcomes, changes) = store
        .apply_events(&[test_util::tokenized(1, C2_CONTACT, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(1, EventOutcome::Refused)]);
    assert!(changes.is_empty());
    assert_eq!(state(&store, "a").await, "pending");
    // A customer without a contact cannot have a card activated either.
    store
        .insert_customer(&cu("c3"), "c3@example.com", "C Three", "x")
        .await
        .unwrap();
    add(&store, "c3", "b").await;
    let (outcomes, _) = store
        .apply_events(&[test_util::tokenized(2, C2_CONTACT, "jp-b", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(2, EventOutcome::Refused)]);
    assert_eq!(state(&store, "b").await, "pending");
    // The genuine result still applies afterwards (a different event id).
    store
        .apply_events(&[tokenized(3, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert_eq!(state(&store, "a").await, "active");
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
        .insert_pending_card(
            &cu("c1"),
            &ca("early"),
            "jp-early",
            "http://jetpay/form",
            None,
        )
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

/// A garbled copy of an event (recorded as malformed) must not make the intact event with the
/// same id a duplicate; a duplicate of an intact event stays a duplicate.
#[tokio::test]
async fn a_malformed_copy_does_not_poison_the_intact_event() {
    let (store, _dir) = store().await;
    add(&store, "c1", "a").await;
    let mut garbled = tokenized(5, "jp-a", "succeeded");
    garbled.data = json!({"creditCardId": "jp-a"});
    let (outcomes, _) = store.apply_events(&[garbled]).await.unwrap();
    assert_eq!(outcomes, vec![(5, EventOutcome::Malformed)]);
    assert_eq!(state(&store, "a").await, "pending");
    let (outcomes, _) = store
        .apply_events(&[tokenized(5, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(5, EventOutcome::Applied)]);
    assert_eq!(state(&store, "a").await, "active");
    assert_eq!(
        store
            .event_outcome(5)
            .await
            .unwrap()
            .map(EventOutcome::as_str),
        Some("applied")
    );
    let (outcomes, changes) = store
        .apply_events(&[tokenized(5, "jp-a", "succeeded")])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![(5, EventOutcome::Duplicate)]);
    assert!(changes.is_empty());
}
