//! Jetpay's events: record each id once and apply a batch with a fixed number of statements.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use jetpay::wire::{CardTokenized, Event, EventKind, TokenizationState};
use sqlx::QueryBuilder;

use super::{changes::NewChange, classify, Db, Handle, Tx};
use crate::backend::now_ms;
use crate::backend::store::{
    CardId, Change, CustomerId, EventOutcome, Events, Result, StoreError, StoredState,
};
use crate::model::{CardState, ChangeKind};

/// Rows per multi-row statement: far below both databases' limits on bound parameters (SQLite
/// 32,766; PostgreSQL 65,535) at up to 8 parameters a row.
const ROWS_PER_STATEMENT: usize = 1000;

#[async_trait]
impl Events for Handle {
    async fn apply_events(
        &self,
        events: &[Event],
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<Change>)> {
        let mut tx = self.begin_write().await?;
        let now = now_ms();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut changes = Vec::new();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let (chunk_outcomes, chunk_changes) = self.apply_chunk(&mut tx, chunk, now).await?;
            outcomes.extend(chunk_outcomes);
            changes.extend(chunk_changes);
        }
        tx.commit().await.map_err(classify)?;
        Ok((outcomes, changes))
    }

    async fn event_ids_after(&self, after: i64, limit: i64) -> Result<Vec<i64>> {
        sqlx::query_scalar(
            "SELECT event_id FROM jetpay_events WHERE event_id > $1 ORDER BY event_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)
    }

    async fn oldest_event_id(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MIN(event_id) FROM jetpay_events")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn newest_event_id(&self) -> Result<Option<i64>> {
        sqlx::query_scalar("SELECT MAX(event_id) FROM jetpay_events")
            .fetch_one(&self.pool)
            .await
            .map_err(classify)
    }

    async fn event_outcome(&self, event_id: i64) -> Result<Option<EventOutcome>> {
        let code: Option<String> =
            sqlx::query_scalar("SELECT outcome FROM jetpay_events WHERE event_id = $1")
                .bind(event_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(classify)?;
        Ok(code.as_deref().and_then(EventOutcome::parse))
    }

    async fn given_up_gaps(&self) -> Result<Vec<i64>> {
        sqlx::query_scalar("SELECT event_id FROM event_gaps ORDER BY event_id")
            .fetch_all(&self.pool)
            .await
            .map_err(classify)
    }

    async fn give_up_gap(&self, event_id: i64, replays: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO event_gaps (event_id, replays, given_up_at) VALUES ($1, $2, $3) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event_id)
        .bind(i64::from(replays))
        .bind(now_ms())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }
}

/// A tokenization result about to move a card, decided from the card as this batch left it.
struct Transition {
    event_id: i64,
    card_id: CardId,
    customer_id: CustomerId,
    state: &'static str,
    failure_reason: Option<String>,
    result: CardTokenized,
}

/// A card a batch's results name, as the batch found it.
struct Target {
    card_id: CardId,
    customer_id: CustomerId,
    state: StoredState,
    contact_id: Option<String>,
    has_default: bool,
}

