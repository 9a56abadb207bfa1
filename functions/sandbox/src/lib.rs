//! Simulators of the outside world, for tests and the demo.
//!
//! - [`zendesk`]: a stateful Zendesk Support API on loopback ([`ZendeskSimulator`]) that follows
//!   the documented contract (`reference/zendesk-api.md`): tickets, comments, uploads, webhooks,
//!   trigger categories and triggers, auth and error bodies, `Idempotency-Key`, pagination, and
//!   injected `429`/`5xx`/latency. Tests drive it with a real HTTP client and read back what it
//!   stored.
//! - [`provider`]: the behaviour of a PEC provider as pure code ([`PecProvider`]): what a
//!   submission produces (accettazione or non accettazione, buste di trasporto, avvenuta or
//!   mancata consegna) and what ordinary mail from outside becomes (busta di anomalia), every
//!   message with `daticert.xml`, the identificativo as Message-ID, and a sandbox S/MIME signature.
//! - [`smtp`]: a PEC provider's SMTP submission server ([`smtp::SmtpSimulator`]): implicit TLS
//!   with the sandbox test CA ([`smtp::SANDBOX_CA_PEM`]), AUTH, MAIL/RCPT/DATA; it keeps what it
//!   accepts.

pub mod imap;
mod listener;
pub mod mailstore;
pub mod provider;
pub mod provider_sim;
pub mod smtp;
pub mod zendesk;

pub use provider::PecProvider;
pub use provider_sim::PecProviderSimulator;
pub use zendesk::ZendeskSimulator;
