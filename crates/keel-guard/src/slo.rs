//! Service-level objectives over sliding windows of one-second buckets.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Result, invalid};

/// What a deployment promises.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    /// A request slower than this is bad (e.g. 50 for "p99 under 50 ms" with `objective` 0.99).
    pub latency_ms: f64,
    /// Share of requests that must be good (answered without a server error, within
    /// `latency_ms`), e.g. 0.99.
    pub objective: f64,
    /// Window the status is computed over.
    #[serde(default = "default_window")]
    pub window_seconds: u64,
}

fn default_window() -> u64 {
    300
}

impl SloSpec {
    pub fn validate(&self) -> Result<()> {
        if !(self.latency_ms.is_finite() && self.latency_ms > 0.0) {
            return Err(invalid(
                "slo",
                format!("latency_ms must be > 0, got {}", self.latency_ms),
            ));
        }
        if !(self.objective > 0.0 && self.objective < 1.0) {
            return Err(invalid(
                "slo",
                format!("objective must be in (0, 1), got {}", self.objective),
            ));
        }
        if !(10..=86_400).contains(&self.window_seconds) {
            return Err(invalid(
                "slo",
                format!("window_seconds must be 10..=86400, got {}", self.window_seconds),
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    total: u64,
    errors: u64,
    slow: u64,
}

/// Where a deployment stands against its SLO over the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SloStatus {
    pub requests: u64,
    pub errors: u64,
    pub slow: u64,
    /// Share of good requests (1 when there were none).
    pub availability: f64,
    /// Bad share over allowed bad share: 1 spends the budget exactly over the window, above 1
    /// spends it faster.
    pub burn_rate: f64,
    /// Share of the window's error budget left (negative when overspent).
    pub budget_remaining: f64,
    pub latency_ms: f64,
    pub objective: f64,
    pub window_seconds: u64,
}

/// Counts of good and bad requests per second over the window.
#[derive(Debug)]
pub struct SloTracker {
    spec: SloSpec,
    buckets: VecDeque<Bucket>,
}

impl SloTracker {
    pub fn new(spec: SloSpec) -> SloTracker {
        SloTracker {
            spec,
            buckets: VecDeque::new(),
        }
    }

    pub fn spec(&self) -> &SloSpec {
        &self.spec
    }

    /// Records one request answered at `now_ms` after `latency_ms`; `error` for a server-side
    /// failure (a client's bad request is not the service's fault and is not recorded).
    pub fn record(&mut self, now_ms: i64, latency_ms: f64, error: bool) {
        let second = (now_ms.max(0) / 1000) as u64;
        self.expire(second);
        if self.buckets.back().is_none_or(|b| b.second != second) {
            self.buckets.push_back(Bucket {
                second,
                ..Bucket::default()
            });
        }
        if let Some(b) = self.buckets.back_mut() {
            b.total += 1;
            if error {
                b.errors += 1;
            } else if latency_ms > self.spec.latency_ms {
                b.slow += 1;
            }
        }
    }

    fn expire(&mut self, second: u64) {
        let oldest = second.saturating_sub(self.spec.window_seconds.saturating_sub(1));
        while self.buckets.front().is_some_and(|b| b.second < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The status over the window ending at `now_ms`.
    pub fn status(&mut self, now_ms: i64) -> SloStatus {
        self.expire((now_ms.max(0) / 1000) as u64);
        let (mut total, mut errors, mut slow) = (0, 0, 0);
        for b in &self.buckets {
            total += b.total;
            errors += b.errors;
            slow += b.slow;
        }
        let bad = errors + slow;
        let bad_share = if total == 0 { 0.0 } else { bad as f64 / total as f64 };
        let allowed = 1.0 - self.spec.objective;
        SloStatus {
            requests: total,
            errors,
            slow,
            availability: 1.0 - bad_share,
            burn_rate: bad_share / allowed,
            budget_remaining: 1.0 - bad_share / allowed,
            latency_ms: self.spec.latency_ms,
            objective: self.spec.objective,
            window_seconds: self.spec.window_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SloSpec {
        SloSpec {
            latency_ms: 50.0,
            objective: 0.99,
            window_seconds: 60,
        }
    }

    #[test]
    fn an_invalid_spec_is_the_callers_fault_with_a_stable_code() {
        let e = SloSpec {
            objective: 1.5,
            ..spec()
        }
        .validate()
        .unwrap_err();
        assert_eq!(e.kind(), keel_types::ErrorKind::InvalidArgument);
        assert_eq!(e.code(), "invalid_guard_spec");
        assert_eq!(e.to_string(), "invalid slo: objective must be in (0, 1), got 1.5");
        assert!(spec().validate().is_ok());
    }

    #[test]
    fn burn_rate_is_bad_share_over_allowed_share() {
        let mut t = SloTracker::new(spec());
        for i in 0..1000 {
            // 1% errors and 1% slow: 2% bad against 1% allowed = burn rate 2.
            t.record(1_000_000 + i, if i % 100 == 1 { 80.0 } else { 3.0 }, i % 100 == 0);
        }
        let s = t.status(1_001_000);
        assert_eq!((s.requests, s.errors, s.slow), (1000, 10, 10));
        assert!((s.availability - 0.98).abs() < 1e-12);
        assert!((s.burn_rate - 2.0).abs() < 1e-9, "{s:?}");
        assert!((s.budget_remaining + 1.0).abs() < 1e-9);
    }

    #[test]
    fn old_seconds_leave_the_window() {
        let mut t = SloTracker::new(spec());
        t.record(0, 1.0, true);
        t.record(30_000, 1.0, false);
        assert_eq!(t.status(59_999).requests, 2);
        let s = t.status(60_500);
        assert_eq!((s.requests, s.errors), (1, 0));
        assert_eq!(t.status(200_000).requests, 0);
        assert_eq!(t.status(200_000).burn_rate, 0.0);
    }

    #[test]
    fn specs_are_checked() {
        assert!(spec().validate().is_ok());
        for bad in [
            SloSpec {
                objective: 1.0,
                ..spec()
            },
            SloSpec {
                latency_ms: 0.0,
                ..spec()
            },
            SloSpec {
                window_seconds: 1,
                ..spec()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
