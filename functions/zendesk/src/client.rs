//! The HTTP client: one method per Zendesk operation, all through one retry loop bounded by the
//! caller's deadline.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_TYPE, HeaderMap, LOCATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::budget::{RateBudget, reset_wait};
use crate::config::{Auth, RetryPolicy, ZendeskConfig};
use crate::error::{FieldError, ZendeskError};
use crate::model::{
    Comment, NewTicket, Ticket, TicketComment, TicketField, TicketFieldSpec, TicketId,
    TicketUpdate, Trigger, TriggerCategory, TriggerSpec, UploadToken, User, Webhook, WebhookSpec,
};

/// Comment bodies longer than this are truncated by Zendesk without error (reference §2.5), so
/// the client refuses them: put long text in an attachment.
pub const COMMENT_BODY_LIMIT: usize = 64 * 1024;

/// Page size limit of list endpoints.
const MAX_PAGE: usize = 100;

/// Redirects followed by one attachment download (Zendesk sends at most one or two, to its
/// attachment storage).
const MAX_REDIRECTS: usize = 5;

/// How much of an error answer to an attachment download is read to classify it.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// A Zendesk Support API client. Cheap to clone (shares the connection pool).
#[derive(Clone)]
pub struct ZendeskClient {
    http: reqwest::Client,
    /// The same settings without automatic redirects: attachment downloads follow them by hand
    /// so that credentials never leave `base` (see [`ZendeskClient::download_attachment`]).
    download_http: reqwest::Client,
    base_url: String,
    /// `base_url` parsed: its scheme, host and port are the only origin that gets credentials.
    base: Url,
    auth: Auth,
    timeout: Duration,
    retry: RetryPolicy,
    /// The account's request budget, fed by every API answer; shared by clones.
    budget: RateBudget,
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
struct UserEnvelope {
    user: User,
}

#[derive(Deserialize)]
struct SettingsEnvelope {
    #[serde(default)]
    settings: Settings,
}

#[derive(Default, Deserialize)]
struct Settings {
    #[serde(default)]
    tickets: TicketSettings,
}

#[derive(Default, Deserialize)]
struct TicketSettings {
    #[serde(default)]
    email_attachments: bool,
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
struct WebhookEnvelope {
    webhook: Webhook,
}

#[derive(Deserialize)]
struct SigningSecretEnvelope {
    signing_secret: SigningSecret,
}

#[derive(Deserialize)]
struct SigningSecret {
    secret: String,
}

#[derive(Deserialize)]
struct TicketFieldEnvelope {
    ticket_field: TicketField,
}

#[derive(Deserialize)]
struct TriggerCategoryEnvelope {
    trigger_category: TriggerCategory,
}

#[derive(Deserialize)]
struct TriggerEnvelope {
    trigger: Trigger,
}

#[derive(Default, Deserialize)]
struct Links {
    #[serde(default)]
    next: Option<String>,
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
        let base = Url::parse(&base_url)
            .map_err(|e| ZendeskError::Config(format!("base url {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "https" | "http") || base.host_str().is_none() {
            return Err(ZendeskError::Config(format!(
                "base url {base_url:?} is not http(s)"
            )));
        }
        if let Auth::Basic { email, .. } = &config.auth
            && email.trim().is_empty()
        {
            return Err(ZendeskError::Config("the API user e-mail is empty".into()));
        }
        let builder = || {
            reqwest::Client::builder()
                .user_agent(concat!("pec-connector/", env!("CARGO_PKG_VERSION")))
        };
        let built = |r: Result<reqwest::Client, reqwest::Error>| {
            r.map_err(|e| ZendeskError::Config(format!("cannot build the HTTP client: {e}")))
        };
        // API calls follow redirects only within the base origin, so the credentials they
        // carry stay there; anything else comes back as the 3xx answer (an `Invalid` error).
        let origin = base.clone();
        let same_origin_only = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > MAX_REDIRECTS {
                attempt.error("too many redirects")
            } else if same_origin(attempt.url(), &origin) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        });
        let http = built(builder().redirect(same_origin_only).build())?;
        let download_http = built(
            builder()
                .redirect(reqwest::redirect::Policy::none())
                .build(),
        )?;
        Ok(ZendeskClient {
            http,
            download_http,
            base_url,
            base,
            auth: config.auth,
            timeout: config.timeout,
            retry: config.retry,
            budget: RateBudget::new(),
        })
    }

