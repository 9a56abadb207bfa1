//! # connector — the PEC connector's domain, ports and adapters
//!
//! The connector makes an Italian certified e-mail (PEC) mailbox a Zendesk channel. This crate
//! holds what it decides and what it remembers:
//!
//! * [`domain`] — validated values ([`AccountId`](domain::AccountId),
//!   [`PecAddress`](domain::PecAddress), [`Uid`](domain::Uid), ...) and the records kept per
//!   account (cursor, lease, message, outbound and outbox records);
//! * [`ports`] — the traits the use cases need: [`Store`](ports::Store) (account state),
//!   [`Secrets`](ports::Secrets) (credentials, kept apart from state) and
//!   [`Schedules`](ports::Schedules) (one poll schedule per account);
//! * adapters, one module per technology, each with its own error type:
//!   * [`store`] — DynamoDB ([`store::dynamo`], feature `aws`) and SQLite
//!     ([`store::sqlite`], feature `embedded`);
//!   * [`secrets`] — Secrets Manager, one secret per password ([`secrets::aws`]) or many
//!     account passwords to a secret ([`secrets::shared`]), and owner-only files
//!     ([`secrets::file`]); [`secrets::cache`] keeps passwords in the process between runs;
//!   * [`schedules`] — EventBridge Scheduler schedules ([`schedules::scheduler`], the
//!     default), EventBridge rules ([`schedules::eventbridge`]) and an in-process scheduler
//!     ([`schedules::local`]);
//!   * [`mailbox`] — the mailbox port and its IMAPS adapter (read-only: EXAMINE, BODY.PEEK);
//!   * [`mailer`] — the mailer port and its SMTP adapter (implicit TLS, AUTH, typed refusals);
//! * use cases:
//!   * [`inbound`] — the poll: every new message in the mailbox becomes the right Zendesk
//!     ticket, comment or note, exactly once ([`inbound::render`] says what agents see);
//!   * [`outbound`] — sending PEC from Zendesk: the webhook's verification and payload,
//!     composing the message, and the send use case with its outbox of retries;
//!   * [`run`] (feature `smtp`) — one scheduled run of an account: the poll, then the due
//!     sends once the mailbox is read to its end (the poller Lambda and `serve` both run it);
//!   * [`accounts`] — removing an account and all it left behind;
//!   * `admin` — registering, changing and removing accounts over HTTP, with the login checks
//!     and the Zendesk provisioning (webhook, trigger category, triggers).
//!
//! On AWS, the poller and api Lambdas wire the `aws` adapters (`wiring`, feature `lambda`); `pec-connector serve` wires the
//! `embedded` ones. Both pass the same contract suite (the `e2e` crate).

pub mod accounts;
#[cfg(all(feature = "imap", feature = "smtp"))]
pub mod admin;
pub mod domain;
pub mod inbound;
pub mod mailbox;
pub mod mailer;
pub mod outbound;
pub mod ports;
#[cfg(feature = "smtp")]
pub mod run;
pub mod schedules;
pub mod secrets;
pub mod store;
#[cfg(feature = "lambda")]
pub mod wiring;
pub mod zendesks;
