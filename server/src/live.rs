//! `GET /account/cards/events`: a server-sent event stream of the signed-in customer's card
//! changes, and nobody else's.
//!
//! The stream subscribes to its customer's changes first (on this instance's notifier, which also
//! carries what other instances commit), then sends what the log has after the client's position
//! (`Last-Event-ID`, or `?since=` on first connect), then live changes. If the subscriber lags
//! behind, or the notifier says changes may have been missed, it rereads the log, so nothing is
//! skipped.
//!
//! A stream lives only as long as its session: it ends within [`SESSION_CHECK`] of a sign-out
//! (in any tab) or of the session expiring. A customer may hold [`MAX_STREAMS_PER_CUSTOMER`]
//! streams at once; pages share one per browser, and fall back to polling when refused.

use std::{
    collections::{HashMap, VecDeque},
    convert::Infallible,
    sync::{Arc, Mutex},
    time::Duration,
};

use app::{
    backend::{store::Change, CustomerId},
    model::CardChange,
};
use axum::{
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::{
        sse::{Event, KeepAlive, Sse},
        IntoResponse, Response,
    },
};
use futures::Stream;
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tower_sessions::{session::Id, Session};

use crate::state::AppState;

pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// How often an open stream checks that its session still exists.
pub const SESSION_CHECK: Duration = Duration::from_secs(2);
/// Open streams allowed per customer (over all instances' memory, per instance).
pub const MAX_STREAMS_PER_CUSTOMER: usize = 10;
/// The reconnection delay a stream tells browsers when the server shuts down.
pub const RECONNECT_AFTER_SHUTDOWN: Duration = Duration::from_secs(1);
/// Changes read per query while catching up.
const CATCH_UP_PAGE: i64 = 500;

/// Open streams per customer, and the guard that gives a slot back when a stream ends.
#[derive(Clone, Default)]
pub struct StreamSlots(Arc<Mutex<HashMap<CustomerId, usize>>>);

pub struct StreamSlot {
    slots: StreamSlots,
    customer: CustomerId,
}

impl StreamSlots {
    fn take(&self, customer: &CustomerId) -> Option<StreamSlot> {
        let mut open = self.0.lock().expect("stream slots poisoned");
        let count = open.entry(customer.clone()).or_default();
        if *count >= MAX_STREAMS_PER_CUSTOMER {
            return None;
        }
        *count += 1;
        metrics::gauge!("live_streams_open").increment(1.0);
        Some(StreamSlot {
            slots: self.clone(),
            customer: customer.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!("live_streams_open").decrement(1.0);
        let mut open = self.slots.0.lock().expect("stream slots poisoned");
        if let Some(count) = open.get_mut(&self.customer) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.customer);
            }
        }
    }
}

/// Ends streams with their session, all of them at once: every [`SESSION_CHECK`] one query asks
/// which of the open streams' sessions still exist. (A load per stream every 2 s had cost 10,000
/// idle streams a quarter of a core: P3 in BENCHMARKS.md.)
#[derive(Clone, Default)]
pub struct SessionWatch(Arc<Mutex<HashMap<Id, Watched>>>);

/// A session some stream follows: cancelled when it is gone.
struct Watched {
    ended: CancellationToken,
    streams: usize,
}

/// A stream's hold on its session's watch.
pub struct Watching {
    watch: SessionWatch,
    session_id: Id,
    ended: CancellationToken,
}

impl SessionWatch {
    fn watch(&self, session_id: Id) -> Watching {
        let mut watched = self.0.lock().expect("session watch poisoned");
        let entry = watched.entry(session_id).or_insert_with(|| Watched {
            ended: CancellationToken::new(),
            streams: 0,
        });
        entry.streams += 1;
        Watching {
            watch: self.clone(),
            session_id,
            ended: entry.ended.clone(),
        }
    }

    /// Checks the watched sessions every [`SESSION_CHECK`] until `shutdown`. A failed check
    /// ends nothing: the database being away says nothing about sign-outs.
    pub async fn run(self, sessions: crate::sessions::Sessions, shutdown: CancellationToken) {
        let mut beat = tokio::time::interval(SESSION_CHECK);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = beat.tick() => {}
                _ = shutdown.cancelled() => return,
            }
            let ids: Vec<Id> = self
                .0
                .lock()
                .expect("session watch poisoned")
                .keys()
                .copied()
                .collect();
            if ids.is_empty() {
                continue;
            }
            match sessions.alive(&ids).await {
                Ok(alive) => {
                    let mut watched = self.0.lock().expect("session watch poisoned");
                    for id in ids.iter().filter(|id| !alive.contains(id)) {
                        if let Some(gone) = watched.remove(id) {
                            gone.ended.cancel();
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not check live streams' sessions"),
            }
        }
    }
}

impl Watching {
    /// Resolves when the session has been signed out (in any tab, on any instance) or expired.
    fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.ended.cancelled()
    }
}

