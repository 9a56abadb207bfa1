//! Simulators of the outside world, for tests and the demo.
//!
//! - [`zendesk`]: a stateful Zendesk Support API on loopback ([`ZendeskSimulator`]) that follows
//!   the documented contract (`reference/zendesk-api.md`): tickets, comments, uploads, webhooks,
//!   trigger categories and triggers, auth and error bodies, `Idempotency-Key`, pagination, and
//!   injected `429`/`5xx`/latency, and triggers that call webhooks (signed) when an agent replies
//!   ([`ZendeskSimulator::agent_reply`]). Tests drive it with a real HTTP client and read back
//!   what it stored.
//! - [`provider_sim`]: a PEC provider in a box ([`PecProviderSimulator`]): the provider
//!   behaviour behind a real SMTP submission server and a real IMAP server over the same
//!   mailboxes ([`mailstore`]), with real-provider quirks to switch on
//!   ([`provider::Quirks`]). `pec-connector demo` runs the whole loop against it.
//! - [`provider`]: the behaviour of a PEC provider as pure code ([`PecProvider`]): what a
//!   submission produces (accettazione or non accettazione, buste di trasporto, avvenuta or
//!   mancata consegna) and what ordinary mail from outside becomes (busta di anomalia), every
//!   message with `daticert.xml`, the identificativo as Message-ID, and a sandbox S/MIME signature.
//! - [`smtp`]: a PEC provider's SMTP submission server ([`smtp::SmtpSimulator`]): implicit TLS
//!   with the sandbox test CA ([`smtp::SANDBOX_CA_PEM`]), AUTH, MAIL/RCPT/DATA; it keeps what it
//!   accepts; opt-in faults by user name, as the project's aiosmtpd test server.
//! - [`imap`]: a PEC provider's IMAP server ([`imap::ImapSimulator`]): implicit TLS, IMAP4rev1
//!   commands decoded and responses encoded with `imap-codec`, over a [`mailstore::MailStore`].

pub mod imap;
mod listener;
pub mod mailstore;
pub mod provider;
pub mod provider_sim;
pub mod smtp;
pub mod zendesk;

pub use provider::PecProvider;
pub use provider_sim::PecProviderSimulator;
pub use zendesk::{AgentUpdate, TicketRefusal, ZendeskSimulator};
