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
    collections::HashMap,
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
use tokio::sync::{broadcast::error::RecvError, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tower_sessions::{Session, SessionStore};

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
    let mut position = match last_event_id.or(position.since) {
        Some(seq) => seq,
        None => match state.backend.store.latest_change(&customer).await {
            Ok(seq) => seq,
            Err(e) => {
                tracing::error!(error = ?e, "live stream could not start");
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        },
    };

    let (tx, rx) = mpsc::channel::<Event>(64);
    let backend = state.backend.clone();
    let sessions = state.sessions.clone();
    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let mut live = backend.notifier.subscribe(&customer);
        let mut session_check = tokio::time::interval(SESSION_CHECK);
        // Catch up from the database, then follow live changes.
        let mut catch_up = true;
        loop {
            if catch_up {
                match backend
                    .store
                    .changes_since(&customer, position, CATCH_UP_PAGE)
                    .await
                {
                    Ok(changes) => {
                        // A full page means there may be more: read on before going live.
                        catch_up = changes.len() as i64 == CATCH_UP_PAGE;
                        for change in changes {
                            position = change.seq;
                            if tx.send(to_event(change)).await.is_err() {
                                return;
                            }
                        }
                        if catch_up {
                            continue;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = ?e, "live stream catch-up failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        if tx.is_closed() {
                            return;
                        }
                        continue;
                    }
                }
            }
            tokio::select! {
                received = live.changes.recv() => match received {
                    Ok(change) if change.seq > position => {
                        position = change.seq;
                        if tx.send(to_event(change)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => catch_up = true,
                    Err(RecvError::Closed) => return,
                },
                _ = live.resync.changed() => catch_up = true,
                _ = tx.closed() => return,
                _ = shutdown.cancelled() => {
                    // This instance is stopping: tell the browser to come back soon (to another
                    // instance, or to this one restarted); it resumes with Last-Event-ID.
                    let _ = tx
                        .send(Event::default().retry(RECONNECT_AFTER_SHUTDOWN).comment("shutting down"))
                        .await;
                    return;
                }
                _ = session_check.tick() => {
                    // Signed out (in any tab, on any instance) or expired: stop telling.
                    if !matches!(sessions.load(&session_id).await, Ok(Some(_))) {
                        tracing::debug!("live stream ended with its session");
                        return;
                    }
                }
            }
        }
    });

    sse(ReceiverStream::new(rx)).into_response()
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
