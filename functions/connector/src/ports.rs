//! The ports: what the use cases need from the outside world, one small trait per capability. Each
//! is defined in its adapters' module, beside the error it returns
//! ([`StoreError`](crate::store::StoreError), [`SecretsError`](crate::secrets::SecretsError),
//! [`SchedulesError`](crate::schedules::SchedulesError), like the mailbox and mailer ports), and
//! named here too.
//!
//! Every trait is object safe (`async-trait`), so wiring can hold `Arc<dyn Store>` and pick an
//! adapter at start: the AWS ones in Lambda, the embedded ones on one machine and in tests.
//! The contract every adapter must meet is written once, in the `e2e` crate's contract suite,
//! and run against each adapter.

pub use crate::schedules::Schedules;
pub use crate::secrets::Secrets;
pub use crate::store::Store;