    /// This client feeding `budget` instead of a budget of its own: every client of one Zendesk
    /// account in a process should share one (see [`RateBudget`]).
    pub fn with_budget(mut self, budget: RateBudget) -> Self {
        self.budget = budget;
        self
    }

    /// The Zendesk instance's origin, e.g. `https://acme.zendesk.com` (no trailing slash).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The account's request budget as this client's answers reported it.
    pub fn budget(&self) -> &RateBudget {
        &self.budget
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

    /// Reads a user (the API agent, another agent or an end user); [`ZendeskError::NotFound`]
    /// if there is none with this id.
    pub async fn get_user(&self, id: u64, deadline: Instant) -> Result<User, ZendeskError> {
        let call = Call::new(Method::GET, format!("/api/v2/users/{id}"));
        let envelope: UserEnvelope = self.call(call, deadline).await?;
        Ok(envelope.user)
    }

    /// The user the credentials belong to (`GET /api/v2/users/me`), to check that they work and
    /// belong to an agent (`role` `agent` or `admin`) before an instance is used. Wrong
    /// credentials are [`ZendeskError::Unauthorized`]; an anonymous answer (Zendesk answers
    /// requests without credentials with a user whose `id` is `null`) is [`ZendeskError::Decode`].
    pub async fn current_user(&self, deadline: Instant) -> Result<User, ZendeskError> {
        let call = Call::new(Method::GET, "/api/v2/users/me".into());
        let envelope: UserEnvelope = self.call(call, deadline).await?;
        Ok(envelope.user)
    }

    /// Whether the account includes attachments in e-mail notifications ("Include attachments
    /// in emails", `settings.tickets.email_attachments` of `GET /api/v2/account/settings`);
    /// false when Zendesk does not say.
    pub async fn email_attachments_enabled(&self, deadline: Instant) -> Result<bool, ZendeskError> {
        let call = Call::new(Method::GET, "/api/v2/account/settings".into());
        let envelope: SettingsEnvelope = self.call(call, deadline).await?;
        Ok(envelope.settings.tickets.email_attachments)
    }

    // ----- webhooks (reference §4) ------------------------------------------------------------

    /// Creates a webhook. Repeated only when Zendesk surely did not process it: a
    /// [`ZendeskError::Timeout`] here means "maybe created" (look it up by name).
    pub async fn create_webhook(
        &self,
        spec: &WebhookSpec,
        deadline: Instant,
    ) -> Result<Webhook, ZendeskError> {
        let mut call = Call::new(Method::POST, "/api/v2/webhooks".into());
        call.body = Body::Json(json!({ "webhook": spec }));
        call.replay = Replay::IfUnprocessed;
        let envelope: WebhookEnvelope = self.call(call, deadline).await?;
        Ok(envelope.webhook)
    }

    /// Reads a webhook (without its credentials); [`ZendeskError::NotFound`] if there is none.
    pub async fn get_webhook(&self, id: &str, deadline: Instant) -> Result<Webhook, ZendeskError> {
        let call = Call::new(Method::GET, format!("/api/v2/webhooks/{}", segment(id)));
        let envelope: WebhookEnvelope = self.call(call, deadline).await?;
        Ok(envelope.webhook)
    }

    /// Replaces a webhook's settings with `spec` (Zendesk answers `204`). Send the
    /// authentication again: it is not read back, so it cannot be kept by a read-modify-write.
    pub async fn update_webhook(
        &self,
        id: &str,
        spec: &WebhookSpec,
        deadline: Instant,
    ) -> Result<(), ZendeskError> {
        let mut call = Call::new(Method::PUT, format!("/api/v2/webhooks/{}", segment(id)));
        call.body = Body::Json(json!({ "webhook": spec }));
        self.call_no_content(call, deadline).await
    }

    /// Deletes a webhook; [`ZendeskError::NotFound`] if there is none (also when a retry follows
    /// a first attempt whose answer was lost: the caller decides what that means).
    pub async fn delete_webhook(&self, id: &str, deadline: Instant) -> Result<(), ZendeskError> {
        let call = Call::new(Method::DELETE, format!("/api/v2/webhooks/{}", segment(id)));
        self.call_no_content(call, deadline).await
    }

    /// Every webhook, or those whose name contains `name_contains` (`filter[name_contains]`),
    /// following cursor pages.
    pub async fn list_webhooks(
        &self,
        name_contains: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<Webhook>, ZendeskError> {
        let mut query = Vec::new();
        if let Some(name) = name_contains {
            query.push(("filter[name_contains]", name.to_string()));
        }
        self.list_all("/api/v2/webhooks", "webhooks", query, deadline)
            .await
    }

    /// The secret Zendesk signs this webhook's requests with (reference §4.2).
    pub async fn webhook_signing_secret(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<SecretString, ZendeskError> {
        let call = Call::new(
            Method::GET,
            format!("/api/v2/webhooks/{}/signing_secret", segment(id)),
        );
        let envelope: SigningSecretEnvelope = self.call(call, deadline).await?;
        Ok(envelope.signing_secret.secret.into())
    }

    // ----- ticket fields (OAS `TicketFieldObject`) ---------------------------------------------

    /// Every ticket field, system and custom, following cursor pages.
    pub async fn list_ticket_fields(
        &self,
        deadline: Instant,
    ) -> Result<Vec<TicketField>, ZendeskError> {
        self.list_all(
            "/api/v2/ticket_fields",
            "ticket_fields",
            Vec::new(),
            deadline,
        )
        .await
    }

    /// One ticket field; [`ZendeskError::NotFound`] when it was deleted.
    pub async fn get_ticket_field(
        &self,
        id: u64,
        deadline: Instant,
    ) -> Result<TicketField, ZendeskError> {
        let call = Call::new(Method::GET, format!("/api/v2/ticket_fields/{id}"));
        let envelope: TicketFieldEnvelope = self.call(call, deadline).await?;
        Ok(envelope.ticket_field)
    }

    /// Creates a custom ticket field. Repeated only when surely not processed.
    pub async fn create_ticket_field(
        &self,
        spec: &TicketFieldSpec,
        deadline: Instant,
    ) -> Result<TicketField, ZendeskError> {
        let mut call = Call::new(Method::POST, "/api/v2/ticket_fields".into());
        call.body = Body::Json(json!({ "ticket_field": spec }));
        call.replay = Replay::IfUnprocessed;
        let envelope: TicketFieldEnvelope = self.call(call, deadline).await?;
        Ok(envelope.ticket_field)
    }

    // ----- trigger categories (reference §5.1) ------------------------------------------------

    /// Every ticket trigger category, following cursor pages.
    pub async fn list_trigger_categories(
        &self,
        deadline: Instant,
    ) -> Result<Vec<TriggerCategory>, ZendeskError> {
        self.list_all(
            "/api/v2/trigger_categories",
            "trigger_categories",
            Vec::new(),
            deadline,
        )
        .await
    }

    /// Creates a trigger category (placed by Zendesk). Repeated only when surely not processed.
    pub async fn create_trigger_category(
        &self,
        name: &str,
        deadline: Instant,
    ) -> Result<TriggerCategory, ZendeskError> {
        let mut call = Call::new(Method::POST, "/api/v2/trigger_categories".into());
        call.body = Body::Json(json!({ "trigger_category": { "name": name } }));
        call.replay = Replay::IfUnprocessed;
        let envelope: TriggerCategoryEnvelope = self.call(call, deadline).await?;
        Ok(envelope.trigger_category)
    }

    /// Deletes a trigger category. Zendesk refuses one that still holds triggers
    /// (`400 TriggerCategoryNotEmpty`, a [`ZendeskError::Invalid`]): delete those first.
    pub async fn delete_trigger_category(
        &self,
        id: &str,
        deadline: Instant,
    ) -> Result<(), ZendeskError> {
        let call = Call::new(
            Method::DELETE,
            format!("/api/v2/trigger_categories/{}", segment(id)),
        );
        self.call_no_content(call, deadline).await
    }

    // ----- triggers (reference §5.2) ----------------------------------------------------------

    /// Creates a trigger (placed last). Repeated only when surely not processed.
    pub async fn create_trigger(
        &self,
        spec: &TriggerSpec,
        deadline: Instant,
    ) -> Result<Trigger, ZendeskError> {
        let mut call = Call::new(Method::POST, "/api/v2/triggers".into());
        call.body = Body::Json(json!({ "trigger": spec }));
        call.replay = Replay::IfUnprocessed;
        let envelope: TriggerEnvelope = self.call(call, deadline).await?;
        Ok(envelope.trigger)
    }

    /// Reads a trigger; [`ZendeskError::NotFound`] if there is none.
    pub async fn get_trigger(&self, id: u64, deadline: Instant) -> Result<Trigger, ZendeskError> {
        let call = Call::new(Method::GET, format!("/api/v2/triggers/{id}"));
        let envelope: TriggerEnvelope = self.call(call, deadline).await?;
        Ok(envelope.trigger)
    }

    /// Writes `spec` over trigger `id`. Zendesk replaces `conditions` and `actions` with exactly
    /// what is sent (reference §5.2): start from [`Trigger::spec`] to keep the others.
    pub async fn update_trigger(
        &self,
        id: u64,
        spec: &TriggerSpec,
        deadline: Instant,
    ) -> Result<Trigger, ZendeskError> {
        let mut call = Call::new(Method::PUT, format!("/api/v2/triggers/{id}"));
        call.body = Body::Json(json!({ "trigger": spec }));
        let envelope: TriggerEnvelope = self.call(call, deadline).await?;
        Ok(envelope.trigger)
    }

    /// Deletes a trigger; [`ZendeskError::NotFound`] if there is none.
    pub async fn delete_trigger(&self, id: u64, deadline: Instant) -> Result<(), ZendeskError> {
        let call = Call::new(Method::DELETE, format!("/api/v2/triggers/{id}"));
        self.call_no_content(call, deadline).await
    }

    /// Every ticket trigger, or those of one category (`category_id`), following cursor pages.
    pub async fn list_triggers(
        &self,
        category_id: Option<&str>,
        deadline: Instant,
    ) -> Result<Vec<Trigger>, ZendeskError> {
        let mut query = Vec::new();
        if let Some(category) = category_id {
            query.push(("category_id", category.to_string()));
        }
        self.list_all("/api/v2/triggers", "triggers", query, deadline)
            .await
    }

    /// Downloads an attachment's `content_url`, at most `max_bytes` of it.
    ///
    /// - Only a URL on the configured `base_url`'s origin (scheme, host and port) is fetched,
    ///   with the client's credentials; any other is [`ZendeskError::ForeignHost`] and nothing
    ///   is sent (`content_url` may point outside the account, reference §3).
    /// - Up to a few redirects are followed by hand. Credentials go only to hops on the base
    ///   origin reached without leaving it; once a redirect leaves it, no later hop gets them.
    ///   reqwest's own policy is not used for this: in reqwest 0.13.5,
    ///   `redirect::remove_sensitive_headers` (src/redirect.rs) only compares the next URL with
    ///   the *last* one, and tower-http 0.6 `FollowRedirect` (src/follow_redirect/mod.rs) puts
    ///   the original headers back on every hop, so a second redirect within another host
    ///   (`zendesk → cdn/a → cdn/b`) would carry `Authorization` to that host.
    /// - A `Content-Length` above `max_bytes` fails before the body is read, and the body is
    ///   counted as it streams: [`ZendeskError::AttachmentTooLarge`] either way.
    /// - Server errors, timeouts and network failures are retried like every read, within
    ///   `deadline`.
    pub async fn download_attachment(
        &self,
        content_url: &str,
        max_bytes: u64,
        deadline: Instant,
    ) -> Result<Vec<u8>, ZendeskError> {
        let url = Url::parse(content_url).map_err(|e| ZendeskError::AttachmentUrl {
            reason: format!("content_url is not a url ({e})"),
        })?;
        if !same_origin(&url, &self.base) {
            return Err(ZendeskError::ForeignHost {
                url_host: host_and_port(&url),
            });
        }
        // The path of a content URL is a bearer token: the op names the file instead.
        let op = match url.query_pairs().find(|(k, _)| k == "name") {
            Some((_, name)) => format!("GET attachment {name:?}"),
            None => "GET attachment".to_string(),
        };
        self.retrying(&op, Replay::Always, deadline, |timeout| {
            self.download_once(&url, &op, max_bytes, timeout)
        })
        .await
    }

    // ----- the retry loop ---------------------------------------------------------------------

    /// A call whose answer has no body worth reading (`204 No Content`).
    async fn call_no_content(&self, call: Call, deadline: Instant) -> Result<(), ZendeskError> {
        let op = call.op();
        self.retrying(&op, call.replay, deadline, |timeout| {
            self.send(&call, &op, timeout)
        })
        .await
        .map(|_| ())
    }

    /// Every item under `key` of a cursor-paginated list (`page[size]`, `page[after]`), page by
    /// page until `meta.has_more` is false (or, without `meta`, `links.next` is absent).
    async fn list_all<T: DeserializeOwned>(
        &self,
        path: &str,
        key: &str,
        query: Vec<(&'static str, String)>,
        deadline: Instant,
    ) -> Result<Vec<T>, ZendeskError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut call = Call::new(Method::GET, path.to_string());
            call.query = query.clone();
            call.query.push(("page[size]", MAX_PAGE.to_string()));
            if let Some(cursor) = after.take() {
                call.query.push(("page[after]", cursor));
            }
            let op = call.op();
            let mut page: Value = self.call(call, deadline).await?;
            let decode = |source| ZendeskError::Decode {
                op: op.clone(),
                source,
            };
            let batch: Vec<T> = match page.get_mut(key).map(Value::take) {
                None | Some(Value::Null) => Vec::new(),
                Some(list) => serde_json::from_value(list).map_err(decode)?,
            };
            let fetched = batch.len();
            items.extend(batch);
            let meta: Option<CursorMeta> = match page.get_mut("meta").map(Value::take) {
                None | Some(Value::Null) => None,
                Some(meta) => Some(serde_json::from_value(meta).map_err(decode)?),
            };
            let links: Links = match page.get_mut("links").map(Value::take) {
                None | Some(Value::Null) => Links::default(),
                Some(links) => serde_json::from_value(links).map_err(decode)?,
            };
            let next = match meta {
                Some(CursorMeta {
                    has_more: true,
                    after_cursor: Some(cursor),
                }) => Some(cursor),
                Some(_) => None,
                None => links.next.as_deref().and_then(after_cursor_of),
            };
            match next {
                Some(cursor) if fetched > 0 => after = Some(cursor),
                _ => break,
            }
        }
        Ok(items)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        call: Call,
        deadline: Instant,
    ) -> Result<T, ZendeskError> {
        let op = call.op();
        let body = self
            .retrying(&op, call.replay, deadline, |timeout| {
                self.send(&call, &op, timeout)
            })
            .await?;
        serde_json::from_slice(&body).map_err(|source| ZendeskError::Decode { op, source })
    }

    /// Runs `attempt` (given the time it may take) until it succeeds, fails for good, runs out
    /// of attempts or would pass `deadline`.
    async fn retrying<T, F, Fut>(
        &self,
        op: &str,
        replay: Replay,
        deadline: Instant,
        mut attempt: F,
    ) -> Result<T, ZendeskError>
    where
        F: FnMut(Duration) -> Fut,
        Fut: Future<Output = Result<T, ZendeskError>>,
    {
        let mut attempts = 0;
        let mut last: Option<ZendeskError> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ZendeskError::DeadlineExceeded {
                    op: op.to_string(),
                    attempts,
                    last: last.map(Box::new),
                });
            }
            attempts += 1;
            let per_attempt = self.timeout.min(remaining);
            let error = match attempt(per_attempt).await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if !may_retry(&error, replay) || attempts >= self.retry.max_attempts {
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
                    op: op.to_string(),
                    attempts,
                    last: Some(Box::new(error)),
                });
            }
            tracing::warn!(op = %op, attempt = attempts, wait_ms = wait.as_millis() as u64, error = %error, "zendesk request failed; retrying");
            last = Some(error);
            tokio::time::sleep(wait).await;
        }
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.auth {
            Auth::Basic { email, api_token } => {
                request.basic_auth(format!("{email}/token"), Some(api_token.expose_secret()))
            }
            Auth::Bearer { token } => request.bearer_auth(token.expose_secret()),
        }
    }

    /// One HTTP attempt: the body of a 2xx answer, or the typed error.
    async fn send(&self, call: &Call, op: &str, timeout: Duration) -> Result<Bytes, ZendeskError> {
        let mut url = Url::parse(&format!("{}{}", self.base_url, call.path))
            .map_err(|e| ZendeskError::Config(format!("cannot build the url for {op}: {e}")))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let request = self
            .http
            .request(call.method.clone(), url)
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        let mut request = self.authorize(request);
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
        let transport = |source| request_error(op, timeout, source);
        let in_flight = self.budget.send();
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let headers = response.headers().clone();
        let refused = (status == StatusCode::TOO_MANY_REQUESTS).then(|| rate_limit_wait(&headers));
        in_flight.answered(&headers, refused);
        let body = response.bytes().await.map_err(transport)?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(classify(op, status, &headers, &body))
        }
    }
}

