//! The HTTP client: one method per Zendesk operation, all through one retry loop bounded by the
//! caller's deadline.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::{Auth, RetryPolicy, ZendeskConfig};
use crate::error::{FieldError, ZendeskError};
use crate::model::{
    Comment, NewTicket, Ticket, TicketComment, TicketId, TicketUpdate, UploadToken,
};

/// Comment bodies longer than this are truncated by Zendesk without error (reference §2.5), so
/// the client refuses them: put long text in an attachment.
pub const COMMENT_BODY_LIMIT: usize = 64 * 1024;

/// Page size limit of list endpoints.
const MAX_PAGE: usize = 100;

/// A Zendesk Support API client. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct ZendeskClient {
    http: reqwest::Client,
    base_url: String,
    auth: Auth,
    timeout: Duration,
    retry: RetryPolicy,
}

impl std::fmt::Debug for ZendeskClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZendeskClient")
            .field("base_url", &self.base_url)
            .field("auth", &self.auth)
            .finish_non_exhaustive()
    }
}

/// When a failed request may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replay {
    /// Repeating it cannot duplicate anything (reads, idempotent writes).
    Always,
    /// Only when Zendesk surely did not process it (`429`, `503`, connection refused): a comment
    /// whose first attempt timed out may already exist.
    IfUnprocessed,
}

enum Body {
    Empty,
    Json(Value),
    Raw { content_type: String, data: Bytes },
}

struct Call {
    method: Method,
    path: String,
    query: Vec<(&'static str, String)>,
    body: Body,
    idempotency_key: Option<String>,
    replay: Replay,
}

impl Call {
    fn new(method: Method, path: String) -> Self {
        Call {
            method,
            path,
            query: Vec::new(),
            body: Body::Empty,
            idempotency_key: None,
            replay: Replay::Always,
        }
    }

