//! The end-to-end tests, in one test binary (one link of the whole dependency graph instead of
//! one per file). Each module is one area; `secrets_never_leak` stays a binary of its own, as it
//! captures every log line of its process at TRACE.

mod account_health;
mod accounts;
mod aws;
mod channel;
mod console;
mod embedded;
mod events;
mod inbound;
mod inbound_memory;
mod instances;
mod outbound;
mod poller;
mod rate_limits;
mod reliability;
mod requests;
mod schedules;
mod secrets;
mod serve;
mod smtp_refusals;
mod soak;
