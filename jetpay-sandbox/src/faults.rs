//! Fault injection for tests: make deliveries slow, duplicated, reordered, dropped, failing,
//! paused, or early, so a platform can prove it copes with what "at least once" allows.
//!
//! Faults live in memory only (a restart clears them). `POST /_sandbox/faults` merges the given
//! fields into the current set; `DELETE /_sandbox/faults` clears everything. The README documents
//! the JSON.

use std::sync::Mutex;

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::api::ValidJson;
use crate::error::{ApiError, Issue};
use crate::state::AppState;

/// How the events of a batch are reordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reorder {
    Reverse,
    Shuffle,
}

/// When an early delivery happens; see [`FaultState::deliver_early`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EarlyAt {
    /// When the hosted form is submitted: the result skips the card service's processing time
    /// and is POSTed before the card's own state is committed and before the form answers.
    #[default]
    Submit,
    /// When the tokenization URL is created: the card is tokenized at once (as the `4242…` test
    /// card) and the event is POSTed before the URL is returned, i.e. before the platform can
    /// have committed its pending card.
    UrlCreated,
}

/// The faults in force. Also the answer of every fault endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FaultState {
    /// Deliveries left for the per-delivery faults (`delay_ms`, `duplicate`, `reorder`, `drop`);
    /// `null` = until cleared.
    pub count: Option<u32>,
    pub delay_ms: u64,
    /// Send each batch this many times in total (0 or 1: once).
    pub duplicate: u32,
    pub reorder: Option<Reorder>,
    pub drop: bool,
    /// Attempts left that fail without sending (as if the receiver had answered 500).
    pub fail_times: u32,
    pub paused: bool,
    /// Card results left that are delivered early.
    pub deliver_early: u32,
    pub deliver_early_at: EarlyAt,
}

/// A number, or `true` for "1" (for `duplicate`, "2": one extra copy).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum CountOrFlag {
    Flag(bool),
    Count(u32),
}

impl CountOrFlag {
    fn count(self, when_true: u32) -> u32 {
        match self {
            CountOrFlag::Flag(true) => when_true,
            CountOrFlag::Flag(false) => 0,
            CountOrFlag::Count(n) => n,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(untagged)]
enum ReorderOrFlag {
    Flag(bool),
    Mode(Reorder),
}

/// Body of `POST /_sandbox/faults`. Every field optional; omitted fields keep their value.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    count: Option<u32>,
    delay_ms: Option<u64>,
    duplicate: Option<CountOrFlag>,
    reorder: Option<ReorderOrFlag>,
    drop: Option<bool>,
    fail_times: Option<u32>,
    pause: Option<bool>,
    resume: Option<bool>,
    deliver_early: Option<CountOrFlag>,
    deliver_early_at: Option<EarlyAt>,
}

/// What the dispatcher does with one delivery attempt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPlan {
    /// Fail without sending.
    pub fail: bool,
    /// Advance the cursor without sending.
    pub drop: bool,
    pub delay_ms: u64,
    pub sends: u32,
    pub reorder: Option<Reorder>,
}

