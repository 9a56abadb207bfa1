//! Simulators of the outside world, for tests and the demo.
//!
//! - [`zendesk`]: a stateful Zendesk Support API on loopback ([`ZendeskSimulator`]) that follows
//!   the documented contract (`reference/zendesk-api.md`): tickets, comments, uploads, webhooks,
//!   trigger categories and triggers, auth and error bodies, `Idempotency-Key`, pagination, and
//!   injected `429`/`5xx`/latency. Tests drive it with a real HTTP client and read back what it
//!   stored.

pub mod zendesk;

pub use zendesk::ZendeskSimulator;
