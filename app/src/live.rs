//! Live card status in the browser: one server-sent event stream per browser, shared by its tabs.
//!
//! A browser allows only six HTTP/1.1 connections per host, and an open stream holds one, so a
//! stream per tab would stop a seventh tab from loading at all. Instead the tabs elect a leader
//! with the Web Locks API: the tab holding the lock keeps the one stream and relays each change
//! (and whether its stream is up) to the other tabs over a `BroadcastChannel`. When the leader
//! closes, the lock passes to a waiting tab, which opens the stream. Where either API is missing,
//! each tab keeps its own stream but closes it while hidden. In production, serve the site over
//! HTTP/2 (behind a proxy), where streams share one connection; the README says how.
//!
//! Each change says "card X changed" (with a sentence for screen readers); the page then reloads
//! its list, so the list on screen is always what the server has. The browser's EventSource
//! resends `Last-Event-ID` when it reconnects, and the server replays what was missed. While no
//! stream is up the page polls every two seconds.

use crate::model::CardChange;

/// Where the stream lives; the server mounts its route at the same path.
pub const STREAM_PATH: &str = "/account/cards/events";
/// How often the page polls while the stream is down, and checks on the stream.
pub const POLL_MILLIS: u64 = 2000;
/// The channel between a browser's tabs.
pub const CHANNEL: &str = "saved-cards-live";
/// The Web Lock whose holder keeps the stream.
pub const LEADER_LOCK: &str = "saved-cards-live-leader";

/// What a page hears from [`follow`].
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// A card changed.
    Change(CardChange),
    /// No stream is up (here or in the leading tab): reload the list.
    Poll,
    /// Another tab signed in or out.
    SessionChanged,
}

