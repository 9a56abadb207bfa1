//! HTTP layer of the Zendesk simulator: the router, the middleware that records requests,
//! injects latency and faults and checks credentials, and thin handlers over [`State`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State as AxumState};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use serde_json::{Value, json};

use super::Credentials;
use super::state::{self, ApiError, Fault, PendingCall, RecordedRequest, State, Update, VIA_API};

/// Larger than Zendesk's 50 MB attachment limit, so big uploads reach the handler.
const BODY_LIMIT: usize = 64 * 1024 * 1024;

pub(crate) struct Shared {
    pub state: Mutex<State>,
    pub credentials: Credentials,
    /// The client the triggers call webhooks with.
    pub http: reqwest::Client,
    /// Where webhook calls run (the runtime the simulator was started on).
    pub runtime: tokio::runtime::Handle,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler must not hide the state from the test that reads it back.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type Ctx = AxumState<Arc<Shared>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/api/v2/tickets", get(list_tickets).post(create_ticket))
        .route("/api/v2/tickets/{id}", get(show_ticket).put(update_ticket))
        .route("/api/v2/tickets/{id}/comments", get(list_comments))
        .route("/api/v2/uploads", post(upload))
        .route("/api/v2/uploads/{token}", delete(delete_upload))
        .route("/api/v2/users/me", get(current_user))
        .route("/api/v2/users/{id}", get(show_user))
        .route("/api/v2/account/settings", get(account_settings))
        .route("/api/v2/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/api/v2/webhooks/{id}",
            get(show_webhook)
                .put(replace_webhook)
                .patch(patch_webhook)
                .delete(delete_webhook),
        )
        .route(
            "/api/v2/webhooks/{id}/signing_secret",
            get(webhook_signing_secret),
        )
        .route(
            "/api/v2/trigger_categories",
            get(list_trigger_categories).post(create_trigger_category),
        )
        .route(
            "/api/v2/trigger_categories/{id}",
            get(show_trigger_category)
                .patch(update_trigger_category)
                .delete(delete_trigger_category),
        )
        .route(
            "/api/v2/ticket_fields",
            get(list_ticket_fields).post(create_ticket_field),
        )
        .route(
            "/api/v2/ticket_fields/{id}",
            get(show_ticket_field).delete(delete_ticket_field),
        )
        .route("/api/v2/triggers", get(list_triggers).post(create_trigger))
        .route(
            "/api/v2/triggers/{id}",
            get(show_trigger).put(update_trigger).delete(delete_trigger),
        )
        .fallback(|| async { error(ApiError::invalid_endpoint()) })
        .layer(middleware::from_fn_with_state(shared.clone(), authenticate));
    let app = Router::new()
        .route("/attachments/token/{token}/", get(download))
        .merge(api)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            record_and_inject,
        ))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(shared);
    // Zendesk also answers every API path with `.json` appended (its docs' examples use it).
    Router::new()
        .fallback_service(app)
        .layer(middleware::map_request(without_json_suffix))
}

/// `/api/v2/tickets/1.json?x` → `/api/v2/tickets/1?x`.
async fn without_json_suffix(mut request: Request) -> Request {
    let uri = request.uri();
    let Some(path) = uri
        .path()
        .strip_suffix(".json")
        .filter(|p| p.starts_with("/api/v2/"))
    else {
        return request;
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = path_and_query.parse() {
        parts.path_and_query = Some(pq);
        if let Ok(new) = axum::http::Uri::from_parts(parts) {
            *request.uri_mut() = new;
        }
    }
    request
}

fn error(e: ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.body)).into_response()
}

fn reply(status: u16, body: Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    (status, axum::Json(body)).into_response()
}

