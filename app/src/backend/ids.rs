//! Ids as types: a customer's id cannot be passed where a card's is expected (the store's methods
//! take both), and an id from outside (a page, a form field) is parsed once, at the edge.

use std::fmt;

/// A customer: made at sign-up, kept in the session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId(String);

/// One of our saved cards (not Jetpay's id for it).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CardId(String);

impl CustomerId {
    /// A new, random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// An id this server made and stored (read back from the database or the session).
    pub fn new(stored: impl Into<String>) -> Self {
        Self(stored.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl CardId {
    /// A new, random id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }

    /// An id this server made and stored (read back from the database).
    pub fn new(stored: impl Into<String>) -> Self {
        Self(stored.into())
    }

    /// A card id a page or form sent: ours are UUIDs, so anything else names no card of anyone's
    /// (and never reaches the database).
    pub fn parse(sent: &str) -> Option<Self> {
        uuid::Uuid::parse_str(sent)
            .ok()
            .map(|id| Self(id.hyphenated().to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for CardId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_card_ids_must_be_uuids() {
        let id = CardId::generate();
        assert_eq!(CardId::parse(id.as_str()), Some(id.clone()));
        assert_eq!(
            CardId::parse(&id.as_str().to_uppercase()),
            Some(id),
            "the same UUID in capitals"
        );
        for bad in ["", "1", "../x", "' OR 1=1 --", "0b6f1a52-6a43-4bb3-9c51"] {
            assert_eq!(CardId::parse(bad), None, "{bad}");
        }
    }
}
