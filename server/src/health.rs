//! `GET /health` (the process is alive) and `GET /ready` (it can do its job: take it out of the
//! load balancer while not). Readiness answers JSON naming every check and what is not ready.

use axum::{
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    Json,
};
use jetpay::wire::WebhookState;
use serde_json::{json, Map, Value};

use crate::state::AppState;

pub async fn health() -> &'static str {
    "ok"
}

pub async fn ready(State(state): State<AppState>) -> Response {
    let backend = &state.backend;
    let mut checks = Map::new();
    let mut not_ready = Vec::new();
    let mut check = |name: &str, result: Result<(), String>| match result {
        Ok(()) => {
            checks.insert(name.into(), json!("ok"));
        }
        Err(problem) => {
            checks.insert(name.into(), json!(problem));
            not_ready.push(format!("{name}: {problem}"));
        }
    };

    let database = backend.store.ping().await;
    check(
        "database",
        database
            .as_ref()
            .map(|_| ())
            .map_err(|_| "unreachable".into()),
    );
    check(
        "migrations",
        match backend.store.schema_is_current().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("not all applied".into()),
            Err(_) => Err("unknown (database unreachable)".into()),
        },
    );
    let registered = matches!(
        backend
            .store
            .webhook_registration(&state.callback_url)
            .await,
        Ok(Some(_))
    );
    check(
        "webhook",
        match (registered, backend.webhook_state()) {
            (false, _) => Err("not registered at Jetpay yet".into()),
            (true, None) => Err("registered, state not read from Jetpay yet".into()),
            (true, Some(WebhookState::Failed)) => Err("Jetpay marked it failed (reviving)".into()),
            (true, Some(_)) => Ok(()),
        },
    );
    check(
        "jetpay_keys",
        if state.verifier.ensure_keys().await {
            Ok(())
        } else {
            Err("Jetpay's signing keys could not be loaded".into())
        },
    );
    let ready = not_ready.is_empty();
    // Holes given up do not stop the server from working; they are reported for a person to
    // look at (Jetpay's dashboard has the events).
    let gaps = backend.store.given_up_gaps().await.unwrap_or_default();
    let body = json!({
        "ready": ready,
        "checks": Value::Object(checks),
        "not_ready": not_ready,
        "event_gaps_given_up": gaps,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
