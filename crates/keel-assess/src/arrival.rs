//! Does the data arrive fast enough: freshness, coverage, arrivals per bucket, gaps.
//!
//! The bucket is chosen from the covered span: the smallest of 1 min, 5 min, 15 min, 1 h, 6 h,
//! 1 day, 1 week, 30 days that gives at most [`MAX_BUCKETS`] buckets and at least
//! [`MIN_PER_BUCKET`] rows per bucket on average (else the smallest with at most 200 buckets).
//! Buckets are aligned on multiples of their length since the Unix epoch (UTC).

use serde::Serialize;

use crate::inform::NO_LABEL;
use crate::profile::rfc3339;
use crate::read::MISSING_TIME;

const MAX_BUCKETS: i64 = 200;
const MIN_PER_BUCKET: f64 = 20.0;
const CANDIDATES: [(i64, &str); 8] = [
    (60, "1 minute"),
    (300, "5 minutes"),
    (900, "15 minutes"),
    (3600, "1 hour"),
    (6 * 3600, "6 hours"),
    (86_400, "1 day"),
    (7 * 86_400, "1 week"),
    (30 * 86_400, "30 days"),
];
/// Longest inter-arrival gaps listed.
const MAX_GAPS: usize = 10;
const MICROS: i64 = 1_000_000;

/// Arrival of the rows over time.
#[derive(Debug, Clone, Serialize)]
pub struct Arrival {
    pub column: String,
    /// Rows without a time.
    pub missing: u64,
    pub first: String,
    pub last: String,
    /// The assessment's "now".
    pub now: String,
    /// last - first, seconds.
    pub span_seconds: f64,
    /// now - last, seconds (negative when the newest row is in the future).
    pub freshness_seconds: f64,
    pub bucket: String,
    pub bucket_seconds: i64,
    pub buckets: Vec<Bucket>,
    /// Buckets without a row between the first and the last.
    pub empty_buckets: usize,
    pub empty_share: f64,
    pub median_interarrival_seconds: f64,
    pub max_interarrival_seconds: f64,
    /// Inter-arrival gaps longer than `gap_factor` x the median (the longest first, at most 10).
    pub gaps: Vec<Gap>,
    pub gap_factor: f64,
    /// Gaps longer than `gap_factor` x the median, all of them.
    pub gap_count: usize,
}

/// Rows arrived in one bucket.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub start: String,
    pub rows: u64,
    /// Positives of the target (rows with a label only).
    pub positives: u64,
    /// Positive rate among labelled rows (`None` without labelled rows).
    pub rate: Option<f64>,
}

/// A stretch without arrivals.
#[derive(Debug, Clone, Serialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
    pub seconds: f64,
}

/// Arrival statistics of `times` (microseconds, [`MISSING_TIME`] for missing); `labels` aligned.
/// `None` when no row has a time.
pub(crate) fn arrival(
    column: &str,
    times: &[i64],
    labels: Option<&[u8]>,
    now: i64,
    gap_factor: f64,
) -> Option<Arrival> {
    let mut present: Vec<(i64, u8)> = times
        .iter()
        .enumerate()
        .filter(|(_, t)| **t != MISSING_TIME)
        .map(|(i, t)| (*t, labels.map_or(NO_LABEL, |l| l[i])))
        .collect();
    let missing = (times.len() - present.len()) as u64;
    if present.is_empty() {
        return None;
    }
    present.sort_unstable_by_key(|p| p.0);
    let (first, last) = (present[0].0, present[present.len() - 1].0);
    let span = (last - first).max(0);
    let n = present.len() as f64;
    let pick = CANDIDATES
        .iter()
        .find(|(s, _)| {
            let buckets = span / (s * MICROS) + 1;
            buckets <= MAX_BUCKETS && n / buckets as f64 >= MIN_PER_BUCKET
        })
        .or_else(|| CANDIDATES.iter().find(|(s, _)| span / (s * MICROS) < MAX_BUCKETS))
        .unwrap_or(&CANDIDATES[CANDIDATES.len() - 1]);
    let width = pick.0 * MICROS;
    let start = first.div_euclid(width);
    let count = (last.div_euclid(width) - start + 1) as usize;
    let mut rows = vec![0u64; count];
    let mut labelled = vec![0u64; count];
    let mut positives = vec![0u64; count];
    for (t, y) in &present {
        let b = (t.div_euclid(width) - start) as usize;
        rows[b] += 1;
        if *y != NO_LABEL {
            labelled[b] += 1;
            positives[b] += u64::from(*y);
        }
    }
    let buckets: Vec<Bucket> = (0..count)
        .map(|b| Bucket {
            start: rfc3339((start + b as i64) * width),
            rows: rows[b],
            positives: positives[b],
            rate: (labelled[b] > 0).then(|| positives[b] as f64 / labelled[b] as f64),
        })
        .collect();
    let empty_buckets = rows.iter().filter(|r| **r == 0).count();

    let mut diffs: Vec<(i64, usize)> = present
        .windows(2)
        .enumerate()
        .map(|(i, w)| (w[1].0 - w[0].0, i))
        .collect();
    let mut sorted: Vec<i64> = diffs.iter().map(|d| d.0).collect();
    sorted.sort_unstable();
    let median = if sorted.is_empty() {
        0.0
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2] as f64
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) as f64 / 2.0
    };
    // With many identical times the median is 0: fall back to the mean.
    let typical = if median > 0.0 {
        median
    } else {
        span as f64 / sorted.len().max(1) as f64
    };
    let limit = gap_factor * typical;
    diffs.retain(|d| d.0 as f64 > limit && d.0 > 0);
    let gap_count = diffs.len();
    diffs.sort_by_key(|d| std::cmp::Reverse(d.0));
    let gaps = diffs
        .iter()
        .take(MAX_GAPS)
        .map(|(d, i)| Gap {
            from: rfc3339(present[*i].0),
            to: rfc3339(present[*i + 1].0),
            seconds: *d as f64 / MICROS as f64,
        })
        .collect();
    Some(Arrival {
        column: column.to_string(),
        missing,
        first: rfc3339(first),
        last: rfc3339(last),
        now: rfc3339(now),
        span_seconds: span as f64 / MICROS as f64,
        freshness_seconds: (now - last) as f64 / MICROS as f64,
        bucket: pick.1.to_string(),
        bucket_seconds: pick.0,
        empty_share: empty_buckets as f64 / count as f64,
        empty_buckets,
        buckets,
        median_interarrival_seconds: median / MICROS as f64,
        max_interarrival_seconds: sorted.last().copied().unwrap_or(0) as f64 / MICROS as f64,
        gaps,
        gap_factor,
        gap_count,
    })
}

