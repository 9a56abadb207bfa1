//! The [`Schedules`] port, the error it returns ([`SchedulesError`]) and its adapters: on AWS,
//! EventBridge Scheduler schedules ([`scheduler`], the default) or EventBridge rules
//! ([`eventbridge`]); on one machine, an in-process scheduler ([`local`]).
//!
//! Each AWS kind has a quota on how many schedules there may be (rules: 300 per event bus by
//! default; Scheduler: 1,000,000 per Region). [`Schedules::capacity`](crate::ports::Schedules::capacity)
//! tells the room left, so a registration is refused before anything is created, and a quota
//! error while creating one is [`SchedulesError::QuotaExceeded`].

#[cfg(feature = "aws")]
pub mod eventbridge;
#[cfg(feature = "embedded")]
pub mod local;
#[cfg(feature = "aws")]
pub mod scheduler;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{AccountId, PollInterval, Schedule};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a schedules operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulesError {
    #[error("cannot {op}: there is no schedule for account {account}")]
    NotFound { op: String, account: String },
    #[error("cannot {op}: the scheduler is throttling requests; retry later")]
    Throttled {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: the scheduler did not answer; retry later")]
    Unavailable {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: {reason}")]
    Invalid { op: String, reason: String },
    #[error("cannot {op}: the scheduler refused the request")]
    Rejected {
        op: String,
        #[source]
        source: BoxError,
    },
    /// The service refused to create one more schedule: a quota is reached.
    #[error("cannot {op}: {quota} ({message}); {raise}")]
    QuotaExceeded {
        op: String,
        /// The quota, named as AWS names it.
        quota: String,
        /// What the service said.
        message: String,
        /// How to make room.
        raise: String,
    },
}

impl SchedulesError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SchedulesError::Throttled { .. } | SchedulesError::Unavailable { .. }
        )
    }

    /// Whether a quota on the number of schedules refused the call.
    pub fn is_quota(&self) -> bool {
        matches!(self, SchedulesError::QuotaExceeded { .. })
    }
}

/// How many schedules there are against the quota that limits them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capacity {
    /// What counts against the limit, now.
    pub used: usize,
    /// The limit as configured (the deployment's `ScheduleQuota`, or AWS's default quota).
    pub limit: usize,
    /// What is counted and which quota limits it, in words: "<used> of <limit> {counted}"
    /// (e.g. "EventBridge rules on the default event bus, ... (quota \"Rules\": 300 per
    /// event bus by default)").
    pub counted: String,
    /// How to make room.
    pub raise: String,
}

impl Capacity {
    /// How many more schedules fit.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.used)
    }
}

/// `rate(1 minute)` / `rate(N minutes)` (and `rate(1 hour)`) back into an interval.
pub fn parse_rate(expression: &str) -> Option<PollInterval> {
    let inner = expression.strip_prefix("rate(")?.strip_suffix(')')?;
    let (n, unit) = inner.split_once(' ')?;
    let n: u32 = n.parse().ok()?;
    match unit {
        "minute" | "minutes" => PollInterval::minutes(n).ok(),
        "hour" | "hours" if n == 1 => PollInterval::minutes(60).ok(),
        _ => None,
    }
}

/// Moves every schedule `from` keeps into `to` (same interval, same state) and then removes it
/// from `from`: a deployment that switches between EventBridge rules and Scheduler keeps
/// polling every account, once. Each step is idempotent, so a move that stopped part-way is
/// finished by running it again. Returns how many schedules moved.
pub async fn move_all(from: &dyn Schedules, to: &dyn Schedules) -> Result<usize, SchedulesError> {
    let schedules = from.list().await?;
    let mut moved = 0;
    for listed in &schedules {
        // Read again: an admin may have changed or deleted it since the listing.
        let Some(schedule) = from.get(&listed.account).await? else {
            continue;
        };
        to.put(&schedule).await?;
        from.delete(&schedule.account).await?;
        moved += 1;
        tracing::info!(account = %schedule.account, "poll schedule moved");
    }
    Ok(moved)
}

/// The schedules of a deployment that switched kinds while [`move_all`] has not finished: what
/// is written goes to `to` (and leaves `from`), reads see both, deletes remove both. No account
/// is left without its schedule or with two.
pub struct Moving {
    pub to: Arc<dyn Schedules>,
    pub from: Arc<dyn Schedules>,
}

#[async_trait]
impl Schedules for Moving {
    async fn put(&self, schedule: &Schedule) -> Result<(), SchedulesError> {
        self.to.put(schedule).await?;
        self.from.delete(&schedule.account).await
    }

    async fn set_enabled(&self, account: &AccountId, enabled: bool) -> Result<(), SchedulesError> {
        match self.to.set_enabled(account, enabled).await {
            Err(SchedulesError::NotFound { op, account: name }) => {
                match self.from.get(account).await? {
                    Some(current) => self.put(&Schedule { enabled, ..current }).await,
                    None => Err(SchedulesError::NotFound { op, account: name }),
                }
            }
            other => other,
        }
    }