impl Handle {
    /// Applies up to [`ROWS_PER_STATEMENT`] events with a fixed number of statements: claim the
    /// ids, read the cards they name, move them, log the changes, keep early results, and
    /// correct the outcomes recorded provisionally.
    async fn apply_chunk(
        &self,
        tx: &mut Tx<'_>,
        events: &[Event],
        now: i64,
    ) -> Result<(Vec<(i64, EventOutcome)>, Vec<Change>)> {
        let kinds: Vec<EventKind> = events.iter().map(Event::kind).collect();
        let provisional = |kind: &EventKind| match kind {
            EventKind::CardTokenized(_) => EventOutcome::Applied,
            EventKind::Unknown { .. } => EventOutcome::UnknownType,
            EventKind::Malformed { .. } => EventOutcome::Malformed,
        };
        // One representative per id: its first intact copy, else its first copy. Any other copy
        // in the batch is a duplicate.
        let mut representative: HashMap<i64, usize> = HashMap::new();
        for (i, (event, kind)) in events.iter().zip(&kinds).enumerate() {
            let intact = !matches!(kind, EventKind::Malformed { .. });
            representative
                .entry(event.id)
                .and_modify(|chosen| {
                    if intact && matches!(kinds[*chosen], EventKind::Malformed { .. }) {
                        *chosen = i;
                    }
                })
                .or_insert(i);
        }
        let mut chosen: Vec<usize> = representative.values().copied().collect();
        chosen.sort_unstable();

        // Claim: an id is ours to apply when it is new, or when only a garbled copy of it was
        // recorded before (a well-formed event replaces a `malformed` record, so a garbled copy
        // cannot make the real event a duplicate). Concurrent claims of one id on PostgreSQL wait
        // for each other; one wins.
        let mut query = QueryBuilder::<Db>::new(
            "INSERT INTO jetpay_events (event_id, event_type, outcome, received_at) ",
        );
        query.push_values(&chosen, |mut row, &i| {
            row.push_bind(events[i].id)
                .push_bind(&events[i].event_type)
                .push_bind(provisional(&kinds[i]).as_str())
                .push_bind(now);
        });
        query.push(
            " ON CONFLICT (event_id) DO UPDATE SET event_type = excluded.event_type, \
             outcome = excluded.outcome, received_at = excluded.received_at \
             WHERE jetpay_events.outcome = 'malformed' AND excluded.outcome <> 'malformed' \
             RETURNING event_id",
        );
        let claimed: HashSet<i64> = query
            .build_query_scalar::<i64>()
            .fetch_all(&mut **tx)
            .await
            .map_err(classify)?
            .into_iter()
            .collect();

        let results: Vec<(i64, CardTokenized)> = chosen
            .iter()
            .filter(|&&i| claimed.contains(&events[i].id))
            .filter_map(|&i| match &kinds[i] {
                EventKind::CardTokenized(data) => Some((events[i].id, data.clone())),
                _ => None,
            })
            .collect();
        let (applied, changes) = self.apply_results(tx, &results, now).await?;

        let corrected: Vec<(i64, EventOutcome)> = applied
            .iter()
            .filter(|(_, outcome)| **outcome != EventOutcome::Applied)
            .map(|(id, outcome)| (*id, *outcome))
            .collect();
        set_outcomes(tx, &corrected).await?;

        let outcomes = events
            .iter()
            .zip(&kinds)
            .enumerate()
            .map(|(i, (event, kind))| {
                let outcome = if representative[&event.id] != i || !claimed.contains(&event.id) {
                    EventOutcome::Duplicate
                } else {
                    applied
                        .get(&event.id)
                        .copied()
                        .unwrap_or_else(|| provisional(kind))
                };
                (event.id, outcome)
            })
            .collect();
        Ok((outcomes, changes))
    }

    /// Applies tokenization results, in order. Success moves `pending` or `expired` to `active`
    /// (Jetpay's word is final); failure moves them to `failed`. Anything else (a failure after
    /// success, anything on a removed card) is ignored. Only the card owner's contact may speak
    /// for a card. A result for a card we don't know (yet) is kept for its pending row.
    async fn apply_results(
        &self,
        tx: &mut Tx<'_>,
        results: &[(i64, CardTokenized)],
        now: i64,
    ) -> Result<(HashMap<i64, EventOutcome>, Vec<Change>)> {
        let mut outcomes = HashMap::new();
        if results.is_empty() {
            return Ok((outcomes, Vec::new()));
        }
        let mut targets = load_targets(tx, results).await?;
        let mut transitions = Vec::new();
        let mut early: Vec<&(i64, CardTokenized)> = Vec::new();
        for item @ (event_id, data) in results {
            let outcome = match targets.get_mut(&data.credit_card_id) {
                None => {
                    if !early
                        .iter()
                        .any(|(_, e)| e.credit_card_id == data.credit_card_id)
                    {
                        early.push(item);
                    }
                    EventOutcome::UnknownCard
                }
                Some(target)
                    if target
                        .contact_id
                        .as_deref()
                        .and_then(|c| uuid::Uuid::parse_str(c).ok())
                        != Some(data.contact_id) =>
                {
                    // Jetpay's card ids are its own; only the owner's contact may speak for the
                    // card.
                    tracing::warn!(card = %target.card_id, "tokenization event for another contact refused");
                    EventOutcome::Refused
                }
                Some(target) if target.state.awaits_result() => {
                    let (state, failure_reason) = match data.state {
                        TokenizationState::Succeeded => (CardState::Active, None),
                        TokenizationState::Failed => (
                            CardState::Failed,
                            Some(
                                data.failure_reason
                                    .clone()
                                    .unwrap_or_else(|| "unknown".into()),
                            ),
                        ),
                    };
                    target.state = StoredState::Shown(state);
                    transitions.push(Transition {
                        event_id: *event_id,
                        card_id: target.card_id.clone(),
                        customer_id: target.customer_id.clone(),
                        state: StoredState::Shown(state).as_str(),
                        failure_reason,
                        result: data.clone(),
                    });
                    EventOutcome::Applied
                }
                Some(_) => EventOutcome::Ignored,
            };
            outcomes.insert(*event_id, outcome);
        }

        let moved = move_cards(tx, &transitions, now).await?;
        let mut logged = Vec::new();
        let mut promote = Vec::new();
        for t in &transitions {
            if !moved.contains(&t.card_id) {
                // Another instance moved the card first (between our read and our update).
                outcomes.insert(t.event_id, EventOutcome::Ignored);
                continue;
            }
            let kind = match t.result.state {
                TokenizationState::Succeeded => {
                    // The customer's first active card becomes the default.
                    let target = &targets[&t.result.credit_card_id];
                    if !target.has_default && !promote.iter().any(|(c, _)| c == &t.customer_id) {
                        promote.push((t.customer_id.clone(), t.card_id.clone()));
                    }
                    ChangeKind::Activated
                }
                TokenizationState::Failed => ChangeKind::Failed(t.failure_reason.clone()),
            };
            logged.push(NewChange {
                customer_id: t.customer_id.clone(),
                card_id: t.card_id.clone(),
                kind,
                event_id: Some(t.event_id),
            });
        }
        make_first_defaults(tx, &promote).await?;
        keep_early_results(tx, &early, now).await?;
        let changes = self.record_changes(tx, logged).await?;
        Ok((outcomes, changes))
    }