impl ZendeskClient {
    /// One download attempt of `start` (on the base origin), following redirects by hand.
    async fn download_once(
        &self,
        start: &Url,
        op: &str,
        max_bytes: u64,
        timeout: Duration,
    ) -> Result<Vec<u8>, ZendeskError> {
        let transport = |source| request_error(op, timeout, source);
        let bad_url = |reason: String| ZendeskError::AttachmentUrl { reason };
        let attempt_deadline = Instant::now() + timeout;
        let mut url = start.clone();
        // True while every hop so far stayed on the base origin.
        let mut authorized = same_origin(&url, &self.base);
        let mut hops = 0;
        let response = loop {
            let remaining = attempt_deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ZendeskError::Timeout {
                    op: op.to_string(),
                    after: timeout,
                });
            }
            let mut request = self.download_http.get(url.clone()).timeout(remaining);
            if authorized {
                request = self.authorize(request);
            }
            let response = request.send().await.map_err(transport)?;
            let status = response.status();
            let is_redirect = matches!(
                status,
                StatusCode::MOVED_PERMANENTLY
                    | StatusCode::FOUND
                    | StatusCode::SEE_OTHER
                    | StatusCode::TEMPORARY_REDIRECT
                    | StatusCode::PERMANENT_REDIRECT
            );
            if !is_redirect {
                break response;
            }
            hops += 1;
            if hops > MAX_REDIRECTS {
                return Err(bad_url(format!("more than {MAX_REDIRECTS} redirects")));
            }
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| bad_url(format!("redirect ({status}) without a location")))?;
            let next = url
                .join(location)
                .map_err(|e| bad_url(format!("redirect to an invalid location ({e})")))?;
            if !matches!(next.scheme(), "https" | "http") {
                return Err(bad_url(format!("redirect to a {} url", next.scheme())));
            }
            if url.scheme() == "https" && next.scheme() == "http" {
                return Err(bad_url("redirect from https to http".into()));
            }
            authorized = authorized && same_origin(&next, &self.base);
            url = next;
        };
        let status = response.status();
        if !status.is_success() {
            let headers = response.headers().clone();
            let body = match read_capped(response, ERROR_BODY_LIMIT).await {
                Ok(Capped::Complete(body)) => body,
                Ok(Capped::Over(_)) | Err(_) => Vec::new(),
            };
            return Err(classify(op, status, &headers, &body));
        }
        if let Some(size) = response.content_length()
            && size > max_bytes
        {
            return Err(ZendeskError::AttachmentTooLarge {
                size,
                limit: max_bytes,
            });
        }
        match read_capped(response, max_bytes).await.map_err(transport)? {
            Capped::Complete(data) => Ok(data),
            Capped::Over(size) => Err(ZendeskError::AttachmentTooLarge {
                size,
                limit: max_bytes,
            }),
        }
    }
}

