//! The log of card changes per customer: what live pages follow and resume from.

use async_trait::async_trait;
use sqlx::QueryBuilder;

use super::{classify, Db, Handle, Tx};
use crate::backend::now_ms;
use crate::backend::store::{CardId, Change, ChangeLog, CustomerId, Result};
use crate::model::ChangeKind;

#[async_trait]
impl ChangeLog for Handle {
    async fn changes_since(
        &self,
        customer_id: &CustomerId,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<Change>> {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT seq, card_id, announcement FROM card_changes WHERE customer_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(customer_id.as_str())
        .bind(seq)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(classify)?;
        Ok(rows
            .into_iter()
            .map(|(seq, card_id, announcement)| Change {
                seq,
                customer_id: customer_id.clone(),
                card_id: CardId::new(card_id),
                announcement,
            })
            .collect())
    }

    async fn latest_change(&self, customer_id: &CustomerId) -> Result<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT MAX(seq) FROM card_changes WHERE customer_id = $1")
                .bind(customer_id.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(classify)?;
        Ok(seq.unwrap_or(0))
    }
}

/// A change to append to the log. `event_id` names the Jetpay event that caused it, if one did.
pub(super) struct NewChange {
    pub(super) customer_id: CustomerId,
    pub(super) card_id: CardId,
    pub(super) kind: ChangeKind,
    pub(super) event_id: Option<i64>,
}

impl NewChange {
    /// A change the customer (or time) made, not a Jetpay event.
    pub(super) fn by_customer(
        customer_id: &CustomerId,
        card_id: &CardId,
        kind: ChangeKind,
    ) -> Self {
        Self {
            customer_id: customer_id.clone(),
            card_id: card_id.clone(),
            kind,
            event_id: None,
        }
    }
}

impl Handle {
    /// Appends changes to the log in one statement (in order: their seqs ascend as given). On
    /// PostgreSQL the same statement announces them to the other instances (a trigger).
    pub(super) async fn record_changes(
        &self,
        tx: &mut Tx<'_>,
        logged: Vec<NewChange>,
    ) -> Result<Vec<Change>> {
        if logged.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut query = QueryBuilder::<Db>::new(
            "INSERT INTO card_changes (customer_id, card_id, announcement, created_at, event_id) ",
        );
        query.push_values(&logged, |mut row, change| {
            row.push_bind(change.customer_id.as_str())
                .push_bind(change.card_id.as_str())
                .push_bind(change.kind.code())
                .push_bind(now)
                .push_bind(change.event_id);
        });
        query.push(" RETURNING seq, customer_id, card_id, announcement");
        let rows: Vec<(i64, String, String, String)> = query
            .build_query_as()
            .fetch_all(&mut **tx)
            .await
            .map_err(classify)?;
        let mut changes: Vec<Change> = rows
            .into_iter()
            .map(|(seq, customer_id, card_id, announcement)| Change {
                seq,
                customer_id: CustomerId::new(customer_id),
                card_id: CardId::new(card_id),
                announcement,
            })
            .collect();
        changes.sort_by_key(|c| c.seq);
        Ok(changes)
    }
}
