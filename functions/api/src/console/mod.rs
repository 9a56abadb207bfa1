//! The admin console: one HTML page, one script and one style sheet, embedded in the binary and
//! served at `/admin` by the same router as the API ([`crate::router`]). The page holds no admin
//! logic: it calls the JSON admin API with the admin token the user types once per browser
//! session (kept in `sessionStorage`, sent only in the `Authorization` header).
//!
//! Every console response carries [`security_headers`]: a Content-Security-Policy that allows
//! only the console's own script and style (no inline code, no other origin) and limits who may
//! frame the page ([`ConsoleSettings::frame_ancestors`], `'none'` by default), `nosniff` and
//! `no-referrer`.

use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The page, its script and its style sheet.
pub const INDEX_HTML: &str = include_str!("index.html");
pub const CONSOLE_JS: &str = include_str!("console.js");
pub const CONSOLE_CSS: &str = include_str!("console.css");

/// The paths the console is served at.
pub const PAGE_PATH: &str = "/admin";
pub const SCRIPT_PATH: &str = "/admin/console.js";
pub const STYLE_PATH: &str = "/admin/console.css";

/// The environment variable naming who may frame the console (a CSP `frame-ancestors` source
/// list, e.g. `https://acme.zendesk.com`).
pub const FRAME_ANCESTORS_VAR: &str = "CONSOLE_FRAME_ANCESTORS";

/// How the console is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// The CSP `frame-ancestors` source list: `'none'` (nobody may frame the page), `'self'`, or
    /// origins such as `https://acme.zendesk.com`.
    pub frame_ancestors: String,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            frame_ancestors: "'none'".to_owned(),
        }
    }
}

/// A `frame-ancestors` value that is not a plain source list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{FRAME_ANCESTORS_VAR}={0:?} is not a source list such as 'none', 'self' or \
     https://acme.zendesk.com (space-separated; no ';' or ',')"
)]
pub struct BadFrameAncestors(pub String);

impl ConsoleSettings {
    /// Checks a `frame-ancestors` source list: space-separated sources made of the characters a
    /// scheme, host, port, wildcard or quoted keyword uses, so it cannot add a directive.
    pub fn with_frame_ancestors(raw: &str) -> Result<Self, BadFrameAncestors> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "'*:/.-_[] ".contains(c);
        let sources: Vec<&str> = raw.split(' ').filter(|s| !s.is_empty()).collect();
        if sources.is_empty() || !raw.chars().all(allowed) {
            return Err(BadFrameAncestors(raw.to_owned()));
        }
        Ok(ConsoleSettings {
            frame_ancestors: sources.join(" "),
        })
    }

    /// From [`FRAME_ANCESTORS_VAR`] (unset or empty: the default, `'none'`).
    pub fn from_env() -> Result<Self, BadFrameAncestors> {
        match std::env::var(FRAME_ANCESTORS_VAR) {
            Ok(v) if !v.trim().is_empty() => Self::with_frame_ancestors(&v),
            _ => Ok(Self::default()),
        }
    }

    /// The Content-Security-Policy of the console.
    pub fn content_security_policy(&self) -> String {
        format!(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; \
             frame-ancestors {}",
            self.frame_ancestors
        )
    }
}

/// The headers every console response carries.
pub fn security_headers(settings: &ConsoleSettings) -> Vec<(HeaderName, HeaderValue)> {
    let csp = HeaderValue::from_str(&settings.content_security_policy())
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    vec![
        (header::CONTENT_SECURITY_POLICY, csp),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ]
}

