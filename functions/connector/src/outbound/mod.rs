//! Outbound: a Zendesk trigger calls our webhook, and the connector sends a PEC.
//!
//! * [`webhook`] — what arrives: [`webhook::verify`] checks a call is Zendesk's (size, bearer
//!   token, `X-Zendesk-Webhook-Signature`, timestamp window) before anything reads the body, and
//!   [`webhook::parse`] turns the verified body into an [`OutboundRequest`]: a template send
//!   ("Reply by PEC Connector [address]") or an agent's public reply. Both are pure and never
//!   panic; every refusal is a [`WebhookError`] with a 4xx status and a plain message.
//! * [`compose`](mod@compose) — what leaves (feature `smtp`, for lettre): [`compose::compose`] turns an
//!   [`OutboundMessage`] into the raw RFC 5322 bytes the mailer sends, with our
//!   [`compose::message_id`]; a header injection or an oversized send is a [`ComposeError`].
//! * [`send`] — the use case (feature `smtp`): [`Outbound::accept`] takes a verified webhook
//!   once, sends at once within a short budget and notes the result on the ticket;
//!   [`Outbound::retry_due`] retries what the provider asked to wait for, from the account's poll.

#[cfg(feature = "smtp")]
pub mod compose;
#[cfg(feature = "smtp")]
pub mod send;
pub mod webhook;

#[cfg(feature = "smtp")]
pub use compose::{
    ComposeError, ComposeLimits, OutboundFile, OutboundMessage, compose, compose_with, message_id,
};

#[cfg(feature = "smtp")]
pub use send::{AcceptError, Accepted, Outbound, RetryOutcome, SendOptions};

pub use webhook::{
    OutboundRequest, VerifiedWebhook, WebhookError, WebhookLimits, WebhookSecrets, parse, verify,
};
