//! [`Secrets`](crate::ports::Secrets) adapters: AWS Secrets Manager with one secret per password
//! ([`aws`]) or many account passwords to a secret ([`shared`]), and owner-only files on one
//! machine ([`file`]); [`cache`] keeps account passwords in the process between runs. Secret
//! values travel as [`secrecy::SecretString`], whose `Debug` prints `[REDACTED]`; they are never
//! logged and never written to the store.

#[cfg(feature = "aws")]
pub mod aws;
pub mod cache;
#[cfg(feature = "embedded")]
pub mod file;
#[cfg(feature = "aws")]
pub mod shared;

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
