//! The account's request budget, as Zendesk reports it on every answer (reference §7).
//!
//! Zendesk limits the Support API per account (200 requests a minute on the Team plan, up to
//! 2500): every answer carries `X-Rate-Limit` (the limit) and `X-Rate-Limit-Remaining` (requests
//! left in the current minute); some endpoints send `ratelimit-limit`, `ratelimit-remaining` and
//! `ratelimit-reset` (seconds, or a date-time) instead or as well. A [`RateBudget`] keeps the
//! latest of these reports so that a long job (a poll importing a backlog) can stop before it
//! leaves the agents, who share the same limit, nothing: [`RateBudget::allows`].
//!
//! The budget is shared: every clone of a [`RateBudget`] (and of the [`crate::ZendeskClient`]
//! holding it) is the same budget, so one per Zendesk account per process is what callers keep.
//! What is not known is not guessed: without a report, or once the report's window has surely
//! passed, the budget is unknown and allows everything.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

/// The length of Zendesk's rate-limit window ("requests per minute").
pub const ZENDESK_WINDOW: Duration = Duration::from_secs(60);

/// What one answer said about the account's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitReport {
    /// Requests allowed per window.
    pub limit: u32,
    /// Requests left in the current window.
    pub remaining: u32,
    /// When the window ends, if the answer said (`ratelimit-reset`).
    pub reset: Option<Duration>,
}

impl RateLimitReport {
    /// The report in `headers`: the account-wide `X-Rate-Limit` / `X-Rate-Limit-Remaining`
    /// first, else `ratelimit-limit` / `ratelimit-remaining` with `ratelimit-reset` as the
    /// window's end (it belongs to that family only). `None` when neither pair is there whole
    /// and readable (no information).
    pub fn from_headers(headers: &HeaderMap) -> Option<RateLimitReport> {
        let number = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u32>().ok())
        };
        let pair = |limit: &str, remaining: &str| Some((number(limit)?, number(remaining)?));
        let (limit, remaining, reset) = match pair("x-rate-limit", "x-rate-limit-remaining") {
            Some((limit, remaining)) => (limit, remaining, None),
            None => {
                let (limit, remaining) = pair("ratelimit-limit", "ratelimit-remaining")?;
                (limit, remaining, reset_wait(headers))
            }
        };
        Some(RateLimitReport {
            limit,
            remaining: remaining.min(limit),
            reset,
        })
    }
}

/// How long until `ratelimit-reset`: seconds, or a date-time (one API family sends that,
/// reference §7); zero when the date-time has passed.
pub(crate) fn reset_wait(headers: &HeaderMap) -> Option<Duration> {
    let reset = headers.get("ratelimit-reset")?.to_str().ok()?.trim();
    if let Ok(secs) = reset.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc3339(reset).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// The budget as last known: the limit and the requests left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLeft {
    pub limit: u32,
    pub remaining: u32,
}

impl RateLeft {
    /// Whether `needed` more requests leave at least `reserve_percent` % of the limit (rounded
    /// up) unused.
    pub fn allows(&self, needed: u32, reserve_percent: u8) -> bool {
        let reserve = (u64::from(self.limit) * u64::from(reserve_percent.min(100))).div_ceil(100);
        u64::from(self.remaining) >= reserve + u64::from(needed)
    }
}

/// A share of the limit kept for others, as an admin writes it: 0 to 90 percent (a trailing
/// `%` allowed). More would leave a long job almost nothing.
pub fn parse_reserve_percent(raw: &str) -> Option<u8> {
    let v = raw.trim();
    let v = v.strip_suffix('%').unwrap_or(v).trim();
    v.parse::<u8>().ok().filter(|p| *p <= 90)
}

/// One Zendesk account's request budget in this process; clones share it. See the module
/// documentation.
#[derive(Clone)]
pub struct RateBudget {
    shared: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    /// How long a report is trusted when it does not say when its window ends.
    window: Duration,
    last: Option<Seen>,
    /// Requests sent and not answered yet: each may take one of the requests left.
    in_flight: u32,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    left: RateLeft,
    /// After this the window has surely passed: the budget is unknown again.
    until: Instant,
    /// When the first report of this window came: the window began before, so it ends before
    /// this plus its length.
    window_seen: Instant,
}