/// One of the console's files with its type and the security headers.
pub fn asset(
    settings: &ConsoleSettings,
    content_type: &'static str,
    body: &'static str,
) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response();
    response.headers_mut().extend(security_headers(settings));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(headers: &'a [(HeaderName, HeaderValue)], name: &HeaderName) -> &'a str {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.to_str().ok())
            .unwrap_or_else(|| panic!("{name} is set"))
    }

    #[test]
    fn the_default_policy_allows_only_the_console_itself_and_no_framing() {
        let headers = security_headers(&ConsoleSettings::default());
        let csp = header(&headers, &header::CONTENT_SECURITY_POLICY);
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(csp.contains(directive), "{directive} in {csp}");
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(!csp.contains("http"), "no other origin: {csp}");
        assert_eq!(header(&headers, &header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        assert_eq!(header(&headers, &header::REFERRER_POLICY), "no-referrer");
    }

    #[test]
    fn frame_ancestors_are_configurable_but_cannot_add_a_directive() {
        let zendesk =
            ConsoleSettings::with_frame_ancestors("  https://acme.zendesk.com   'self' ").unwrap();
        assert!(
            zendesk
                .content_security_policy()
                .ends_with("frame-ancestors https://acme.zendesk.com 'self'")
        );
        for bad in [
            "",
            "https://a.example; script-src *",
            "https://a.example,https://b.example",
            "'none'\nX: y",
            "\"x\"",
        ] {
            assert!(
                ConsoleSettings::with_frame_ancestors(bad).is_err(),
                "{bad:?} refused"
            );
        }
    }

    #[test]
    fn the_page_loads_only_its_own_files_and_has_no_inline_code() {
        assert!(INDEX_HTML.contains("src=\"admin/console.js\""));
        assert!(INDEX_HTML.contains("href=\"admin/console.css\""));
        let lower = INDEX_HTML.to_ascii_lowercase();
        assert_eq!(lower.matches("<script").count(), 1, "one external script");
        assert!(!lower.contains("<style"), "no inline style element");
        assert!(!lower.contains(" style="), "no inline style attribute");
        let handler = lower.match_indices(" on").any(|(at, _)| {
            let rest = &lower[at + 3..];
            let name_end = rest
                .find(|c: char| !c.is_ascii_alphabetic())
                .unwrap_or(rest.len());
            name_end > 0 && rest[name_end..].starts_with('=')
        });
        assert!(!handler, "no inline event handler");
        assert!(!lower.contains("http://") && !lower.contains("https://"));
        let total = INDEX_HTML.len() + CONSOLE_JS.len() + CONSOLE_CSS.len();
        assert!(total < 100 * 1024, "the console weighs {total} bytes");
    }

    /// The keys of one language's block of `I18N` in the script (`  it: {` ... `  }`).
    fn keys_of(lang: &str) -> std::collections::BTreeSet<String> {
        let start = CONSOLE_JS
            .find(&format!("\n  {lang}: {{\n"))
            .unwrap_or_else(|| panic!("the {lang} block"));
        let block = &CONSOLE_JS[start..];
        let end = block.find("\n  }").expect("the block ends");
        block[..end]
            .lines()
            .filter_map(|line| line.trim_start().strip_prefix('"'))
            .filter_map(|rest| rest.split_once("\":").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// The string literals following `marker` in `text` (`t("key"` or `data-i18n="key"`).
    fn used(text: &str, marker: &str) -> Vec<String> {
        text.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = &text[at + marker.len()..];
                let end = rest.find('"')?;
                Some(rest[..end].to_owned())
            })
            // `t("problem." + kind)`: built at run time, checked below.
            .filter(|key| !key.ends_with('.'))
            .collect()
    }

    #[test]
    fn every_text_is_in_italian_and_in_english() {
        let it = keys_of("it");
        let en = keys_of("en");
        assert!(it.len() > 50, "{} Italian keys", it.len());
        let only_it: Vec<_> = it.difference(&en).collect();
        let only_en: Vec<_> = en.difference(&it).collect();
        assert!(
            only_it.is_empty() && only_en.is_empty(),
            "missing in English: {only_it:?}; missing in Italian: {only_en:?}"
        );
        let mut missing = Vec::new();
        for key in used(CONSOLE_JS, "t(\"")
            .into_iter()
            .chain(used(INDEX_HTML, "data-i18n=\""))
        {
            if !it.contains(&key) {
                missing.push(key);
            }
        }
        assert!(missing.is_empty(), "used but not translated: {missing:?}");
        // The keys built at run time: every problem kind and every field the API may name.
        for key in [
            "problem.login_refused",
            "problem.tls",
            "problem.unreachable",
            "problem.credentials",
            "err.password",
            "err.imap_host",
            "err.smtp_host",
        ] {
            assert!(it.contains(key), "{key}");
        }
    }
}
