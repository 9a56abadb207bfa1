//! Poll schedules as EventBridge Scheduler schedules: one schedule per account, named by the
//! account id, in the deployment's schedule group (the stack owns it, so deleting the stack
//! deletes every schedule). Each schedule is `rate(N minutes)` with one target, the poller
//! Lambda, invoked with the deployment's scheduler role and the input
//! `{"account_id": "<account>"}` (see `events/poll.json`).
//!
//! Why Scheduler rather than EventBridge rules ([`super::eventbridge`]): rules share a quota of
//! 300 per event bus by default, while Scheduler allows 1,000,000 schedules per Region by
//! default, and lets each schedule start where it should: every schedule starts on its
//! account's [`phase`](Schedule::phase) of the interval (`StartDate`), so accounts spread
//! evenly over the interval and keep their place when a schedule is written again. There is no
//! flexible time window: an account's polls stay exactly one interval apart.
//!
//! Scheduler has no counter of schedules: [`capacity`](Schedules::capacity) lists the group
//! (100 names a page) and compares with the configured limit.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_scheduler::Client;
use aws_sdk_scheduler::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_scheduler::primitives::DateTime as AwsDateTime;
use aws_sdk_scheduler::types::{
    FlexibleTimeWindow, FlexibleTimeWindowMode, RetryPolicy, ScheduleState, Target,
};
use chrono::Utc;
use tokio::task::JoinSet;

use super::{Capacity, SchedulesError, parse_rate};
use crate::aws::{AwsFailure, classify};
use crate::domain::{AccountId, PollRequest, Schedule};
use crate::ports::Schedules;

/// How many schedules [`Schedules::list`] reads at once (each needs its own `GetSchedule`).
const READ_AT_ONCE: usize = 16;

/// A poll the scheduler could not hand to Lambda is retried for two minutes at most: after that
/// the next one is near (the poller's own async retries are off for the same reason).
const MAX_EVENT_AGE_SECS: i32 = 120;
const MAX_RETRIES: i32 = 2;

/// The EventBridge Scheduler [`Schedules`].
#[derive(Clone, Debug)]
pub struct SchedulerSchedules {
    client: Client,
    group: Arc<str>,
    target_arn: Arc<str>,
    role_arn: Arc<str>,
    limit: usize,
}

/// What a schedule is made of, in Scheduler's terms.
struct Definition {
    expression: String,
    start: AwsDateTime,
    state: ScheduleState,
    description: String,
    target: Target,
    window: FlexibleTimeWindow,
}

impl SchedulerSchedules {
    /// AWS's default quota of schedules per Region ("Number of schedules").
    pub const DEFAULT_LIMIT: usize = 1_000_000;