    /// Applies a result that arrived before this card's row existed (see `early_results`).
    pub(super) async fn apply_early_result(
        &self,
        tx: &mut Tx<'_>,
        jetpay_card_id: &str,
        now: i64,
    ) -> Result<Vec<Change>> {
        let early: Option<(String, Option<i64>)> = sqlx::query_as(
            "DELETE FROM early_results WHERE jetpay_card_id = $1 RETURNING data, event_id",
        )
        .bind(jetpay_card_id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(classify)?;
        let Some((early, event_id)) = early else {
            return Ok(Vec::new());
        };
        match serde_json::from_str::<CardTokenized>(&early) {
            Ok(data) => {
                let event_id = event_id.unwrap_or_default();
                let (outcomes, changes) = self.apply_results(tx, &[(event_id, data)], now).await?;
                // The event was recorded as for an unknown card; now we know what became of it.
                let outcomes: Vec<(i64, EventOutcome)> = outcomes.into_iter().collect();
                set_outcomes(tx, &outcomes).await?;
                Ok(changes)
            }
            Err(e) => {
                tracing::warn!(error = %e, "stored early result did not parse");
                Ok(Vec::new())
            }
        }
    }
}

/// The cards `results` name, with their owner's contact and whether the owner has a default.
async fn load_targets(
    tx: &mut Tx<'_>,
    results: &[(i64, CardTokenized)],
) -> Result<HashMap<String, Target>> {
    let mut query = QueryBuilder::<Db>::new(
        "SELECT c.id, c.customer_id, c.jetpay_card_id, c.state, cu.jetpay_contact_id, \
         EXISTS (SELECT 1 FROM cards d WHERE d.customer_id = c.customer_id AND d.is_default) \
         FROM cards c JOIN customers cu ON cu.id = c.customer_id WHERE c.jetpay_card_id IN (",
    );
    let mut ids = query.separated(", ");
    let mut seen = HashSet::new();
    for (_, data) in results {
        if seen.insert(&data.credit_card_id) {
            ids.push_bind(&data.credit_card_id);
        }
    }
    query.push(")");
    let rows: Vec<(String, String, String, String, Option<String>, bool)> = query
        .build_query_as()
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?;
    Ok(rows
        .into_iter()
        .map(
            |(card_id, customer_id, jetpay_card_id, state, contact_id, has_default)| {
                let target = Target {
                    card_id: CardId::new(card_id),
                    customer_id: CustomerId::new(customer_id),
                    state: StoredState::parse(&state).unwrap_or(StoredState::Removed),
                    contact_id,
                    has_default,
                };
                (jetpay_card_id, target)
            },
        )
        .collect())
}

/// Moves every card in one guarded statement; returns the ids it moved (a card another
/// transaction moved first fails the guard and is not among them).
async fn move_cards(
    tx: &mut Tx<'_>,
    transitions: &[Transition],
    now: i64,
) -> Result<HashSet<CardId>> {
    if transitions.is_empty() {
        return Ok(HashSet::new());
    }
    let mut query = QueryBuilder::<Db>::new(
        "WITH v (id, state, failure_reason, brand, last4, exp_month, exp_year) AS (",
    );
    query.push_values(transitions, |mut row, t| {
        row.push_bind(t.card_id.as_str())
            .push_bind(t.state)
            .push_bind(&t.failure_reason)
            .push_bind(&t.result.brand)
            .push_bind(&t.result.last4)
            .push_bind(t.result.exp_month.map(i64::from))
            .push_bind(t.result.exp_year.map(i64::from));
    });
    query.push(
        ") UPDATE cards SET state = v.state, failure_reason = v.failure_reason, brand = v.brand, \
         last4 = v.last4, exp_month = v.exp_month, exp_year = v.exp_year, form_url = NULL, \
         updated_at = ",
    );
    query.push_bind(now);
    // The ids again, as a list: PostgreSQL then finds the rows by primary key. Joined to the
    // values alone it read the whole table and hashed it for every batch (P2 in BENCHMARKS.md).
    query.push(" FROM v WHERE cards.id = v.id AND cards.id IN (");
    let mut ids = query.separated(", ");
    for t in transitions {
        ids.push_bind(t.card_id.as_str());
    }
    query.push(") AND cards.state IN ('pending', 'expired') RETURNING cards.id");
    Ok(query
        .build_query_scalar::<String>()
        .fetch_all(&mut **tx)
        .await
        .map_err(classify)?
        .into_iter()
        .map(CardId::new)
        .collect())
}

/// Makes each named card its customer's default, unless the customer has one (at most one card
/// per customer is named).
async fn make_first_defaults(tx: &mut Tx<'_>, promote: &[(CustomerId, CardId)]) -> Result<()> {
    if promote.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new("UPDATE cards SET is_default = TRUE WHERE id IN (");
    let mut ids = query.separated(", ");
    for (_, card_id) in promote {
        ids.push_bind(card_id.as_str());
    }
    query.push(
        ") AND NOT EXISTS (SELECT 1 FROM cards c WHERE c.customer_id = cards.customer_id AND c.is_default)",
    );
    query.build().execute(&mut **tx).await.map_err(classify)?;
    Ok(())
}

/// Keeps results for cards we don't know (yet), so that a pending row written after them picks
/// them up. The first result for a card wins, as with applied results.
async fn keep_early_results(
    tx: &mut Tx<'_>,
    early: &[&(i64, CardTokenized)],
    now: i64,
) -> Result<()> {
    if early.is_empty() {
        return Ok(());
    }
    let mut rows = Vec::with_capacity(early.len());
    for (event_id, data) in early {
        let json = serde_json::to_string(data)
            .map_err(|e| StoreError::Database(sqlx::Error::Encode(e.into())))?;
        rows.push((*event_id, &data.credit_card_id, json));
    }
    let mut query = QueryBuilder::<Db>::new(
        "INSERT INTO early_results (jetpay_card_id, data, received_at, event_id) ",
    );
    query.push_values(&rows, |mut row, (event_id, card, json)| {
        row.push_bind(*card)
            .push_bind(json)
            .push_bind(now)
            .push_bind(*event_id);
    });
    query.push(" ON CONFLICT (jetpay_card_id) DO NOTHING");
    query.build().execute(&mut **tx).await.map_err(classify)?;
    Ok(())
}

/// Records final outcomes for events recorded with a provisional one.
async fn set_outcomes(tx: &mut Tx<'_>, outcomes: &[(i64, EventOutcome)]) -> Result<()> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Db>::new("WITH v (event_id, outcome) AS (");
    query.push_values(outcomes, |mut row, (id, outcome)| {
        row.push_bind(*id).push_bind(outcome.as_str());
    });
    query.push(
        ") UPDATE jetpay_events SET outcome = v.outcome FROM v WHERE jetpay_events.event_id = v.event_id",
    );
    query.build().execute(&mut **tx).await.map_err(classify)?;
    Ok(())
}
