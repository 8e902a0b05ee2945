//! The card lifecycle as the customer drives it: add, list, make default, remove; and as Jetpay
//! drives it: apply a verified batch of events; and as time drives it: expire stale pending cards.

use jetpay::wire::{Event, NewContact};

use super::{
    limits::Action, now_ms, store::Change, store::EventOutcome, AppError, Backend, CardId,
    CustomerId,
};
use crate::model::CardView;
use crate::session::ClientIp;

/// What Add card gives the page: the new pending card's id and Jetpay's form to frame.
#[derive(Debug, Clone)]
pub struct AddedCard {
    pub card_id: CardId,
    pub form_url: String,
}

impl Backend {
    fn url_ttl_ms(&self) -> i64 {
        self.settings.form_url_ttl.as_millis() as i64
    }

    pub async fn list_cards(&self, customer_id: &CustomerId) -> Result<Vec<CardView>, AppError> {
        Ok(self
            .store
            .list_cards(customer_id, now_ms(), self.url_ttl_ms())
            .await?)
    }

    pub async fn card(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
    ) -> Result<CardView, AppError> {
        self.store
            .card(customer_id, card_id, now_ms(), self.url_ttl_ms())
            .await?
            .ok_or(AppError::CardNotFound)
    }

    /// Ensures a Jetpay contact (created once), asks Jetpay for a tokenization URL, and commits the
    /// pending card before returning, so a webhook that arrives at once finds it.
    pub async fn add_card(
        &self,
        customer_id: &CustomerId,
        replaces: Option<&CardId>,
        ip: Option<ClientIp>,
    ) -> Result<AddedCard, AppError> {
        self.check_ip_limit(Action::AddCard, ip).await?;
        // Held across the Jetpay calls, on whichever instance: concurrent Add card requests
        // create exactly one Jetpay contact and cannot overshoot the caps.
        let lock = self.store.lock_customer(customer_id).await?;
        let added = self.add_card_locked(customer_id, replaces).await;
        lock.release().await;
        let added = added?;
        tracing::info!(customer = %customer_id, card = %added.card_id, "pending card added");
        Ok(added)
    }

    async fn add_card_locked(
        &self,
        customer_id: &CustomerId,
        replaces: Option<&CardId>,
    ) -> Result<AddedCard, AppError> {
        if self.store.count_pending(customer_id).await? >= self.settings.pending_cap {
            return Err(AppError::TooManyPending(self.settings.pending_cap));
        }
        // The pending cap alone is not a bound: add, remove, add again asks Jetpay for a new
        // URL each time. Every card row, removed or not, stands for one URL.
        let hour_ago = now_ms() - 3_600_000;
        let limit = self.settings.cards_added_per_hour;
        if self
            .store
            .count_cards_added_since(customer_id, hour_ago)
            .await?
            >= limit
        {
            return Err(AppError::TooManyCardsAdded(limit));
        }
        let contact_id = self.ensure_contact(customer_id).await?;
        let contact_uuid = uuid::Uuid::parse_str(&contact_id)
            .map_err(|_| AppError::Internal("stored contact id is not a UUID".into()))?;
        let tokenization = self.jetpay.create_tokenization_url(contact_uuid).await?;
        let card_id = CardId::generate();
        let changes = self
            .store
            .insert_pending_card(
                customer_id,
                &card_id,
                &tokenization.credit_card_id,
                &tokenization.url,
                replaces,
            )
            .await?;
        self.notifier.publish(changes);
        Ok(AddedCard {
            card_id,
            form_url: tokenization.url,
        })
    }