    async fn get(&self, account: &AccountId) -> Result<Option<Schedule>, SchedulesError> {
        match self.to.get(account).await? {
            Some(s) => Ok(Some(s)),
            None => self.from.get(account).await,
        }
    }

    async fn list(&self) -> Result<Vec<Schedule>, SchedulesError> {
        let mut all: BTreeMap<AccountId, Schedule> = BTreeMap::new();
        for s in self.from.list().await? {
            all.insert(s.account.clone(), s);
        }
        for s in self.to.list().await? {
            all.insert(s.account.clone(), s);
        }
        Ok(all.into_values().collect())
    }

    async fn delete(&self, account: &AccountId) -> Result<(), SchedulesError> {
        self.to.delete(account).await?;
        self.from.delete(account).await
    }

    async fn capacity(&self) -> Result<Option<Capacity>, SchedulesError> {
        self.to.capacity().await
    }
}

/// One poll schedule per account.
#[async_trait]
pub trait Schedules: Send + Sync {
    /// Creates the account's schedule or updates its interval and state. Its polls fall on the
    /// account's [`phase`](Schedule::phase) of the interval where the adapter can place them.
    /// [`SchedulesError::QuotaExceeded`] when a quota leaves no room for a new schedule.
    async fn put(&self, schedule: &Schedule) -> Result<(), SchedulesError>;
    /// Enables or disables an existing schedule. [`SchedulesError::NotFound`] if there is none.
    async fn set_enabled(&self, account: &AccountId, enabled: bool) -> Result<(), SchedulesError>;
    async fn get(&self, account: &AccountId) -> Result<Option<Schedule>, SchedulesError>;
    async fn list(&self) -> Result<Vec<Schedule>, SchedulesError>;
    /// Removes the schedule and what it triggers. Removing a missing schedule is not an error.
    async fn delete(&self, account: &AccountId) -> Result<(), SchedulesError>;
    /// How many schedules there are against the quota that limits them; `None` when nothing
    /// does (the in-process scheduler).
    async fn capacity(&self) -> Result<Option<Capacity>, SchedulesError>;
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn rates_round_trip() {
        for m in 1..=60 {
            let i = PollInterval::minutes(m).unwrap();
            assert_eq!(parse_rate(&i.rate_expression()), Some(i));
        }
        assert_eq!(
            parse_rate("rate(1 hour)"),
            Some(PollInterval::minutes(60).unwrap())
        );
        assert_eq!(parse_rate("cron(0 * * * ? *)"), None);
        assert_eq!(parse_rate("rate(2 days)"), None);
    }

    #[cfg(feature = "embedded")]
    #[tokio::test(start_paused = true)]
    async fn a_switched_deployment_keeps_one_schedule_per_account() {
        use super::local::LocalScheduler;
        let (old, _old_polls) = LocalScheduler::new(8);
        let (new, _new_polls) = LocalScheduler::new(8);
        let (old, new): (Arc<dyn Schedules>, Arc<dyn Schedules>) = (Arc::new(old), Arc::new(new));
        let schedule = |id: &str, minutes: u32| Schedule {
            account: AccountId::parse(id).unwrap(),
            interval: PollInterval::minutes(minutes).unwrap(),
            enabled: true,
        };
        for id in ["a1", "a2", "a3", "a4"] {
            old.put(&schedule(id, 5)).await.unwrap();
        }
        let moving = Moving {
            to: new.clone(),
            from: old.clone(),
        };
        // Reads see the old ones; writing one moves it; deleting removes it from both.
        assert_eq!(moving.list().await.unwrap().len(), 4);
        moving.put(&schedule("a1", 10)).await.unwrap();
        moving
            .set_enabled(&schedule("a2", 5).account, false)
            .await
            .unwrap();
        moving.delete(&schedule("a3", 5).account).await.unwrap();
        moving.put(&schedule("b1", 2)).await.unwrap();
        let names = |v: Vec<Schedule>| {
            v.into_iter()
                .map(|s| s.account.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(old.list().await.unwrap()), ["a4"]);
        assert_eq!(names(new.list().await.unwrap()), ["a1", "a2", "b1"]);
        assert!(
            !moving
                .get(&schedule("a2", 5).account)
                .await
                .unwrap()
                .unwrap()
                .enabled
        );
        assert_eq!(
            names(moving.list().await.unwrap()),
            ["a1", "a2", "a4", "b1"]
        );
        let err = moving
            .set_enabled(&schedule("zz", 5).account, true)
            .await
            .unwrap_err();
        assert!(matches!(err, SchedulesError::NotFound { .. }), "{err:?}");
        // The rest moves once.
        assert_eq!(move_all(old.as_ref(), new.as_ref()).await.unwrap(), 1);
        assert_eq!(move_all(old.as_ref(), new.as_ref()).await.unwrap(), 0);
        assert!(old.list().await.unwrap().is_empty());
        assert_eq!(
            new.get(&schedule("a4", 5).account).await.unwrap(),
            Some(schedule("a4", 5))
        );
    }
}
