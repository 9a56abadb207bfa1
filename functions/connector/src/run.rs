//! One scheduled run of an account, as the poller Lambda and `pec-connector serve` both do it:
//! the poll, then — only when the poll read the mailbox to its end — the account's due sends.
//! A send that may have left is tried again only after the receipts that would prove it were
//! read, so retries wait for a poll that caught up. A refused login makes the process forget the
//! password it kept ([`crate::secrets::cache`]), so the next run reads it again.

use std::time::Instant;

use chrono::Utc;

use crate::domain::{AccountId, SecretName};
use crate::inbound::{Inbound, PollError, PollOutcome};
use crate::outbound::{Outbound, RetryOutcome};
use crate::store::StoreError;

/// What one run did.
#[derive(Debug)]
pub struct RunOutcome {
    pub polled: Result<PollOutcome, PollError>,
    /// `None` when no retry ran: no outbound use case, another run held the mailbox, or the
    /// poll did not read the mailbox to its end.
    pub retried: Option<Result<RetryOutcome, StoreError>>,
}

/// Polls `account` until `deadline` is near, then retries its due sends within what is left.
pub async fn run_account(
    inbound: &Inbound,
    outbound: Option<&Outbound>,
    account: &AccountId,
    deadline: Instant,
) -> RunOutcome {
    let started = Utc::now();
    let polled = inbound.poll(account, deadline).await;
    if let Err(PollError::Mailbox(e)) = &polled
        && e.is_auth()
    {
        // The password kept in this process may be out of date: the next run reads it again.
        inbound
            .secrets
            .forget(&SecretName::AccountPassword(account.clone()));
    }
    let retried = match (outbound, &polled) {
        (Some(outbound), Ok(o)) if o.caught_up && !o.busy => {
            Some(outbound.retry_due(account, started, deadline).await)
        }
        _ => None,
    };
    match &retried {
        Some(Ok(r)) if *r != RetryOutcome::default() => {
            tracing::info!(account = %account.as_str(), retried = ?r, "outbox retried")
        }
        Some(Err(e)) => {
            tracing::error!(account = %account.as_str(), error = %e, "outbox retry failed")
        }
        _ => {}
    }
    RunOutcome { polled, retried }
}
