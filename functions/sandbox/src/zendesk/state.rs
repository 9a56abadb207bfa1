//! The simulator's in-memory account: users, tickets, comments, uploads, idempotency records,
//! queued faults and the request log. Pure state transitions; `routes` turns them into HTTP.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

mod engine;
mod fields;
mod rules;

pub use engine::{CallOutcome, TriggerFiring, WEBHOOK_TIMEOUT, WebhookCall};
pub(crate) use engine::{PendingCall, Update, VIA_API, VIA_EMAIL, VIA_WEB, dispatch};
pub use fields::TicketField;
pub use rules::{Trigger, TriggerCategory, Webhook};

/// Comment bodies above this many bytes are truncated without error (reference §2.5).
pub const COMMENT_BODY_LIMIT: usize = 64 * 1024;
/// A ticket accepts at most this many comments; the next one is a `422` (reference §2.5).
pub const MAX_COMMENTS_PER_TICKET: usize = 5000;
/// Idempotency keys are remembered this long (reference §2.2).
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(2 * 60 * 60);

/// A user of the simulated account (the API agent or an end user created as a requester).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub name: String,
    pub email: String,
    /// `agent` or `end-user`.
    pub role: String,
}

/// A ticket as stored by the simulator.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    pub id: u64,
    pub subject: String,
    pub requester_id: u64,
    pub submitter_id: u64,
    pub status: String,
    pub tags: Vec<String>,
    pub external_id: Option<String>,
    /// `(field id, value)` pairs as sent in `custom_fields`.
    pub custom_fields: Vec<(u64, Value)>,
    pub comments: Vec<Comment>,
    pub created_at: String,
    pub updated_at: String,
}

/// A comment (public reply or internal note) on a ticket.
#[derive(Debug, Clone, PartialEq)]
pub struct Comment {
    pub id: u64,
    pub author_id: u64,
    /// Plain text (derived from `html_body` when only that was sent).
    pub body: String,
    /// HTML (derived from `body` when only that was sent).
    pub html_body: String,
    pub public: bool,
    /// Ids of the attachments (see [`Attachment`]) that came with the comment's upload tokens.
    pub attachment_ids: Vec<u64>,
    /// True when the sent body exceeded [`COMMENT_BODY_LIMIT`] and was cut.
    pub truncated: bool,
    /// How the comment was made: `5` through the API (`api`), `0` in the agent UI (`web`).
    pub via_id: u64,
    pub created_at: String,
}

/// What an agent changes in one update in the agent UI ([`State::agent_update`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentUpdate {
    /// The comment's plain body and whether it is public.
    pub comment: Option<(String, bool)>,
    /// Upload tokens whose files the comment carries.
    pub uploads: Vec<String>,
    pub add_tags: Vec<String>,
    pub remove_tags: Vec<String>,
    pub status: Option<String>,
}

/// An uploaded file, attached to a comment or still waiting in its upload token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: u64,
    pub file_name: String,
    pub content_type: String,
    pub data: Vec<u8>,
    /// The upload token the file was added to.
    pub upload_token: String,
    /// The secret part of `content_url` (`/attachments/token/{url_token}/?name=…`).
    pub url_token: String,
    /// Where the content is served: the simulator's own URL, or the base set with
    /// `ZendeskSimulator::set_attachment_base_url` when the file was uploaded.
    pub content_url: String,
}

/// One HTTP request as received, for tests that check what a client sent and when.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lower-case.
    pub headers: Vec<(String, String)>,
    pub at: Instant,
    /// The window of the account's request limit the request counted in (0 for the first after
    /// [`RequestLimit`] was set), when one is set and the request was an authenticated API
    /// request that no injected fault answered.
    pub rate_window: Option<u64>,
    /// Refused with `429` by the account's request limit.
    pub rate_limited: bool,
}

impl RecordedRequest {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Zendesk's account-wide API limit (reference §7: 200 requests a minute on the Team plan, up
/// to 2500): at most `requests` authenticated API requests per `window`, counted in fixed
/// windows from when the limit was set. One more is refused with `429` and `Retry-After` (whole
/// seconds to the window's end, at least 1) and not counted. A window shorter than Zendesk's
/// minute lets a test see many windows quickly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimit {
    pub requests: u32,
    pub window: Duration,
}

impl RequestLimit {
    /// `requests` a minute, as Zendesk's plans state it (Team: 200).
    pub fn per_minute(requests: u32) -> RequestLimit {
        RequestLimit {
            requests,
            window: Duration::from_secs(60),
        }
    }
}

/// What the account's request limit says of one request: the headers every answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateAnswer {
    /// `X-Rate-Limit`.
    pub limit: u32,
    /// `X-Rate-Limit-Remaining`, after this request.
    pub remaining: u32,
    /// `Some(seconds)`: refused, `Retry-After` that many seconds.
    pub refused: Option<u64>,
}

/// The account's request limit and the count of its current window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateWindows {
    limit: RequestLimit,
    started: Instant,
    window: u64,
    used: u32,
}

/// `X-Rate-Limit` of an account without a limit set: the Enterprise plan's, never exhausted.
const UNLIMITED_REPORTED: u32 = 700;

/// A failure the simulator answers with instead of serving a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `429 Too Many Requests`. `retry_after` sets `Retry-After` (seconds); `reset` sets
    /// `ratelimit-reset` (seconds). Either may be absent, as on some Zendesk endpoints (§7).
    RateLimit {
        retry_after: Option<u64>,
        reset: Option<u64>,
    },
    /// Any status, typically `500`, `502`, `503` or `504`.
    Status(u16),
    /// The request is served (its changes happen), but the client gets this status instead of
    /// the answer, as when an answer is lost on the way back.
    AnswerLost(u16),
}

