//! The [`Secrets`] port, the error it returns ([`SecretsError`]) and its adapters: AWS Secrets
//! Manager with one secret per password ([`aws`]) or many account passwords to a secret
//! ([`shared`]), and owner-only files on one machine ([`file`]); [`cache`] keeps account passwords
//! in the process between runs. Secret values travel as [`secrecy::SecretString`], whose `Debug`
//! prints `[REDACTED]`; they are never logged and never written to the store.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cache;
#[cfg(feature = "embedded")]
pub mod file;
#[cfg(feature = "aws")]
pub mod shared;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::domain::SecretName;

/// The key, under the secrets prefix, of shard `n` of the shared layout ([`shared`]):
/// `accounts/<n>`.
pub fn shard_key(n: u32) -> String {
    format!("accounts/{n}")
}

/// Whether a key under the secrets prefix names a shard of the shared layout.
pub fn is_shard_key(key: &str) -> bool {
    key.strip_prefix("accounts/")
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a secrets operation failed. Never carries a secret value.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read secret {name}: there is no such secret")]
    NotFound { name: String },
    #[error("cannot {op}: the secrets service is throttling requests; retry later")]
    Throttled {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: the secrets service did not answer; retry later")]
    Unavailable {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: {reason}")]
    Invalid { op: String, reason: String },
    #[error("cannot {op}: the secrets service refused the request")]
    Rejected {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}")]
    Io {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

impl SecretsError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SecretsError::Throttled { .. } | SecretsError::Unavailable { .. }
        )
    }
}

/// Credentials, kept apart from the [`Store`]: account passwords, the Zendesk API token, the
/// webhook signing secret and the admin token.
#[async_trait]
pub trait Secrets: Send + Sync {
    /// Creates or replaces a secret.
    async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError>;
    /// [`SecretsError::NotFound`] if there is no such secret.
    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError>;
    /// Removes a secret for good. Removing a missing secret is not an error.
    async fn delete(&self, name: &SecretName) -> Result<(), SecretsError>;
    /// The names of every secret this connector keeps.
    async fn list(&self) -> Result<Vec<SecretName>, SecretsError>;

    /// `name` as it was set at `set_at` or later (an account's
    /// [`password_set_at`](crate::domain::Account::password_set_at), read with the account): an
    /// adapter that keeps copies reads again a copy it read before then, so a password changed
    /// through the admin API in another process is used by the next poll or send here.
    /// Adapters that keep no copies just [`get`](Secrets::get).
    async fn get_current(
        &self,
        name: &SecretName,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<SecretString, SecretsError> {
        let _ = set_at;
        self.get(name).await
    }

    /// Drops the copy of `name` this process keeps, if any: its value was refused (a login
    /// failed), so the next read asks the source. Adapters that keep no copies do nothing.
    fn forget(&self, name: &SecretName) {
        let _ = name;
    }
}

/// A shared adapter is the adapter (e.g. `CachedSecrets<Arc<dyn Secrets>>`).
#[async_trait]
impl<T: Secrets + ?Sized> Secrets for std::sync::Arc<T> {
    async fn put(&self, name: &SecretName, value: &SecretString) -> Result<(), SecretsError> {
        (**self).put(name, value).await
    }
    async fn get(&self, name: &SecretName) -> Result<SecretString, SecretsError> {
        (**self).get(name).await
    }
    async fn delete(&self, name: &SecretName) -> Result<(), SecretsError> {
        (**self).delete(name).await
    }
    async fn list(&self) -> Result<Vec<SecretName>, SecretsError> {
        (**self).list().await
    }
    async fn get_current(
        &self,
        name: &SecretName,
        set_at: Option<DateTime<Utc>>,
    ) -> Result<SecretString, SecretsError> {
        (**self).get_current(name, set_at).await
    }
    fn forget(&self, name: &SecretName) {
        (**self).forget(name)
    }
}