    /// The customer's Jetpay contact id, created on first need. Callers hold the customer lock.
    async fn ensure_contact(&self, customer_id: &CustomerId) -> Result<String, AppError> {
        let customer = self
            .store
            .customer_by_id(customer_id)
            .await?
            .ok_or(AppError::NotSignedIn)?;
        if let Some(contact) = customer.jetpay_contact_id {
            return Ok(contact);
        }
        let contact = self
            .jetpay
            .create_contact(&NewContact {
                email: customer.email,
                name: customer.name,
                tags: vec![],
                language: "en".into(),
            })
            .await?;
        tracing::info!(customer = %customer_id, contact = %contact.id, "Jetpay contact created");
        Ok(self
            .store
            .set_contact_id_if_missing(customer_id, &contact.id.to_string())
            .await?)
    }

    /// The longest card nickname.
    pub const NICKNAME_MAX_CHARS: usize = 40;

    /// Names a card; an empty name clears it.
    pub async fn set_nickname(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        nickname: &str,
    ) -> Result<(), AppError> {
        let nickname = nickname.trim();
        if nickname.chars().count() > Self::NICKNAME_MAX_CHARS
            || nickname.chars().any(char::is_control)
        {
            return Err(AppError::InvalidInput(format!(
                "Choose a nickname of at most {} characters.",
                Self::NICKNAME_MAX_CHARS
            )));
        }
        let nickname = (!nickname.is_empty()).then_some(nickname);
        let changes = self
            .store
            .set_nickname(customer_id, card_id, nickname)
            .await?;
        self.notifier.publish(changes);
        Ok(())
    }

    pub async fn make_default(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
    ) -> Result<(), AppError> {
        let changes = self.store.make_default(customer_id, card_id).await?;
        self.notifier.publish(changes);
        Ok(())
    }

    pub async fn remove_card(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
    ) -> Result<(), AppError> {
        let changes = self.store.remove_card(customer_id, card_id).await?;
        self.notifier.publish(changes);
        Ok(())
    }

    /// Applies a verified batch (one transaction), then tells open pages. Returns each event's
    /// outcome for the log.
    pub async fn apply_events(
        &self,
        events: &[Event],
    ) -> Result<Vec<(i64, EventOutcome)>, AppError> {
        let (outcomes, changes) = self.store.apply_events(events).await?;
        for (id, outcome) in &outcomes {
            metrics::counter!("jetpay_events_total", "outcome" => outcome.as_str()).increment(1);
            match outcome {
                EventOutcome::Applied | EventOutcome::Duplicate => {
                    tracing::debug!(event = id, ?outcome, "Jetpay event")
                }
                _ => tracing::info!(event = id, ?outcome, "Jetpay event recorded without change"),
            }
        }
        self.notifier.publish(changes);
        Ok(outcomes)
    }

    /// Expires pending cards older than the configured timeout.
    pub async fn expire_stale_cards(&self) -> Result<Vec<Change>, AppError> {
        let cutoff = now_ms() - self.settings.pending_timeout.as_millis() as i64;
        let changes = self.store.expire_stale(cutoff).await?;
        if !changes.is_empty() {
            tracing::info!(count = changes.len(), "expired stale pending cards");
        }
        self.notifier.publish(changes.clone());
        Ok(changes)
    }
}

impl Backend {
    /// The hosted form told the customer's page that the card was submitted: the card now shows
    /// as Verifying…, with the brand and last four the form showed (checked for shape here; the
    /// webhook's values replace them).
    pub async fn card_form_submitted(
        &self,
        customer_id: &CustomerId,
        card_id: &CardId,
        jetpay_card_id: Option<&str>,
        brand: Option<&str>,
        last4: Option<&str>,
    ) -> Result<(), AppError> {
        let brand = brand.filter(|b| {
            (1..=20).contains(&b.len()) && b.bytes().all(|c| c.is_ascii_lowercase() || c == b'_')
        });
        let last4 = last4.filter(|l| l.len() == 4 && l.bytes().all(|c| c.is_ascii_digit()));
        let changes = self
            .store
            .mark_submitted(customer_id, card_id, jetpay_card_id, brand, last4)
            .await?;
        self.notifier.publish(changes);
        Ok(())
    }
}