/// How the simulator refuses a new ticket of a given requester (set by tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketRefusal {
    /// `422 RecordInvalid`, "Requester: is suspended": the same every time.
    Invalid,
    /// `201` with a body cut short: an answer the client cannot read.
    Unreadable,
}

/// An HTTP error response: status and Zendesk-shaped JSON body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub body: Value,
}

impl ApiError {
    pub fn not_found() -> Self {
        ApiError {
            status: 404,
            body: json!({"error": "RecordNotFound", "description": "Not found"}),
        }
    }

    pub fn invalid_endpoint() -> Self {
        ApiError {
            status: 404,
            body: json!({"error": "InvalidEndpoint", "description": "Not found"}),
        }
    }

    pub fn unauthorized() -> Self {
        ApiError {
            status: 401,
            body: json!({"error": "Couldn't authenticate you"}),
        }
    }

    /// `422 RecordInvalid` with one field detail.
    pub fn invalid(field: &str, error: &str, description: &str) -> Self {
        ApiError {
            status: 422,
            body: json!({
                "error": "RecordInvalid",
                "description": "Record validation errors",
                "details": { field: [ { "description": description, "error": error } ] }
            }),
        }
    }

    pub fn bad_request(error: &str, description: &str) -> Self {
        ApiError {
            status: 400,
            body: json!({"error": error, "description": description}),
        }
    }
}

/// A created ticket's response, kept for `Idempotency-Key` replays.
#[derive(Debug, Clone)]
struct IdempotencyRecord {
    request: Value,
    status: u16,
    response: Value,
    at: Instant,
}

/// What `POST /api/v2/tickets` produced.
#[derive(Debug, Clone)]
pub(crate) struct CreateOutcome {
    pub status: u16,
    pub body: Value,
    /// `Some("hit")` / `Some("miss")` when an `Idempotency-Key` was sent.
    pub idempotency_lookup: Option<&'static str>,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub base_url: String,
    pub users: Vec<User>,
    pub tickets: BTreeMap<u64, Ticket>,
    pub attachments: BTreeMap<u64, Attachment>,
    /// Upload token → attachment ids; removed when the token is used on a comment.
    pub uploads: HashMap<String, Vec<u64>>,
    idempotency: HashMap<String, IdempotencyRecord>,
    pub faults: VecDeque<Fault>,
    pub latency: Duration,
    pub requests: Vec<RecordedRequest>,
    /// Opt-in Update Ticket limit: at most `.0` updates per ticket within `.1` (reference §7).
    pub update_limit: Option<(usize, Duration)>,
    /// Times of recent updates per ticket, for `update_limit`.
    updates: HashMap<u64, Vec<Instant>>,
    /// Opt-in account-wide request limit and its current window's count.
    pub(crate) request_limit: Option<RateWindows>,
    /// "Include attachments in emails" (`settings.tickets.email_attachments`).
    pub email_attachments: bool,
    /// Base URL of new attachments' `content_url` instead of `base_url`, when set.
    pub attachment_base_url: Option<String>,
    /// Webhooks by id (ids sort in creation order).
    pub webhooks: BTreeMap<String, Webhook>,
    /// Trigger categories by numeric id.
    pub trigger_categories: BTreeMap<u64, TriggerCategory>,
    /// Ticket fields by id: the system ones, then those created through the API.
    pub ticket_fields: BTreeMap<u64, TicketField>,
    pub triggers: BTreeMap<u64, Trigger>,
    /// Whether API creates and updates run the triggers (agent replies always do).
    pub fire_triggers: bool,
    /// What the triggers did, in firing order.
    pub firings: Vec<TriggerFiring>,
    /// Whether placeholder values in webhook bodies are JSON-escaped (off: verbatim, §6).
    pub json_escape_placeholders: bool,
    /// Whether webhook calls wait in [`State::held_calls`] instead of going out.
    pub hold_webhooks: bool,
    /// Requesters (lower-case e-mail) whose new tickets are refused, and how.
    pub ticket_refusals: Vec<(String, TicketRefusal)>,
    pub held_calls: Vec<PendingCall>,
    next_id: u64,
}

impl State {
    pub fn new(base_url: String, agent_email: &str) -> Self {
        let mut state = State {
            base_url,
            email_attachments: true,
            next_id: 1000,
            ..State::default()
        };
        let id = state.next_id();
        state.users.push(User {
            id,
            name: "PEC Connector API".to_string(),
            email: agent_email.to_string(),
            role: "agent".to_string(),
        });
        state.add_system_fields();
        state
    }

    /// How new tickets of `email` are refused, if they are.
    pub fn ticket_refusal(&self, email: &str) -> Option<TicketRefusal> {
        let email = email.trim().to_ascii_lowercase();
        self.ticket_refusals
            .iter()
            .find(|(e, _)| *e == email)
            .map(|(_, r)| *r)
    }

    /// The API agent every authenticated request acts as.
    pub fn agent_id(&self) -> u64 {
        self.users[0].id
    }

    /// Sets (or with `None` lifts) the account's request limit; its windows start now.
    pub fn set_request_limit(&mut self, limit: Option<RequestLimit>) {
        self.request_limit = limit.map(|limit| RateWindows {
            limit,
            started: Instant::now(),
            window: 0,
            used: 0,
        });
    }

