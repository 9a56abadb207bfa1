//! # connector — the PEC connector's domain, ports, adapters and use cases
//!
//! The connector makes an Italian certified e-mail (PEC) mailbox a Zendesk channel. This crate
//! holds what it decides and what it remembers:
//!
//! * [`domain`] — validated values ([`AccountId`](domain::AccountId),
//!   [`PecAddress`](domain::PecAddress), [`Uid`](domain::Uid), the ticket marker
//!   [`TicketMarker`](domain::TicketMarker), ...), the records kept per account (cursor, lease,
//!   message, outbound and outbox records) and the shared vocabulary: the tags
//!   ([`domain::tags`]) and the external ids of the connector's tickets;
//! * [`ports`] — the traits the use cases need: [`Store`](ports::Store) (account state),
//!   [`Secrets`](ports::Secrets) (credentials, kept apart from state) and
//!   [`Schedules`](ports::Schedules) (one poll schedule per account); the mailbox and mailer
//!   ports sit with their adapters ([`mailbox`], [`mailer`]), each port's error type beside it;
//! * adapters, one module per technology:
//!   * [`store`] — DynamoDB ([`store::dynamo`], feature `aws`) and SQLite, the embedded
//!     store ([`store::sqlite`], feature `embedded`);
//!   * [`secrets`] — Secrets Manager, one secret per password ([`secrets::aws`]) or many
//!     account passwords to a secret ([`secrets::shared`]), and owner-only files
//!     ([`secrets::file`]); [`secrets::cache`] keeps passwords in the process between runs;
//!   * [`schedules`] — EventBridge Scheduler schedules ([`schedules::scheduler`], the
//!     default), EventBridge rules ([`schedules::eventbridge`]) and an in-process scheduler
//!     ([`schedules::local`]);
//!   * [`mailbox`] — the mailbox port and its IMAPS adapter (read-only: EXAMINE, BODY.PEEK);
//!   * [`mailer`] — the mailer port and its SMTP adapter (implicit TLS, AUTH, typed refusals);
//!   * the AWS adapters read SDK errors one way (the private `aws` module);
//! * Zendesk is not behind a port: the use cases call the [`zendesk`] crate's client, one per
//!   Zendesk instance, found through [`zendesks::ZendeskDirectory`] (there is one helpdesk);
//! * [`render`] — everything agents read in Zendesk, in Italian, in one place: tickets, notes
//!   and alerts of the inbound use case, the notes of the outbound one ([`render::outbound`]);
//! * use cases, none importing another:
//!   * [`inbound`] — the poll: every new message in the mailbox becomes the right Zendesk
//!     ticket, comment or note, exactly once;
//!   * [`outbound`] — sending PEC from Zendesk: the webhook's verification and payload,
//!     composing the message ([`outbound::compose`]), and the send use case with its outbox of
//!     retries;
//!   * [`run`] (feature `smtp`) — one scheduled run of an account: the poll, then the due
//!     sends once the mailbox is read to its end (the poller Lambda and `serve` both run it);
//!   * [`accounts`] — removing an account and all it left behind;
//!   * `admin` — registering, changing and removing accounts over HTTP, with the login checks
//!     and the Zendesk provisioning (webhook, trigger category, triggers); its "poll now" runs
//!     the inbound use case it is given.
//!
//! On AWS, the poller and api Lambdas wire the `aws` adapters (`wiring`, feature `lambda`);
//! `pec-connector serve` wires the `embedded` ones. Both pass the same contract suite (the `e2e`
//! crate).

pub mod accounts;
#[cfg(all(feature = "imap", feature = "smtp"))]
pub mod admin;
#[cfg(feature = "aws")]
mod aws;
pub mod domain;
pub mod inbound;
pub mod mailbox;
pub mod mailer;
pub mod outbound;
pub mod parts;
pub mod ports;
pub mod render;
#[cfg(feature = "smtp")]
pub mod run;
pub mod schedules;
pub mod secrets;
pub mod store;
#[cfg(feature = "lambda")]
pub mod wiring;
pub mod zendesks;
