//! # api — the HTTP face of the connector
//!
//! [`router`] is the whole HTTP API as an axum `Router`, so the same routes run behind API
//! Gateway (the `api` Lambda, through `lambda_http`) and on one machine (`pec-connector serve`).
//! Handlers are thin: they check the request and hand it to a use case in `connector`.
//!
//! * `GET /health` — `{"status": "ok"}`.
//! * `POST /webhooks/zendesk` — Zendesk's webhook: size, bearer token, signature and timestamp
//!   checked ([`connector::outbound::verify`]) before the body is read as JSON, then
//!   [`connector::outbound::Outbound::accept`]. Every refusal is a 4xx whose JSON body
//!   `{"error": "..."}` says what is wrong; a 5xx only when the connector's own state store or
//!   Zendesk cannot be reached (Zendesk then retries the call).

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use connector::outbound::{Outbound, WebhookError, WebhookLimits, WebhookSecrets, parse, verify};
use serde_json::json;

/// What the routes need.
pub struct AppState {
    pub outbound: Arc<Outbound>,
    pub webhook_secrets: WebhookSecrets,
    pub webhook_limits: WebhookLimits,
}

/// The path Zendesk's webhook calls.
pub const WEBHOOK_PATH: &str = "/webhooks/zendesk";

/// Every route of the API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route(WEBHOOK_PATH, post(webhook))
        .fallback(not_found)
        .with_state(state)
}

async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route".to_owned())
}

fn error(status: StatusCode, message: String) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn refused(e: WebhookError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::info!(status = status.as_u16(), reason = %e, "webhook refused");
    error(status, e.to_string())
}

async fn webhook(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let limit = state.webhook_limits.max_body_bytes;
    // Read one byte more than the limit: enough to know it is over, never the whole of a flood.
    let bytes = match to_bytes(body, limit.saturating_add(1)).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let size = headers
                .get("content-length")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(limit + 1);
            return refused(WebhookError::BodyTooLarge { size, limit });
        }
    };
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let verified = match verify(
        &pairs,
        &bytes,
        &state.webhook_secrets,
        Utc::now(),
        &state.webhook_limits,
    ) {
        Ok(v) => v,
        Err(e) => return refused(e),
    };
    let request = match parse(&bytes) {
        Ok(r) => r,
        Err(e) => return refused(e),
    };
    match state.outbound.accept(&verified, request).await {
        Ok(accepted) => (StatusCode::OK, axum::Json(accepted)).into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if status.is_server_error() {
                tracing::error!(error = %e, "webhook not taken on");
            } else {
                tracing::info!(status = status.as_u16(), reason = %e, "webhook refused");
            }
            error(status, e.to_string())
        }
    }
}
