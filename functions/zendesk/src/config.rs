//! Client configuration: where Zendesk is, how we authenticate, how long we wait and retry.

use std::time::Duration;

use secrecy::SecretString;

/// How the client authenticates (reference §1). Secrets print as `[REDACTED]`.
#[derive(Debug, Clone)]
pub enum Auth {
    /// API token of the dedicated API agent: `Basic base64("{email}/token:{api_token}")`.
    Basic {
        email: String,
        api_token: SecretString,
    },
    /// OAuth access token: `Bearer {token}`.
    Bearer { token: SecretString },
}

/// Retry bounds; the caller's deadline always wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// First back-off after a `5xx`, a timeout or a `429` without a wait hint.
    pub initial_backoff: Duration,
    /// Back-off never grows beyond this.
    pub max_backoff: Duration,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(20),
            max_attempts: 8,
        }
    }
}

/// Everything [`crate::ZendeskClient::new`] needs.
#[derive(Debug, Clone)]
pub struct ZendeskConfig {
    /// `https://{subdomain}.zendesk.com` in production; tests use the simulator's loopback URL.
    pub base_url: String,
    pub auth: Auth,
    /// Limit for one HTTP attempt (the remaining time to the deadline, if shorter, applies).
    pub timeout: Duration,
    pub retry: RetryPolicy,
}

impl ZendeskConfig {
    /// The production configuration for `{subdomain}.zendesk.com`, 30 s per attempt.
    pub fn for_subdomain(subdomain: &str, auth: Auth) -> Self {
        ZendeskConfig {
            base_url: format!("https://{subdomain}.zendesk.com"),
            auth,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}