    /// Counts the authenticated API request at `index` of the log against the account's
    /// request limit, and says what its answer's rate-limit headers are. Without a limit the
    /// account reports plenty left and nothing is counted.
    pub(crate) fn take_request(&mut self, index: Option<usize>) -> RateAnswer {
        let Some(windows) = self.request_limit.as_mut() else {
            return RateAnswer {
                limit: UNLIMITED_REPORTED,
                remaining: UNLIMITED_REPORTED - 1,
                refused: None,
            };
        };
        let length = windows.limit.window.max(Duration::from_millis(1));
        let elapsed = windows.started.elapsed();
        let window = (elapsed.as_nanos() / length.as_nanos()) as u64;
        if window != windows.window {
            windows.window = window;
            windows.used = 0;
        }
        let limit = windows.limit.requests;
        let refused = if windows.used >= limit {
            let end = length * u32::try_from(window + 1).unwrap_or(u32::MAX);
            let wait = end.saturating_sub(elapsed);
            Some((wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1))
        } else {
            windows.used += 1;
            None
        };
        let remaining = limit - windows.used;
        if let Some(request) = index.and_then(|i| self.requests.get_mut(i)) {
            request.rate_window = Some(window);
            request.rate_limited = refused.is_some();
        }
        RateAnswer {
            limit,
            remaining,
            refused,
        }
    }

    /// Counts an update of ticket `id` against the opt-in per-ticket limit; `Err(seconds to
    /// wait)` when the limit is reached (the update is then not counted).
    pub fn count_update(&mut self, id: u64) -> Result<(), u64> {
        let Some((limit, window)) = self.update_limit else {
            return Ok(());
        };
        let recent = self.updates.entry(id).or_default();
        recent.retain(|at| at.elapsed() < window);
        if recent.len() >= limit {
            let wait = window.saturating_sub(recent[0].elapsed());
            return Err(wait.as_secs() + u64::from(wait.subsec_nanos() > 0));
        }
        recent.push(Instant::now());
        Ok(())
    }