    /// `group` is the schedule group (default deployment: `pec-connector-<stage>`), which must
    /// exist; `target_arn` the poller Lambda's ARN; `role_arn` the role Scheduler assumes to
    /// invoke it.
    pub fn new(
        client: Client,
        group: impl Into<String>,
        target_arn: impl Into<String>,
        role_arn: impl Into<String>,
    ) -> Result<Self, SchedulesError> {
        let group = group.into();
        let ok = !group.is_empty()
            && group.len() <= 64
            && group
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            return Err(SchedulesError::Invalid {
                op: "set up EventBridge Scheduler schedules".into(),
                reason: format!(
                    "schedule group {group:?} must be 1 to 64 characters of A-Z, a-z, 0-9, -, _ and ."
                ),
            });
        }
        let (target_arn, role_arn) = (target_arn.into(), role_arn.into());
        for (what, arn) in [("poller", &target_arn), ("scheduler role", &role_arn)] {
            if !arn.starts_with("arn:") {
                return Err(SchedulesError::Invalid {
                    op: "set up EventBridge Scheduler schedules".into(),
                    reason: format!("the {what} ARN {arn:?} is not an ARN"),
                });
            }
        }
        Ok(Self {
            client,
            group: group.into(),
            target_arn: target_arn.into(),
            role_arn: role_arn.into(),
            limit: Self::DEFAULT_LIMIT,
        })
    }

    /// How many schedules the group may hold (the deployment's `ScheduleQuota`).
    pub fn with_limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The schedule group.
    pub fn group(&self) -> &str {
        &self.group
    }

    /// The name of an account's schedule in the group: the account id (at most 40 characters
    /// of a-z, 0-9 and -, within Scheduler's 64 of `[0-9a-zA-Z-_.]`).
    pub fn schedule_name(account: &AccountId) -> String {
        account.as_str().to_owned()
    }

    /// The target input for an account: what the poller receives.
    pub fn target_input(account: &AccountId) -> String {
        serde_json::json!(PollRequest {
            account_id: account.clone()
        })
        .to_string()
    }

    fn definition(&self, op: &str, schedule: &Schedule) -> Result<Definition, SchedulesError> {
        let build = |e: aws_sdk_scheduler::error::BuildError| SchedulesError::Rejected {
            op: op.to_owned(),
            source: Box::new(e),
        };
        let target = Target::builder()
            .arn(&*self.target_arn)
            .role_arn(&*self.role_arn)
            .input(Self::target_input(&schedule.account))
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECS)
                    .maximum_retry_attempts(MAX_RETRIES)
                    .build(),
            )
            .build()
            .map_err(build)?;
        let window = FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(build)?;
        let start = schedule.first_run_after(Utc::now());
        Ok(Definition {
            expression: schedule.interval.rate_expression(),
            start: AwsDateTime::from_secs(start.timestamp()),
            state: if schedule.enabled {
                ScheduleState::Enabled
            } else {
                ScheduleState::Disabled
            },
            description: format!("Poll the PEC mailbox of account {}", schedule.account),
            target,
            window,
        })
    }

    /// `CreateSchedule`; `Ok(false)` when the schedule exists already.
    async fn create(&self, op: &str, schedule: &Schedule) -> Result<bool, SchedulesError> {
        let d = self.definition(op, schedule)?;
        let account = &schedule.account;
        match self
            .client
            .create_schedule()
            .name(Self::schedule_name(account))
            .group_name(&*self.group)
            .schedule_expression(d.expression)
            .start_date(d.start)
            .state(d.state)
            .description(d.description)
            .target(d.target)
            .flexible_time_window(d.window)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ConflictException") => Ok(false),
            Err(e) if e.code() == Some("ResourceNotFoundException") => {
                Err(SchedulesError::Invalid {
                    op: op.to_owned(),
                    reason: format!(
                        "the schedule group {} does not exist (the stack creates it)",
                        self.group
                    ),
                })
            }
            Err(e) => Err(sdk(op, account, e)),
        }
    }

    /// `UpdateSchedule` (which replaces the whole definition).
    async fn update(&self, op: &str, schedule: &Schedule) -> Result<(), SchedulesError> {
        let d = self.definition(op, schedule)?;
        let account = &schedule.account;
        self.client
            .update_schedule()
            .name(Self::schedule_name(account))
            .group_name(&*self.group)
            .schedule_expression(d.expression)
            .start_date(d.start)
            .state(d.state)
            .description(d.description)
            .target(d.target)
            .flexible_time_window(d.window)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| sdk(op, account, e))
    }

    /// Every schedule name in the group, every page.
    async fn names(&self, op: &str) -> Result<Vec<String>, SchedulesError> {
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_schedules()
                .group_name(&*self.group)
                .max_results(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_list(op, e))?;
            names.extend(out.schedules().iter().filter_map(|s| s.name.clone()));
            match out.next_token {
                Some(t) if !t.is_empty() => token = Some(t),
                _ => break,
            }
        }
        Ok(names)
    }
}

/// What the service said, for the messages that quote it.
fn message<E: ProvideErrorMetadata>(e: &E) -> String {
    match (e.code(), e.message()) {
        (Some(code), Some(m)) => format!("{code}: {m}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(m)) => m.to_owned(),
        (None, None) => "no detail".to_owned(),
    }
}

/// The quota that limits the schedules, as AWS names it.
const QUOTA: &str = "an EventBridge Scheduler quota is reached (\"Number of schedules\": \
     1,000,000 per Region by default)";
/// How to make room for more schedules.
const RAISE: &str = "raise the quota \"Number of schedules\" of Amazon EventBridge Scheduler in \
     Service Quotas, and deploy with ScheduleQuota set to the new limit";

fn sdk<E, R>(op: &str, account: &AccountId, e: SdkError<E, R>) -> SchedulesError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match classify(&e) {
        AwsFailure::NotFound => SchedulesError::NotFound {
            op: op.to_owned(),
            account: account.to_string(),
        },
        _ => sdk_list(op, e),
    }
}

