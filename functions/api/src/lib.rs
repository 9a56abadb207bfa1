//! # api — the HTTP face of the connector
//!
//! [`router`] is the whole HTTP API as an axum `Router`, so the same routes run behind API
//! Gateway (the `api` Lambda, through `lambda_http`) and on one machine (`pec-connector serve`).
//! Handlers are thin: they check the request and hand it to a use case in `connector`.
//!
//! * `GET /health` — `{"status": "ok"}`.
//! * `POST /webhooks/zendesk` — Zendesk's webhook: size, bearer token, signature and timestamp
//!   checked ([`connector::outbound::verify`]) before the body is read as JSON, then
//!   [`connector::outbound::Outbound::accept`]; `POST /webhooks/zendesk/{instance}` is the same
//!   for another Zendesk instance, with that instance's secrets.
//! * `/accounts...` and `/zendesk-instances...` — the admin API ([`connector::admin::Admin`]),
//!   behind the admin bearer token; described by `GET /openapi.json` ([`openapi`]).
//!
//! * `GET /providers` — the PEC providers' presets (IMAP and SMTP servers), for the console.
//! * `GET /admin` (and its `console.js`, `console.css`) — the admin console ([`console`]), a page
//!   over the admin API, with strict security headers.
//!
//! [`routes`] lists every method and path [`router`] serves; a test checks the SAM template
//! deploys each of them.
//!
//! Every refusal is a 4xx whose JSON body `{"error": "...", "field": "..."}` says what is wrong;
//! a 5xx only when the connector's own state store, secrets or Zendesk cannot be reached.

// The OpenAPI document is one `json!` literal, deeper than the default limit.
#![recursion_limit = "256"]

pub mod console;
pub mod openapi;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Path, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use chrono::Utc;
use connector::admin::instances::InstanceRegistration;
use connector::admin::{Admin, AdminError, Changes, Registration};
use connector::domain::{AccountId, InstanceId, SecretName};
use connector::outbound::{Outbound, WebhookError, WebhookLimits, WebhookSecrets, parse, verify};
use connector::ports::Secrets;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;

/// The path Zendesk's webhook calls.
pub const WEBHOOK_PATH: &str = "/webhooks/zendesk";

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 128 * 1024;

/// Where the webhook's secrets come from: given (tests, `serve` with fixed secrets), or read from
/// the secrets port and kept for a minute (they appear when the first account of an instance is
/// registered and change when its webhook is provisioned again). Each Zendesk instance has its
/// own; fixed secrets are the default instance's.
pub enum WebhookKeys {
    Fixed(Arc<WebhookSecrets>),
    Stored {
        secrets: Arc<dyn Secrets>,
        cache: Mutex<KeyCache>,
    },
}

/// Each instance's webhook secrets (`None`: the default instance) and when they were read.
type KeyCache = HashMap<Option<InstanceId>, (Instant, Arc<WebhookSecrets>)>;

impl WebhookKeys {
    pub fn fixed(secrets: WebhookSecrets) -> Self {
        WebhookKeys::Fixed(Arc::new(secrets))
    }