    /// Forgets every `Idempotency-Key`, as if the 2-hour window had passed.
    pub fn expire_idempotency_keys(&mut self) {
        self.idempotency.clear();
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn user(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }

    /// `GET /api/v2/users/{id}`.
    pub fn show_user(&self, id: u64) -> Result<Value, ApiError> {
        let user = self.user(id).ok_or_else(ApiError::not_found)?;
        Ok(json!({ "user": self.user_json(user) }))
    }

    /// `GET /api/v2/users/me`: the API agent the credentials belong to, with the
    /// `authenticity_token` of the OAS `CurrentUserResponse`.
    pub fn current_user(&self) -> Value {
        let mut user = self.user_json(&self.users[0]);
        user["authenticity_token"] = json!("sandbox-authenticity-token");
        json!({ "user": user })
    }

    /// Sets the API agent's role (`agent`, `admin`, `end-user`, …).
    pub fn set_agent_role(&mut self, role: &str) {
        self.users[0].role = role.to_string();
    }

    fn user_json(&self, user: &User) -> Value {
        json!({
            "id": user.id,
            "url": format!("{}/api/v2/users/{}.json", self.base_url, user.id),
            "name": user.name,
            "email": user.email,
            "role": user.role,
            "active": true,
            "verified": true,
            "suspended": false,
        })
    }

    /// `GET /api/v2/account/settings`: the ticket settings of the OAS example
    /// (`AccountSettingsResponseExample`) with `email_attachments` as configured.
    pub fn account_settings(&self) -> Value {
        json!({
            "settings": {
                "tickets": {
                    "agent_collision": true,
                    "comments_public_by_default": true,
                    "email_attachments": self.email_attachments,
                    "is_first_comment_private_enabled": true,
                    "list_newest_comments_first": true,
                    "markdown_ticket_comments": false,
                    "private_attachments": false,
                    "rich_text_comments": true,
                    "status_hold": false,
                    "tagging": true,
                },
                "user": {
                    "tagging": true,
                    "time_zone_selection": true,
                    "language_selection": true,
                },
            }
        })
    }

    fn find_or_create_user(&mut self, email: &str, name: Option<&str>) -> u64 {
        if let Some(user) = self
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
        {
            return user.id;
        }
        let id = self.next_id();
        self.users.push(User {
            id,
            name: name.unwrap_or(email).to_string(),
            email: email.to_string(),
            role: "end-user".to_string(),
        });
        id
    }

    // ----- tickets -------------------------------------------------------------------------

    /// `POST /api/v2/tickets`, with the documented `Idempotency-Key` semantics (§2.2):
    /// same key and body → the cached response; same key, other body → `400`.
    pub fn create_ticket(
        &mut self,
        request: Value,
        idempotency_key: Option<&str>,
    ) -> Result<CreateOutcome, ApiError> {
        if let Some(key) = idempotency_key {
            self.idempotency
                .retain(|_, r| r.at.elapsed() < IDEMPOTENCY_WINDOW);
            if let Some(record) = self.idempotency.get(key) {
                if record.request != request {
                    return Err(ApiError::bad_request(
                        "IdempotentRequestError",
                        "The idempotency key was already used with a different request",
                    ));
                }
                return Ok(CreateOutcome {
                    status: record.status,
                    body: record.response.clone(),
                    idempotency_lookup: Some("hit"),
                });
            }
        }
        let body = self.create_ticket_now(&request)?;
        if let Some(key) = idempotency_key {
            self.idempotency.insert(
                key.to_string(),
                IdempotencyRecord {
                    request,
                    status: 201,
                    response: body.clone(),
                    at: Instant::now(),
                },
            );
        }
        Ok(CreateOutcome {
            status: 201,
            body,
            idempotency_lookup: idempotency_key.map(|_| "miss"),
        })
    }

    fn create_ticket_now(&mut self, request: &Value) -> Result<Value, ApiError> {
        let input = request
            .get("ticket")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("InvalidValue", "ticket: parameter missing"))?;
        let comment = input.get("comment").and_then(Value::as_object);
        let has_text = comment.is_some_and(|c| {
            ["body", "html_body"].iter().any(|k| {
                c.get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.trim().is_empty())
            })
        });
        let Some(comment) = comment.filter(|_| has_text) else {
            return Err(ApiError::invalid(
                "description",
                "BlankValue",
                "Description: cannot be blank",
            ));
        };
        self.check_upload_tokens(comment)?;
        let requester_id = self.requester_of(input)?;
        let now = timestamp();
        let id = self.next_id();
        let external_id = input
            .get("external_id")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut ticket = Ticket {
            id,
            subject: String::new(),
            requester_id,
            submitter_id: self.agent_id(),
            status: input
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("new")
                .to_string(),
            tags: Vec::new(),
            external_id,
            custom_fields: self.known_custom_fields(input),
            comments: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
        };
        if let Some(tags) = string_list(input.get("tags")) {
            merge_tags(&mut ticket.tags, &tags);
        }
        // The requester is the author of the first comment unless `author_id` is set (§2.1).
        let author = self.author_of(comment)?.unwrap_or(requester_id);
        let public = comment
            .get("public")
            .and_then(Value::as_bool)
            .unwrap_or(true);
        let created_at = ticket.created_at.clone();
        let new_comment = self.build_comment(&ticket, comment, author, public, &created_at);
        ticket.subject = match input.get("subject").and_then(Value::as_str) {
            Some(s) if !s.trim().is_empty() => s.to_string(),
            _ => new_comment.body.chars().take(50).collect(),
        };
        ticket.comments.push(new_comment);
        let body = json!({ "ticket": self.ticket_json(&ticket) });
        self.tickets.insert(id, ticket);
        Ok(body)
    }

    fn requester_of(&mut self, input: &Map<String, Value>) -> Result<u64, ApiError> {
        if let Some(requester) = input.get("requester").and_then(Value::as_object) {
            let email = requester
                .get("email")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim();
            if !is_plausible_email(email) {
                return Err(ApiError::invalid(
                    "requester",
                    "InvalidValue",
                    &format!("Requester: Email {email:?} is not properly formatted"),
                ));
            }
            let name = requester.get("name").and_then(Value::as_str);
            return Ok(self.find_or_create_user(email, name));
        }
        if let Some(id) = input.get("requester_id").and_then(Value::as_u64) {
            return match self.user(id) {
                Some(_) => Ok(id),
                None => Err(ApiError::invalid(
                    "requester_id",
                    "InvalidValue",
                    "Requester: is invalid",
                )),
            };
        }
        Ok(self.agent_id())
    }

    fn check_upload_tokens(&self, comment: &Map<String, Value>) -> Result<(), ApiError> {
        for token in string_list(comment.get("uploads")).unwrap_or_default() {
            if !self.uploads.contains_key(&token) {
                return Err(ApiError::invalid(
                    "uploads",
                    "InvalidValue",
                    &format!("Uploads: token {token:?} is invalid or already used"),
                ));
            }
        }
        Ok(())
    }

    /// The comment's `author_id`, when given: it must name a user of the account (`422`
    /// otherwise; unverified against Zendesk, which documents only that the field sets the
    /// author).
    fn author_of(&self, comment: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
        match comment.get("author_id") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_u64().filter(|id| self.user(*id).is_some()) {
                Some(id) => Ok(Some(id)),
                None => Err(ApiError::invalid(
                    "author_id",
                    "InvalidValue",
                    &format!("Author: {v} is not a user of this account"),
                )),
            },
        }
    }

    /// Builds a comment from its JSON input: bodies (derived, placeholders rendered for agent
    /// authors, truncated at the limit) and attachments from upload tokens (which are consumed).
    fn build_comment(
        &mut self,
        ticket: &Ticket,
        input: &Map<String, Value>,
        author_id: u64,
        public: bool,
        at: &str,
    ) -> Comment {
        let html_in = input.get("html_body").and_then(Value::as_str);
        let body_in = input.get("body").and_then(Value::as_str);
        let (mut body, mut html_body) = match (html_in, body_in) {
            (Some(html), _) => (html_to_text(html), html.to_string()),
            (None, Some(text)) => (
                text.to_string(),
                format!("<p>{}</p>", pec::encode::escape_html(text)),
            ),
            (None, None) => (String::new(), String::new()),
        };
        // Placeholders render only in comments authored by an agent (reference §2.6).
        if self.user(author_id).is_some_and(|u| u.role == "agent") {
            body = render_placeholders(&body, ticket);
            html_body = render_placeholders(&html_body, ticket);
        }
        let truncated = body.len() > COMMENT_BODY_LIMIT || html_body.len() > COMMENT_BODY_LIMIT;
        truncate_at_boundary(&mut body, COMMENT_BODY_LIMIT);
        truncate_at_boundary(&mut html_body, COMMENT_BODY_LIMIT);
        let mut attachment_ids = Vec::new();
        for token in string_list(input.get("uploads")).unwrap_or_default() {
            if let Some(ids) = self.uploads.remove(&token) {
                attachment_ids.extend(ids);
            }
        }
        Comment {
            id: self.next_id(),
            author_id,
            body,
            html_body,
            public,
            attachment_ids,
            truncated,
            via_id: VIA_API,
            created_at: at.to_string(),
        }
    }

    /// `PUT /api/v2/tickets/{id}`: comment, tags (`tags` sets, `additional_tags` /
    /// `remove_tags` add and remove), status, subject, custom fields, external id.
    pub fn update_ticket(&mut self, id: u64, request: &Value) -> Result<Value, ApiError> {
        let input = request
            .get("ticket")
            .and_then(Value::as_object)
            .ok_or_else(|| ApiError::bad_request("InvalidValue", "ticket: parameter missing"))?;
        let mut ticket = self
            .tickets
            .get(&id)
            .cloned()
            .ok_or_else(ApiError::not_found)?;
        if ticket.status == "closed" {
            return Err(ApiError::invalid(
                "status",
                "InvalidValue",
                "Status: closed prevents ticket update",
            ));
        }
        let comment_input = input.get("comment").and_then(Value::as_object);
        if let Some(comment) = comment_input {
            if ticket.comments.len() >= MAX_COMMENTS_PER_TICKET {
                return Err(ApiError::invalid(
                    "base",
                    "TooManyComments",
                    "Ticket has reached the maximum number of comments",
                ));
            }
            self.check_upload_tokens(comment)?;
        }
        let author = match comment_input {
            Some(comment) => self.author_of(comment)?.unwrap_or(self.agent_id()),
            None => self.agent_id(),
        };
        if let Some(tags) = string_list(input.get("tags")) {
            ticket.tags.clear();
            merge_tags(&mut ticket.tags, &tags);
        }
        if let Some(tags) = string_list(input.get("additional_tags")) {
            merge_tags(&mut ticket.tags, &tags);
        }
        if let Some(tags) = string_list(input.get("remove_tags")) {
            ticket.tags.retain(|t| !tags.contains(t));
        }
        if let Some(status) = input.get("status").and_then(Value::as_str) {
            ticket.status = status.to_string();
        }
        if let Some(subject) = input.get("subject").and_then(Value::as_str) {
            ticket.subject = subject.to_string();
        }
        if let Some(external_id) = input.get("external_id") {
            ticket.external_id = external_id.as_str().map(str::to_string);
        }
        for (field, value) in self.known_custom_fields(input) {
            match ticket.custom_fields.iter_mut().find(|(f, _)| *f == field) {
                Some(slot) => slot.1 = value,
                None => ticket.custom_fields.push((field, value)),
            }
        }
        let mut events = Vec::new();
        // One update, one time: its comment is created when the ticket is updated.
        let now = timestamp();
        if let Some(comment) = comment_input {
            // When `public` is omitted, the value set on creation persists (OAS TicketCommentObject).
            let public = comment
                .get("public")
                .and_then(Value::as_bool)
                .unwrap_or_else(|| ticket.comments.first().is_none_or(|c| c.public));
            let new_comment = self.build_comment(&ticket, comment, author, public, &now);
            let mut event = self.comment_json(&new_comment);
            if let Some(event) = event.as_object_mut() {
                event.remove("created_at");
            }
            events.push(event);
            ticket.comments.push(new_comment);
        }
        ticket.updated_at = now;
        let audit_id = self.next_id();
        let body = json!({
            "ticket": self.ticket_json(&ticket),
            "audit": {
                "id": audit_id,
                "ticket_id": id,
                "author_id": self.agent_id(),
                "created_at": ticket.updated_at,
                "events": events,
            }
        });
        self.tickets.insert(id, ticket);
        Ok(body)
    }

    /// One update by the API agent in the agent UI (via `web`): an optional comment (public
    /// reply or internal note), tags added and removed, a new status, all at one time. `None`
    /// when there is no such ticket, it is closed or full. The update to run the triggers for
    /// comes back (with the comment id, if any).
    pub fn agent_update(&mut self, id: u64, change: &AgentUpdate) -> Option<Update> {
        let ticket = self.tickets.get(&id)?.clone();
        if ticket.status == "closed" || ticket.comments.len() >= MAX_COMMENTS_PER_TICKET {
            return None;
        }
        let author = self.agent_id();
        let now = timestamp();
        let comment = change.comment.as_ref().map(|(body, public)| {
            let mut input = Map::new();
            input.insert("body".into(), Value::String(body.to_string()));
            input.insert("uploads".into(), json!(change.uploads));
            let mut comment = self.build_comment(&ticket, &input, author, *public, &now);
            comment.via_id = VIA_WEB;
            comment
        });
        let comment_id = comment.as_ref().map(|c| c.id);
        let ticket = self.tickets.get_mut(&id)?;
        ticket.comments.extend(comment);
        merge_tags(&mut ticket.tags, &change.add_tags);
        ticket.tags.retain(|t| !change.remove_tags.contains(t));
        if let Some(status) = &change.status {
            ticket.status = status.clone();
        }
        ticket.updated_at = now;
        Some(Update {
            ticket_id: id,
            created: false,
            via_id: VIA_WEB,
            user_id: author,
            comment_id,
        })
    }

    /// A public comment by the end user `email` (created if unknown), as Zendesk's e-mail
    /// channel adds it (via `email`, id 4): the update is the end user's. `None` when there is
    /// no such ticket, it is closed or full.
    pub fn end_user_comment(&mut self, id: u64, email: &str, body: &str) -> Option<Update> {
        let ticket = self.tickets.get(&id)?.clone();
        if ticket.status == "closed" || ticket.comments.len() >= MAX_COMMENTS_PER_TICKET {
            return None;
        }
        let author = self.find_or_create_user(email, None);
        let now = timestamp();
        let mut input = Map::new();
        input.insert("body".into(), Value::String(body.to_string()));
        let mut comment = self.build_comment(&ticket, &input, author, true, &now);
        comment.via_id = VIA_EMAIL;
        let comment_id = comment.id;
        let ticket = self.tickets.get_mut(&id)?;
        ticket.comments.push(comment);
        ticket.updated_at = now;
        Some(Update {
            ticket_id: id,
            created: false,
            via_id: VIA_EMAIL,
            user_id: author,
            comment_id: Some(comment_id),
        })
    }

    /// Replaces `body["ticket"]` with the ticket as it is now (after the triggers ran).
    pub fn refresh_ticket_json(&self, id: u64, body: &mut Value) {
        if let (Some(ticket), Some(slot)) = (self.tickets.get(&id), body.get_mut("ticket")) {
            *slot = self.ticket_json(ticket);
        }
    }

    pub fn show_ticket(&self, id: u64) -> Result<Value, ApiError> {
        let ticket = self.tickets.get(&id).ok_or_else(ApiError::not_found)?;
        Ok(json!({ "ticket": self.ticket_json(ticket) }))
    }

    /// `GET /api/v2/tickets[?external_id=]`. External ids are not unique (§2.3).
    pub fn list_tickets(&self, external_id: Option<&str>) -> Value {
        let tickets: Vec<Value> = self
            .tickets
            .values()
            .filter(|t| external_id.is_none_or(|e| t.external_id.as_deref() == Some(e)))
            .map(|t| self.ticket_json(t))
            .collect();
        json!({
            "count": tickets.len(),
            "tickets": tickets,
            "next_page": null,
            "previous_page": null,
        })
    }

    /// `GET /api/v2/tickets/{id}/comments`: cursor pagination when any `page[…]` parameter is
    /// present (`page[size]`, `page[after]`, `page[before]`, `sort=created_at|-created_at`),
    /// offset pagination otherwise (`page`, `per_page`, `sort_order=asc|desc`). 100 per page max.
    pub fn list_comments(
        &self,
        id: u64,
        query: &HashMap<String, String>,
    ) -> Result<Value, ApiError> {
        let ticket = self.tickets.get(&id).ok_or_else(ApiError::not_found)?;
        let mut comments: Vec<&Comment> = ticket.comments.iter().collect();
        let path = format!("{}/api/v2/tickets/{id}/comments", self.base_url);
        let cursor_mode = query.keys().any(|k| k.starts_with("page["));
        if cursor_mode {
            if query.get("sort").map(String::as_str) == Some("-created_at") {
                comments.reverse();
            }
            let size = page_size(query.get("page[size]"))?;
            let (start, end) = cursor_window(comments.len(), size, query, |cursor| {
                decode_cursor(cursor)
                    .and_then(|cid| comments.iter().position(|c| c.id == cid))
                    .ok_or_else(|| {
                        ApiError::bad_request("InvalidPaginationParameter", "cursor is invalid")
                    })
            })?;
            let page = &comments[start..end];
            let has_more = end < comments.len();
            let after_cursor = page.last().map(|c| encode_cursor(c.id));
            let before_cursor = page.first().map(|c| encode_cursor(c.id));
            let sort = query
                .get("sort")
                .map(String::as_str)
                .unwrap_or("created_at");
            let link = |key: &str, cursor: &Option<String>| {
                cursor
                    .as_ref()
                    .map(|c| format!("{path}?page[size]={size}&page[{key}]={c}&sort={sort}"))
            };
            return Ok(json!({
                "comments": page.iter().map(|c| self.comment_json(c)).collect::<Vec<_>>(),
                "meta": {
                    "has_more": has_more,
                    "after_cursor": after_cursor,
                    "before_cursor": before_cursor,
                },
                "links": {
                    "next": if has_more { link("after", &after_cursor) } else { None },
                    "prev": link("before", &before_cursor),
                }
            }));
        }
        if query.get("sort_order").map(String::as_str) == Some("desc") {
            comments.reverse();
        }
        let per_page = page_size(query.get("per_page"))?;
        let page: usize = match query.get("page") {
            Some(p) => p.parse().ok().filter(|p| *p >= 1).ok_or_else(|| {
                ApiError::bad_request("InvalidPaginationParameter", "page is invalid")
            })?,
            None => 1,
        };
        let start = ((page - 1) * per_page).min(comments.len());
        let end = (start + per_page).min(comments.len());
        let sort_order = query.get("sort_order").map(String::as_str).unwrap_or("asc");
        let url = |p: usize| format!("{path}?page={p}&per_page={per_page}&sort_order={sort_order}");
        Ok(json!({
            "comments": comments[start..end].iter().map(|c| self.comment_json(c)).collect::<Vec<_>>(),
            "count": comments.len(),
            "next_page": (end < comments.len()).then(|| url(page + 1)),
            "previous_page": (page > 1).then(|| url(page - 1)),
        }))
    }

    // ----- uploads -------------------------------------------------------------------------

    /// `POST /api/v2/uploads?filename=…[&token=…]`: adds a file to a new or existing token.
    pub fn upload(
        &mut self,
        filename: Option<&str>,
        token: Option<&str>,
        content_type: &str,
        data: Vec<u8>,
    ) -> Result<Value, ApiError> {
        let Some(file_name) = filename.filter(|f| !f.is_empty()) else {
            return Err(ApiError::bad_request(
                "InvalidValue",
                "filename: parameter is required",
            ));
        };
        let token = match token {
            Some(t) if self.uploads.contains_key(t) => t.to_string(),
            Some(_) => return Err(ApiError::not_found()),
            None => {
                let token = random_token(self.next_id());
                self.uploads.insert(token.clone(), Vec::new());
                token
            }
        };
        let id = self.next_id();
        let url_token = random_token(id);
        let content_base = self
            .attachment_base_url
            .as_deref()
            .unwrap_or(&self.base_url)
            .trim_end_matches('/');
        let content_url = format!(
            "{content_base}/attachments/token/{url_token}/?name={}",
            percent_encode(file_name)
        );
        let attachment = Attachment {
            id,
            file_name: file_name.to_string(),
            content_type: content_type.to_string(),
            data,
            upload_token: token.clone(),
            url_token,
            content_url,
        };
        self.attachments.insert(id, attachment);
        let ids = self.uploads.entry(token.clone()).or_default();
        ids.push(id);
        let ids = ids.clone();
        let all: Vec<Value> = ids
            .iter()
            .filter_map(|i| self.attachments.get(i))
            .map(|a| self.attachment_json(a))
            .collect();
        let attachment = self
            .attachments
            .get(&id)
            .map(|a| self.attachment_json(a))
            .unwrap_or(Value::Null);
        Ok(json!({
            "upload": { "token": token, "attachment": attachment, "attachments": all }
        }))
    }

    /// `DELETE /api/v2/uploads/{token}`: removes an unused upload.
    pub fn delete_upload(&mut self, token: &str) -> Result<(), ApiError> {
        let ids = self.uploads.remove(token).ok_or_else(ApiError::not_found)?;
        for id in ids {
            self.attachments.remove(&id);
        }
        Ok(())
    }

    pub fn attachment_by_url_token(&self, url_token: &str) -> Option<&Attachment> {
        self.attachments.values().find(|a| a.url_token == url_token)
    }

    // ----- JSON views ----------------------------------------------------------------------

    fn ticket_json(&self, t: &Ticket) -> Value {
        json!({
            "id": t.id,
            "url": format!("{}/api/v2/tickets/{}.json", self.base_url, t.id),
            "external_id": t.external_id,
            "subject": t.subject,
            "raw_subject": t.subject,
            "description": t.comments.first().map(|c| c.body.as_str()).unwrap_or_default(),
            "status": t.status,
            "requester_id": t.requester_id,
            "submitter_id": t.submitter_id,
            "assignee_id": null,
            "tags": t.tags,
            "custom_fields": t.custom_fields.iter().map(|(id, v)| json!({"id": id, "value": v})).collect::<Vec<_>>(),
            "is_public": t.comments.iter().any(|c| c.public),
            "via": { "channel": "api" },
            "created_at": t.created_at,
            "updated_at": t.updated_at,
        })
    }

    fn comment_json(&self, c: &Comment) -> Value {
        json!({
            "id": c.id,
            "type": "Comment",
            "author_id": c.author_id,
            "body": c.body,
            "html_body": c.html_body,
            "plain_body": c.body,
            "public": c.public,
            "attachments": c.attachment_ids.iter().filter_map(|i| self.attachments.get(i)).map(|a| self.attachment_json(a)).collect::<Vec<_>>(),
            "via": { "channel": engine::via_channel(c.via_id) },
            "created_at": c.created_at,
        })
    }

    fn attachment_json(&self, a: &Attachment) -> Value {
        json!({
            "id": a.id,
            "file_name": a.file_name,
            "content_url": a.content_url,
            "mapped_content_url": a.content_url,
            "url": format!("{}/api/v2/attachments/{}.json", self.base_url, a.id),
            "content_type": a.content_type,
            "size": a.data.len(),
            "width": null,
            "height": null,
            "inline": false,
            "deleted": false,
            "malware_access_override": false,
            "malware_scan_result": "malware_not_found",
            "thumbnails": [],
        })
    }
}

fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn is_plausible_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && domain.contains('.') && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn string_list(value: Option<&Value>) -> Option<Vec<String>> {
    value?.as_array().map(|items| {
        items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect()
    })
}

impl State {
    /// The `custom_fields` values of a ticket input that name an active custom field (others are
    /// ignored, see `fields.rs`).
    fn known_custom_fields(&self, input: &Map<String, Value>) -> Vec<(u64, Value)> {
        input
            .get("custom_fields")
            .and_then(Value::as_array)
            .map(|fields| {
                fields
                    .iter()
                    .filter_map(|f| Some((f.get("id")?.as_u64()?, f.get("value")?.clone())))
                    .filter(|(id, _)| self.is_custom_field(*id))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Adds tags that are not there yet; Zendesk tags cannot contain spaces, so a value with spaces
/// is several tags.
fn merge_tags(tags: &mut Vec<String>, new: &[String]) {
    for tag in new.iter().flat_map(|t| t.split_whitespace()) {
        if !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
}

/// The `[start, end)` window of a cursor page of `size` over `len` items: from
/// the start, after `page[after]` or before `page[before]`; `position` finds the item a cursor
/// names (or refuses the cursor).
fn cursor_window(
    len: usize,
    size: usize,
    query: &HashMap<String, String>,
    position: impl Fn(&String) -> Result<usize, ApiError>,
) -> Result<(usize, usize), ApiError> {
    Ok(
        match (query.get("page[after]"), query.get("page[before]")) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "InvalidPaginationParameter",
                    "page[before] and page[after] can't be used together",
                ));
            }
            (Some(after), None) => {
                let start = position(after)? + 1;
                (start, (start + size).min(len))
            }
            (None, Some(before)) => {
                let end = position(before)?;
                (end.saturating_sub(size), end)
            }
            (None, None) => (0, size.min(len)),
        },
    )
}

fn page_size(value: Option<&String>) -> Result<usize, ApiError> {
    match value {
        None => Ok(100),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .map(|n| n.min(100))
            .ok_or_else(|| {
                ApiError::bad_request("InvalidPaginationParameter", "page size is invalid")
            }),
    }
}

fn encode_cursor(comment_id: u64) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("c{comment_id}"))
}

