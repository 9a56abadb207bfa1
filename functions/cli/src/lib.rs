//! # pec-connector — the connector's command line
//!
//! * [`inspect`] — `pec-connector inspect FILE...`: explain PEC messages (`.eml`), one JSON
//!   report per file.
//! * [`demo`] — `pec-connector demo [--once]`: the whole loop offline, against the sandbox's
//!   PEC provider and Zendesk simulators (a citizen's PEC becomes a ticket, the agent's reply
//!   leaves as PEC, the receipts land on the ticket).
//! * [`serve`] — `pec-connector serve`: the connector on one machine, without AWS. The api's
//!   HTTP routes ([`api::router`]) on a local listener, and the poll schedule of every account
//!   run in-process ([`connector::schedules::local`]), over the embedded adapters: a SQLite
//!   store and owner-only secret files in a data directory, IMAPS and SMTPS to the providers.
//!   [`serve::config`] reads the settings (flags, environment, an optional JSON file).

pub mod demo;
pub mod inspect;
pub mod serve;
