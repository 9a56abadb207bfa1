//! Poll schedules inside the process (`pec-connector serve`): one tokio task per enabled
//! account that sends a [`PollRequest`] every interval on the channel [`LocalScheduler::new`]
//! returns; whoever owns the receiver runs the polls.
//!
//! Schedules are not persisted: on start, `serve` puts one per account it finds in the store.
//! Each account's first poll comes after its [`phase`](Schedule::phase) of the interval (at the
//! latest one interval after it is put), so accounts put together do not poll together.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Capacity, SchedulesError};
use crate::domain::{AccountId, PollRequest, Schedule};
use crate::ports::Schedules;

struct Entry {
    schedule: Schedule,
    task: Option<JoinHandle<()>>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// The in-process [`Schedules`]. Dropping it stops every schedule.
pub struct LocalScheduler {
    entries: Arc<Mutex<BTreeMap<AccountId, Entry>>>,
    polls: mpsc::Sender<PollRequest>,
}

impl LocalScheduler {
    /// A scheduler and the receiving end of its poll requests.
    pub fn new(buffer: usize) -> (Self, mpsc::Receiver<PollRequest>) {
        let (polls, rx) = mpsc::channel(buffer.max(1));
        let scheduler = Self {
            entries: Arc::default(),
            polls,
        };
        (scheduler, rx)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<AccountId, Entry>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn spawn(&self, schedule: &Schedule) -> Option<JoinHandle<()>> {
        if !schedule.enabled {
            return None;
        }
        let period = schedule.interval.as_duration();
        let first = first_delay(schedule);
        let polls = self.polls.clone();
        let account = schedule.account.clone();
        Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(Instant::now() + first, period);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                tracing::debug!(account = %account, "scheduled poll");
                let request = PollRequest {
                    account_id: account.clone(),
                };
                if polls.send(request).await.is_err() {
                    return;
                }
            }
        }))
    }
}

/// How long after it is put a schedule first polls: more than nothing, at most one interval,
/// a different part of the interval for each account.
fn first_delay(schedule: &Schedule) -> Duration {
    schedule.interval.as_duration() - schedule.phase()
}

#[async_trait]
impl Schedules for LocalScheduler {
    async fn put(&self, schedule: &Schedule) -> Result<(), SchedulesError> {
        let task = self.spawn(schedule);
        let entry = Entry {
            schedule: schedule.clone(),
            task,
        };
        // The replaced entry (if any) aborts its task when dropped.
        drop(self.lock().insert(schedule.account.clone(), entry));
        Ok(())
    }

    async fn set_enabled(&self, account: &AccountId, enabled: bool) -> Result<(), SchedulesError> {
        let current = self
            .lock()
            .get(account)
            .map(|e| e.schedule.clone())
            .ok_or_else(|| SchedulesError::NotFound {
                op: format!("change the schedule of account {account}"),
                account: account.to_string(),
            })?;
        if current.enabled == enabled {
            return Ok(());
        }
        self.put(&Schedule { enabled, ..current }).await
    }

    async fn get(&self, account: &AccountId) -> Result<Option<Schedule>, SchedulesError> {
        Ok(self.lock().get(account).map(|e| e.schedule.clone()))
    }

    async fn list(&self) -> Result<Vec<Schedule>, SchedulesError> {
        Ok(self.lock().values().map(|e| e.schedule.clone()).collect())
    }

    async fn delete(&self, account: &AccountId) -> Result<(), SchedulesError> {
        drop(self.lock().remove(account));
        Ok(())
    }

    /// No quota: as many schedules as the machine can run.
    async fn capacity(&self) -> Result<Option<Capacity>, SchedulesError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PollInterval;

    #[tokio::test(start_paused = true)]
    async fn ticks_every_interval_until_disabled() {
        let (scheduler, mut polls) = LocalScheduler::new(8);
        let account = AccountId::parse("a1").unwrap();
        let schedule = Schedule {
            account: account.clone(),
            interval: PollInterval::minutes(2).unwrap(),
            enabled: true,
        };
        scheduler.put(&schedule).await.unwrap();
        // Polls at its first delay, then every 2 minutes: 3 by 2 s after its third.
        let first = first_delay(&schedule);
        tokio::time::sleep(first + Duration::from_secs(60 * 4 + 2)).await;
        let mut got = Vec::new();
        while let Ok(p) = polls.try_recv() {
            got.push(p.account_id);
        }
        assert_eq!(got, vec![account.clone(), account.clone(), account.clone()]);

        scheduler.set_enabled(&account, false).await.unwrap();
        tokio::time::sleep(Duration::from_secs(60 * 10)).await;
        assert!(polls.try_recv().is_err());
        assert!(!scheduler.get(&account).await.unwrap().unwrap().enabled);

        scheduler.delete(&account).await.unwrap();
        assert!(scheduler.list().await.unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn accounts_put_together_poll_apart() {
        let (scheduler, mut polls) = LocalScheduler::new(2000);
        let interval = PollInterval::minutes(2).unwrap();
        let mut per_second: BTreeMap<u64, usize> = BTreeMap::new();
        for n in 0..1000 {
            let account = AccountId::parse(&format!("ufficio-{n}")).unwrap();
            let schedule = Schedule {
                account,
                interval,
                enabled: true,
            };
            let first = first_delay(&schedule);
            assert!(first > Duration::ZERO && first <= interval.as_duration());
            *per_second.entry(first.as_secs()).or_default() += 1;
            scheduler.put(&schedule).await.unwrap();
        }
        let busiest = per_second.values().max().copied().unwrap_or_default();
        assert!(busiest <= 30, "{busiest} first polls in one second");
        // Whole seconds from 1 to 120: each account polls once in the first 120.5 s.
        tokio::time::sleep(interval.as_duration() + Duration::from_millis(500)).await;
        let mut total = 0;
        while polls.try_recv().is_ok() {
            total += 1;
        }
        assert_eq!(
            total, 1000,
            "every account polled once in the first interval"
        );
        assert_eq!(scheduler.capacity().await.unwrap(), None);
    }
}