fn decode_cursor(cursor: &str) -> Option<u64> {
    use base64::Engine as _;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()?;
    String::from_utf8(raw).ok()?.strip_prefix('c')?.parse().ok()
}

fn random_token(salt: u64) -> String {
    format!("{:016x}{salt:x}", random_u64(salt))
}

/// 64 unpredictable bits (a freshly keyed SipHash of `salt`).
fn random_u64(salt: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.finish()
}

fn truncate_at_boundary(text: &mut String, limit: usize) {
    if text.len() > limit {
        let mut cut = limit;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
}

/// A rough plain-text view of HTML: tags dropped, the basic entities decoded.
fn html_to_text(html: &str) -> String {
    // Block ends and line breaks become new lines, as Zendesk's plain `body` shows them.
    const BREAKS: [&str; 14] = [
        "/p",
        "br",
        "br/",
        "/div",
        "/li",
        "/tr",
        "/h1",
        "/h2",
        "/h3",
        "/h4",
        "/blockquote",
        "/table",
        "/ul",
        "/ol",
    ];
    let mut out = String::with_capacity(html.len());
    let mut tag: Option<String> = None;
    for ch in html.chars() {
        match (&mut tag, ch) {
            (None, '<') => tag = Some(String::new()),
            (Some(name), '>') => {
                let name = name
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if BREAKS.contains(&name.as_str()) && !out.ends_with("\n\n") {
                    out.push('\n');
                }
                tag = None;
            }
            (Some(name), c) => name.push(c),
            (None, c) => out.push(c),
        }
    }
    out.trim()
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#8203;", "\u{200b}")
        .replace("&nbsp;", " ")
        .replace("&amp;", "&")
}

/// Renders `{{…}}` placeholders as Zendesk does in agent-authored comments: known ones become
/// ticket values, unknown ones are stripped; text inside `<code>…</code>` is left alone (§2.6, §6).
fn render_placeholders(text: &str, ticket: &Ticket) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let code = rest.find("<code");
        let open = rest.find("{{");
        match (code, open) {
            (Some(c), Some(o)) if c < o => {
                let end = rest[c..]
                    .find("</code>")
                    .map(|e| c + e + "</code>".len())
                    .unwrap_or(rest.len());
                out.push_str(&rest[..end]);
                rest = &rest[end..];
            }
            (_, Some(o)) => {
                out.push_str(&rest[..o]);
                match rest[o + 2..].find("}}") {
                    Some(close) => {
                        let name = rest[o + 2..o + 2 + close].trim();
                        out.push_str(&placeholder_value(name, ticket));
                        rest = &rest[o + 2 + close + 2..];
                    }
                    None => {
                        out.push_str(&rest[o..]);
                        rest = "";
                    }
                }
            }
            (_, None) => {
                out.push_str(rest);
                rest = "";
            }
        }
    }
    out
}