    pub fn stored(secrets: Arc<dyn Secrets>) -> Self {
        WebhookKeys::Stored {
            secrets,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The secrets of `instance` (`None`: the default one), or `None` when its webhook is not
    /// provisioned yet.
    async fn get(
        &self,
        instance: Option<&InstanceId>,
    ) -> Result<Option<Arc<WebhookSecrets>>, String> {
        const FRESH: Duration = Duration::from_secs(60);
        match self {
            WebhookKeys::Fixed(s) => Ok(instance.is_none().then(|| s.clone())),
            WebhookKeys::Stored { secrets, cache } => {
                let key = instance.cloned();
                if let Some((at, s)) = cache.lock().expect("not poisoned").get(&key)
                    && at.elapsed() < FRESH
                {
                    return Ok(Some(s.clone()));
                }
                let (signing_name, bearer_name) = match instance {
                    None => (
                        SecretName::WebhookSigningSecret,
                        SecretName::WebhookBearerToken,
                    ),
                    Some(i) => (
                        SecretName::InstanceWebhookSigningSecret(i.clone()),
                        SecretName::InstanceWebhookBearerToken(i.clone()),
                    ),
                };
                let signing = secrets.get(&signing_name).await;
                let bearer = secrets.get(&bearer_name).await;
                match (signing, bearer) {
                    (Ok(signing), Ok(bearer)) => {
                        let s = Arc::new(WebhookSecrets::new(signing, bearer));
                        cache
                            .lock()
                            .expect("not poisoned")
                            .insert(key, (Instant::now(), s.clone()));
                        Ok(Some(s))
                    }
                    (Err(e), _) | (_, Err(e)) if e.is_transient() => Err(e.to_string()),
                    _ => Ok(None),
                }
            }
        }
    }

    /// Forgets the cached secrets (after provisioning changed them).
    fn refresh(&self) {
        if let WebhookKeys::Stored { cache, .. } = self {
            cache.lock().expect("not poisoned").clear();
        }
    }
}

/// What the routes need.
pub struct AppState {
    pub outbound: Arc<Outbound>,
    pub webhook_secrets: WebhookKeys,
    pub webhook_limits: WebhookLimits,
    /// The admin use cases and the token admin calls must carry; without them every admin
    /// route answers 503.
    pub admin: Option<(Arc<Admin>, SecretString)>,
    /// How the admin console is served (who may frame it).
    pub console: console::ConsoleSettings,
}

impl AppState {
    /// The api Lambda's state: the deployment's configuration read from the environment and the
    /// AWS adapters built from it, once per container.
    #[cfg(feature = "lambda")]
    pub async fn from_env() -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let config = connector::wiring::Config::from_env()?;
        let parts = connector::wiring::AwsParts::from_config(&config).await?;
        let admin = parts
            .admin(&config)
            .await?
            .map(|(admin, token)| (Arc::new(admin), token));
        Ok(AppState {
            outbound: Arc::new(parts.outbound()),
            webhook_secrets: WebhookKeys::stored(parts.parts.secrets.clone()),
            webhook_limits: WebhookLimits::default(),
            admin,
            console: console::ConsoleSettings::from_env()?,
        })
    }
}

/// Every route of the API: [`router`] is built from this list, so [`routes`] names exactly the
/// routes it serves (the SAM template's `HttpApi` events are checked against it).
fn endpoints() -> Vec<Endpoint> {
    vec![
        endpoint(Method::GET, "/health", health),
        endpoint(Method::POST, WEBHOOK_PATH, webhook),
        endpoint(
            Method::POST,
            "/webhooks/zendesk/{instance}",
            instance_webhook,
        ),
        endpoint(Method::POST, "/zendesk-instances", register_instance),
        endpoint(Method::GET, "/zendesk-instances", list_instances),
        endpoint(Method::DELETE, "/zendesk-instances/{id}", delete_instance),
        endpoint(Method::GET, "/openapi.json", openapi_doc),
        endpoint(Method::POST, "/accounts", register),
        endpoint(Method::GET, "/accounts", list),
        endpoint(Method::GET, "/accounts/{id}", show),
        endpoint(Method::PATCH, "/accounts/{id}", change),
        endpoint(Method::DELETE, "/accounts/{id}", remove),
        endpoint(Method::POST, "/accounts/{id}/poll", poll_now),
        endpoint(Method::GET, "/providers", providers),
        endpoint(Method::GET, console::PAGE_PATH, console_page),
        endpoint(Method::GET, console::SCRIPT_PATH, console_script),
        endpoint(Method::GET, console::STYLE_PATH, console_style),
    ]
}

/// A method and path and the handler serving them.
type Endpoint = (Method, &'static str, MethodRouter<Arc<AppState>>);

fn endpoint<H, T>(method: Method, path: &'static str, handler: H) -> Endpoint
where
    H: Handler<T, Arc<AppState>>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a standard HTTP method");
    (method, path, on(filter, handler))
}

/// The method and path of every route [`router`] serves (`GET` ones answer `HEAD` too); any
/// other request gets the 404 fallback, or 405 on a known path.
pub fn routes() -> Vec<(Method, &'static str)> {
    endpoints()
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect()
}

/// Every route of the API.
pub fn router(state: Arc<AppState>) -> Router {
    endpoints()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| {
            router.route(path, handler)
        })
        .fallback(not_found)
        .with_state(state)
}

async fn health() -> Response {
    (StatusCode::OK, axum::Json(json!({"status": "ok"}))).into_response()
}

async fn openapi_doc() -> Response {
    (StatusCode::OK, axum::Json(openapi::document())).into_response()
}

async fn console_page(State(state): State<Arc<AppState>>) -> Response {
    console::asset(
        &state.console,
        "text/html; charset=utf-8",
        console::INDEX_HTML,
    )
}

async fn console_script(State(state): State<Arc<AppState>>) -> Response {
    console::asset(
        &state.console,
        "text/javascript; charset=utf-8",
        console::CONSOLE_JS,
    )
}

async fn console_style(State(state): State<Arc<AppState>>) -> Response {
    console::asset(
        &state.console,
        "text/css; charset=utf-8",
        console::CONSOLE_CSS,
    )
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such route".to_owned(), None)
}

fn error(status: StatusCode, message: String, field: Option<&str>) -> Response {
    let mut body = json!({ "error": message });
    if let Some(field) = field {
        body["field"] = json!(field);
    }
    (status, axum::Json(body)).into_response()
}

fn refused(e: WebhookError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    tracing::info!(status = status.as_u16(), reason = %e, "webhook refused");
    error(status, e.to_string(), None)
}

/// Reads at most `limit` bytes; `Err` when the body is longer.
async fn body_within(body: Body, limit: usize) -> Result<axum::body::Bytes, ()> {
    // One byte more than the limit: enough to know it is over, never the whole of a flood.
    to_bytes(body, limit.saturating_add(1))
        .await
        .map_err(|_| ())
}

async fn webhook(State(state): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    take_webhook(&state, None, headers, body).await
}

async fn instance_webhook(
    State(state): State<Arc<AppState>>,
    Path(instance): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Ok(instance) = InstanceId::parse(&instance) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("no Zendesk instance {instance:?}"),
            None,
        );
    };
    take_webhook(&state, Some(&instance), headers, body).await
}

