//! Cron expressions (five fields, POSIX/Vixie semantics with names: `0 6 * * MON`), in UTC.

use std::str::FromStr as _;

use chrono::{DateTime, Utc};
use croner::Cron;

use crate::{Result, ScheduleError};

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct CronSpec {
    expression: String,
    cron: Cron,
}

impl CronSpec {
    /// Parses five fields (minute hour day-of-month month day-of-week), evaluated in UTC.
    pub fn parse(expression: &str) -> Result<CronSpec> {
        let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        let fields = expression.split(' ').filter(|f| !f.is_empty()).count();
        if fields != 5 {
            return Err(ScheduleError::Invalid(format!(
                "cron expression '{expression}' has {fields} fields; give five: minute hour day-of-month month day-of-week (e.g. \"0 6 * * MON\": Mondays at 06:00 UTC)"
            )));
        }
        let cron = Cron::from_str(&expression).map_err(|e| {
            ScheduleError::Invalid(format!(
                "cron expression '{expression}' is not valid: {e}; e.g. \"0 6 * * MON\" is Mondays at 06:00 UTC"
            ))
        })?;
        Ok(CronSpec { expression, cron })
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first firing strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Result<i64> {
        let after = DateTime::<Utc>::from_timestamp_millis(after_ms)
            .ok_or_else(|| ScheduleError::Invalid(format!("time {after_ms} ms is out of range")))?;
        let next = self.cron.find_next_occurrence(&after, false).map_err(|e| {
            ScheduleError::Invalid(format!(
                "cron expression '{}' never fires after {after}: {e}",
                self.expression
            ))
        })?;
        Ok(next.timestamp_millis())
    }

    /// The firings from `first_ms` (a firing) up to `now_ms`, oldest first, at most `limit`
    /// of them (the newest ones are kept).
    pub fn due(&self, first_ms: i64, now_ms: i64, limit: usize) -> Result<Vec<i64>> {
        let mut out = std::collections::VecDeque::new();
        let mut at = first_ms;
        while at <= now_ms {
            out.push_back(at);
            if out.len() > limit {
                out.pop_front();
            }
            at = self.next_after(at)?;
        }
        Ok(out.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).expect("time").timestamp_millis()
    }

    #[test]
    fn mondays_at_six_utc() {
        let c = CronSpec::parse("0 6 * * MON").expect("cron");
        // 2026-12-06 is a Sunday.
        assert_eq!(
            c.next_after(ms("2026-12-06T12:00:00Z")).expect("next"),
            ms("2026-12-07T06:00:00Z")
        );
        assert_eq!(
            c.next_after(ms("2026-12-07T06:00:00Z")).expect("next"),
            ms("2026-12-14T06:00:00Z")
        );
    }

    #[test]
    fn missed_firings_are_listed_oldest_first_and_bounded() {
        let c = CronSpec::parse("*/10 * * * *").expect("cron");
        let due = c
            .due(ms("2026-12-06T10:00:00Z"), ms("2026-12-06T10:35:00Z"), 100)
            .expect("due");
        assert_eq!(due.len(), 4);
        assert_eq!(due[3], ms("2026-12-06T10:30:00Z"));
        let bounded = c
            .due(ms("2026-12-06T10:00:00Z"), ms("2026-12-06T10:35:00Z"), 2)
            .expect("due");
        assert_eq!(bounded, vec![ms("2026-12-06T10:20:00Z"), ms("2026-12-06T10:30:00Z")]);
    }

    #[test]
    fn bad_expressions_say_what_to_write() {
        for bad in ["", "0 6 * *", "0 6 * * MON *", "61 6 * * *", "0 6 * * FUNDAY"] {
            let e = CronSpec::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("0 6 * * MON"), "{e}");
        }
    }
}
