//! [`Schedules`](crate::ports::Schedules) adapters: EventBridge rules on AWS ([`eventbridge`]) and
//! an in-process scheduler on one machine ([`local`]).

#[cfg(feature = "aws")]
pub mod eventbridge;
#[cfg(feature = "embedded")]
pub mod local;

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
}

impl SchedulesError {
    /// Whether the same call may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SchedulesError::Throttled { .. } | SchedulesError::Unavailable { .. }
        )
    }
}