/// A duration for people: `3.2 s`, `12 min`, `5.1 h`, `2.3 days`.
pub fn human_duration(seconds: f64) -> String {
    let a = seconds.abs();
    let sign = if seconds < 0.0 { "-" } else { "" };
    if a < 120.0 {
        format!("{sign}{a:.1} s")
    } else if a < 7200.0 {
        format!("{sign}{:.0} min", a / 60.0)
    } else if a < 3.0 * 86_400.0 {
        format!("{sign}{:.1} h", a / 3600.0)
    } else {
        format!("{sign}{:.1} days", a / 86_400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600 * MICROS;

    #[test]
    fn freshness_buckets_and_gaps_with_an_injected_now() {
        // 30 rows every 2 minutes for 10 hours, then nothing for 5 hours, then 10 more hours.
        let t0 = 1_700_000_000 * MICROS - (1_700_000_000 * MICROS).rem_euclid(HOUR);
        let mut times = Vec::new();
        for h in (0..10).chain(15..25) {
            for m in 0..30 {
                times.push(t0 + h * HOUR + m * 120 * MICROS);
            }
        }
        times.push(MISSING_TIME);
        let labels: Vec<u8> = (0..times.len()).map(|i| u8::from(i % 10 == 0)).collect();
        let last = t0 + 24 * HOUR + 29 * 120 * MICROS;
        let now = last + 36 * HOUR;
        let a = arrival("ts", &times, Some(&labels), now, 20.0).unwrap();
        assert_eq!(a.missing, 1);
        assert_eq!(a.freshness_seconds, 36.0 * 3600.0);
        assert_eq!(a.bucket, "1 hour");
        assert_eq!(a.buckets.len(), 25);
        assert_eq!(a.empty_buckets, 5);
        assert_eq!(a.buckets[0].rows, 30);
        assert_eq!(a.buckets[0].positives, 3);
        assert_eq!(a.median_interarrival_seconds, 120.0);
        // The 5-hour hole: from 09:58 to 15:00 = 5 h 2 min.
        assert_eq!(a.gap_count, 1);
        assert_eq!(a.gaps[0].seconds, 5.0 * 3600.0 + 120.0);
        assert_eq!(a.max_interarrival_seconds, 5.0 * 3600.0 + 120.0);
        assert_eq!(a.first, rfc3339(t0));
        assert!(a.now.ends_with('Z'), "{}", a.now);
    }

    #[test]
    fn no_times_no_arrival() {
        assert!(arrival("ts", &[MISSING_TIME, MISSING_TIME], None, 0, 10.0).is_none());
        assert_eq!(human_duration(90.0), "90.0 s");
        assert_eq!(human_duration(86_400.0 * 10.0), "10.0 days");
    }
}