async fn take_webhook(
    state: &AppState,
    instance: Option<&InstanceId>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let limit = state.webhook_limits.max_body_bytes;
    let Ok(bytes) = body_within(body, limit).await else {
        let size = headers
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(limit + 1);
        return refused(WebhookError::BodyTooLarge { size, limit });
    };
    let keys = match state.webhook_secrets.get(instance).await {
        Ok(Some(keys)) => keys,
        Ok(None) => {
            return error(
                StatusCode::UNAUTHORIZED,
                "the webhook is not provisioned yet: register an account first".to_owned(),
                None,
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read the webhook secrets");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot read the webhook secrets now".to_owned(),
                None,
            );
        }
    };
    let pairs: Vec<(&str, &str)> = headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let verified = match verify(&pairs, &bytes, &keys, Utc::now(), &state.webhook_limits) {
        Ok(v) => v,
        Err(e) => return refused(e),
    };
    let request = match parse(&bytes) {
        Ok(r) => r,
        Err(e) => {
            // Proven to be Zendesk's, but unusable (a placeholder value may have broken the
            // JSON): Zendesk does not retry a 4xx, so the agents are told on the ticket.
            if let Some(ticket) = connector::outbound::webhook::ticket_hint(&bytes) {
                state
                    .outbound
                    .note_unusable_body(instance, ticket, &e)
                    .await;
            }
            return refused(e);
        }
    };
    match state.outbound.accept_on(instance, &verified, request).await {
        Ok(accepted) => (StatusCode::OK, axum::Json(accepted)).into_response(),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            if status.is_server_error() {
                tracing::error!(error = %e, "webhook not taken on");
            } else {
                tracing::info!(status = status.as_u16(), reason = %e, "webhook refused");
            }
            error(status, e.to_string(), None)
        }
    }
}

// ----- admin ---------------------------------------------------------------------------------

/// An admin call refused: its status, message and the field at fault.
struct Refusal {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.message, self.field)
    }
}

impl From<AdminError> for Refusal {
    fn from(e: AdminError) -> Self {
        let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        if status.is_server_error() {
            tracing::error!(error = %e, "admin call failed");
        } else {
            tracing::info!(status = status.as_u16(), reason = %e, "admin call refused");
        }
        Refusal {
            status,
            message: e.to_string(),
            field: e.field(),
        }
    }
}

