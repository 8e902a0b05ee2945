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

/// What the customer sees about a card's progress: [`CardState`] refined by whether Jetpay's form
/// has been submitted yet. `Expired` (the server's word for "no result in time") is shown as
/// "Not completed": "Expired" is what a customer says about the date printed on the card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Pending, and the hosted form has not reported a submission.
    WaitingForDetails,
    /// Pending after the form was submitted: Jetpay is checking the card.
    Verifying,
    Active,
    Failed,
    NotCompleted,
}

impl Progress {
    /// The badge text a customer sees.
    pub fn label(self) -> &'static str {
        match self {
            Progress::WaitingForDetails => "Waiting for card details",
            Progress::Verifying => "Verifying…",
            Progress::Active => "Active",
            Progress::Failed => "Failed",
            Progress::NotCompleted => "Not completed",
        }
    }

    pub fn css_class(self) -> &'static str {
        match self {
            Progress::WaitingForDetails => "badge waiting",
            Progress::Verifying => "badge pending",
            Progress::Active => "badge active",
            Progress::Failed => "badge failed",
            Progress::NotCompleted => "badge expired",
        }
    }

    /// `data-state` of a row, for tests and styles.
    pub fn code(self) -> &'static str {
        match self {
            Progress::WaitingForDetails => "waiting",
            Progress::Verifying => "pending",
            Progress::Active => "active",
            Progress::Failed => "failed",
            Progress::NotCompleted => "not-completed",
        }
    }
}

/// How close a card is to the expiry date printed on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpiryStatus {
    Valid,
    /// Expires this month or within the next two.
    Soon,
    Expired,
}

/// A year and month as one number (`year * 12 + month - 1`), for comparing card expiry dates.
pub fn month_index(year: u32, month: u32) -> u32 {
    year * 12 + month.saturating_sub(1)
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
    /// The hosted form told the page that the customer submitted it.
    #[serde(default)]
    pub submitted: bool,
    /// The customer's own name for the card, if they gave one.
    #[serde(default)]
    pub nickname: Option<String>,
}

impl CardView {
    /// "Work card, Visa ending 4242" with a nickname, else [`CardView::card_name`].
    pub fn title(&self) -> String {
        match &self.nickname {
            Some(nickname) => format!("{nickname}, {}", self.card_name()),
            None => self.card_name(),
        }
    }

    /// "Visa ending 4242", or "New card" while Jetpay has not told us yet.
    pub fn card_name(&self) -> String {
        match (&self.brand, &self.last4) {
            (Some(brand), Some(last4)) => format!("{} ending {last4}", brand_name(brand)),
            (None, Some(last4)) => format!("Card ending {last4}"),
            _ => "New card".to_owned(),
        }
    }

    /// The brand's name, or "Card" while unknown.
    pub fn brand_name(&self) -> String {
        self.brand
            .as_deref()
            .map(brand_name)
            .unwrap_or_else(|| "Card".into())
    }

    pub fn progress(&self) -> Progress {
        match self.state {
            CardState::Pending if self.submitted => Progress::Verifying,
            CardState::Pending => Progress::WaitingForDetails,
            CardState::Active => Progress::Active,
            CardState::Failed => Progress::Failed,
            CardState::Expired => Progress::NotCompleted,
        }
    }

    /// Whether the card's own date has passed or is near, given this month's [`month_index`].
    /// Only active cards have a meaningful date.
    pub fn expiry_status(&self, this_month: u32) -> Option<ExpiryStatus> {
        let (Some(m), Some(y)) = (self.exp_month, self.exp_year) else {
            return None;
        };
        if self.state != CardState::Active || !(1..=12).contains(&m) {
            return None;
        }
        let expires = month_index(y, m);
        Some(if expires < this_month {
            ExpiryStatus::Expired
        } else if expires <= this_month + 2 {
            ExpiryStatus::Soon
        } else {
            ExpiryStatus::Valid
        })
    }

    /// The sentence under a card that did not work out, with what to do next.
    pub fn problem(&self) -> Option<String> {
        match self.progress() {
            Progress::Failed => Some(
                self.failure
                    .clone()
                    .unwrap_or_else(|| failure_sentence(None)),
            ),
            Progress::NotCompleted if self.submitted => Some(
                "We didn't hear back from the bank in time, so this card wasn't saved. Try again to add it."
                    .into(),
            ),
            Progress::NotCompleted => Some(
                "The card details weren't entered in time, so this card wasn't saved. Try again to add it."
                    .into(),
            ),
            _ => None,
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

/// What the live stream tells a page: which card changed, and how, as a [`ChangeKind`] code (the
/// page words it for screen readers; no sentence is stored or sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardChange {
    pub seq: i64,
    pub card_id: String,
    /// A [`ChangeKind::code`].
    pub announcement: String,
}

/// What happened to a card. The database and the stream carry [`ChangeKind::code`]; the words
/// are chosen where they are shown ([`ChangeKind::sentence`]), so a second language needs no
/// change to stored data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// Add card opened a form (a pending card).
    Added,
    /// The hosted form reported the card details submitted.
    Submitted,
    Activated,
    /// Jetpay refused the card, with its failure reason code.
    Failed(Option<String>),
    /// No result in time.
    Expired,
    Removed,
    /// "Try again" retired a failed or expired card.
    Retired,
    DefaultChanged,
    /// The customer named the card.
    Renamed,
    /// A change nobody needs to hear about (e.g. the previous default losing its badge).
    Quiet,
}

impl ChangeKind {
    pub fn code(&self) -> String {
        match self {
            ChangeKind::Added => "added".into(),
            ChangeKind::Submitted => "submitted".into(),
            ChangeKind::Activated => "activated".into(),
            ChangeKind::Failed(Some(reason)) => format!("failed:{reason}"),
            ChangeKind::Failed(None) => "failed".into(),
            ChangeKind::Expired => "expired".into(),
            ChangeKind::Removed => "removed".into(),
            ChangeKind::Retired => "retired".into(),
            ChangeKind::DefaultChanged => "default".into(),
            ChangeKind::Renamed => "renamed".into(),
            ChangeKind::Quiet => String::new(),
        }
    }

