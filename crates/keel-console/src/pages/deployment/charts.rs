//! The deployment page's charts over time, from the decision log
//! (`keel_experiments::offline::timeline`, as `GET /v1/deployments/{name}/timeline` returns
//! it): each variant's reward rate and traffic share per bucket, the decisions per bucket, and
//! the rates of the report with their intervals. Every point carries its exact figure in
//! `data-y` (and its bucket's start in `data-x`), so a test compares them with the API's.

use keel_experiments::offline::timeline::{TimeBucket, Timeline};
use keel_experiments::report::Report;

use crate::html::{esc, time_ms};
use crate::pages::overview::binary;
use crate::svg::{Interval, LineChart, Series, Unit, interval_chart, line_chart};

/// A bucket width for people: `5 min`, `1 h`, `30 s`.
pub(super) fn width(ms: i64) -> String {
    match ms {
        ms if ms % 86_400_000 == 0 => format!("{} d", ms / 86_400_000),
        ms if ms % 3_600_000 == 0 => format!("{} h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{} min", ms / 60_000),
        ms => format!("{} s", ms as f64 / 1000.0),
    }
}

/// One series per variant (and the holdout group when it has decisions), of `value` per bucket
/// where it has one.
fn series(t: &Timeline, value: impl Fn(&TimeBucket, Option<usize>) -> Option<f64>) -> Vec<Series> {
    let mut out: Vec<Series> = t
        .variants
        .iter()
        .enumerate()
        .map(|(i, name)| Series {
            name: name.clone(),
            points: t
                .buckets
                .iter()
                .filter_map(|b| value(b, Some(i)).map(|y| (b.start_ms as f64, y)))
                .collect(),
        })
        .collect();
    if t.buckets.iter().any(|b| b.holdout.decisions > 0) {
        out.push(Series {
            name: "holdout group".into(),
            points: t
                .buckets
                .iter()
                .filter_map(|b| value(b, None).map(|y| (b.start_ms as f64, y)))
                .collect(),
        });
    }
    out
}

/// The charts section: the timeline's (or why there is none) and the report's intervals.
pub(super) fn charts(r: &Report, timeline: Result<&Timeline, String>) -> String {
    let bin = binary(r);
    let unit = if bin { Unit::Percent } else { Unit::Number };
    let mut out = String::from("<h2 id=\"over-time\">Over time</h2>");
    match timeline {
        Ok(t) => {
            let first = t.buckets.first().map(|b| time_ms(b.start_ms)).unwrap_or_default();
            out.push_str(&format!(
                r#"<p class="hint" id="timeline" data-bucket-ms="{}">From the decision log: buckets of {} since {} ({} decisions, {} rewards). A reward counts in the bucket of the decision it rewards, so recent buckets fill in as rewards arrive. Shares are of the policy-driven decisions; the holdout group's is of all decisions. Choose the width with <a href="?bucket=1h#over-time">?bucket=1h</a> (or 30s, 5m, 1d; auto by default).</p><div class="grid2">"#,
                t.bucket_ms,
                esc(&width(t.bucket_ms)),
                esc(&first),
                t.decisions,
                t.rewards
            ));
            let rates = series(t, |b, v| match v {
                Some(v) => b.variants.get(v).and_then(|c| c.rate),
                None => b.holdout.rate,
            });
            out.push_str(&line_chart(&LineChart {
                id: "chart-rate",
                title: "Reward rate per variant",
                y_label: if bin { "conversion rate" } else { "mean reward" },
                unit,
                series: rates,
                y_max: None,
            }));
            let shares = series(t, |b, v| match v {
                Some(v) => (b.decisions > 0).then(|| b.variants.get(v).map_or(0.0, |c| c.share)),
                None => Some(b.holdout.share),
            });
            out.push_str(&line_chart(&LineChart {
                id: "chart-share",
                title: "Traffic share per variant",
                y_label: "share of decisions",
                unit: Unit::Percent,
                series: shares,
                y_max: Some(1.0),
            }));
            let counts = series(t, |b, v| {
                let n = match v {
                    Some(v) => b.variants.get(v).map_or(0, |c| c.decisions),
                    None => b.holdout.decisions,
                };
                Some(n as f64)
            });
            out.push_str(&line_chart(&LineChart {
                id: "chart-decisions",
                title: "Decisions per bucket",
                y_label: "decisions",
                unit: Unit::Count,
                series: counts,
                y_max: None,
            }));
        }
        Err(why) => {
            out.push_str(&format!(
                r#"<p class="empty" id="timeline">The decision log could not be read for the charts over time: {}</p><div class="grid2">"#,
                esc(&why)
            ));
        }
    }
    let rows: Vec<Interval> = r
        .variants
        .iter()
        .filter(|v| v.exposures > 0)
        .map(|v| Interval {
            name: v.name.clone(),
            estimate: v.rate,
            low: v.rate_ci.0,
            high: v.rate_ci.1,
        })
        .collect();
    out.push_str(&interval_chart(
        "chart-rates",
        "Reward rate per variant, this revision (95% interval)",
        if bin { "conversion rate" } else { "mean reward" },
        unit,
        &rows,
    ));
    out.push_str("</div>");
    out
}