fn placeholder_value(name: &str, ticket: &Ticket) -> String {
    match name {
        "ticket.id" => ticket.id.to_string(),
        "ticket.title" => ticket.subject.clone(),
        "ticket.status" => ticket.status.clone(),
        "ticket.external_id" => ticket.external_id.clone().unwrap_or_default(),
        "ticket.tags" => ticket.tags.join(" "),
        _ => String::new(),
    }
}

fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            id: 7,
            subject: "S".into(),
            requester_id: 1,
            submitter_id: 1,
            status: "open".into(),
            tags: vec![],
            external_id: Some("pec:x".into()),
            custom_fields: vec![],
            comments: vec![],
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn placeholders_render_known_strip_unknown_and_skip_code() {
        let t = ticket();
        assert_eq!(render_placeholders("#{{ticket.id}} {{fake}}!", &t), "#7 !");
        assert_eq!(
            render_placeholders("<code>{{ticket.id}}</code> {{ ticket.id }}", &t),
            "<code>{{ticket.id}}</code> 7"
        );
        assert_eq!(
            render_placeholders("{&#8203;{ticket.id}}", &t),
            "{&#8203;{ticket.id}}"
        );
        assert_eq!(render_placeholders("open {{ only", &t), "open {{ only");
    }

    #[test]
    fn cursors_round_trip() {
        assert_eq!(decode_cursor(&encode_cursor(1234)), Some(1234));
        assert_eq!(decode_cursor("nonsense!"), None);
    }

    #[test]
    fn tags_merge_without_duplicates_and_split_on_spaces() {
        let mut tags = vec!["pec".to_string()];
        merge_tags(&mut tags, &["pec".into(), "a b".into()]);
        assert_eq!(tags, ["pec", "a", "b"]);
    }

    #[test]
    fn html_to_text_drops_tags() {
        assert_eq!(html_to_text("<p>a &amp; <b>b</b></p>"), "a & b");
        assert_eq!(
            html_to_text("<p>x</p><p>y<br>z</p><ul><li>1</li><li>2</li></ul>"),
            "x\ny\nz\n1\n2"
        );
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "é".repeat(10);
        truncate_at_boundary(&mut s, 5);
        assert_eq!(s, "éé");
    }
}
