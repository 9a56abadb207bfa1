//! [`Store`](crate::ports::Store) adapters: DynamoDB on AWS ([`dynamo`]), SQLite on one machine
//! ([`sqlite`]), and the error both speak.

#[cfg(feature = "aws")]
pub mod dynamo;
#[cfg(feature = "embedded")]
pub mod sqlite;

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a store operation failed. Each variant says which operation (`op`, e.g. "take the lease on
/// account aruba-1") and [`is_transient`](StoreError::is_transient) says whether trying again
/// later may help.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {op}: it already exists")]
    AlreadyExists { op: String },
    #[error("cannot {op}: not found")]
    NotFound { op: String },
    /// A conditional write was refused: the state is not what the caller expected.
    #[error("cannot {op}: {reason}")]
    ConditionFailed { op: String, reason: String },
    #[error("cannot {op}: the lease is not held by {holder}")]
    LeaseNotHeld { op: String, holder: String },
    #[error("cannot {op}: the store is throttling requests; retry later")]
    Throttled {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: table {table} does not exist")]
    MissingTable { op: String, table: String },
    #[error("cannot {op}: the store did not answer; retry later")]
    Unavailable {
        op: String,
        #[source]
        source: BoxError,
    },
    #[error("cannot {op}: a stored item is unreadable: {reason}")]
    Corrupt { op: String, reason: String },
    #[error("cannot {op}: the store refused the request")]
    Rejected {
        op: String,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Whether the same call may succeed later (throttling, the store unreachable).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            StoreError::Throttled { .. } | StoreError::Unavailable { .. }
        )
    }

    /// The operation that failed.
    pub fn op(&self) -> &str {
        match self {
            StoreError::AlreadyExists { op }
            | StoreError::NotFound { op }
            | StoreError::ConditionFailed { op, .. }
            | StoreError::LeaseNotHeld { op, .. }
            | StoreError::Throttled { op, .. }
            | StoreError::MissingTable { op, .. }
            | StoreError::Unavailable { op, .. }
            | StoreError::Corrupt { op, .. }
            | StoreError::Rejected { op, .. } => op,
        }
    }
}
