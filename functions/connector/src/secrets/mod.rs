//! [`Secrets`](crate::ports::Secrets) adapters: AWS Secrets Manager ([`aws`]) and owner-only files
//! on one machine ([`file`]). Secret values travel as [`secrecy::SecretString`], whose `Debug`
//! prints `[REDACTED]`; they are never logged and never written to the store.

#[cfg(feature = "aws")]
pub mod aws;
#[cfg(feature = "embedded")]
pub mod file;

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
