//! Pages over the lake's logs (feature `lake`), acting as the signed-in person like the data
//! pages (the catalog checks their grants on every table read, and audits it):
//!
//! - `/ui/deployments/{name}/monitoring`: per monitored column, the reference's and the current
//!   window's histograms over the same bins, with keel-monitor's drift on those very values
//!   (`keel_experiments::offline::histograms`);
//! - `/ui/models/{name}/performance?bucket=hour|day`: the model's performance over time once
//!   labels (or experiment feedback) arrive: AUC, positive rate and mean score per version and
//!   bucket (`keel_predlog::performance`, as `keel monitor performance` prints it).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use keel_experiments::offline::histograms::of_deployment;
use keel_predlog::performance::{Bucket, Group, PerformanceOptions};
use serde::Deserialize;

use super::data::{DataConsole, caller};
use super::{Who, viewer_of};
use crate::bars::{Side, histogram};
use crate::html::{Cell, Table, count, esc, facts, link, segment};
use crate::svg::{LineChart, Series, Unit, line_chart};
use crate::{Failure, answer};

pub(crate) async fn monitoring_handler(
    State(d): State<Arc<DataConsole>>,
    Path(name): Path<String>,
    who: Who,
) -> Response {
    let viewer = viewer_of(&who);
    let title = format!("Monitoring {name}");
    answer(viewer.as_ref(), &title, monitoring(&d, &name, &who).await)
}

