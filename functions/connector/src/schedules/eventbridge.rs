//! Poll schedules as EventBridge rules: one rule per account, `<prefix>-poll-<account>`, with
//! `rate(N minutes)` and one target, the poller Lambda, whose input is
//! `{"account_id": "<account>"}` (see `events/poll.json`).
//!
//! Scheduled rules live on the default event bus, whose quota "Rules" (300 per event bus by
//! default) counts every rule on it, the connector's and any other: [`capacity`] counts them all
//! against the configured limit. A rule runs first one interval after it is created; its place
//! in the interval cannot be chosen (EventBridge Scheduler's can: [`super::scheduler`]).
//!
//! [`capacity`]: Schedules::capacity

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::types::{RuleState, Target};

use super::{Capacity, SchedulesError, parse_rate};
use crate::aws::{AwsFailure, classify};
use crate::domain::{AccountId, PollRequest, Schedule};
use crate::ports::Schedules;

/// The id of the poller target on every rule.
pub const TARGET_ID: &str = "poller";

/// The EventBridge [`Schedules`].
#[derive(Clone, Debug)]
pub struct EventBridgeSchedules {
    client: Client,
    prefix: String,
    target_arn: String,
    limit: usize,
}

impl EventBridgeSchedules {
    /// Longest prefix such that `<prefix>-poll-<account id>` fits EventBridge's 64 characters.
    pub const MAX_PREFIX_LEN: usize = 64 - "-poll-".len() - AccountId::MAX_LEN;
    /// AWS's default quota of rules per event bus.
    pub const DEFAULT_LIMIT: usize = 300;

    /// `prefix` names the rules (default deployment: `pec-connector`); `target_arn` is the
    /// poller Lambda's ARN.
    pub fn new(
        client: Client,
        prefix: impl Into<String>,
        target_arn: impl Into<String>,
    ) -> Result<Self, SchedulesError> {
        let prefix = prefix.into();
        let ok = !prefix.is_empty()
            && prefix.len() <= Self::MAX_PREFIX_LEN
            && prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(SchedulesError::Invalid {
                op: "set up EventBridge schedules".into(),
                reason: format!(
                    "rule prefix {prefix:?} must be 1 to {} characters of A-Z, a-z, 0-9, -, _ and .",
                    Self::MAX_PREFIX_LEN
                ),
            });
        }
        Ok(Self {
            client,
            prefix,
            target_arn: target_arn.into(),
            limit: Self::DEFAULT_LIMIT,
        })
    }

    /// How many rules the default event bus may hold (its quota "Rules", when raised).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    fn rule_prefix(&self) -> String {
        format!("{}-poll-", self.prefix)
    }

    /// The rule name of an account's schedule.
    pub fn rule_name(&self, account: &AccountId) -> String {
        format!("{}{account}", self.rule_prefix())
    }

    /// The target input for an account: what the poller receives.
    pub fn target_input(account: &AccountId) -> String {
        serde_json::json!(PollRequest {
            account_id: account.clone()
        })
        .to_string()
    }

    fn schedule_of(
        &self,
        op: &str,
        name: Option<&str>,
        expression: Option<&str>,
        state: Option<&RuleState>,
    ) -> Result<Option<Schedule>, SchedulesError> {
        let Some(account) = name.and_then(|n| n.strip_prefix(&self.rule_prefix())) else {
            return Ok(None);
        };
        let invalid = |reason: String| SchedulesError::Invalid {
            op: op.to_owned(),
            reason,
        };
        let account = AccountId::parse(account).map_err(|e| invalid(e.to_string()))?;
        let expression = expression.unwrap_or_default();
        let interval = parse_rate(expression)
            .ok_or_else(|| invalid(format!("rule has schedule {expression:?}, not a rate")))?;
        Ok(Some(Schedule {
            account,
            interval,
            enabled: matches!(state, Some(RuleState::Enabled)),
        }))
    }
}

/// The quota that limits the rules, as AWS names it.
const QUOTA: &str =
    "the EventBridge quota \"Rules\" (300 rules per event bus by default) is reached";
/// How to make room for more rules.
const RAISE: &str = "raise the quota \"Rules\" of Amazon EventBridge in Service Quotas and deploy \
     with ScheduleQuota set to the new value, or deploy with SchedulerKind=scheduler (EventBridge \
     Scheduler: 1,000,000 schedules per Region by default)";

fn sdk<E, R>(op: &str, account: &AccountId, e: SdkError<E, R>) -> SchedulesError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let op = op.to_owned();
    match classify(&e) {
        AwsFailure::NotFound => SchedulesError::NotFound {
            op,
            account: account.to_string(),
        },
        AwsFailure::Throttled => SchedulesError::Throttled {
            op,
            source: Box::new(e),
        },
        // PutRule's "beyond allowed service quota": the rules of the event bus.
        AwsFailure::LimitExceeded | AwsFailure::QuotaExceeded => SchedulesError::QuotaExceeded {
            op,
            quota: QUOTA.to_owned(),
            message: e.message().unwrap_or("LimitExceededException").to_owned(),
            raise: RAISE.to_owned(),
        },
        AwsFailure::Unavailable => SchedulesError::Unavailable {
            op,
            source: Box::new(e),
        },
        AwsFailure::ConditionFailed | AwsFailure::Rejected => SchedulesError::Rejected {
            op,
            source: Box::new(e),
        },
    }
}

