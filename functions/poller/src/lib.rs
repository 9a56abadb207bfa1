//! # poller — the Lambda an account's schedule (EventBridge Scheduler, or a rule) invokes
//!
//! Wiring only: the event names an account; [`handle`] turns the invocation deadline into the
//! poll's deadline and runs [`connector::inbound::Inbound::poll`], then retries the account's
//! due sends ([`connector::outbound::Outbound::retry_due`]). [`Config::from_env`] reads the
//! deployment's settings once, at start, and [`from_config`] builds the AWS adapters.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use connector::domain::AccountId;
use connector::inbound::{Inbound, PollOutcome};
use connector::outbound::Outbound;
use connector::wiring::AwsParts;
use lambda_runtime::LambdaEvent;
use serde_json::Value;

pub use connector::wiring::{Config, ConfigError};

/// The AWS-backed inbound and outbound use cases.
pub async fn from_config(config: &Config) -> anyhow::Result<(Inbound, Outbound)> {
    let parts = AwsParts::from_config(config).await?;
    Ok((parts.inbound(), parts.outbound()))
}

/// The invocation's input: the target Input `{"account_id": "..."}` the schedule sends, or a
/// full EventBridge event carrying it in `detail`.
pub fn account_of(event: &Value) -> Result<AccountId, String> {
    let id = event
        .get("account_id")
        .or_else(|| event.get("detail").and_then(|d| d.get("account_id")))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            "the event has no account_id (expected {\"account_id\": \"...\"})".to_owned()
        })?;
    AccountId::parse(id).map_err(|e| format!("the event's account_id is not valid: {e}"))
}

/// What one invocation answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// The mailbox was read.
    Polled(PollOutcome),
    /// The mailbox could not be read for a reason only an admin can fix (a refused password, a
    /// TLS problem, an unreachable server). The use case recorded it on the account and opened
    /// an alert ticket once per incident, so it is not an invocation error: the poller's error
    /// alarm stays for trouble in the connector itself (the store, Zendesk, a bad event).
    MailboxProblem(String),
}

/// Handles one invocation: polls the account until shortly before the Lambda deadline, then
/// (with `outbound`, and when the poll read the mailbox to its end) tries again the account's
/// sends that are due — after the poll, so that a receipt just read can show a send was accepted
/// after all ([`connector::run::run_account`]).
pub async fn handle(
    inbound: &Inbound,
    outbound: Option<&Outbound>,
    event: LambdaEvent<Value>,
) -> Result<Response, lambda_runtime::Error> {
    let account = account_of(&event.payload)?;
    let deadline = instant_of(event.context.deadline);
    let polled = connector::run::run_account(inbound, outbound, &account, deadline)
        .await
        .polled;
    match polled {
        Ok(outcome) => {
            tracing::info!(account = %account.as_str(), ?outcome, "poll done");
            Ok(Response::Polled(outcome))
        }
        Err(e) if e.is_mailbox_problem() => Ok(Response::MailboxProblem(e.to_string())),
        Err(e) => {
            tracing::error!(account = %account.as_str(), transient = e.is_transient(), error = %e, "poll failed");
            Err(e.into())
        }
    }
}

/// The Lambda deadline (milliseconds since the epoch) as an `Instant`; 60 s from now when absent.
fn instant_of(deadline_ms: u64) -> Instant {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    if deadline_ms == 0 {
        return Instant::now() + Duration::from_secs(60);
    }
    Instant::now() + Duration::from_millis(deadline_ms.saturating_sub(now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_account_from_the_schedule_input_or_an_eventbridge_event() {
        assert_eq!(
            account_of(&serde_json::json!({"account_id": "aruba-1"}))
                .unwrap()
                .as_str(),
            "aruba-1"
        );
        let full = serde_json::json!({"source": "aws.events", "detail": {"account_id": "poste-2"}});
        assert_eq!(account_of(&full).unwrap().as_str(), "poste-2");
        assert!(
            account_of(&serde_json::json!({}))
                .unwrap_err()
                .contains("account_id")
        );
        assert!(account_of(&serde_json::json!({"account_id": "bad id!"})).is_err());
    }

    #[test]
    fn the_deadline_comes_from_the_invocation() {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let left = instant_of(now_ms + 30_000).saturating_duration_since(Instant::now());
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
    }
}