    fn op(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

#[derive(Deserialize)]
struct TicketEnvelope {
    ticket: Ticket,
}

#[derive(Deserialize)]
struct TicketsEnvelope {
    #[serde(default)]
    tickets: Vec<Ticket>,
}

#[derive(Deserialize)]
struct UploadEnvelope {
    upload: UploadBody,
}

#[derive(Deserialize)]
struct UploadBody {
    token: UploadToken,
}

#[derive(Deserialize)]
struct CommentsPage {
    #[serde(default)]
    comments: Vec<TicketComment>,
    #[serde(default)]
    meta: Option<CursorMeta>,
}

#[derive(Deserialize)]
struct CursorMeta {
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    after_cursor: Option<String>,
}

impl ZendeskClient {
    /// Builds the client (rustls with the platform's roots; plain `http` only for tests).
    pub fn new(config: ZendeskConfig) -> Result<Self, ZendeskError> {
        let base_url = config.base_url.trim_end_matches('/').to_string();
        let parsed = reqwest::Url::parse(&base_url)
            .map_err(|e| ZendeskError::Config(format!("base url {base_url:?}: {e}")))?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(ZendeskError::Config(format!(
                "base url {base_url:?} is not http(s)"
            )));
        }
        if let Auth::Basic { email, .. } = &config.auth
            && email.trim().is_empty()
        {
            return Err(ZendeskError::Config("the API user e-mail is empty".into()));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("pec-connector/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ZendeskError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(ZendeskClient {
            http,
            base_url,
            auth: config.auth,
            timeout: config.timeout,
            retry: config.retry,
        })
    }

    /// Creates a ticket. `idempotency_key` makes retries within Zendesk's 2-hour window return
    /// the first ticket instead of creating another (reference §2.2).
    pub async fn create_ticket(
        &self,
        ticket: &NewTicket,
        idempotency_key: &str,
        deadline: Instant,
    ) -> Result<Ticket, ZendeskError> {
        check_comment(&ticket.comment)?;
        let mut call = Call::new(Method::POST, "/api/v2/tickets".into());
        call.body = Body::Json(json!({ "ticket": ticket }));
        call.idempotency_key = Some(idempotency_key.to_string());
        let envelope: TicketEnvelope = self.call(call, deadline).await?;
        Ok(envelope.ticket)
    }

    /// Uploads one file. Pass the token of a previous upload as `add_to` to put several files
    /// under one token (reference §3); the returned token is the one to put in a comment.
    /// A first upload is repeated on any transient failure (at worst it leaves an unused upload,
    /// which Zendesk drops after 60 minutes); an added file only when surely not stored.
    pub async fn upload(
        &self,
        filename: &str,
        content_type: &str,
        data: impl Into<Bytes>,
        add_to: Option<&UploadToken>,
        deadline: Instant,
    ) -> Result<UploadToken, ZendeskError> {
        let mut call = Call::new(Method::POST, "/api/v2/uploads".into());
        call.query.push(("filename", filename.to_string()));
        if let Some(token) = add_to {
            call.query.push(("token", token.as_str().to_string()));
            // A repeat after a lost answer would put the file twice under the token.
            call.replay = Replay::IfUnprocessed;
        }
        call.body = Body::Raw {
            content_type: content_type.to_string(),
            data: data.into(),
        };
        let envelope: UploadEnvelope = self.call(call, deadline).await?;
        Ok(envelope.upload.token)
    }

    /// Adds a comment (public reply or internal note, with uploads) to a ticket.
    ///
    /// Repeated only when Zendesk surely did not process it (`429`, `503`, connection refused):
    /// a [`ZendeskError::Timeout`] or [`ZendeskError::Transport`] here means "maybe added".
    pub async fn add_comment(
        &self,
        ticket: TicketId,
        comment: &Comment,
        deadline: Instant,
    ) -> Result<Ticket, ZendeskError> {
        let update = TicketUpdate {
            comment: Some(comment.clone()),
            ..TicketUpdate::default()
        };
        self.update_ticket(ticket, &update, deadline).await
    }

    /// Adds tags without touching the others (`additional_tags`).
    pub async fn add_tags(
        &self,
        ticket: TicketId,
        tags: &[&str],
        deadline: Instant,
    ) -> Result<Ticket, ZendeskError> {
        let update = TicketUpdate {
            additional_tags: tags.iter().map(|t| t.to_string()).collect(),
            ..TicketUpdate::default()
        };
        self.update_ticket(ticket, &update, deadline).await
    }

    /// One ticket update: comment and tag changes together count as one against the
    /// per-ticket update limit.
    pub async fn update_ticket(
        &self,
        ticket: TicketId,
        update: &TicketUpdate,
        deadline: Instant,
    ) -> Result<Ticket, ZendeskError> {
        if let Some(comment) = &update.comment {
            check_comment(comment)?;
        }
        let mut call = Call::new(Method::PUT, format!("/api/v2/tickets/{ticket}"));
        call.body = Body::Json(json!({ "ticket": update }));
        if update.comment.is_some() {
            call.replay = Replay::IfUnprocessed;
        }
        let envelope: TicketEnvelope = self.call(call, deadline).await?;
        Ok(envelope.ticket)
    }

    /// Reads a ticket; [`ZendeskError::NotFound`] if it does not exist (deleted or merged).
    pub async fn get_ticket(
        &self,
        ticket: TicketId,
        deadline: Instant,
    ) -> Result<Ticket, ZendeskError> {
        let call = Call::new(Method::GET, format!("/api/v2/tickets/{ticket}"));
        let envelope: TicketEnvelope = self.call(call, deadline).await?;
        Ok(envelope.ticket)
    }

    /// Every ticket whose `external_id` is `external_id`, oldest first. External ids are not
    /// unique (reference §2.3).
    pub async fn tickets_by_external_id(
        &self,
        external_id: &str,
        deadline: Instant,
    ) -> Result<Vec<Ticket>, ZendeskError> {
        let mut call = Call::new(Method::GET, "/api/v2/tickets".into());
        call.query.push(("external_id", external_id.to_string()));
        let envelope: TicketsEnvelope = self.call(call, deadline).await?;
        let mut tickets = envelope.tickets;
        tickets.sort_by_key(|t| t.id);
        Ok(tickets)
    }

    /// The oldest ticket with this `external_id`, if any.
    pub async fn find_by_external_id(
        &self,
        external_id: &str,
        deadline: Instant,
    ) -> Result<Option<Ticket>, ZendeskError> {
        let tickets = self.tickets_by_external_id(external_id, deadline).await?;
        Ok(tickets.into_iter().next())
    }

    /// The newest `count` comments of a ticket, newest first (cursor pagination,
    /// `sort=-created_at`).
    pub async fn latest_comments(
        &self,
        ticket: TicketId,
        count: usize,
        deadline: Instant,
    ) -> Result<Vec<TicketComment>, ZendeskError> {
        let mut comments = Vec::new();
        let mut after: Option<String> = None;
        while comments.len() < count {
            let mut call = Call::new(Method::GET, format!("/api/v2/tickets/{ticket}/comments"));
            call.query.push(("sort", "-created_at".into()));
            let size = (count - comments.len()).min(MAX_PAGE);
            call.query.push(("page[size]", size.to_string()));
            if let Some(cursor) = after.take() {
                call.query.push(("page[after]", cursor));
            }
            let page: CommentsPage = self.call(call, deadline).await?;
            let fetched = page.comments.len();
            comments.extend(page.comments);
            match page.meta {
                Some(CursorMeta {
                    has_more: true,
                    after_cursor: Some(cursor),
                }) if fetched > 0 => after = Some(cursor),
                _ => break,
            }
        }
        comments.truncate(count);
        Ok(comments)
    }

    // ----- the retry loop ---------------------------------------------------------------------

    async fn call<T: DeserializeOwned>(
        &self,
        call: Call,
        deadline: Instant,
    ) -> Result<T, ZendeskError> {
        let op = call.op();
        let mut attempts = 0;
        let mut last: Option<ZendeskError> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ZendeskError::DeadlineExceeded {
                    op,
                    attempts,
                    last: last.map(Box::new),
                });
            }
            attempts += 1;
            let per_attempt = self.timeout.min(remaining);
            let error = match self.send(&call, &op, per_attempt).await {
                Ok(body) => {
                    return serde_json::from_slice(&body)
                        .map_err(|source| ZendeskError::Decode { op, source });
                }
                Err(error) => error,
            };
            if !may_retry(&error, call.replay) || attempts >= self.retry.max_attempts {
                return Err(error);
            }
            let wait = match error.retry_after() {
                Some(wait) => wait,
                None => backoff(&self.retry, attempts),
            };
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|at| at >= deadline)
            {
                return Err(ZendeskError::DeadlineExceeded {
                    op,
                    attempts,
                    last: Some(Box::new(error)),
                });
            }
            tracing::warn!(op = %op, attempt = attempts, wait_ms = wait.as_millis() as u64, error = %error, "zendesk request failed; retrying");
            last = Some(error);
            tokio::time::sleep(wait).await;
        }
    }

    /// One HTTP attempt: the body of a 2xx answer, or the typed error.
    async fn send(&self, call: &Call, op: &str, timeout: Duration) -> Result<Bytes, ZendeskError> {
        let mut url = reqwest::Url::parse(&format!("{}{}", self.base_url, call.path))
            .map_err(|e| ZendeskError::Config(format!("cannot build the url for {op}: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let mut request = self
            .http
            .request(call.method.clone(), url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        request = match &self.auth {
            Auth::Basic { email, api_token } => {
                request.basic_auth(format!("{email}/token"), Some(api_token.expose_secret()))
            }
            Auth::Bearer { token } => request.bearer_auth(token.expose_secret()),
        };
        if let Some(key) = &call.idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request = match &call.body {
            Body::Empty => request,
            Body::Json(value) => request.json(value),
            Body::Raw { content_type, data } => request
                .header(CONTENT_TYPE, content_type)
                .body(data.clone()),
        };
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                ZendeskError::Timeout {
                    op: op.to_string(),
                    after: timeout,
                }
            } else if source.is_builder() {
                ZendeskError::Config(format!("cannot build the request for {op}"))
            } else {
                ZendeskError::Transport {
                    op: op.to_string(),
                    source,
                }
            }
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(classify(op, status, &headers, &body))
        }
    }
}

fn check_comment(comment: &Comment) -> Result<(), ZendeskError> {
    let len = comment.html_body.len();
    if len > COMMENT_BODY_LIMIT {
        return Err(ZendeskError::CommentTooLarge {
            len,
            limit: COMMENT_BODY_LIMIT,
        });
    }
    Ok(())
}

fn may_retry(error: &ZendeskError, replay: Replay) -> bool {
    match replay {
        Replay::Always => error.is_transient(),
        Replay::IfUnprocessed => match error {
            ZendeskError::RateLimited { .. } => true,
            ZendeskError::Server { status, .. } => *status == 503,
            ZendeskError::Transport { source, .. } => source.is_connect(),
            _ => false,
        },
    }
}

/// Exponential back-off with jitter: a random wait between half and all of
/// `initial × 2^(attempt-1)`, capped at `max_backoff`.
fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .initial_backoff
        .saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
        .min(policy.max_backoff);
    let half = exp / 2;
    let jitter_ms = fastrand::u64(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter_ms)
}

