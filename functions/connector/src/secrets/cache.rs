//! Account passwords kept in the process between runs.
//!
//! A warm Lambda container (or `pec-connector serve`) polls many times; reading the password from
//! Secrets Manager at every poll is most of what an account costs (21,600 reads a month at 2-minute
//! polling). A copy is kept instead, and read again only when it may be out of date:
//!
//! * **the admin API changed the password** (in any process): the account record, which every poll
//!   and send reads anyway, carries [`password_set_at`](crate::domain::Account::password_set_at);
//!   a copy read before that moment (plus [`Freshness::margin`]) is read again
//!   ([`Secrets::get_current`]). So a rotation is used by the first poll or send that starts after
//!   the admin call returned, in every container, at no extra request. (Asking Secrets Manager
//!   for the secret's version, `DescribeSecret`, costs as much as reading it.)
//! * **the provider refused the password** (a change made around the admin API, or an expired
//!   app password): the run that saw the refusal [`forget`](Secrets::forget)s the copy, and the next
//!   run reads the password again;
//! * **the copy is older than [`Freshness::ttl`]** (default an hour): a bound for changes made
//!   around the admin API while the old password still works.
//!
//! [`CachedSecrets`] keeps copies for any [`Secrets`] adapter, one per account password. Only
//! account passwords are kept here: the Zendesk tokens and webhook secrets have their own short
//! caches (a minute), whose promptness the admin API documents.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use super::SecretsError;
use crate::domain::{AccountId, SecretName};
use crate::ports::Secrets;

/// When a kept copy must be read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// A copy is read again after this long, whatever else happened (`0`: never kept).
    pub ttl: Duration,
    /// A copy read less than this long after the password was set is read again: the admin API
    /// stamps `password_set_at` before it stores the password (after its login check), and
    /// clocks of two machines differ a little.
    pub margin: Duration,
}

impl Freshness {
    /// The default time a copy is kept.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
    /// The default margin after `password_set_at`.
    pub const DEFAULT_MARGIN: Duration = Duration::from_secs(300);

    pub const DEFAULT: Freshness = Freshness {
        ttl: Self::DEFAULT_TTL,
        margin: Self::DEFAULT_MARGIN,
    };

    /// Keep copies for `ttl`, with the default margin.
    pub fn ttl(ttl: Duration) -> Freshness {
        Freshness {
            ttl,
            ..Freshness::DEFAULT
        }
    }

    /// Whether a copy read at `read` may stand for a value set at `set_at` or later.
    pub fn allows(&self, read: ReadAt, set_at: Option<DateTime<Utc>>) -> bool {
        if read.at.elapsed() >= self.ttl {
            return false;
        }
        let margin = chrono::Duration::from_std(self.margin).unwrap_or(chrono::Duration::MAX);
        match set_at {
            None => true,
            Some(set_at) => set_at
                .checked_add_signed(margin)
                .is_some_and(|after| read.wall >= after),
        }
    }
}

impl Default for Freshness {
    fn default() -> Self {
        Freshness::DEFAULT
    }
}

/// When a copy was read: taken just before the read request left, so the copy holds whatever
/// was written before that moment.
#[derive(Debug, Clone, Copy)]
pub struct ReadAt {
    at: Instant,
    wall: DateTime<Utc>,
}

impl ReadAt {
    pub fn now() -> ReadAt {
        ReadAt {
            at: Instant::now(),
            wall: Utc::now(),
        }
    }

    /// Whether this read started after `other`.
    pub fn is_after(&self, other: &ReadAt) -> bool {
        self.at > other.at
    }
}

/// A [`Secrets`] adapter whose account passwords are kept in the process (see the module
/// documentation); every other secret goes straight to the adapter.
pub struct CachedSecrets<S> {
    inner: S,
    fresh: Freshness,
    kept: Mutex<HashMap<AccountId, (SecretString, ReadAt)>>,
}

impl<S: Secrets> CachedSecrets<S> {
    pub fn new(inner: S, fresh: Freshness) -> Self {
        Self {
            inner,
            fresh,
            kept: Mutex::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, (SecretString, ReadAt)>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `value` as read at `read`, unless a later read is kept already.
    fn keep(&self, account: &AccountId, value: &SecretString, read: ReadAt) {
        if self.fresh.ttl.is_zero() {
            return;
        }
        let mut kept = self.kept();
        match kept.get(account) {
            Some((_, have)) if have.is_after(&read) => {}
            _ => {
                kept.insert(account.clone(), (value.clone(), read));
            }
        }
    }
}

#[async_trait]
impl<S: Secrets> Secrets for CachedSecrets<S> {
    async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
        if let SecretName::AccountPassword(account) = name {
            // Whatever is kept is out of date from now on, whether the write succeeds or not.
            self.kept().remove(account);
            self.inner.put(name, value).await?;
            self.keep(account, value, ReadAt::now());
            return Ok(());
        }
        self.inner.put(name, value).await
    }

    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        self.get_current(name, None).await
    }

    async fn get_current(
        &self,
        name: &SecretName,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<SecretString, SecretsError> {
        let SecretName::AccountPassword(account) = name else {
            return self.inner.get(name).await;
        };
        if let Some((value, read)) = self.kept().get(account)
            && self.fresh.allows(*read, set_at)
        {
            return Ok(value.clone());
        }
        let read = ReadAt::now();
        match self.inner.get(name).await {
            Ok(value) => {
                self.keep(account, &value, read);
                Ok(value)
            }
            Err(e) => {
                if matches!(e, SecretsError::NotFound { .. }) {
                    self.kept().remove(account);
                }
                Err(e)
            }
        }
    }

    async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
        if let SecretName::AccountPassword(account) = name {
            self.kept().remove(account);
        }
        self.inner.delete(name).await
    }