/// An error of a call that names no account.
fn sdk_list<E, R>(op: &str, e: SdkError<E, R>) -> SchedulesError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let op = op.to_owned();
    match classify(&e) {
        AwsFailure::Throttled => SchedulesError::Throttled {
            op,
            source: Box::new(e),
        },
        AwsFailure::QuotaExceeded => SchedulesError::QuotaExceeded {
            op,
            quota: QUOTA.to_owned(),
            message: message(&e),
            raise: RAISE.to_owned(),
        },
        AwsFailure::Unavailable => SchedulesError::Unavailable {
            op,
            source: Box::new(e),
        },
        _ => SchedulesError::Rejected {
            op,
            source: Box::new(e),
        },
    }
}

#[async_trait]
impl Schedules for SchedulerSchedules {
    async fn put(&self, schedule: &Schedule) -> Result<(), SchedulesError> {
        let account = &schedule.account;
        let op = format!(
            "schedule polls of account {account} (schedule {}/{})",
            self.group,
            Self::schedule_name(account)
        );
        let created = self.create(&op, schedule).await?;
        if !created {
            self.update(&op, schedule).await?;
        }
        tracing::debug!(account = %account, created, interval = schedule.interval.as_minutes(), enabled = schedule.enabled, "schedule put");
        Ok(())
    }

    async fn set_enabled(&self, account: &AccountId, enabled: bool) -> Result<(), SchedulesError> {
        let op = format!(
            "{} polls of account {account} (schedule {}/{})",
            if enabled { "enable" } else { "disable" },
            self.group,
            Self::schedule_name(account)
        );
        let current = self
            .get(account)
            .await?
            .ok_or_else(|| SchedulesError::NotFound {
                op: op.clone(),
                account: account.to_string(),
            })?;
        if current.enabled == enabled {
            return Ok(());
        }
        self.update(&op, &Schedule { enabled, ..current }).await
    }

