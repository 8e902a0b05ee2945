//! `GET /account/cards/events`: a server-sent event stream of the signed-in customer's card
//! changes, and nobody else's.
//!
//! The stream subscribes to the in-process notifier first, then sends what the database has
//! after the client's position (`Last-Event-ID`, or `?since=` on first connect), then live
//! changes. If the subscriber lags behind, it rereads from the database, so nothing is skipped.

use std::{convert::Infallible, time::Duration};

use app::{backend::store::Change, model::CardChange};
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
use tower_sessions::Session;

use crate::state::AppState;

pub const HEARTBEAT: Duration = Duration::from_secs(15);

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
    let Some(customer) = app::session::customer_of(&session).await else {
        return (StatusCode::UNAUTHORIZED, "Sign in to follow your cards.").into_response();
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
    tokio::spawn(async move {
        let mut live = backend.notifier.subscribe();
        // Catch up from the database, then follow live changes.
        let mut catch_up = true;
        loop {
            if catch_up {
                match backend.store.changes_since(&customer, position).await {
                    Ok(changes) => {
                        for change in changes {
                            position = change.seq;
                            if tx.send(to_event(change)).await.is_err() {
                                return;
                            }
                        }
                        catch_up = false;
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
                received = live.recv() => match received {
                    Ok(change) if change.customer_id == customer && change.seq > position => {
                        position = change.seq;
                        if tx.send(to_event(change)).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(_)) => catch_up = true,
                    Err(RecvError::Closed) => return,
                },
                _ = tx.closed() => return,
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
        card_id: change.card_id,
        announcement: change.announcement,
    };
    Event::default()
        .event("card")
        .id(change.seq.to_string())
        .json_data(payload)
        .unwrap_or_else(|_| Event::default().event("card").id(change.seq.to_string()))
}
