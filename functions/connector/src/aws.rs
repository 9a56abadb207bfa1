//! One reading of AWS SDK errors for the DynamoDB, Secrets Manager and EventBridge (rules and
//! Scheduler) adapters: what kind of failure it is, so each adapter maps it onto its port's error
//! (retry later, refused for good, a quota to raise, ...). The SDKs share one error type
//! (`aws-smithy-runtime-api`'s `SdkError`), so one function reads them all.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// What an AWS SDK error means to the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AwsFailure {
    /// The named resource does not exist (`ResourceNotFoundException`): a table, a rule, a
    /// schedule.
    NotFound,
    /// Too many requests at the moment: a retry later may pass.
    Throttled,
    /// `LimitExceededException`, which each service means differently: too many concurrent
    /// control-plane calls for DynamoDB and Secrets Manager (throttling), the rules quota of an
    /// event bus for EventBridge.
    LimitExceeded,
    /// A service quota is reached (`ServiceQuotaExceededException`): only raising it helps.
    QuotaExceeded,
    /// A condition on a stored item failed (DynamoDB's `ConditionalCheckFailedException`).
    ConditionFailed,
    /// The service failed or could not be reached (an internal error, a timeout, a dropped
    /// connection): a retry later may pass.
    Unavailable,
    /// Refused for good (a bad request, a missing permission, ...).
    Rejected,
}

/// Reads an SDK error.
pub(crate) fn classify<E, R>(e: &SdkError<E, R>) -> AwsFailure
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(_) => by_code(e.code()),
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            AwsFailure::Unavailable
        }
        _ => AwsFailure::Rejected,
    }
}

/// The services' error codes, sorted by what a caller can do about them.
fn by_code(code: Option<&str>) -> AwsFailure {
    match code {
        Some("ResourceNotFoundException") => AwsFailure::NotFound,
        Some(
            "ThrottlingException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "TransactionConflictException"
            | "TransactionInProgressException",
        ) => AwsFailure::Throttled,
        Some("LimitExceededException") => AwsFailure::LimitExceeded,
        Some("ServiceQuotaExceededException") => AwsFailure::QuotaExceeded,
        Some("ConditionalCheckFailedException") => AwsFailure::ConditionFailed,
        // DynamoDB, Secrets Manager, EventBridge and Scheduler each name their own.
        Some(
            "InternalServerError"
            | "InternalServiceError"
            | "InternalException"
            | "InternalServerException"
            | "InternalFailure"
            | "ServiceUnavailable",
        ) => AwsFailure::Unavailable,
        _ => AwsFailure::Rejected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_sort_by_what_a_caller_can_do() {
        assert_eq!(
            by_code(Some("ResourceNotFoundException")),
            AwsFailure::NotFound
        );
        assert_eq!(
            by_code(Some("ProvisionedThroughputExceededException")),
            AwsFailure::Throttled
        );
        assert_eq!(by_code(Some("ThrottlingException")), AwsFailure::Throttled);
        assert_eq!(
            by_code(Some("LimitExceededException")),
            AwsFailure::LimitExceeded
        );
        assert_eq!(
            by_code(Some("ServiceQuotaExceededException")),
            AwsFailure::QuotaExceeded
        );
        assert_eq!(
            by_code(Some("ConditionalCheckFailedException")),
            AwsFailure::ConditionFailed
        );
        for code in [
            "InternalServerError",
            "InternalServiceError",
            "InternalException",
        ] {
            assert_eq!(by_code(Some(code)), AwsFailure::Unavailable, "{code}");
        }
        assert_eq!(by_code(Some("AccessDeniedException")), AwsFailure::Rejected);
        assert_eq!(by_code(None), AwsFailure::Rejected);
    }
}
