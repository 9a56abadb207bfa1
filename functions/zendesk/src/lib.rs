//! Zendesk Support API client for the PEC connector (see `reference/zendesk-api.md`).
//!
//! - [`ZendeskClient`] (`client`): create tickets with an `Idempotency-Key`, upload files, add
//!   comments and internal notes, edit tags, find tickets by `external_id`, read tickets, their
//!   latest comments, users and the "Include attachments in emails" setting, and download
//!   attachment content (only from the account's own origin, size-capped); provision webhooks
//!   (with their signing secret), trigger categories and triggers. Every call takes a
//!   deadline (`std::time::Instant`, e.g. the Lambda's remaining time): `429` waits for
//!   `Retry-After` (or `ratelimit-reset`), `5xx` and timeouts back off exponentially with jitter,
//!   and no call ever sleeps past the deadline.
//! - [`RateBudget`] (`budget`): the account's requests left this minute, as Zendesk's
//!   `X-Rate-Limit` / `ratelimit-*` headers report them on every answer; shared by the clones of
//!   a client, so a long job can stop before it leaves the agents nothing.
//! - [`ZendeskError`] (`error`): one typed error per failure class, with `is_transient()`.
//! - `model`: the request and response shapes we use, read leniently.
//! - `escape`: making PEC text inert in comments (`{{` placeholders, HTML).
//! - [`ZendeskConfig`] (`config`): base URL, [`Auth`] (API token or OAuth, kept in
//!   `secrecy::SecretString`), timeouts and [`RetryPolicy`].
//!
//! Tests run against `sandbox::ZendeskSimulator`, a stateful loopback simulator of the same API.

mod budget;
mod client;
mod config;
mod error;
mod escape;
mod model;

pub use budget::{RateBudget, RateLeft, RateLimitReport, ZENDESK_WINDOW, parse_reserve_percent};
pub use client::{COMMENT_BODY_LIMIT, ZendeskClient};
pub use config::{Auth, RetryPolicy, ZendeskConfig, base_url_origin};
pub use error::{FieldError, ZendeskError};
pub use escape::{escape_placeholders, text_to_html};
pub use model::{
    Attachment, CONDITIONAL_TICKET_EVENTS, Comment, Condition, Conditions, CustomField, NewTicket,
    Requester, Ticket, TicketComment, TicketField, TicketFieldSpec, TicketId, TicketUpdate,
    Trigger, TriggerAction, TriggerCategory, TriggerSpec, UploadToken, User, Webhook, WebhookAuth,
    WebhookAuthInfo, WebhookSpec,
};