impl DeliveryPlan {
    /// A short description for the attempt log, if any fault applied.
    pub fn note(&self) -> Option<String> {
        let mut parts = Vec::new();
        if self.fail {
            parts.push("fault: fail_times".to_owned());
        }
        if self.drop {
            parts.push("fault: drop".to_owned());
        }
        if self.delay_ms > 0 {
            parts.push(format!("fault: delay {} ms", self.delay_ms));
        }
        if self.sends > 1 {
            parts.push(format!("fault: duplicate x{}", self.sends));
        }
        if let Some(r) = self.reorder {
            parts.push(format!("fault: reorder {r:?}").to_lowercase());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}

#[derive(Default)]
pub struct Faults {
    state: Mutex<FaultState>,
}

impl Faults {
    pub fn snapshot(&self) -> FaultState {
        self.state.lock().expect("fault lock").clone()
    }

    pub fn is_paused(&self) -> bool {
        self.state.lock().expect("fault lock").paused
    }

    fn apply(&self, req: FaultRequest) -> Result<FaultState, ApiError> {
        if req.pause == Some(true) && req.resume == Some(true) {
            return Err(ApiError::invalid(Issue::body(
                "resume",
                "Give pause or resume, not both",
                "value_error",
            )));
        }
        let mut s = self.state.lock().expect("fault lock");
        if let Some(c) = req.count {
            s.count = (c > 0).then_some(c);
        }
        if let Some(v) = req.delay_ms {
            s.delay_ms = v;
        }
        if let Some(v) = req.duplicate {
            s.duplicate = v.count(2);
        }
        if let Some(v) = req.reorder {
            s.reorder = match v {
                ReorderOrFlag::Flag(true) => Some(Reorder::Reverse),
                ReorderOrFlag::Flag(false) => None,
                ReorderOrFlag::Mode(m) => Some(m),
            };
        }
        if let Some(v) = req.drop {
            s.drop = v;
        }
        if let Some(v) = req.fail_times {
            s.fail_times = v;
        }
        if let Some(v) = req.pause {
            s.paused = v;
        }
        if req.resume == Some(true) {
            s.paused = false;
        }
        if let Some(v) = req.deliver_early {
            s.deliver_early = v.count(1);
        }
        if let Some(v) = req.deliver_early_at {
            s.deliver_early_at = v;
        }
        Ok(s.clone())
    }

    /// The next `n` attempts fail (0: none); answers the faults now in force.
    pub fn set_fail_times(&self, n: u32) -> FaultState {
        let mut s = self.state.lock().expect("fault lock");
        s.fail_times = n;
        s.clone()
    }

    /// Pauses or resumes every webhook's deliveries.
    pub fn set_paused(&self, paused: bool) -> FaultState {
        let mut s = self.state.lock().expect("fault lock");
        s.paused = paused;
        s.clone()
    }

    fn clear(&self) -> FaultState {
        let mut s = self.state.lock().expect("fault lock");
        *s = FaultState::default();
        s.clone()
    }

    /// Decides (and consumes) the faults for one delivery attempt. `None` while paused.
    pub fn plan_delivery(&self) -> Option<DeliveryPlan> {
        let mut s = self.state.lock().expect("fault lock");
        if s.paused {
            return None;
        }
        if s.fail_times > 0 {
            s.fail_times -= 1;
            return Some(DeliveryPlan {
                fail: true,
                sends: 1,
                ..DeliveryPlan::default()
            });
        }
        let plan = DeliveryPlan {
            fail: false,
            drop: s.drop,
            delay_ms: s.delay_ms,
            sends: s.duplicate.max(1),
            reorder: s.reorder,
        };
        let any = plan.drop || plan.delay_ms > 0 || plan.sends > 1 || plan.reorder.is_some();
        if any {
            if let Some(left) = s.count {
                if left <= 1 {
                    s.count = None;
                    s.delay_ms = 0;
                    s.duplicate = 0;
                    s.reorder = None;
                    s.drop = false;
                } else {
                    s.count = Some(left - 1);
                }
            }
        }
        Some(plan)
    }

    /// Whether the next card result is delivered early at `at` (and consumes one if so).
    pub fn take_early(&self, at: EarlyAt) -> bool {
        let mut s = self.state.lock().expect("fault lock");
        if s.deliver_early > 0 && s.deliver_early_at == at && !s.paused {
            s.deliver_early -= 1;
            true
        } else {
            false
        }
    }
}

/// A sentence for the faults now in force.
pub fn describe(now: &FaultState) -> String {
    if *now == FaultState::default() {
        return "Faults changed: none in force, deliveries are normal.".to_owned();
    }
    format!(
        "Faults changed, now {}.",
        serde_json::to_string(now).unwrap_or_default()
    )
}

/// `GET /_sandbox/faults`.
pub async fn get(State(state): State<AppState>) -> Json<FaultState> {
    Json(state.faults.snapshot())
}

/// `POST /_sandbox/faults`: merge into the current faults.
pub async fn set(
    State(state): State<AppState>,
    ValidJson(req): ValidJson<FaultRequest>,
) -> Result<Json<FaultState>, ApiError> {
    let now = state.faults.apply(req)?;
    state.record_action(true, describe(&now));
    state.kick_dispatcher();
    Ok(Json(now))
}

/// `DELETE /_sandbox/faults`: back to normal.
pub async fn clear(State(state): State<AppState>) -> Json<FaultState> {
    let now = state.faults.clear();
    state.record_action(true, "Cleared every fault: deliveries are normal.");
    state.kick_dispatcher();
    Json(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> FaultRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn counted_faults_expire_after_n_deliveries() {
        let f = Faults::default();
        f.apply(req(r#"{"drop": true, "reorder": "shuffle", "count": 2}"#))
            .unwrap();
        assert!(f.plan_delivery().unwrap().drop);
        let second = f.plan_delivery().unwrap();
        assert!(second.drop);
        assert_eq!(second.reorder, Some(Reorder::Shuffle));
        assert_eq!(
            f.plan_delivery().unwrap(),
            DeliveryPlan {
                sends: 1,
                ..DeliveryPlan::default()
            }
        );
    }

    #[test]
    fn fail_times_then_succeed_and_pause_blocks() {
        let f = Faults::default();
        f.apply(req(r#"{"fail_times": 2, "duplicate": true}"#))
            .unwrap();
        assert!(f.plan_delivery().unwrap().fail);
        assert!(f.plan_delivery().unwrap().fail);
        let third = f.plan_delivery().unwrap();
        assert!(!third.fail);
        assert_eq!(third.sends, 2);
        f.apply(req(r#"{"pause": true}"#)).unwrap();
        assert!(f.plan_delivery().is_none());
        f.apply(req(r#"{"resume": true}"#)).unwrap();
        assert!(f.plan_delivery().is_some());
    }

    #[test]
    fn unknown_fields_are_rejected() {
        assert!(serde_json::from_str::<FaultRequest>(r#"{"dorp": true}"#).is_err());
    }

    #[test]
    fn deliver_early_is_consumed_at_the_right_moment() {
        let f = Faults::default();
        f.apply(req(
            r#"{"deliver_early": true, "deliver_early_at": "url_created"}"#,
        ))
        .unwrap();
        assert!(!f.take_early(EarlyAt::Submit));
        assert!(f.take_early(EarlyAt::UrlCreated));
        assert!(!f.take_early(EarlyAt::UrlCreated));
    }
}
