//! The HTTP surface: routes, the JSON extractor that turns bad input into FastAPI-style 422s,
//! and the contact and tokenization-URL endpoints.

use std::time::Instant;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use rand::RngCore;
use serde_json::{json, Value};
use uuid::Uuid;

use jetpay::wire::{Contact, NewContact, TokenizationUrl};

use crate::error::{ApiError, Issue};
use crate::faults::EarlyAt;
use crate::state::AppState;
use crate::store::format_time;
use crate::{
    auth, card_service, controls, dashboard, dashboard_actions, dispatcher, events, faults,
    hosted_form, signing, trigger, webhooks,
};

/// Largest request body accepted anywhere.
const BODY_LIMIT: usize = 64 * 1024;

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/contact", put(create_contact))
        .route(
            "/contact/{identifier}/creditcards/url",
            post(create_card_url),
        )
        .route("/webhooks/", post(webhooks::create).get(webhooks::list))
        .route("/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/webhooks/{identifier}",
            get(webhooks::get)
                .patch(webhooks::patch)
                .delete(webhooks::delete),
        )
        .route("/_sandbox/keys/rotate", post(signing::rotate))
        .route(
            "/_sandbox/faults",
            get(faults::get).post(faults::set).delete(faults::clear),
        )
        .route("/_sandbox/events", get(events::list))
        .route("/_sandbox/contacts", get(list_contacts))
        .route("/_sandbox/attempts", get(controls::attempts))
        .route("/_sandbox/cards/pending", get(trigger::list_pending))
        .route(
            "/_sandbox/cards/{credit_card_id}/result",
            post(trigger::handle),
        )
        .route(
            "/_sandbox/webhooks/{identifier}/attempts",
            get(dispatcher::attempts),
        )
        .route(
            "/_sandbox/webhooks/{identifier}/resend",
            post(controls::resend),
        )
        .route(
            "/_sandbox/webhooks/{identifier}/pause",
            post(controls::pause),
        )
        .route(
            "/_sandbox/webhooks/{identifier}/resume",
            post(controls::resume),
        )
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let open = Router::new()
        .route("/.well-known/jwks.json", get(signing::jwks))
        .route("/_sandbox", get(dashboard::page))
        .route("/_sandbox/", get(dashboard::page))
        .merge(dashboard_actions::router());

    api.merge(open)
        .merge(hosted_form::router(&state))
        .fallback(|| async { ApiError::NotFound("Not Found") })
        .layer(middleware::from_fn(log_requests))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Logs each request by its route template: paths can hold session ids, which are secrets.
async fn log_requests(matched: Option<MatchedPath>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = matched.map_or_else(|| "(no route)".to_owned(), |m| m.as_str().to_owned());
    let started = Instant::now();
    let response = next.run(request).await;
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        latency_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}

/// `Json<T>` whose rejections are 422s in the API's error shape.
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(ValidJson(value)),
            Err(rejection) => {
                let kind = match &rejection {
                    JsonRejection::JsonDataError(_) => "value_error",
                    JsonRejection::JsonSyntaxError(_) => "json_invalid",
                    JsonRejection::MissingJsonContentType(_) => "content_type",
                    _ => "body",
                };
                Err(ApiError::invalid(Issue {
                    loc: vec!["body".to_owned()],
                    msg: rejection.body_text(),
                    kind: kind.to_owned(),
                }))
            }
        }
    }
}

/// A UUID path parameter, or a 422 naming it.
pub fn parse_uuid(param: &str, value: &str) -> Result<Uuid, ApiError> {
    value.parse().map_err(|_| {
        ApiError::invalid(Issue::path(
            param,
            "Input should be a valid UUID",
            "uuid_parsing",
        ))
    })
}

/// `PUT /contact`.
async fn create_contact(
    State(state): State<AppState>,
    ValidJson(new): ValidJson<NewContact>,
) -> Result<Json<Contact>, ApiError> {
    let email = new.email.trim();
    let valid_email = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if !valid_email {
        return Err(ApiError::invalid(Issue::body(
            "email",
            "value is not a valid email address",
            "value_error",
        )));
    }
    let contact = Contact {
        id: Uuid::new_v4(),
        email: email.to_owned(),
        name: new.name,
        tags: new.tags,
        language: new.language,
    };
    sqlx::query(
        "INSERT INTO contacts (id, email, name, tags, language, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(contact.id.to_string())
    .bind(&contact.email)
    .bind(&contact.name)
    .bind(serde_json::to_string(&contact.tags).unwrap_or_else(|_| "[]".to_owned()))
    .bind(&contact.language)
    .bind(format_time(Utc::now()))
    .execute(&state.pool)
    .await?;
    tracing::info!(contact_id = %contact.id, "contact created");
    Ok(Json(contact))
}

/// `GET /_sandbox/contacts`: every contact, oldest first (id and email), so a test can count
/// what a platform created at Jetpay rather than what it stored itself.
async fn list_contacts(State(state): State<AppState>) -> Result<Json<Vec<Value>>, ApiError> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT id, email FROM contacts ORDER BY created_at, id")
            .fetch_all(&state.pool)
            .await?;
    Ok(Json(
        rows.into_iter()
            .map(|(id, email)| json!({"id": id, "email": email}))
            .collect(),
    ))
}

/// A session id: 192 random bits, URL-safe.
fn new_session_id() -> String {
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `POST /contact/{identifier}/creditcards/url`: a single-use, expiring URL of the hosted card
/// form, and the id the card will have.
async fn create_card_url(
    State(state): State<AppState>,
    Path(identifier): Path<String>,
) -> Result<Json<TokenizationUrl>, ApiError> {
    let contact_id = parse_uuid("identifier", &identifier)?.to_string();
    let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM contacts WHERE id = ?")
        .bind(&contact_id)
        .fetch_optional(&state.pool)
        .await?;
    if exists.is_none() {
        return Err(ApiError::NotFound("Contact not found"));
    }
    let session_id = new_session_id();
    let card_id = Uuid::new_v4().to_string();
    let now = Utc::now();
    let ttl_ms = i64::try_from(state.config.url_ttl.as_millis()).unwrap_or(i64::MAX / 2);
    sqlx::query(
        "INSERT INTO tokenization_sessions (id, contact_id, credit_card_id, created_at, expires_at_ms) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&session_id)
    .bind(&contact_id)
    .bind(&card_id)
    .bind(format_time(now))
    .bind(now.timestamp_millis().saturating_add(ttl_ms))
    .execute(&state.pool)
    .await?;
    let url = state
        .base_url
        .join(&format!("tokenize/{session_id}"))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    tracing::info!(contact_id = %contact_id, credit_card_id = %card_id, "tokenization URL created");

    if state.faults.take_early(EarlyAt::UrlCreated) {
        card_service::tokenize_at_url_creation(&state, &session_id, &contact_id, &card_id).await?;
    }
    Ok(Json(TokenizationUrl {
        url: url.to_string(),
        credit_card_id: card_id,
    }))
}