    /// Reads a stored code; anything unknown is [`ChangeKind::Quiet`].
    pub fn parse(code: &str) -> Self {
        match code {
            "added" => ChangeKind::Added,
            "submitted" => ChangeKind::Submitted,
            "activated" => ChangeKind::Activated,
            "failed" => ChangeKind::Failed(None),
            "expired" => ChangeKind::Expired,
            "removed" => ChangeKind::Removed,
            "retired" => ChangeKind::Retired,
            "default" => ChangeKind::DefaultChanged,
            "renamed" => ChangeKind::Renamed,
            other => match other.strip_prefix("failed:") {
                Some(reason) => ChangeKind::Failed(Some(reason.to_owned())),
                None => ChangeKind::Quiet,
            },
        }
    }

    /// The sentence for screen readers, naming the card as the page now shows it.
    pub fn sentence(&self, card: Option<&CardView>) -> Option<String> {
        let title = || card.map_or_else(|| "The card".to_owned(), CardView::title);
        Some(match self {
            ChangeKind::Added => "New card added. Enter its details in the secure form.".into(),
            ChangeKind::Submitted => "Card received. Verifying it with the bank…".into(),
            ChangeKind::Activated => format!("{} is now active.", title()),
            ChangeKind::Failed(reason) => format!(
                "{} could not be verified. {}",
                title(),
                failure_sentence(reason.as_deref())
            ),
            ChangeKind::Expired => {
                "A card was not completed in time and wasn't saved. Try again to add it.".into()
            }
            ChangeKind::Removed => "Card removed.".into(),
            ChangeKind::Retired => "The failed card was removed.".into(),
            ChangeKind::DefaultChanged => "Default card changed.".into(),
            ChangeKind::Renamed => "Card nickname saved.".into(),
            ChangeKind::Quiet => return None,
        })
    }
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
            submitted: true,
            nickname: None,
        };
        assert_eq!(card.title(), "Visa ending 4242");
        card.nickname = Some("Work card".into());
        assert_eq!(card.title(), "Work card, Visa ending 4242");
        card.nickname = None;
        assert_eq!(card.expiry().as_deref(), Some("04/31"));
        card.brand = None;
        card.last4 = None;
        assert_eq!(card.title(), "New card");
    }

    #[test]
    fn progress_and_expiry_by_date() {
        let mut card = CardView {
            id: "x".into(),
            state: CardState::Pending,
            brand: None,
            last4: None,
            exp_month: Some(5),
            exp_year: Some(2027),
            is_default: false,
            added_on: "2026-11-25".into(),
            failure: None,
            form_url: Some("https://jetpay.example/tokenize/s".into()),
            submitted: false,
            nickname: None,
        };
        assert_eq!(card.progress().label(), "Waiting for card details");
        card.submitted = true;
        assert_eq!(card.progress().label(), "Verifying…");
        card.state = CardState::Expired;
        assert_eq!(card.progress().label(), "Not completed");
        assert!(card.problem().unwrap().contains("bank"));
        card.submitted = false;
        assert!(card.problem().unwrap().contains("weren't entered"));
        card.state = CardState::Active;
        assert_eq!(card.problem(), None);
        let now = month_index(2027, 3);
        assert_eq!(card.expiry_status(now), Some(ExpiryStatus::Soon));
        assert_eq!(
            card.expiry_status(month_index(2027, 5)),
            Some(ExpiryStatus::Soon)
        );
        assert_eq!(
            card.expiry_status(month_index(2027, 6)),
            Some(ExpiryStatus::Expired)
        );
        assert_eq!(
            card.expiry_status(month_index(2026, 12)),
            Some(ExpiryStatus::Valid)
        );
        card.state = CardState::Failed;
        assert_eq!(card.expiry_status(now), None);
    }

    #[test]
    fn change_codes_round_trip_and_are_worded_at_display() {
        for kind in [
            ChangeKind::Added,
            ChangeKind::Submitted,
            ChangeKind::Activated,
            ChangeKind::Failed(Some("card_declined".into())),
            ChangeKind::Failed(None),
            ChangeKind::Expired,
            ChangeKind::Removed,
            ChangeKind::Retired,
            ChangeKind::DefaultChanged,
            ChangeKind::Renamed,
            ChangeKind::Quiet,
        ] {
            assert_eq!(ChangeKind::parse(&kind.code()), kind);
            assert!(!kind.code().contains(' '), "a code, not a sentence");
        }
        assert_eq!(ChangeKind::parse("Card removed."), ChangeKind::Quiet);
        let card = CardView {
            id: "x".into(),
            state: CardState::Failed,
            brand: Some("visa".into()),
            last4: Some("0002".into()),
            exp_month: None,
            exp_year: None,
            is_default: false,
            added_on: "2026-11-25".into(),
            failure: None,
            form_url: None,
            submitted: true,
            nickname: None,
        };
        assert_eq!(
            ChangeKind::parse("failed:card_declined").sentence(Some(&card)).unwrap(),
            "Visa ending 0002 could not be verified. Your bank declined this card. Try another card, or call your bank and try again."
        );
        assert_eq!(
            ChangeKind::Activated.sentence(None).unwrap(),
            "The card is now active."
        );
        assert_eq!(ChangeKind::Quiet.sentence(None), None);
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