/// Records the request, answers with the next queued fault if there is one, or serves it. The
/// configured latency comes first in both cases, and a client that stops waiting does not stop a
/// request that gets past it.
async fn record_and_inject(AxumState(shared): Ctx, request: Request, next: Next) -> Response {
    let (latency, fault, index) = {
        let mut state = shared.lock();
        state.requests.push(RecordedRequest {
            method: request.method().to_string(),
            path: request.uri().path().to_string(),
            query: request.uri().query().map(str::to_string),
            headers: request
                .headers()
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            at: std::time::Instant::now(),
            rate_window: None,
            rate_limited: false,
        });
        (
            state.latency,
            state.faults.pop_front(),
            state.requests.len() - 1,
        )
    };
    let lost = match fault {
        Some(Fault::AnswerLost(status)) => Some(status),
        _ => None,
    };
    let fault = fault.filter(|_| lost.is_none());
    let Some(fault) = fault else {
        // Read the whole body, then serve in a task of its own, like a real server that finishes
        // a request whose client has given up: a write that timed out may still have happened.
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
            return error(ApiError::bad_request(
                "InvalidValue",
                "cannot read the request body",
            ));
        };
        let mut request = Request::from_parts(parts, axum::body::Body::from(body));
        request.extensions_mut().insert(LoggedAs(index));
        let served = tokio::spawn(async move {
            tokio::time::sleep(latency).await;
            next.run(request).await
        })
        .await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
        // Served, but the client hears only a failure: what it asked may have happened.
        return match lost {
            Some(status) => error(ApiError {
                status,
                body: json!({"error": "ServiceUnavailable", "description": "Injected failure after the request was served"}),
            }),
            None => served,
        };
    };
    tokio::time::sleep(latency).await;
    match fault {
        Fault::RateLimit { retry_after, reset } => rate_limited(retry_after, reset),
        Fault::Status(status) | Fault::AnswerLost(status) => error(ApiError {
            status,
            body: json!({"error": "ServiceUnavailable", "description": "Injected failure"}),
        }),
    }
}

/// Where a request is in the request log (for the rate limit to mark it).
#[derive(Debug, Clone, Copy)]
struct LoggedAs(usize);

/// `429 Too Many Requests` with `Retry-After` and/or `ratelimit-reset` (seconds).
fn rate_limited(retry_after: Option<u64>, reset: Option<u64>) -> Response {
    let mut response = error(ApiError {
        status: 429,
        body: json!({"error": "TooManyRequests", "description": "Rate limit exceeded"}),
    });
    let headers = response.headers_mut();
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if let Some(secs) = reset {
        headers.insert("ratelimit-reset", HeaderValue::from(secs));
        headers.insert("ratelimit-remaining", HeaderValue::from(0));
    }
    response
}

/// API token (`Basic base64(email/token:TOKEN)`) or OAuth (`Bearer TOKEN`), else `401` (§1).
async fn authenticate(AxumState(shared): Ctx, request: Request, next: Next) -> Response {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let creds = &shared.credentials;
    let ok = if let Some(encoded) = value.strip_prefix("Basic ") {
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|raw| String::from_utf8(raw).ok())
            .and_then(|pair| {
                let (user, token) = pair.split_once(':')?;
                let email = user.strip_suffix("/token")?;
                Some(email.eq_ignore_ascii_case(&creds.agent_email) && token == creds.api_token)
            })
            .unwrap_or(false)
    } else if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim() == creds.oauth_token
    } else {
        false
    };
    if !ok {
        return error(ApiError::unauthorized());
    }
    // Every authenticated answer carries the account's limit and what is left of it (§7).
    let logged = request.extensions().get::<LoggedAs>().map(|l| l.0);
    let rate = shared.lock().take_request(logged);
    let mut response = match rate.refused {
        Some(wait) => rate_limited(Some(wait), None),
        None => next.run(request).await,
    };
    let headers = response.headers_mut();
    headers.insert("x-rate-limit", HeaderValue::from(rate.limit));
    headers.insert("x-rate-limit-remaining", HeaderValue::from(rate.remaining));
    response
}

fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|_| ApiError::bad_request("InvalidValue", "the request body is not valid JSON"))
}

/// Record ids (tickets, users) in paths may carry Zendesk's optional `.json` suffix.
fn record_id(raw: &str) -> Result<u64, ApiError> {
    raw.strip_suffix(".json")
        .unwrap_or(raw)
        .parse()
        .map_err(|_| ApiError::not_found())
}