impl Default for RateBudget {
    fn default() -> Self {
        RateBudget::new()
    }
}

impl std::fmt::Debug for RateBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateBudget")
            .field("left", &self.left())
            .finish()
    }
}

impl RateBudget {
    /// A budget with Zendesk's one-minute window and nothing known yet.
    pub fn new() -> RateBudget {
        RateBudget::with_window(ZENDESK_WINDOW)
    }

    /// A budget whose reports are trusted for `window` when they do not say when it ends
    /// (a simulator with a shorter window than Zendesk's minute).
    pub fn with_window(window: Duration) -> RateBudget {
        RateBudget {
            shared: Arc::new(Mutex::new(State {
                window,
                last: None,
                in_flight: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `other` is this same budget (a clone of it).
    pub fn same_as(&self, other: &RateBudget) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    /// The budget now: the last report, less the requests sent since and not answered; `None`
    /// when unknown (no report, or its window has passed).
    pub fn left(&self) -> Option<RateLeft> {
        self.left_at(Instant::now())
    }

    fn left_at(&self, now: Instant) -> Option<RateLeft> {
        let state = self.lock();
        let seen = state.last.filter(|s| now < s.until)?;
        Some(RateLeft {
            limit: seen.left.limit,
            remaining: seen.left.remaining.saturating_sub(state.in_flight),
        })
    }

    /// Whether `needed` more requests leave `reserve_percent` % of the limit for others (the
    /// agents). An unknown budget allows everything.
    pub fn allows(&self, needed: u32, reserve_percent: u8) -> bool {
        self.left()
            .is_none_or(|left| left.allows(needed, reserve_percent))
    }

    /// Takes in what an answer said, received at `at`. The latest report wins (answers to
    /// concurrent requests may cross; the error is at most the requests in flight). Without a
    /// `reset`, the report is trusted until a window's length after the first report of the same
    /// window (one with as many or fewer requests left than the one before): the window cannot
    /// end later than that.
    pub fn observe(&self, report: RateLimitReport, at: Instant) {
        let mut state = self.lock();
        let window_seen = match state.last {
            Some(s) if at < s.until && report.remaining <= s.left.remaining => s.window_seen,
            _ => at,
        };
        let until = match report.reset {
            Some(reset) => at + reset,
            None => window_seen + state.window,
        };
        state.last = Some(Seen {
            left: RateLeft {
                limit: report.limit,
                remaining: report.remaining,
            },
            until,
            window_seen,
        });
    }

    /// A `429` of the account's limit received at `at`: nothing is left until `wait` (its
    /// `Retry-After`, else the window; never longer than the window) has passed. The limit stays
    /// the last one reported, if any.
    pub fn refused(&self, wait: Option<Duration>, at: Instant) {
        let mut state = self.lock();
        let limit = state.last.map_or(0, |s| s.left.limit);
        let until = at + wait.unwrap_or(state.window).min(state.window);
        state.last = Some(Seen {
            left: RateLeft {
                limit,
                remaining: 0,
            },
            until,
            window_seen: until.checked_sub(state.window).unwrap_or(at),
        });
    }

    /// Counts a request as sent until the returned guard is answered or dropped.
    pub(crate) fn send(&self) -> InFlight<'_> {
        self.lock().in_flight += 1;
        InFlight {
            budget: self,
            open: true,
        }
    }
}

/// A request sent and not answered yet (see [`RateBudget::send`]).
pub(crate) struct InFlight<'a> {
    budget: &'a RateBudget,
    open: bool,
}

impl InFlight<'_> {
    /// The answer came with `headers`; `refused` is the wait a `429` asked for (`Some(None)`:
    /// a `429` without one). A `429` whose headers still report requests left is another limit
    /// (one ticket's updates, one endpoint's): the account's budget is only what they report.
    pub fn answered(mut self, headers: &HeaderMap, refused: Option<Option<Duration>>) {
        self.close();
        let now = Instant::now();
        let report = RateLimitReport::from_headers(headers);
        if let Some(report) = report {
            self.budget.observe(report, now);
        }
        if let Some(wait) = refused
            && report.is_none_or(|r| r.remaining == 0)
        {
            self.budget.refused(wait, now);
        }
    }

    fn close(&mut self) {
        if std::mem::take(&mut self.open) {
            let mut state = self.budget.lock();
            state.in_flight = state.in_flight.saturating_sub(1);
        }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn reads_the_account_wide_headers_first() {
        let both = headers(&[
            ("X-Rate-Limit", "200"),
            ("X-Rate-Limit-Remaining", " 150 "),
            ("ratelimit-limit", "100"),
            ("ratelimit-remaining", "99"),
            ("ratelimit-reset", "41"),
        ]);
        assert_eq!(
            RateLimitReport::from_headers(&both),
            Some(RateLimitReport {
                limit: 200,
                remaining: 150,
                reset: None,
            })
        );
        let endpoint = headers(&[
            ("ratelimit-limit", "700"),
            ("ratelimit-remaining", "12"),
            ("ratelimit-reset", "2000-01-01T00:00:00Z"),
        ]);
        assert_eq!(
            RateLimitReport::from_headers(&endpoint),
            Some(RateLimitReport {
                limit: 700,
                remaining: 12,
                reset: Some(Duration::ZERO),
            })
        );
    }

    #[test]
    fn no_or_broken_headers_are_no_information() {
        assert_eq!(RateLimitReport::from_headers(&HeaderMap::new()), None);
        for broken in [
            headers(&[("x-rate-limit", "200")]),
            headers(&[("x-rate-limit-remaining", "10")]),
            headers(&[("x-rate-limit", "lots"), ("x-rate-limit-remaining", "10")]),
            headers(&[("x-rate-limit", "200"), ("x-rate-limit-remaining", "-1")]),
            headers(&[("ratelimit-remaining", "3"), ("ratelimit-reset", "10")]),
        ] {
            assert_eq!(RateLimitReport::from_headers(&broken), None, "{broken:?}");
        }
        // A half-broken account-wide pair falls back to the other family.
        let fallback = headers(&[
            ("x-rate-limit", "200"),
            ("ratelimit-limit", "400"),
            ("ratelimit-remaining", "399"),
        ]);
        assert_eq!(
            RateLimitReport::from_headers(&fallback).map(|r| (r.limit, r.remaining)),
            Some((400, 399))
        );
        // More left than the limit is read as the limit.
        let odd = headers(&[("x-rate-limit", "200"), ("x-rate-limit-remaining", "900")]);
        assert_eq!(RateLimitReport::from_headers(&odd).unwrap().remaining, 200);
    }

    #[test]
    fn the_reserve_is_a_share_of_the_limit_rounded_up() {
        let left = |remaining| RateLeft {
            limit: 200,
            remaining,
        };
        // 20 % of 200 is 40: 5 more requests need 45 left.
        assert!(left(45).allows(5, 20));
        assert!(!left(44).allows(5, 20));
        assert!(left(40).allows(0, 20));
        assert!(!left(0).allows(1, 0));
        assert!(left(1).allows(1, 0));
        // 20 % of 7 is 1.4: 2 are kept.
        let small = RateLeft {
            limit: 7,
            remaining: 3,
        };
        assert!(small.allows(1, 20));
        assert!(!small.allows(2, 20));
        // A reserve over 100 % is the whole limit; huge numbers do not overflow.
        assert!(!left(200).allows(1, 255));
        let big = RateLeft {
            limit: u32::MAX,
            remaining: u32::MAX,
        };
        assert!(big.allows(u32::MAX / 2, 50));
    }

    #[test]
    fn an_unknown_or_stale_budget_allows_everything() {
        let budget = RateBudget::with_window(Duration::from_millis(100));
        assert_eq!(budget.left(), None);
        assert!(budget.allows(1000, 100));
        let at = Instant::now();
        budget.observe(
            RateLimitReport {
                limit: 200,
                remaining: 10,
                reset: None,
            },
            at,
        );
        assert!(!budget.allows(5, 20));
        assert_eq!(
            budget
                .left_at(at + Duration::from_millis(99))
                .unwrap()
                .remaining,
            10
        );
        assert_eq!(budget.left_at(at + Duration::from_millis(100)), None);
        // A report that says when its window ends is trusted until then.
        budget.observe(
            RateLimitReport {
                limit: 200,
                remaining: 10,
                reset: Some(Duration::from_secs(30)),
            },
            at,
        );
        assert!(budget.left_at(at + Duration::from_secs(29)).is_some());
        assert_eq!(budget.left_at(at + Duration::from_secs(30)), None);
    }

    #[test]
    fn a_report_is_trusted_until_a_window_after_the_first_of_its_window() {
        let budget = RateBudget::with_window(Duration::from_secs(60));
        let t0 = Instant::now();
        let report = |remaining| RateLimitReport {
            limit: 200,
            remaining,
            reset: None,
        };
        let secs = Duration::from_secs;
        budget.observe(report(199), t0);
        budget.observe(report(40), t0 + secs(50));
        // The window began by t0: it is over by t0 + 60 s, not t0 + 50 s + 60 s.
        assert_eq!(budget.left_at(t0 + secs(59)).unwrap().remaining, 40);
        assert_eq!(budget.left_at(t0 + secs(60)), None);
        // More left than before: a new window began, seen first now.
        budget.observe(report(199), t0 + secs(55));
        budget.observe(report(150), t0 + secs(70));
        assert_eq!(budget.left_at(t0 + secs(114)).unwrap().remaining, 150);
        assert_eq!(budget.left_at(t0 + secs(115)), None);
        // After a stale report, the next one starts a window of its own.
        budget.observe(report(10), t0 + secs(200));
        assert!(budget.left_at(t0 + secs(259)).is_some());
        assert_eq!(budget.left_at(t0 + secs(260)), None);
    }

    #[test]
    fn requests_in_flight_count_against_the_budget_until_answered() {
        let budget = RateBudget::new();
        let clone = budget.clone();
        assert!(clone.same_as(&budget) && !RateBudget::new().same_as(&budget));
        budget.observe(
            RateLimitReport {
                limit: 100,
                remaining: 50,
                reset: None,
            },
            Instant::now(),
        );
        let a = budget.send();
        let b = clone.send();
        assert_eq!(clone.left().unwrap().remaining, 48, "shared by clones");
        drop(a); // a transport failure: no report
        assert_eq!(budget.left().unwrap().remaining, 49);
        b.answered(
            &headers(&[("x-rate-limit", "100"), ("x-rate-limit-remaining", "47")]),
            None,
        );
        assert_eq!(
            budget.left(),
            Some(RateLeft {
                limit: 100,
                remaining: 47
            })
        );
        // An answer without headers changes nothing.
        budget.send().answered(&HeaderMap::new(), None);
        assert_eq!(budget.left().unwrap().remaining, 47);
    }

    #[test]
    fn a_429_empties_the_budget_until_its_wait_has_passed() {
        let budget = RateBudget::with_window(Duration::from_secs(60));
        let at = Instant::now();
        budget.observe(
            RateLimitReport {
                limit: 200,
                remaining: 120,
                reset: None,
            },
            at,
        );
        budget.refused(Some(Duration::from_secs(2)), at);
        assert_eq!(
            budget.left_at(at + Duration::from_secs(1)),
            Some(RateLeft {
                limit: 200,
                remaining: 0
            })
        );
        assert_eq!(budget.left_at(at + Duration::from_secs(2)), None);
        // Without a limit known or a wait given: nothing left for a window, and never longer.
        let blind = RateBudget::with_window(Duration::from_secs(5));
        blind.refused(None, at);
        assert!(!blind.allows(1, 0));
        assert_eq!(blind.left_at(at + Duration::from_secs(5)), None);
        blind.refused(Some(Duration::from_secs(600)), at);
        assert_eq!(blind.left_at(at + Duration::from_secs(5)), None);
        // The guard reads the 429's headers and its wait together.
        let headed = RateBudget::new();
        headed.send().answered(
            &headers(&[("x-rate-limit", "200"), ("x-rate-limit-remaining", "0")]),
            Some(Some(Duration::from_secs(3))),
        );
        assert_eq!(
            headed.left(),
            Some(RateLeft {
                limit: 200,
                remaining: 0
            })
        );
        // A 429 of another limit (one ticket's updates) while the account has requests left.
        let ticket = RateBudget::new();
        ticket.send().answered(
            &headers(&[("x-rate-limit", "200"), ("x-rate-limit-remaining", "150")]),
            Some(Some(Duration::from_secs(300))),
        );
        assert_eq!(ticket.left().unwrap().remaining, 150);
        assert!(ticket.allows(5, 20));
    }
}