/// A body read up to a limit.
enum Capped {
    Complete(Vec<u8>),
    /// Reading stopped after this many bytes, more than the limit.
    Over(u64),
}

/// Reads `response`'s body chunk by chunk, stopping as soon as it exceeds `limit` bytes.
async fn read_capped(
    mut response: reqwest::Response,
    limit: u64,
) -> Result<Capped, reqwest::Error> {
    let expected = response.content_length().unwrap_or(0).min(limit);
    let mut data = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        let size = data.len() as u64 + chunk.len() as u64;
        if size > limit {
            return Ok(Capped::Over(size));
        }
        data.extend_from_slice(&chunk);
    }
    Ok(Capped::Complete(data))
}

/// Same scheme, host and port (the port the scheme implies when none is written).
fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

/// `host` or `host:port` when the port is not the scheme's default.
fn host_and_port(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    }
}

/// The `page[after]` cursor of a `links.next` URL.
fn after_cursor_of(next: &str) -> Option<String> {
    let url = Url::parse(next).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == "page[after]")
        .map(|(_, v)| v.into_owned())
}

/// `raw` as one percent-encoded path segment, so an id cannot name another path (an id of
/// only dots still collapses as URLs do, onto a path that answers `404`).
fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A failed request attempt: timeout, malformed request or network failure.
fn request_error(op: &str, timeout: Duration, source: reqwest::Error) -> ZendeskError {
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
    reset_wait(headers)
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
            // Newer APIs (trigger categories, webhooks) answer `{"errors": [{code, title}]}`.
            let first = &value["errors"][0];
            let error = match &value["error"] {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("title")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                _ => first["code"].as_str().unwrap_or_default().to_string(),
            };
            let description = value["description"]
                .as_str()
                .or_else(|| value["error"]["message"].as_str())
                .or_else(|| first["title"].as_str())
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
    fn the_origin_check_compares_parsed_hosts_exactly() {
        let base = Url::parse("HTTPS://Acme.zendesk.com").unwrap();
        for (url, same) in [
            (
                "https://acme.zendesk.com/attachments/token/t/?name=a.pdf",
                true,
            ),
            ("https://ACME.zendesk.com:443/x", true),
            ("https://acme.zendesk.com.evil.example/x", false),
            ("https://acme.zendesk.com@evil.example/x", false),
            ("https://evil.example/acme.zendesk.com", false),
            ("https://xacme.zendesk.com/x", false),
            ("http://acme.zendesk.com/x", false),
            ("https://acme.zendesk.com:8443/x", false),
        ] {
            assert_eq!(same_origin(&Url::parse(url).unwrap(), &base), same, "{url}");
        }
    }

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
        let listed = br#"{"errors":[{"code":"TriggerCategoryNotEmpty","title":"A category with active ticket triggers cannot be deleted."}]}"#;
        match classify("DELETE /x", StatusCode::BAD_REQUEST, &headers, listed) {
            ZendeskError::Invalid {
                error, description, ..
            } => {
                assert_eq!(error, "TriggerCategoryNotEmpty");
                assert!(description.starts_with("A category with active"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(segment("01GX/../x y"), "01GX%2F%2E%2E%2Fx%20y");
        assert_eq!(
            after_cursor_of("https://a.zendesk.com/api/v2/webhooks?page[after]=abc&page[size]=2")
                .as_deref(),
            Some("abc")
        );
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