    async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
        self.inner.list().await
    }

    fn forget(&self, name: &SecretName) {
        if let SecretName::AccountPassword(account) = name {
            self.kept().remove(account);
        }
        self.inner.forget(name);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use secrecy::ExposeSecret;

    use super::*;

    /// Secrets in memory that count reads.
    #[derive(Default)]
    struct Counted {
        values: Mutex<HashMap<SecretName, String>>,
        reads: AtomicU32,
    }

    impl Counted {
        fn set(&self, name: &SecretName, value: &str) {
            self.values
                .lock()
                .unwrap()
                .insert(name.clone(), value.to_owned());
        }
        fn reads(&self) -> u32 {
            self.reads.swap(0, Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Secrets for Counted {
        async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
            self.set(name, value.expose_secret());
            Ok(())
        }
        async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.values
                .lock()
                .unwrap()
                .get(name)
                .map(|v| SecretString::from(v.clone()))
                .ok_or_else(|| SecretsError::NotFound {
                    name: name.to_string(),
                })
        }
        async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
            self.values.lock().unwrap().remove(name);
            Ok(())
        }
        async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
            Ok(self.values.lock().unwrap().keys().cloned().collect())
        }
    }

    fn pw(id: &str) -> SecretName {
        SecretName::AccountPassword(AccountId::parse(id).unwrap())
    }

    async fn value(s: &impl Secrets, name: &SecretName, set_at: Option<DateTime<Utc>>) -> String {
        s.get_current(name, set_at)
            .await
            .unwrap()
            .expose_secret()
            .to_owned()
    }

    #[tokio::test]
    async fn a_password_is_read_once_until_it_may_have_changed() {
        let source = Arc::new(Counted::default());
        let cached = CachedSecrets::new(source.clone(), Freshness::DEFAULT);
        let a = pw("a1");
        source.set(&a, "old");
        for _ in 0..10 {
            assert_eq!(value(&cached, &a, None).await, "old");
        }
        assert_eq!(source.reads(), 1, "kept after the first read");

        // Changed at the source around this process: the copy stands...
        source.set(&a, "new");
        assert_eq!(value(&cached, &a, None).await, "old");
        // ...unless the account says it was set after the copy was read,
        let set_at = Utc::now();
        assert_eq!(value(&cached, &a, Some(set_at)).await, "new");
        assert_eq!(source.reads(), 1);
        // or a login refused it.
        source.set(&a, "newer");
        cached.forget(&a);
        assert_eq!(value(&cached, &a, None).await, "newer");
        assert_eq!(source.reads(), 1);

        // A copy read within the margin after `set_at` is read again (it may predate the
        // write); one read well after it is kept.
        let long_ago = Utc::now() - chrono::Duration::minutes(10);
        assert_eq!(value(&cached, &a, Some(long_ago)).await, "newer");
        assert_eq!(source.reads(), 0);
        let just_now = Utc::now() - chrono::Duration::seconds(10);
        assert_eq!(value(&cached, &a, Some(just_now)).await, "newer");
        assert_eq!(value(&cached, &a, Some(just_now)).await, "newer");
        assert_eq!(source.reads(), 2, "within the margin: read every time");
    }

    #[tokio::test]
    async fn copies_expire_and_only_passwords_are_kept() {
        let source = Arc::new(Counted::default());
        let cached = CachedSecrets::new(source.clone(), Freshness::ttl(Duration::from_millis(50)));
        let a = pw("a1");
        source.set(&a, "one");
        source.set(&SecretName::AdminToken, "admin");
        assert_eq!(value(&cached, &a, None).await, "one");
        assert_eq!(value(&cached, &a, None).await, "one");
        assert_eq!(source.reads(), 1);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(value(&cached, &a, None).await, "one");
        assert_eq!(source.reads(), 1, "read again after the TTL");
        for _ in 0..3 {
            value(&cached, &SecretName::AdminToken, None).await;
        }
        assert_eq!(source.reads(), 3, "other secrets are not kept here");
    }

    #[tokio::test]
    async fn writes_through_this_process_are_seen_at_once() {
        let source = Arc::new(Counted::default());
        let cached = CachedSecrets::new(source.clone(), Freshness::DEFAULT);
        let a = pw("a1");
        cached.put(&a, &SecretString::from("one")).await.unwrap();
        assert_eq!(value(&cached, &a, None).await, "one");
        assert_eq!(source.reads(), 0, "the value written is kept");
        cached.put(&a, &SecretString::from("two")).await.unwrap();
        assert_eq!(value(&cached, &a, None).await, "two");
        cached.delete(&a).await.unwrap();
        assert!(matches!(
            cached.get(&a).await.unwrap_err(),
            SecretsError::NotFound { .. }
        ));
        let none = CachedSecrets::new(source.clone(), Freshness::ttl(Duration::ZERO));
        none.put(&a, &SecretString::from("three")).await.unwrap();
        value(&none, &a, None).await;
        value(&none, &a, None).await;
        assert_eq!(source.reads(), 3, "a TTL of 0 keeps nothing");
    }
}