#[async_trait]
impl Schedules for EventBridgeSchedules {
    async fn put(&self, schedule: &Schedule) -> Result<(), SchedulesError> {
        let account = &schedule.account;
        let rule = self.rule_name(account);
        let op = format!("schedule polls of account {account} (rule {rule})");
        let state = if schedule.enabled {
            RuleState::Enabled
        } else {
            RuleState::Disabled
        };
        self.client
            .put_rule()
            .name(&rule)
            .schedule_expression(schedule.interval.rate_expression())
            .state(state)
            .description(format!("Poll the PEC mailbox of account {account}"))
            .send()
            .await
            .map_err(|e| sdk(&op, account, e))?;
        let target = Target::builder()
            .id(TARGET_ID)
            .arn(&self.target_arn)
            .input(Self::target_input(account))
            .build()
            .map_err(|e| SchedulesError::Rejected {
                op: op.clone(),
                source: Box::new(e),
            })?;
        let out = self
            .client
            .put_targets()
            .rule(&rule)
            .targets(target)
            .send()
            .await
            .map_err(|e| sdk(&op, account, e))?;
        if out.failed_entry_count > 0 {
            let reason = out
                .failed_entries
                .unwrap_or_default()
                .into_iter()
                .map(|f| {
                    format!(
                        "{}: {}",
                        f.error_code.unwrap_or_default(),
                        f.error_message.unwrap_or_default()
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            return Err(SchedulesError::Invalid {
                op,
                reason: format!("the poller target was refused ({reason})"),
            });
        }
        tracing::debug!(account = %account, rule = %rule, interval = schedule.interval.as_minutes(), enabled = schedule.enabled, "schedule put");
        Ok(())
    }

    async fn set_enabled(&self, account: &AccountId, enabled: bool) -> Result<(), SchedulesError> {
        let rule = self.rule_name(account);
        let op = format!(
            "{} polls of account {account} (rule {rule})",
            if enabled { "enable" } else { "disable" }
        );
        if enabled {
            self.client
                .enable_rule()
                .name(&rule)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk(&op, account, e))
        } else {
            self.client
                .disable_rule()
                .name(&rule)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| sdk(&op, account, e))
        }
    }

    async fn get(&self, account: &AccountId) -> Result<Option<Schedule>, SchedulesError> {
        let rule = self.rule_name(account);
        let op = format!("read the schedule of account {account} (rule {rule})");
        match self.client.describe_rule().name(&rule).send().await {
            Ok(out) => self.schedule_of(
                &op,
                out.name.as_deref(),
                out.schedule_expression.as_deref(),
                out.state.as_ref(),
            ),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(sdk(&op, account, e)),
        }
    }

    async fn list(&self) -> Result<Vec<Schedule>, SchedulesError> {
        let prefix = self.rule_prefix();
        let op = format!("list schedules (rules {prefix}*)");
        let mut schedules = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_rules()
                .name_prefix(&prefix)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| SchedulesError::Rejected {
                    op: op.clone(),
                    source: Box::new(e),
                })?;
            for rule in out.rules.unwrap_or_default() {
                if let Some(s) = self.schedule_of(
                    &op,
                    rule.name.as_deref(),
                    rule.schedule_expression.as_deref(),
                    rule.state.as_ref(),
                )? {
                    schedules.push(s);
                }
            }
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        schedules.sort_by(|a, b| a.account.cmp(&b.account));
        Ok(schedules)
    }

    async fn delete(&self, account: &AccountId) -> Result<(), SchedulesError> {
        let rule = self.rule_name(account);
        let op = format!("delete the schedule of account {account} (rule {rule})");
        // Targets first: EventBridge refuses to delete a rule that still has any.
        let targets = match self.client.list_targets_by_rule().rule(&rule).send().await {
            Ok(out) => out.targets.unwrap_or_default(),
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(()),
            Err(e) => return Err(sdk(&op, account, e)),
        };
        let ids: Vec<String> = targets.into_iter().map(|t| t.id).collect();
        if !ids.is_empty() {
            self.client
                .remove_targets()
                .rule(&rule)
                .set_ids(Some(ids))
                .force(true)
                .send()
                .await
                .map_err(|e| sdk(&op, account, e))?;
        }
        match self
            .client
            .delete_rule()
            .name(&rule)
            .force(true)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(sdk(&op, account, e)),
        }
        tracing::debug!(account = %account, rule = %rule, "schedule deleted");
        Ok(())
    }

    /// Every rule of the default event bus counts: the quota is per bus, not per application.
    async fn capacity(&self) -> Result<Option<Capacity>, SchedulesError> {
        let op = "count the rules of the default event bus";
        let mut used = 0;
        let mut token = None;
        loop {
            let out = self
                .client
                .list_rules()
                .limit(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| SchedulesError::Rejected {
                    op: op.to_owned(),
                    source: Box::new(e),
                })?;
            used += out.rules.map_or(0, |r| r.len());
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(Some(Capacity {
            used,
            limit: self.limit,
            counted: "EventBridge rules on the default event bus, the connector's and any \
                      other (quota \"Rules\": 300 per event bus by default)"
                .to_owned(),
            raise: RAISE.to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_the_poll_request() {
        let id = AccountId::parse("aruba-1").unwrap();
        assert_eq!(
            EventBridgeSchedules::target_input(&id),
            r#"{"account_id":"aruba-1"}"#
        );
    }
}