/// The admin use cases, once the caller has shown the admin token.
fn admin(state: &AppState, headers: &HeaderMap) -> Result<Arc<Admin>, Refusal> {
    let Some((admin, token)) = &state.admin else {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the admin API is not configured on this deployment",
        ));
    };
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::UNAUTHORIZED,
                "missing admin token: expected an `Authorization: Bearer <admin token>` header",
            )
        })?;
    let expected = token.expose_secret().as_bytes();
    if expected.is_empty() || !bool::from(given.as_bytes().ct_eq(expected)) {
        return Err(Refusal::new(StatusCode::UNAUTHORIZED, "wrong admin token"));
    }
    if !admin.options.webhook_url.is_empty() {
        return Ok(admin.clone());
    }
    // No public URL configured: Zendesk is given the address this call came to.
    let host = headers
        .get("host")
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .ok_or_else(|| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "no Host header to build the webhook URL from (or configure PUBLIC_URL)",
            )
        })?;
    let scheme = match headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some("http") => "http",
        _ => "https",
    };
    let mut scoped = (**admin).clone();
    scoped.options.webhook_url = format!("{scheme}://{host}{WEBHOOK_PATH}");
    Ok(Arc::new(scoped))
}

fn account_id(raw: &str) -> Result<AccountId, Refusal> {
    AccountId::parse(raw)
        .map_err(|_| Refusal::new(StatusCode::NOT_FOUND, format!("no account {raw:?}")))
}

async fn admin_body(body: Body) -> Result<axum::body::Bytes, Refusal> {
    body_within(body, MAX_ADMIN_BODY)
        .await
        .map_err(|_| Refusal {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("body over the limit of {MAX_ADMIN_BODY} bytes"),
            field: Some("body"),
        })
}

fn json_answer(status: StatusCode, value: impl serde::Serialize) -> Response {
    (status, axum::Json(value)).into_response()
}

async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let bytes = admin_body(body).await?;
    let registration = Registration::parse(&bytes).map_err(AdminError::from)?;
    let result = admin.register(registration).await;
    state.webhook_secrets.refresh();
    let (view, created) = result?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_answer(status, view))
}

async fn list(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Result<Response, Refusal> {
    let accounts = admin(&state, &headers)?.list().await?;
    Ok(json_answer(StatusCode::OK, json!({ "accounts": accounts })))
}

async fn show(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let view = admin.get(&account_id(&id)?).await?;
    Ok(json_answer(StatusCode::OK, view))
}

async fn change(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let id = account_id(&id)?;
    let bytes = admin_body(body).await?;
    let changes = Changes::parse(&bytes).map_err(AdminError::from)?;
    let result = admin.update(&id, changes).await;
    state.webhook_secrets.refresh();
    Ok(json_answer(StatusCode::OK, result?))
}

async fn remove(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let result = admin.delete(&account_id(&id)?).await;
    state.webhook_secrets.refresh();
    result?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn poll_now(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let outcome = admin.poll_now(&account_id(&id)?).await?;
    Ok(json_answer(StatusCode::OK, outcome))
}

async fn register_instance(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let bytes = admin_body(body).await?;
    let registration = InstanceRegistration::parse(&bytes)?;
    let (view, created) = admin.register_instance(registration).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(json_answer(status, view))
}

async fn list_instances(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let instances = admin(&state, &headers)?.list_instances().await?;
    Ok(json_answer(
        StatusCode::OK,
        json!({ "zendesk_instances": instances }),
    ))
}

async fn delete_instance(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, Refusal> {
    let admin = admin(&state, &headers)?;
    let id = InstanceId::parse(&id)
        .map_err(|_| Refusal::new(StatusCode::NOT_FOUND, format!("no Zendesk instance {id:?}")))?;
    admin.delete_instance(&id).await?;
    state.webhook_secrets.refresh();
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn providers(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    admin(&state, &headers)?;
    let presets: Vec<_> = connector::admin::PRESETS
        .iter()
        .map(|p| {
            json!({
                "name": p.name,
                "label": p.label,
                "imap_host": p.imap_host,
                "imap_port": connector::admin::registration::IMAPS_PORT,
                "smtp_host": p.smtp_host,
                "smtp_port": connector::admin::registration::SMTPS_PORT,
            })
        })
        .collect();
    Ok(json_answer(StatusCode::OK, json!({ "providers": presets })))
}
