//! Types the server sends to the page; they compile on both sides.

use serde::{Deserialize, Serialize};

/// Where a saved card is in its life. `removed` cards are never shown, so the page has no variant
/// for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardState {
    Pending,
    Active,
    Failed,
    Expired,
}

impl CardState {
    /// The badge text a customer sees.
    pub fn label(self) -> &'static str {
        match self {
            CardState::Pending => "Verifying…",
            CardState::Active => "Active",
            CardState::Failed => "Failed",
            CardState::Expired => "Expired",
        }
    }

    pub fn css_class(self) -> &'static str {
        match self {
            CardState::Pending => "badge pending",
            CardState::Active => "badge active",
            CardState::Failed => "badge failed",
            CardState::Expired => "badge expired",
        }
    }
}

/// One card as the Saved cards page shows it. Never holds card data beyond brand and last four.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardView {
    /// Our own id for the card (not Jetpay's).
    pub id: String,
    pub state: CardState,
    pub brand: Option<String>,
    pub last4: Option<String>,
    pub exp_month: Option<u32>,
    pub exp_year: Option<u32>,
    pub is_default: bool,
    /// `YYYY-MM-DD`, UTC.
    pub added_on: String,
    /// A plain sentence saying why the card failed, with what to do next.
    pub failure: Option<String>,
    /// Jetpay's hosted form for a pending card, while it can still be used.
    pub form_url: Option<String>,
}

impl CardView {
    /// "Visa ending 4242", or "New card" while Jetpay has not told us yet.
    pub fn title(&self) -> String {
        match (&self.brand, &self.last4) {
            (Some(brand), Some(last4)) => format!("{} ending {last4}", brand_name(brand)),
            (None, Some(last4)) => format!("Card ending {last4}"),
            _ => "New card".to_owned(),
        }
    }

    pub fn expiry(&self) -> Option<String> {
        match (self.exp_month, self.exp_year) {
            (Some(m), Some(y)) => Some(format!("{m:02}/{}", y % 100)),
            _ => None,
        }
    }
}

fn brand_name(brand: &str) -> String {
    match brand {
        "visa" => "Visa".into(),
        "mastercard" => "Mastercard".into(),
        "amex" => "American Express".into(),
        other => {
            let mut chars = other.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => "Card".into(),
            }
        }
    }
}

/// What the live stream tells a page: which card changed and a sentence for screen readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardChange {
    pub seq: i64,
    pub card_id: String,
    pub announcement: String,
}

/// The signed-in customer, as pages need it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerView {
    pub name: String,
    pub email: String,
}

/// Turns Jetpay's failure reason code into a sentence a customer understands, with what to do.
/// Jetpay's own message is kept for the log, not shown: its wording is not ours to control.
pub fn failure_sentence(reason: Option<&str>) -> String {
    match reason {
        Some("card_declined") => {
            "Your bank declined this card. Try another card, or call your bank and try again.".into()
        }
        Some("processing_error") => {
            "We couldn't verify this card because of a problem on the payment network. Try again in a few minutes.".into()
        }
        Some("expired_card") => "This card has expired. Try a card with a later expiry date.".into(),
        Some("incorrect_cvc") => {
            "The security code didn't match. Check the code on the back of the card and try again.".into()
        }
        _ => "We couldn't verify this card. Try again, or use a different card.".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        let mut card = CardView {
            id: "x".into(),
            state: CardState::Active,
            brand: Some("visa".into()),
            last4: Some("4242".into()),
            exp_month: Some(4),
            exp_year: Some(2031),
            is_default: true,
            added_on: "2026-11-25".into(),
            failure: None,
            form_url: None,
        };
        assert_eq!(card.title(), "Visa ending 4242");
        assert_eq!(card.expiry().as_deref(), Some("04/31"));
        card.brand = None;
        card.last4 = None;
        assert_eq!(card.title(), "New card");
    }

    #[test]
    fn every_failure_has_a_next_step() {
        for reason in [
            None,
            Some("card_declined"),
            Some("processing_error"),
            Some("x"),
        ] {
            let s = failure_sentence(reason);
            assert!(s.contains("Try") || s.contains("try"), "{s}");
        }
    }
}
