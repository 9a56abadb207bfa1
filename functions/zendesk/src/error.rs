//! Everything that can go wrong talking to Zendesk, typed so callers can decide to retry.

use std::time::Duration;

/// One field error from a `422` body (`details: {field: [{error, description}]}`, reference §8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub error: String,
    pub description: String,
}

/// A Zendesk API failure. `op` names the request (`"PUT /api/v2/tickets/42"`); no message ever
/// carries a credential or a request body.
#[derive(Debug, thiserror::Error)]
pub enum ZendeskError {
    #[error("invalid zendesk client configuration: {0}")]
    Config(String),
    #[error("zendesk rejected the credentials on {op} (401): check the API user and token")]
    Unauthorized { op: String },
    #[error("zendesk refused {op} (403): the API user lacks permission")]
    Forbidden { op: String },
    #[error("zendesk found nothing for {op} (404)")]
    NotFound { op: String },
    #[error("zendesk rejected {op} ({status} {error}): {description}")]
    Invalid {
        op: String,
        status: u16,
        error: String,
        description: String,
        details: Vec<FieldError>,
    },
    #[error("zendesk rate limit reached on {op}; retry after {retry_after:?}")]
    RateLimited {
        op: String,
        retry_after: Option<Duration>,
    },
    #[error("zendesk answered {status} on {op}")]
    Server { op: String, status: u16 },
    #[error("zendesk did not answer {op} within {after:?}")]
    Timeout { op: String, after: Duration },
    #[error("gave up on {op} at the deadline after {attempts} attempt(s)")]
    DeadlineExceeded {
        op: String,
        attempts: u32,
        #[source]
        last: Option<Box<ZendeskError>>,
    },
    #[error("cannot reach zendesk for {op}")]
    Transport {
        op: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot read zendesk's answer to {op}")]
    Decode {
        op: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("comment body is {len} bytes; zendesk silently truncates it above {limit}")]
    CommentTooLarge { len: usize, limit: usize },
    /// An attachment's `content_url` is not on the configured Zendesk origin (scheme, host and
    /// port of `base_url`): the client sends nothing there, so no credential can leak.
    #[error("attachment url is on {url_host}, not on the zendesk account: refusing to download")]
    ForeignHost {
        /// The URL's host, with the port when it is not the scheme's default.
        url_host: String,
    },
    /// An attachment is larger than the caller's limit. `size` is the announced
    /// `Content-Length`, or the bytes received when the download was cut.
    #[error("attachment is at least {size} bytes, above the limit of {limit}")]
    AttachmentTooLarge { size: u64, limit: u64 },
    /// An attachment download that cannot be followed: an unparseable `content_url`, too many
    /// redirects, a redirect without `Location`, to another scheme, or from `https` to `http`.
    #[error("cannot download the attachment: {reason}")]
    AttachmentUrl { reason: String },
}

impl ZendeskError {
    /// True when the same request may succeed later: rate limits, server errors, timeouts,
    /// network failures and running out of time on one of those.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ZendeskError::RateLimited { .. }
                | ZendeskError::Server { .. }
                | ZendeskError::Timeout { .. }
                | ZendeskError::Transport { .. }
                | ZendeskError::DeadlineExceeded { .. }
        )
    }

    /// True when retrying the unchanged request cannot help.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// How long Zendesk asked us to wait, when the failure was (or ended in) a `429`.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ZendeskError::RateLimited { retry_after, .. } => *retry_after,
            ZendeskError::DeadlineExceeded {
                last: Some(last), ..
            } => last.retry_after(),
            _ => None,
        }
    }
}