async fn create_ticket(AxumState(shared): Ctx, headers: HeaderMap, body: Bytes) -> Response {
    // A requester the account refuses (a rule set by a test).
    if let Ok(request) = json_body(&body)
        && let Some(email) = request["ticket"]["requester"]["email"].as_str()
        && let Some(refusal) = shared.lock().ticket_refusal(email)
    {
        return match refusal {
            state::TicketRefusal::Invalid => error(ApiError::invalid(
                "requester",
                "InvalidValue",
                "Requester: is suspended",
            )),
            state::TicketRefusal::Unreadable => (
                StatusCode::CREATED,
                [(header::CONTENT_TYPE, "application/json")],
                "{\"ticket\": {\"id\": ",
            )
                .into_response(),
        };
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let outcome = json_body(&body).and_then(|request| {
        let mut state = shared.lock();
        let mut outcome = state.create_ticket(request, key.as_deref())?;
        let mut calls = Vec::new();
        // A replayed answer is not a new ticket: nothing to trigger.
        if state.fire_triggers
            && outcome.idempotency_lookup != Some("hit")
            && let Some(id) = outcome.body["ticket"]["id"].as_u64()
        {
            let comment_id = state
                .tickets
                .get(&id)
                .and_then(|t| t.comments.first())
                .map(|c| c.id);
            let update = Update {
                ticket_id: id,
                created: true,
                via_id: VIA_API,
                user_id: state.agent_id(),
                comment_id,
            };
            calls = state.run_triggers(&update);
            state.refresh_ticket_json(id, &mut outcome.body);
        }
        Ok((outcome, calls))
    });
    match outcome {
        Ok((outcome, calls)) => {
            state::dispatch(&shared, calls);
            let location = outcome.body["ticket"]["url"].as_str().map(str::to_string);
            let mut response = reply(outcome.status, outcome.body);
            if let Some(lookup) = outcome.idempotency_lookup {
                response
                    .headers_mut()
                    .insert("x-idempotency-lookup", HeaderValue::from_static(lookup));
            }
            if let Some(location) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Err(e) => error(e),
    }
}

async fn list_tickets(
    AxumState(shared): Ctx,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    reply(
        200,
        shared
            .lock()
            .list_tickets(query.get("external_id").map(String::as_str)),
    )
}

async fn show_ticket(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    match record_id(&id).and_then(|id| shared.lock().show_ticket(id)) {
        Ok(body) => reply(200, body),
        Err(e) => error(e),
    }
}

async fn update_ticket(AxumState(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let result = record_id(&id).and_then(|id| {
        let request = json_body(&body)?;
        let mut state = shared.lock();
        if let Err(wait) = state.count_update(id) {
            return Ok(Err(wait));
        }
        let mut body = state.update_ticket(id, &request)?;
        let calls = if state.fire_triggers {
            let with_comment = request["ticket"]["comment"].is_object();
            let comment_id = state
                .tickets
                .get(&id)
                .and_then(|t| t.comments.last())
                .map(|c| c.id)
                .filter(|_| with_comment);
            let update = Update {
                ticket_id: id,
                created: false,
                via_id: VIA_API,
                user_id: state.agent_id(),
                comment_id,
            };
            let calls = state.run_triggers(&update);
            state.refresh_ticket_json(id, &mut body);
            calls
        } else {
            Vec::<PendingCall>::new()
        };
        Ok(Ok((body, calls)))
    });
    match result {
        Ok(Ok((body, calls))) => {
            state::dispatch(&shared, calls);
            reply(200, body)
        }
        Ok(Err(wait)) => rate_limited(Some(wait), None),
        Err(e) => error(e),
    }
}

async fn list_comments(
    AxumState(shared): Ctx,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    match record_id(&id).and_then(|id| shared.lock().list_comments(id, &query)) {
        Ok(body) => reply(200, body),
        Err(e) => error(e),
    }
}

async fn show_user(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    // `/api/v2/users/me` has its own route; `me.json` arrives here.
    if id == "me.json" {
        return reply(200, shared.lock().current_user());
    }
    match record_id(&id).and_then(|id| shared.lock().show_user(id)) {
        Ok(body) => reply(200, body),
        Err(e) => error(e),
    }
}

/// The user the credentials belong to (both the API token and the OAuth token act as the API
/// agent).
async fn current_user(AxumState(shared): Ctx) -> Response {
    reply(200, shared.lock().current_user())
}

async fn account_settings(AxumState(shared): Ctx) -> Response {
    reply(200, shared.lock().account_settings())
}

async fn upload(
    AxumState(shared): Ctx,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/binary");
    let result = shared.lock().upload(
        query.get("filename").map(String::as_str),
        query.get("token").map(String::as_str),
        content_type,
        body.to_vec(),
    );
    match result {
        Ok(body) => reply(201, body),
        Err(e) => error(e),
    }
}

async fn delete_upload(AxumState(shared): Ctx, Path(token): Path<String>) -> Response {
    match shared.lock().delete_upload(&token) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

/// Attachment content, as served at `content_url`. Served without credentials: clients must
/// not send Zendesk credentials to content URLs (reference §3).
async fn download(AxumState(shared): Ctx, Path(token): Path<String>) -> Response {
    let state = shared.lock();
    match state.attachment_by_url_token(&token) {
        Some(a) => {
            let content_type = HeaderValue::from_str(&a.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            ([(header::CONTENT_TYPE, content_type)], a.data.clone()).into_response()
        }
        None => error(ApiError::not_found()),
    }
}

/// `Ok(body)` with `status`, `Ok(None)` as `204 No Content`, or the error.
fn answer(status: u16, result: Result<Option<Value>, ApiError>) -> Response {
    match result {
        Ok(Some(body)) => reply(status, body),
        Ok(None) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

type Params = Query<HashMap<String, String>>;

async fn create_webhook(AxumState(shared): Ctx, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().create_webhook(&r));
    answer(201, result.map(Some))
}

async fn list_webhooks(AxumState(shared): Ctx, Query(query): Params) -> Response {
    answer(200, shared.lock().list_webhooks(&query).map(Some))
}

async fn show_webhook(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    answer(200, shared.lock().show_webhook(&id).map(Some))
}

async fn replace_webhook(AxumState(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().update_webhook(&id, &r, false));
    answer(204, result.map(|()| None))
}

async fn patch_webhook(AxumState(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().update_webhook(&id, &r, true));
    answer(204, result.map(|()| None))
}

async fn delete_webhook(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    answer(204, shared.lock().delete_webhook(&id).map(|()| None))
}

async fn webhook_signing_secret(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    answer(200, shared.lock().webhook_signing_secret(&id).map(Some))
}

async fn create_trigger_category(AxumState(shared): Ctx, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().create_trigger_category(&r));
    // The OAS documents `200` (not `201`) for Create Ticket Trigger Category.
    answer(200, result.map(Some))
}

async fn list_trigger_categories(AxumState(shared): Ctx, Query(query): Params) -> Response {
    answer(200, shared.lock().list_trigger_categories(&query).map(Some))
}

async fn show_trigger_category(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    answer(200, shared.lock().show_trigger_category(&id).map(Some))
}

async fn update_trigger_category(
    AxumState(shared): Ctx,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().update_trigger_category(&id, &r));
    answer(200, result.map(Some))
}

async fn delete_trigger_category(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    answer(
        204,
        shared.lock().delete_trigger_category(&id).map(|()| None),
    )
}

async fn create_ticket_field(AxumState(shared): Ctx, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().create_ticket_field(&r));
    answer(201, result.map(Some))
}

async fn list_ticket_fields(AxumState(shared): Ctx, Query(query): Params) -> Response {
    answer(200, shared.lock().list_ticket_fields(&query).map(Some))
}

async fn show_ticket_field(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    let result = record_id(&id).and_then(|id| shared.lock().show_ticket_field(id));
    answer(200, result.map(Some))
}

async fn delete_ticket_field(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    let result = record_id(&id).and_then(|id| shared.lock().delete_ticket_field(id));
    answer(204, result.map(|()| None))
}

async fn create_trigger(AxumState(shared): Ctx, body: Bytes) -> Response {
    let result = json_body(&body).and_then(|r| shared.lock().create_trigger(&r));
    answer(201, result.map(Some))
}

async fn list_triggers(AxumState(shared): Ctx, Query(query): Params) -> Response {
    answer(200, shared.lock().list_triggers(&query).map(Some))
}

async fn show_trigger(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    let result = record_id(&id).and_then(|id| shared.lock().show_trigger(id));
    answer(200, result.map(Some))
}

async fn update_trigger(AxumState(shared): Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let result = record_id(&id).and_then(|id| {
        let request = json_body(&body)?;
        shared.lock().update_trigger(id, &request)
    });
    answer(200, result.map(Some))
}

async fn delete_trigger(AxumState(shared): Ctx, Path(id): Path<String>) -> Response {
    let result = record_id(&id).and_then(|id| shared.lock().delete_trigger(id));
    answer(204, result.map(|()| None))
}
