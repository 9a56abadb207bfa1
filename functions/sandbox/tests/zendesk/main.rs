//! The Zendesk simulator's own tests, in one test binary: its API against Zendesk's contracts
//! (`simulator`) and its trigger engine (`triggers`).

mod simulator;
mod triggers;