/// The wait a `429` asks for: `Retry-After` seconds, else `ratelimit-reset` as seconds or as a
/// date-time (one API family sends that instead, reference §7).
fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(wait) = header(RETRY_AFTER.as_str())
        .and_then(|v| v.parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    {
        return Some(wait);
    }
    let reset = header("ratelimit-reset")?;
    if let Ok(secs) = reset.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc3339(reset).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// Maps a non-2xx answer to its error, reading the body leniently (reference §8).
fn classify(op: &str, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ZendeskError {
    let op = op.to_string();
    match status.as_u16() {
        401 => ZendeskError::Unauthorized { op },
        403 => ZendeskError::Forbidden { op },
        404 => ZendeskError::NotFound { op },
        429 => ZendeskError::RateLimited {
            op,
            retry_after: rate_limit_wait(headers),
        },
        code @ 500..=599 => ZendeskError::Server { op, status: code },
        code => {
            let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
            let error = match &value["error"] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => String::new(),
            };
            let description = value["description"]
                .as_str()
                .or_else(|| value["error"]["message"].as_str())
                .unwrap_or_default()
                .to_string();
            ZendeskError::Invalid {
                op,
                status: code,
                error,
                description,
                details: field_errors(&value["details"]),
            }
        }
    }
}

fn field_errors(details: &Value) -> Vec<FieldError> {
    let Some(fields) = details.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .flat_map(|(field, errors)| {
            errors
                .as_array()
                .into_iter()
                .flatten()
                .map(move |e| FieldError {
                    field: field.clone(),
                    error: e["error"].as_str().unwrap_or_default().to_string(),
                    description: e["description"].as_str().unwrap_or_default().to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_grows_with_jitter_and_stays_capped() {
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_attempts: 10,
        };
        for _ in 0..100 {
            let first = backoff(&policy, 1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let third = backoff(&policy, 3);
            assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
            let late = backoff(&policy, 40);
            assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn rate_limit_wait_reads_retry_after_then_reset() {
        let mut headers = HeaderMap::new();
        assert_eq!(rate_limit_wait(&headers), None);
        headers.insert("ratelimit-reset", HeaderValue::from_static("41"));
        assert_eq!(rate_limit_wait(&headers), Some(Duration::from_secs(41)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(rate_limit_wait(&headers), Some(Duration::from_secs(3)));

        // A wait too long to represent falls back to the reset header.
        headers.insert(RETRY_AFTER, HeaderValue::from_static("1e300"));
        assert_eq!(rate_limit_wait(&headers), Some(Duration::from_secs(41)));

        let mut dated = HeaderMap::new();
        let at = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
        dated.insert("ratelimit-reset", HeaderValue::from_str(&at).unwrap());
        let wait = rate_limit_wait(&dated).unwrap();
        assert!(wait > Duration::from_secs(25) && wait <= Duration::from_secs(30));
        let past = HeaderValue::from_static("2000-01-01T00:00:00Z");
        dated.insert("ratelimit-reset", past);
        assert_eq!(rate_limit_wait(&dated), Some(Duration::ZERO));
    }

    #[test]
    fn classifies_error_bodies_leniently() {
        let headers = HeaderMap::new();
        let body = br#"{"error":"RecordInvalid","description":"Record validation errors",
            "details":{"requester":[{"description":"Requester: Email is invalid","error":"InvalidValue"}]}}"#;
        match classify(
            "POST /api/v2/tickets",
            StatusCode::UNPROCESSABLE_ENTITY,
            &headers,
            body,
        ) {
            ZendeskError::Invalid {
                status,
                error,
                details,
                ..
            } => {
                assert_eq!((status, error.as_str()), (422, "RecordInvalid"));
                assert_eq!(details[0].field, "requester");
                assert_eq!(details[0].error, "InvalidValue");
            }
            other => panic!("{other:?}"),
        }
        let object = br#"{"error":{"title":"Forbidden","message":"nope"}}"#;
        match classify("GET /x", StatusCode::CONFLICT, &headers, object) {
            ZendeskError::Invalid {
                error, description, ..
            } => assert_eq!(
                (error.as_str(), description.as_str()),
                ("Forbidden", "nope")
            ),
            other => panic!("{other:?}"),
        }
        let garbage = classify("GET /x", StatusCode::BAD_REQUEST, &headers, b"<html>");
        assert!(matches!(garbage, ZendeskError::Invalid { status: 400, .. }));
        assert!(classify("GET /x", StatusCode::BAD_GATEWAY, &headers, b"").is_transient());
        assert!(!classify("GET /x", StatusCode::UNAUTHORIZED, &headers, b"").is_transient());
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let client = ZendeskClient::new(ZendeskConfig::for_subdomain(
            "acme",
            Auth::Basic {
                email: "api@acme.it".into(),
                api_token: "s3cr3t-token".to_string().into(),
            },
        ))
        .unwrap();
        let debug = format!("{client:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(debug.contains("https://acme.zendesk.com"));
    }

    #[test]
    fn rejects_a_bad_base_url() {
        let config = ZendeskConfig {
            base_url: "ftp://acme".into(),
            ..ZendeskConfig::for_subdomain(
                "acme",
                Auth::Bearer {
                    token: "t".to_string().into(),
                },
            )
        };
        assert!(matches!(
            ZendeskClient::new(config),
            Err(ZendeskError::Config(_))
        ));
    }
}
