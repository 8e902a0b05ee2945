//! The browser's copy of the Saved cards list and what the page says about it.
//!
//! The server renders the list once; afterwards only a list that loaded replaces it, signal by
//! signal, so a refresh never rebuilds more than what changed.

use leptos::prelude::*;

use crate::cards::{list_cards, CardsPage, HostedForm};
use crate::model::{CardView, ChangeKind};

/// The browser's copy of the list, and what the page says about it. Everything a refresh
/// touches is a signal here, so a refresh never rebuilds more than what changed.
#[derive(Clone, Copy)]
pub struct CardsState {
    pub cards: RwSignal<Vec<CardView>>,
    pub seq: RwSignal<i64>,
    pub signed_in: RwSignal<bool>,
    pub this_month: RwSignal<u32>,
    pub hosted_form: StoredValue<HostedForm>,
    /// The last refresh failed: the list shown is the last one that loaded.
    pub reconnecting: RwSignal<bool>,
    pub announcement: RwSignal<String>,
    announced_at: StoredValue<f64>,
    /// Changes heard on the live stream, announced once a refresh shows them.
    pub unannounced: StoredValue<Vec<(ChangeKind, String)>>,
    refreshing: StoredValue<bool>,
    again: StoredValue<bool>,
}

impl CardsState {
    pub fn new(page: CardsPage) -> Self {
        Self {
            cards: RwSignal::new(page.cards),
            seq: RwSignal::new(page.seq),
            signed_in: RwSignal::new(page.signed_in),
            this_month: RwSignal::new(page.this_month),
            hosted_form: StoredValue::new(page.hosted_form),
            reconnecting: RwSignal::new(false),
            announcement: RwSignal::new(String::new()),
            announced_at: StoredValue::new(f64::MIN),
            unannounced: StoredValue::new(Vec::new()),
            refreshing: StoredValue::new(false),
            again: StoredValue::new(false),
        }
    }

    /// Says something to screen readers. Sentences that arrive together are read together.
    pub fn announce(&self, sentence: &str) {
        if sentence.is_empty() {
            return;
        }
        let now = now_ms();
        let Some(last) = self.announced_at.try_get_value() else {
            return;
        };
        let recent = now - last < 1500.0;
        self.announced_at.try_set_value(now);
        self.announcement.update(|text| {
            if recent && !text.is_empty() && !text.contains(sentence) {
                text.push(' ');
                text.push_str(sentence);
            } else {
                *text = sentence.to_owned();
            }
        });
    }

    /// Loads the list again; at most one load runs at a time, and a request made meanwhile runs
    /// once after it. A failed load keeps the list and shows "Reconnecting…".
    pub fn refresh(self) {
        // The page may be gone by the time a late event or answer calls this.
        let Some(busy) = self.refreshing.try_get_value() else {
            return;
        };
        if busy {
            self.again.try_set_value(true);
            return;
        }
        self.refreshing.try_set_value(true);
        leptos::task::spawn_local(async move {
            loop {
                let result = list_cards().await;
                if self.cards.is_disposed() {
                    return;
                }
                match result {
                    Ok(page) => self.apply(page),
                    Err(_) => set_if_changed(self.reconnecting, true),
                }
                if !self.again.try_get_value().unwrap_or(false) {
                    break;
                }
                self.again.try_set_value(false);
            }
            self.refreshing.try_set_value(false);
        });
    }

    fn apply(&self, page: CardsPage) {
        // Signals notify on every `set`, equal or not: set only what changed, so that nothing
        // downstream (the live connection follows `signed_in`) restarts for nothing.
        set_if_changed(self.reconnecting, false);
        if !page.signed_in {
            set_if_changed(self.signed_in, false);
            set_if_changed(self.cards, Vec::new());
            return;
        }
        let old_default = self
            .cards
            .with_untracked(|cards| cards.iter().find(|c| c.is_default).map(|c| c.id.clone()));
        if let (Some(old), Some(new)) = (old_default, page.cards.iter().find(|c| c.is_default)) {
            if old != new.id {
                self.announce(&format!("{} is now your default card.", new.title()));
            }
        }
        set_if_changed(self.signed_in, true);
        set_if_changed(self.this_month, page.this_month);
        if self.seq.get_untracked() < page.seq {
            self.seq.set(page.seq);
        }
        set_if_changed(self.cards, page.cards);
        let heard = self
            .unannounced
            .try_update_value(std::mem::take)
            .unwrap_or_default();
        for (kind, card_id) in heard {
            let sentence = self
                .cards
                .with_untracked(|cards| kind.sentence(cards.iter().find(|c| c.id == card_id)));
            if let Some(sentence) = sentence {
                self.announce(&sentence);
            }
        }
    }
}

fn set_if_changed<T: PartialEq + Send + Sync + 'static>(signal: RwSignal<T>, value: T) {
    if signal.with_untracked(|current| *current != value) {
        signal.set(value);
    }
}

fn now_ms() -> f64 {
    #[cfg(feature = "hydrate")]
    {
        js_sys::Date::now()
    }
    #[cfg(not(feature = "hydrate"))]
    {
        0.0
    }
}