impl Drop for Watching {
    fn drop(&mut self) {
        // A cancelled token's entry is gone already (the check removes it as it cancels); an
        // entry whose token is live is this stream's own.
        if self.ended.is_cancelled() {
            return;
        }
        let mut watched = self.watch.0.lock().expect("session watch poisoned");
        if let Some(entry) = watched.get_mut(&self.session_id) {
            entry.streams -= 1;
            if entry.streams == 0 {
                watched.remove(&self.session_id);
            }
        }
    }
}

#[derive(Deserialize)]
pub struct Position {
    since: Option<i64>,
}

pub async fn stream(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Query(position): Query<Position>,
) -> Response {
    let (Some(customer), Some(session_id)) =
        (app::session::customer_of(&session).await, session.id())
    else {
        return (StatusCode::UNAUTHORIZED, "Sign in to follow your cards.").into_response();
    };
    let Some(slot) = state.streams.take(&customer) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many live views are open. Close some tabs; this one will refresh by itself.",
        )
            .into_response();
    };
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok());
    let position = match last_event_id.or(position.since) {
        Some(seq) => seq,
        None => match state.backend.store.latest_change(&customer).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = ?e, "live stream could not start");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
    };

    let follower = Follower {
        live: state.backend.notifier.subscribe(&customer),
        backend: state.backend.clone(),
        session: state.session_watch.watch(session_id),
        customer,
        shutdown: state.shutdown.clone(),
        position,
        catch_up: true,
        queued: VecDeque::new(),
        ending: false,
        _slot: slot,
    };
    // No task and no channel per stream: the response body itself reads the log and the
    // notifier, one event at a time, and is dropped with the connection (P3 in BENCHMARKS.md).
    let events = futures::stream::unfold(follower, |mut follower| async move {
        let event = follower.next().await?;
        Some((event, follower))
    });
    sse(events).into_response()
}

/// One stream's position in its customer's changes, and what ends it.
struct Follower {
    backend: Arc<app::backend::Backend>,
    session: Watching,
    customer: CustomerId,
    live: app::backend::notify::Subscription,
    shutdown: tokio_util::sync::CancellationToken,
    position: i64,
    /// Whether the log must be read before following live changes.
    catch_up: bool,
    /// Events read from the log, not yet sent.
    queued: VecDeque<Event>,
    /// The last event (a reconnect hint) is out: end after it.
    ending: bool,
    _slot: StreamSlot,
}

impl Follower {
    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queued.pop_front() {
                return Some(event);
            }
            if self.ending {
                return None;
            }
            if self.catch_up {
                match self
                    .backend
                    .store
                    .changes_since(&self.customer, self.position, CATCH_UP_PAGE)
                    .await
                {
                    Ok(changes) => {
                        // A full page means there may be more: read on before going live.
                        self.catch_up = changes.len() as i64 == CATCH_UP_PAGE;
                        for change in changes {
                            self.position = change.seq;
                            self.queued.push_back(to_event(change));
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = ?e, "live stream catch-up failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            tokio::select! {
                received = self.live.changes.recv() => match received {
                    Ok(change) if change.seq > self.position => {
                        self.position = change.seq;
                        return Some(to_event(change));
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => self.catch_up = true,
                    Err(RecvError::Closed) => return None,
                },
                _ = self.live.resync.changed() => self.catch_up = true,
                _ = self.shutdown.cancelled() => {
                    // This instance is stopping: tell the browser to come back soon (to another
                    // instance, or to this one restarted); it resumes with Last-Event-ID.
                    self.ending = true;
                    return Some(
                        Event::default()
                            .retry(RECONNECT_AFTER_SHUTDOWN)
                            .comment("shutting down"),
                    );
                }
                _ = self.session.ended() => {
                    tracing::debug!("live stream ended with its session");
                    return None;
                }
            }
        }
    }
}

fn sse(
    events: impl Stream<Item = Event> + Send + 'static,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    use futures::StreamExt;
    Sse::new(events.map(Ok)).keep_alive(KeepAlive::new().interval(HEARTBEAT).text("heartbeat"))
}

fn to_event(change: Change) -> Event {
    let payload = CardChange {
        seq: change.seq,
        card_id: change.card_id.to_string(),
        announcement: change.announcement,
    };
    Event::default()
        .event("card")
        .id(change.seq.to_string())
        .json_data(payload)
        .unwrap_or_else(|_| Event::default().event("card").id(change.seq.to_string()))
}