    async fn get(&self, account: &AccountId) -> Result<Option<Schedule>, SchedulesError> {
        let name = Self::schedule_name(account);
        let op = format!(
            "read the schedule of account {account} (schedule {}/{name})",
            self.group
        );
        let out = match self
            .client
            .get_schedule()
            .group_name(&*self.group)
            .name(&name)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if e.code() == Some("ResourceNotFoundException") => return Ok(None),
            Err(e) => return Err(sdk(&op, account, e)),
        };
        let expression = out.schedule_expression.unwrap_or_default();
        let interval = parse_rate(&expression).ok_or_else(|| SchedulesError::Invalid {
            op: op.clone(),
            reason: format!("the schedule is {expression:?}, not a rate"),
        })?;
        Ok(Some(Schedule {
            account: account.clone(),
            interval,
            enabled: matches!(out.state, Some(ScheduleState::Enabled)),
        }))
    }

    async fn list(&self) -> Result<Vec<Schedule>, SchedulesError> {
        let op = format!("list schedules (group {})", self.group);
        let mut accounts = Vec::new();
        for name in self.names(&op).await? {
            let account = AccountId::parse(&name).map_err(|e| SchedulesError::Invalid {
                op: op.clone(),
                reason: format!("schedule {name:?} is not named by an account id: {e}"),
            })?;
            accounts.push(account);
        }
        // The summaries carry no expression: one GetSchedule each, a few at once.
        let mut schedules = Vec::with_capacity(accounts.len());
        let mut reading = JoinSet::new();
        let mut pending = accounts.into_iter();
        loop {
            while reading.len() < READ_AT_ONCE {
                let Some(account) = pending.next() else { break };
                let me = self.clone();
                reading.spawn(async move { me.get(&account).await });
            }
            let Some(done) = reading.join_next().await else {
                break;
            };
            let read = done.map_err(|e| SchedulesError::Invalid {
                op: op.clone(),
                reason: format!("a read stopped: {e}"),
            })?;
            // A schedule deleted between the listing and its read is simply gone.
            if let Some(schedule) = read? {
                schedules.push(schedule);
            }
        }
        schedules.sort_by(|a, b| a.account.cmp(&b.account));
        Ok(schedules)
    }

    async fn delete(&self, account: &AccountId) -> Result<(), SchedulesError> {
        let name = Self::schedule_name(account);
        let op = format!(
            "delete the schedule of account {account} (schedule {}/{name})",
            self.group
        );
        match self
            .client
            .delete_schedule()
            .group_name(&*self.group)
            .name(&name)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(sdk(&op, account, e)),
        }
        tracing::debug!(account = %account, "schedule deleted");
        Ok(())
    }

    async fn capacity(&self) -> Result<Option<Capacity>, SchedulesError> {
        let op = format!("count the schedules of group {}", self.group);
        let used = self.names(&op).await?.len();
        Ok(Some(Capacity {
            used,
            limit: self.limit,
            counted: format!(
                "EventBridge Scheduler schedules in this deployment's group {} (the limit is \
                 its ScheduleQuota; AWS's quota \"Number of schedules\": 1,000,000 per Region \
                 by default, over every group)",
                self.group
            ),
            raise: "deploy with a larger ScheduleQuota; beyond the Region's quota \"Number of \
                    schedules\", raise it in Service Quotas (Amazon EventBridge Scheduler) first"
                .to_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> Client {
        let conf = aws_sdk_scheduler::Config::builder()
            .behavior_version(aws_sdk_scheduler::config::BehaviorVersion::latest())
            .region(aws_sdk_scheduler::config::Region::new("eu-south-1"))
            .build();
        Client::from_conf(conf)
    }

    const POLLER: &str = "arn:aws:lambda:eu-south-1:123456789012:function:poller";
    const ROLE: &str = "arn:aws:iam::123456789012:role/scheduler";

    #[test]
    fn input_is_the_poll_request() {
        let id = AccountId::parse("aruba-1").unwrap();
        assert_eq!(
            SchedulerSchedules::target_input(&id),
            r#"{"account_id":"aruba-1"}"#
        );
        assert_eq!(SchedulerSchedules::schedule_name(&id), "aruba-1");
    }

    #[test]
    fn a_schedule_starts_on_its_phase_without_a_window_and_retries_briefly() {
        let s = SchedulerSchedules::new(client(), "pec-connector-prod", POLLER, ROLE).unwrap();
        let schedule = Schedule {
            account: AccountId::parse("aruba-1").unwrap(),
            interval: crate::domain::PollInterval::minutes(5).unwrap(),
            enabled: false,
        };
        let before = Utc::now().timestamp();
        let d = s.definition("test", &schedule).unwrap();
        assert_eq!(d.expression, "rate(5 minutes)");
        assert_eq!(d.state, ScheduleState::Disabled);
        assert!(d.start.secs() > before && d.start.secs() <= before + 301);
        assert_eq!(
            d.start.secs().rem_euclid(300),
            schedule.phase().as_secs() as i64
        );
        assert_eq!(d.window.mode(), &FlexibleTimeWindowMode::Off);
        assert_eq!(d.target.arn(), POLLER);
        assert_eq!(d.target.role_arn(), ROLE);
        assert_eq!(d.target.input(), Some(r#"{"account_id":"aruba-1"}"#));
        let retry = d.target.retry_policy().unwrap();
        assert_eq!(retry.maximum_event_age_in_seconds(), Some(120));
        assert_eq!(retry.maximum_retry_attempts(), Some(2));
    }

    #[test]
    fn names_and_arns_are_checked() {
        for group in ["", "a/b", &"g".repeat(65)] {
            assert!(SchedulerSchedules::new(client(), group, POLLER, ROLE).is_err());
        }
        assert!(SchedulerSchedules::new(client(), "g", "poller", ROLE).is_err());
        assert!(SchedulerSchedules::new(client(), "g", POLLER, "role").is_err());
    }
}