/// Tells the browser's other tabs that the signed-in customer changed (sign in, sign out).
pub fn session_changed() {
    #[cfg(feature = "hydrate")]
    if let Ok(channel) = web_sys::BroadcastChannel::new(CHANNEL) {
        let _ = channel.post_message(&wasm_bindgen::JsValue::from_str(r#"{"kind":"session"}"#));
        channel.close();
    }
}

/// Calls `f` whenever another tab reports a sign in or out, until the calling scope is cleaned up.
pub fn on_session_change(f: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    {
        use wasm_bindgen::{closure::Closure, JsCast};
        let Ok(channel) = web_sys::BroadcastChannel::new(CHANNEL) else {
            return;
        };
        let listener = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(
            move |event: web_sys::MessageEvent| {
                if event.data().as_string().as_deref() == Some(r#"{"kind":"session"}"#) {
                    f();
                }
            },
        );
        channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
        let kept = leptos::prelude::StoredValue::new_local(Some((channel, listener)));
        leptos::prelude::on_cleanup(move || {
            if let Some((channel, listener)) =
                leptos::prelude::UpdateValue::try_update_value(&kept, Option::take).flatten()
            {
                channel.set_onmessage(None);
                channel.close();
                drop(listener);
            }
        });
    }
    #[cfg(not(feature = "hydrate"))]
    let _ = f;
}

/// Follows the signed-in customer's card changes until the calling scope is cleaned up.
/// `since` is the newest change the page already shows.
#[cfg(not(feature = "hydrate"))]
pub fn follow(_since: impl Fn() -> i64 + 'static, _on: impl Fn(LiveEvent) + 'static) {}

#[cfg(feature = "hydrate")]
pub use browser::follow;

#[cfg(feature = "hydrate")]
mod browser {
    use std::{cell::RefCell, rc::Rc};

    use leptos::prelude::*;
    use serde::{Deserialize, Serialize};
    use wasm_bindgen::{closure::Closure, JsCast, JsValue};
    use web_sys::{BroadcastChannel, EventSource, MessageEvent};

    use super::{LiveEvent, CHANNEL, LEADER_LOCK, POLL_MILLIS, STREAM_PATH};
    use crate::model::CardChange;

    /// What tabs tell each other.
    #[derive(Serialize, Deserialize)]
    #[serde(tag = "kind", rename_all = "snake_case")]
    enum Relay {
        Change {
            change: CardChange,
        },
        /// The leader's stream is up (sent every poll period) or down.
        Status {
            open: bool,
        },
        Session,
    }

    #[derive(Default)]
    struct Inner {
        stream: Option<EventSource>,
        stream_listener: Option<Closure<dyn FnMut(MessageEvent)>>,
        channel: Option<BroadcastChannel>,
        channel_listener: Option<Closure<dyn FnMut(MessageEvent)>>,
        leader: bool,
        /// When a leader last said its stream is up (ms since the epoch).
        leader_heard: f64,
        /// Resolving it releases the leader lock.
        release: Option<js_sys::Function>,
        abort: Option<web_sys::AbortController>,
        lock_callback: Option<Closure<dyn FnMut(JsValue) -> js_sys::Promise>>,
        visibility: Option<Closure<dyn FnMut()>>,
        stopped: bool,
    }

    type Shared = Rc<RefCell<Inner>>;
    type Handler = Rc<dyn Fn(LiveEvent)>;
    type Since = Rc<dyn Fn() -> i64>;

    pub fn follow(since: impl Fn() -> i64 + 'static, on: impl Fn(LiveEvent) + 'static) {
        let inner: Shared = Rc::new(RefCell::new(Inner::default()));
        let on: Handler = Rc::new(on);
        let since: Since = Rc::new(since);

        let channel = BroadcastChannel::new(CHANNEL).ok();
        let locks = locks();
        let shared_mode = channel.is_some() && locks.is_some();

        if let (true, Some(channel)) = (shared_mode, channel.clone()) {
            let listener = {
                let inner = inner.clone();
                let on = on.clone();
                Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                    let Some(text) = event.data().as_string() else {
                        return;
                    };
                    match serde_json::from_str::<Relay>(&text) {
                        Ok(Relay::Change { change }) => {
                            if !inner.borrow().leader {
                                on(LiveEvent::Change(change));
                            }
                        }
                        Ok(Relay::Status { open }) => {
                            inner.borrow_mut().leader_heard =
                                if open { js_sys::Date::now() } else { 0.0 };
                        }
                        Ok(Relay::Session) => on(LiveEvent::SessionChanged),
                        Err(_) => {}
                    }
                })
            };
            channel.set_onmessage(Some(listener.as_ref().unchecked_ref()));
            let mut i = inner.borrow_mut();
            i.channel = Some(channel);
            i.channel_listener = Some(listener);
        } else if let Some(channel) = channel {
            channel.close();
        }

        if let (true, Some(locks)) = (shared_mode, locks) {
            request_leadership(&inner, &on, &since, &locks);
        } else {
            // No leader possible: this tab keeps its own stream, closed while the tab is hidden.
            inner.borrow_mut().leader = true;
            open_stream(&inner, &on, &since);
            let listener = {
                let inner = inner.clone();
                let on = on.clone();
                let since = since.clone();
                Closure::<dyn FnMut()>::new(move || {
                    if document().hidden() {
                        close_stream(&inner);
                    } else if inner.borrow().stream.is_none() {
                        on(LiveEvent::Poll);
                        open_stream(&inner, &on, &since);
                    }
                })
            };
            let _ = document().add_event_listener_with_callback(
                "visibilitychange",
                listener.as_ref().unchecked_ref(),
            );
            inner.borrow_mut().visibility = Some(listener);
        }

        let ticker = {
            let inner = inner.clone();
            let on = on.clone();
            let since = since.clone();
            move || tick(&inner, &on, &since)
        };
        let interval =
            set_interval_with_handle(ticker, std::time::Duration::from_millis(POLL_MILLIS)).ok();

        let inner = StoredValue::new_local(Some(inner));
        on_cleanup(move || {
            if let Some(interval) = interval {
                interval.clear();
            }
            if let Some(inner) = inner.try_update_value(Option::take).flatten() {
                stop(&inner);
            }
        });
    }

    /// `navigator.locks`, where the browser has it (Web Locks are not in web-sys' stable set).
    fn locks() -> Option<JsValue> {
        let navigator = window().navigator();
        js_sys::Reflect::get(&navigator, &JsValue::from_str("locks"))
            .ok()
            .filter(|l| !l.is_undefined() && !l.is_null())
    }

    /// Waits for the leader lock; once granted, this tab opens the stream and holds the lock
    /// until it stops following.
    fn request_leadership(inner: &Shared, on: &Handler, since: &Since, locks: &JsValue) {
        let Ok(abort) = web_sys::AbortController::new() else {
            return;
        };
        let callback = {
            let inner = inner.clone();
            let on = on.clone();
            let since = since.clone();
            Closure::<dyn FnMut(JsValue) -> js_sys::Promise>::new(move |_lock: JsValue| {
                let mut release = None;
                let held = js_sys::Promise::new(&mut |resolve, _reject| release = Some(resolve));
                if inner.borrow().stopped {
                    return js_sys::Promise::resolve(&JsValue::UNDEFINED);
                }
                {
                    let mut i = inner.borrow_mut();
                    i.release = release;
                    i.leader = true;
                }
                // Catch up on anything that happened while another tab was leading.
                on(LiveEvent::Poll);
                open_stream(&inner, &on, &since);
                held
            })
        };
        let options = js_sys::Object::new();
        let _ = js_sys::Reflect::set(&options, &"signal".into(), &abort.signal());
        let request = js_sys::Reflect::get(locks, &"request".into())
            .ok()
            .and_then(|f| f.dyn_into::<js_sys::Function>().ok());
        if let Some(request) = request {
            let promise = request.call3(
                locks,
                &JsValue::from_str(LEADER_LOCK),
                &options,
                callback.as_ref().unchecked_ref(),
            );
            // An aborted request rejects: that is how a waiting tab stops waiting.
            if let Ok(promise) = promise.and_then(|p| p.dyn_into::<js_sys::Promise>()) {
                let ignore = Closure::<dyn FnMut(JsValue)>::new(|_| {});
                let _ = promise.catch(&ignore);
                ignore.forget();
            }
        }
        let mut i = inner.borrow_mut();
        i.abort = Some(abort);
        i.lock_callback = Some(callback);
    }

    fn open_stream(inner: &Shared, on: &Handler, since: &Since) {
        let Ok(stream) = EventSource::new(&format!("{STREAM_PATH}?since={}", since())) else {
            return;
        };
        let listener = {
            let on = on.clone();
            let inner = inner.clone();
            Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                let Some(text) = event.data().as_string() else {
                    return;
                };
                let Ok(change) = serde_json::from_str::<CardChange>(&text) else {
                    return;
                };
                broadcast(
                    &inner,
                    &Relay::Change {
                        change: change.clone(),
                    },
                );
                on(LiveEvent::Change(change));
            })
        };
        let _ = stream.add_event_listener_with_callback("card", listener.as_ref().unchecked_ref());
        let mut i = inner.borrow_mut();
        i.stream = Some(stream);
        i.stream_listener = Some(listener);
    }

    fn close_stream(inner: &Shared) {
        let mut i = inner.borrow_mut();
        if let Some(stream) = i.stream.take() {
            stream.close();
        }
        i.stream_listener = None;
    }

    fn broadcast(inner: &Shared, relay: &Relay) {
        let i = inner.borrow();
        if let (Some(channel), Ok(text)) = (&i.channel, serde_json::to_string(relay)) {
            let _ = channel.post_message(&JsValue::from_str(&text));
        }
    }

    fn tick(inner: &Shared, on: &Handler, since: &Since) {
        let (leader, state, heard) = {
            let i = inner.borrow();
            (
                i.leader,
                i.stream.as_ref().map(EventSource::ready_state),
                i.leader_heard,
            )
        };
        if !leader {
            // A follower polls only while no leader reports a working stream.
            if js_sys::Date::now() - heard > 2.5 * POLL_MILLIS as f64 {
                on(LiveEvent::Poll);
            }
            return;
        }
        match state {
            Some(EventSource::OPEN) => broadcast(inner, &Relay::Status { open: true }),
            Some(EventSource::CLOSED) => {
                // The browser gave up (e.g. the server restarted and refused once): poll now
                // and open a fresh stream.
                broadcast(inner, &Relay::Status { open: false });
                close_stream(inner);
                on(LiveEvent::Poll);
                open_stream(inner, on, since);
            }
            Some(_) => {
                broadcast(inner, &Relay::Status { open: false });
                on(LiveEvent::Poll);
            }
            // A hidden tab without a leader: nothing until it is visible again.
            None => {}
        }
    }

    fn stop(inner: &Shared) {
        close_stream(inner);
        let mut i = inner.borrow_mut();
        i.stopped = true;
        if i.leader {
            if let Some(channel) = &i.channel {
                if let Ok(text) = serde_json::to_string(&Relay::Status { open: false }) {
                    let _ = channel.post_message(&JsValue::from_str(&text));
                }
            }
        }
        if let Some(channel) = i.channel.take() {
            channel.set_onmessage(None);
            channel.close();
        }
        i.channel_listener = None;
        if let Some(release) = i.release.take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        if let Some(abort) = i.abort.take() {
            abort.abort();
        }
        if let Some(listener) = i.visibility.take() {
            let _ = document().remove_event_listener_with_callback(
                "visibilitychange",
                listener.as_ref().unchecked_ref(),
            );
        }
        // The lock callback may still be called by a browser that ignores the abort; it checks
        // `stopped`. Keep it alive for that.
        if let Some(callback) = i.lock_callback.take() {
            callback.forget();
        }
    }
}
