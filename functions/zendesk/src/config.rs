//! Client configuration: where Zendesk is, how we authenticate, how long we wait and retry.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::Url;
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

/// A Zendesk base URL as an admin gives it, reduced to its origin (`HTTPS://Acme.zendesk.com/`
/// is `https://acme.zendesk.com`): `https`, or plain `http` to a loopback host only (127.0.0.0/8,
/// `::1`, `localhost`: a simulator on this machine); no user name or password; no path but `/`;
/// no query or fragment. The URL is parsed, so a host that merely starts like a loopback one
/// (`http://127.0.0.1.evil.example`) is the host it is. The error says what is wrong with it.
pub fn base_url_origin(raw: &str) -> Result<String, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("is not a URL ({e})"))?;
    let host = url.host_str().ok_or("must name a host")?;
    // The parser writes an IP address in its canonical form (`127.1` is `127.0.0.1`, IPv6 in
    // brackets), and a host that is an IP address never as a domain name.
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("must be an https:// URL (http:// only to this machine)".to_owned()),
        other => return Err(format!("must be an https:// URL, not {other}:")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry a user name or password".to_owned());
    }
    if url.path() != "/" {
        return Err(format!(
            "must be the Zendesk address alone, without the path {:?}",
            url.path()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query (?) or fragment (#)".to_owned());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_parsed_not_compared_as_text() {
        for (raw, origin) in [
            ("https://acme.zendesk.com", "https://acme.zendesk.com"),
            ("HTTPS://Acme.zendesk.com/", "https://acme.zendesk.com"),
            (
                "https://acme.zendesk.com:8443/",
                "https://acme.zendesk.com:8443",
            ),
            ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
            ("http://127.1.2.3/", "http://127.1.2.3"),
            ("http://localhost:8080", "http://localhost:8080"),
            ("http://LOCALHOST:8080", "http://localhost:8080"),
            ("http://[::1]:8080/", "http://[::1]:8080"),
            (
                "https://127.0.0.1.evil.example",
                "https://127.0.0.1.evil.example",
            ),
        ] {
            assert_eq!(base_url_origin(raw).as_deref(), Ok(origin), "{raw}");
        }
        for (raw, reason) in [
            ("http://127.0.0.1.evil.example", "https://"),
            ("http://localhost.evil.example", "https://"),
            ("http://acme.zendesk.com", "https://"),
            ("http://0.0.0.0:8080", "https://"),
            ("http://[::ffff:127.0.0.1]/", "https://"),
            ("ftp://acme.zendesk.com", "not ftp:"),
            ("https://x@evil.example", "user name"),
            ("https://acme.zendesk.com@evil.example", "user name"),
            ("https://x:y@acme.zendesk.com", "user name"),
            ("https://acme.zendesk.com/api", "path \"/api\""),
            ("https://acme.zendesk.com/api/v2/", "path"),
            ("https://acme.zendesk.com/?a=1", "query"),
            ("https://acme.zendesk.com?", "query"),
            ("https://acme.zendesk.com/#x", "fragment"),
            ("acme.zendesk.com", "not a URL"),
            ("https://", "not a URL"),
        ] {
            match base_url_origin(raw) {
                Err(e) => assert!(e.contains(reason), "{raw}: {e}"),
                Ok(o) => panic!("{raw} accepted as {o}"),
            }
        }
    }
}
