//! # e2e — tests across crates and against real services
//!
//! * [`contract`] — the port contract suite, written once as async functions over an [`Env`]
//!   and instantiated by [`contract_tests!`] for the embedded adapters (`tests/embedded.rs`) and
//!   for the AWS adapters through the real AWS SDK to moto server (`tests/aws.rs`);
//! * [`env`] — how each test gets its own isolated adapters (a temporary directory, or a fresh
//!   table / secret prefix / rule prefix / schedule group on moto) and a view of everything they
//!   left behind;
//! * [`counting`] — counters of store I/O: a DynamoDB interceptor that counts items on the wire,
//!   and a [`Store`](connector::ports::Store) wrapper that counts calls;
//! * [`inbound_env`] — the inbound acceptance tests' world: a Dovecot mailbox, a Zendesk
//!   simulator, embedded store and secrets, and the `Inbound` use case wired to them, plus
//!   builders of the messages a PEC mailbox receives;
//! * [`admin_env`] — the accounts tests' world: the AWS adapters on moto (schedules on
//!   EventBridge Scheduler), the Zendesk simulator, Dovecot and the SMTP test server, and the
//!   api router with the admin use cases;
//! * [`outbound_env`] — the outbound tests' world: the same plus the SMTP test server, the
//!   `Outbound` use case and the api router, called in-process as Zendesk's webhook would;
//! * [`channel_env`] — the whole loop as Zendesk drives it: the api router on a loopback port,
//!   the simulator's triggers (provisioned by the admin API) calling its webhook, polls through
//!   the poller Lambda's handler, Dovecot and the SMTP test server.
//!
//! The AWS tests need moto server (`infra/moto.sh start`, done by `infra/test.sh`); they reach it
//! at `AWS_ENDPOINT_URL` (default `http://127.0.0.1:5000`) and fail, never skip, without it.
//! The inbound tests need Dovecot (`infra/dovecot.sh start`, also done by `infra/test.sh`) and
//! likewise fail without it, as the outbound tests do without the SMTP test server
//! (`infra/smtpd.sh start`).

pub mod admin_env;
pub mod channel_env;
pub mod contract;
pub mod counting;
pub mod env;
pub mod inbound_env;
pub mod outbound_env;

pub use env::Env;

/// Instantiates contract functions as tokio tests, each with a fresh environment from `$setup`
/// (an `async fn() -> Env`).
#[macro_export]
macro_rules! contract_tests {
    ($setup:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                let env = $setup().await;
                $crate::contract::$name(&env).await;
            }
        )*
    };
}