async fn monitoring(d: &DataConsole, name: &str, who: &Who) -> Result<String, Failure> {
    let here = format!("/ui/deployments/{}", segment(name));
    let back = (here.as_str(), "back to the deployment");
    let fail = |e: &dyn keel_types::KeelError, what: &str| Failure::from_error(d.status_of, e, what, back);
    let caller = caller(d, who).await?;
    let h = of_deployment(&d.ws, &caller, name, "console", keel_predlog::now_us())
        .await
        .map_err(|e| fail(&e, &format!("Monitoring {name:?}")))?;
    let mut out = facts(&[
        ("deployment", link("/ui/deployments", name, name)),
        ("reference", link("/ui/data", &h.reference, &h.reference)),
        (
            "rows compared",
            format!(
                r#"<span data-key="reference_rows">{}</span> reference rows against <span data-key="current_rows">{}</span> logged in the last {} s (from {})"#,
                count(h.reference_rows),
                count(h.current_rows),
                h.window_seconds,
                esc(&h.tables.join(", "))
            ),
        ),
    ]);
    out.push_str(r#"<p class="hint">Each column's values in the reference and in the window, over the same bins; bars are each side's share of its own rows. The drift figures below are keel-monitor's tests on exactly these values (the live monitor on the deployment page samples its window, so its figures may differ slightly).</p>"#);
    match &h.drift {
        Some(report) => {
            let mut t = Table::new("drift", &["Column", "Test", "Score", "Threshold", "Verdict"]);
            for c in &report.columns {
                let verdict = if c.drifted {
                    r#"<span class="badge bad">drifted</span>"#
                } else {
                    r#"<span class="badge good">stable</span>"#
                };
                t.named_row(
                    &c.name,
                    vec![
                        Cell::text(&c.name),
                        Cell::text(&format!("{:?}", c.method).to_lowercase()),
                        Cell::num(c.score, format!("{:.4}", c.score)).key("score"),
                        Cell::num(c.threshold, c.threshold.to_string()).key("threshold"),
                        Cell::html(verdict.to_owned()).key("drifted").sort_by(u8::from(c.drifted).to_string()),
                    ],
                );
            }
            out.push_str(&t.render("no columns compared"));
        }
        None => out.push_str(r#"<p class="empty" id="no-window">Nothing was logged in the window yet: the window's bars are empty and there is no drift to test.</p>"#),
    }
    out.push_str(r#"<div class="grid2">"#);
    for c in &h.columns {
        let reference_name = format!("reference {}", h.reference);
        out.push_str(&histogram(
            &format!("hist-{}", c.column),
            &format!("{}: reference and window", c.column),
            &c.column,
            &c.edges,
            &[
                Side {
                    name: &reference_name,
                    counts: &c.reference,
                },
                Side {
                    name: "window",
                    counts: &c.current,
                },
            ],
        ));
    }
    out.push_str("</div>");
    Ok(out)
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PerformanceQuery {
    bucket: Option<String>,
}

pub(crate) async fn performance_handler(
    State(d): State<Arc<DataConsole>>,
    Path(name): Path<String>,
    Query(q): Query<PerformanceQuery>,
    who: Who,
) -> Response {
    let viewer = viewer_of(&who);
    let title = format!("Performance of {name}");
    answer(viewer.as_ref(), &title, model_performance(&d, &name, &q, &who).await)
}

/// A bucket's start (`2026-12-07T01:00:00`, as DataFusion prints it) in ms since the epoch.
fn bucket_ms(text: &str) -> Option<f64> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(t.timestamp_millis() as f64);
    }
    [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M:%S",
    ]
    .iter()
    .find_map(|f| chrono::NaiveDateTime::parse_from_str(text, f).ok())
    .map(|t| t.and_utc().timestamp_millis() as f64)
}

/// One series per version of `value` over the buckets.
fn per_version(buckets: &[Group], value: impl Fn(&Group) -> Option<f64>) -> Vec<Series> {
    let mut versions: Vec<i64> = buckets.iter().map(|g| g.version).collect();
    versions.dedup();
    versions.sort_unstable();
    versions.dedup();
    versions
        .iter()
        .map(|v| Series {
            name: format!("v{v}"),
            points: buckets
                .iter()
                .filter(|g| g.version == *v)
                .filter_map(|g| Some((bucket_ms(g.bucket.as_deref()?)?, value(g)?)))
                .collect(),
        })
        .collect()
}

async fn model_performance(d: &DataConsole, name: &str, q: &PerformanceQuery, who: &Who) -> Result<String, Failure> {
    let here = format!("/ui/models/{}", segment(name));
    let back = (here.as_str(), "back to the model");
    let bucket: Bucket = q
        .bucket
        .as_deref()
        .unwrap_or("hour")
        .parse()
        .map_err(|e: keel_predlog::PredlogError| Failure::new(400, "Bad request", e.to_string(), back))?;
    let options = PerformanceOptions {
        bucket,
        ..PerformanceOptions::default()
    };
    let caller = caller(d, who).await?;
    let r = keel_experiments::offline::performance::of_model(&d.ws, &caller, name, &options)
        .await
        .map_err(|e| Failure::from_error(d.status_of, &e, &format!("Predictions of {name:?}"), back))?;
    let mut out = format!(
        r#"<p class="hint">Logged predictions of {} (table {}) joined with their labels (<code>POST /v1/labels</code>) and experiment feedback, per version and {} (UTC). AUC needs both outcomes among a bucket's labelled rows. Score column: <code>{}</code>. Per <a href="?bucket=hour">hour</a> or <a href="?bucket=day">day</a>.</p>"#,
        esc(name),
        esc(&r.table),
        if bucket == Bucket::Hour { "hour" } else { "day" },
        esc(&r.score_column)
    );
    if r.unmatched_labels > 0 {
        let _ = write!(
            out,
            r#"<div class="alert" id="unmatched">{} labels match no logged prediction (e.g. {}).</div>"#,
            count(r.unmatched_labels),
            esc(&r.unmatched_examples.join(", "))
        );
    }
    let mut t = Table::new(
        "performance",
        &[
            "Version",
            "Bucket",
            "Predictions",
            "Labelled",
            "Positive rate",
            "Mean score",
            "AUC",
            "Log loss",
            "ECE",
        ],
    );
    let opt = |v: Option<f64>| match v {
        Some(x) => Cell::num(x, format!("{x:.4}")),
        None => Cell::text("—"),
    };
    for g in r.versions.iter().chain(&r.buckets) {
        let when = g.bucket.clone().unwrap_or_else(|| "all".into());
        t.named_row(
            &format!("v{}@{when}", g.version),
            vec![
                Cell::num(g.version as f64, format!("v{}", g.version)),
                Cell::text(&when),
                Cell::num(g.predictions as f64, count(g.predictions)).key("predictions"),
                Cell::num(g.labelled as f64, count(g.labelled)).key("labelled"),
                opt(g.positive_rate).key("positive_rate"),
                opt(g.mean_score).key("mean_score"),
                opt(g.auc).key("auc"),
                opt(g.log_loss).key("log_loss"),
                opt(g.ece).key("ece"),
            ],
        );
    }
    out.push_str(r#"<div class="grid2">"#);
    out.push_str(&line_chart(&LineChart {
        id: "chart-auc",
        title: "AUC per version over time",
        y_label: "AUC",
        unit: Unit::Number,
        series: per_version(&r.buckets, |g| g.auc),
        y_max: Some(1.0),
    }));
    out.push_str(&line_chart(&LineChart {
        id: "chart-positive",
        title: "Positive rate and mean score per version",
        y_label: "share",
        unit: Unit::Percent,
        series: per_version(&r.buckets, |g| g.positive_rate)
            .into_iter()
            .map(|s| Series {
                name: format!("{} positive rate", s.name),
                ..s
            })
            .chain(per_version(&r.buckets, |g| g.mean_score).into_iter().map(|s| Series {
                name: format!("{} mean score", s.name),
                ..s
            }))
            .collect(),
        y_max: Some(1.0),
    }));
    out.push_str(&line_chart(&LineChart {
        id: "chart-labelled",
        title: "Labelled predictions per bucket",
        y_label: "labelled predictions",
        unit: Unit::Count,
        series: per_version(&r.buckets, |g| Some(g.labelled as f64)),
        y_max: None,
    }));
    out.push_str("</div>");
    out.push_str(&t.render("no predictions logged in range"));
    Ok(out)
}
