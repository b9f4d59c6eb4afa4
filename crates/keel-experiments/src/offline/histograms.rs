//! What a deployment's drift monitor compares, drawn: per compared column, the reference
//! table's values and the window's logged inputs as two histograms over the same bins, with
//! the drift test of keel-monitor run on exactly those values (so a chart and its verdict come
//! from the same rows). [`of_deployment`] is the one operation behind
//! `GET /v1/deployments/NAME/histograms` and the console's monitoring page: it checks that the
//! person may read the reference and every prediction-log table before reading a row.
//!
//! The columns, window and test are the deployment's `monitor` (its `columns`, else every
//! reference column not `ignore`d; `window_seconds`; `method`, `threshold`). Values are read as
//! doubles; missing and infinite values are counted apart, not binned.

use keel_lake::Lake;
use keel_monitor::arrow::array::{Array, Float64Array, RecordBatch};
use keel_monitor::{DriftOptions, DriftReport};
use serde::Serialize;

use super::{OfflineError, Result};
use crate::DeploymentSpec;

/// Bins of every histogram.
pub const BINS: usize = 20;
/// Reference rows read at most.
pub const MAX_REFERENCE_ROWS: usize = 200_000;

/// One column's two histograms over shared, equal-width bins.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ColumnHistograms {
    pub column: String,
    /// `BINS + 1` edges from the smallest to the largest finite value of either side.
    pub edges: Vec<f64>,
    /// Rows per bin (the last bin includes its upper edge).
    pub reference: Vec<u64>,
    pub current: Vec<u64>,
    /// Rows whose value was null, NaN or infinite (not binned).
    pub reference_missing: u64,
    pub current_missing: u64,
}

/// The histograms and the drift of a deployment's monitored columns.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorHistograms {
    pub deployment: String,
    pub reference: String,
    /// The prediction-log tables the window was read from.
    pub tables: Vec<String>,
    pub window_seconds: u64,
    pub reference_rows: u64,
    pub current_rows: u64,
    pub columns: Vec<ColumnHistograms>,
    /// keel-monitor's drift on the same values; `None` when the window is empty.
    pub drift: Option<DriftReport>,
}

/// Deployment `name`'s monitor drawn ([`histograms`]), read as `caller`: its spec from the
/// store, then a read check (audited, with `asked_by` in the record) on every table
/// [`tables_read`] names before any row is read.
pub async fn of_deployment(
    ws: &keel_data::Workspace,
    caller: &keel_data::Caller,
    name: &str,
    asked_by: &str,
    now_us: i64,
) -> Result<MonitorHistograms> {
    let current = ws
        .catalog()
        .store()
        .get_deployment(name)
        .await
        .map_err(crate::DeploymentError::from)?;
    let spec = DeploymentSpec::from_json(&current.spec)?;
    let tables = tables_read(ws.lake(), name, &spec).await?;
    for table in &tables {
        let details = serde_json::json!({ "for": "monitoring", "deployment": name, "by": asked_by });
        ws.check::<keel_data::Read>(caller, table, "read", details).await?;
    }
    histograms(ws.lake(), name, &spec, &tables, now_us).await
}

/// The tables [`histograms`] reads (the reference, then the prediction-log tables), for the
/// caller to authorise; an error when the deployment has no monitor or logged no predictions.
pub async fn tables_read(lake: &Lake, deployment: &str, spec: &DeploymentSpec) -> Result<Vec<String>> {
    let monitor = spec.monitor.as_ref().ok_or_else(|| OfflineError::InvalidArgument {
        name: "deployment",
        reason: format!("{deployment} has no monitor: add a \"monitor\" with a reference table to its spec"),
    })?;
    let mut tables = vec![monitor.reference.clone()];
    tables.extend(super::drift::logged_tables(lake, deployment, spec).await?);
    Ok(tables)
}

fn quote(c: &str) -> String {
    format!("\"{}\"", c.replace('"', "\"\""))
}

/// Every value of the first column of `batches` (doubles), `None` for a null.
fn values(batches: &[RecordBatch], column: usize) -> Vec<Option<f64>> {
    let mut out = Vec::new();
    for b in batches {
        if let Some(a) = b
            .columns()
            .get(column)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
        {
            out.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
        }
    }
    out
}

/// Both sides' histograms over `bins` equal-width bins spanning the finite values of either.
pub fn bin(column: &str, reference: &[Option<f64>], current: &[Option<f64>], bins: usize) -> ColumnHistograms {
    let finite = |v: &Option<f64>| v.filter(|x| x.is_finite());
    let (lo, hi) = reference
        .iter()
        .chain(current)
        .filter_map(finite)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let bins = bins.max(1);
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let width = if hi > lo { (hi - lo) / bins as f64 } else { 1.0 };
    let edges: Vec<f64> = (0..=bins).map(|i| lo + width * i as f64).collect();
    let count = |side: &[Option<f64>]| {
        let mut counts = vec![0u64; bins];
        let mut missing = 0;
        for v in side {
            match finite(v) {
                Some(x) => {
                    let i = (((x - lo) / width).floor() as usize).min(bins - 1);
                    counts[i] += 1;
                }
                None => missing += 1,
            }
        }
        (counts, missing)
    };
    let (reference, reference_missing) = count(reference);
    let (current, current_missing) = count(current);
    ColumnHistograms {
        column: column.to_owned(),
        edges,
        reference,
        current,
        reference_missing,
        current_missing,
    }
}

/// The histograms and drift of `deployment`'s monitored columns: its reference table against
/// the inputs it logged in its monitor's window ending at `now_us` (µs since the epoch), read
/// from `tables` (from [`tables_read`], authorised by the caller).
pub async fn histograms(
    lake: &Lake,
    deployment: &str,
    spec: &DeploymentSpec,
    tables: &[String],
    now_us: i64,
) -> Result<MonitorHistograms> {
    crate::validate_name(deployment)?;
    let Some(monitor) = spec.monitor.as_ref() else {
        return Err(OfflineError::InvalidArgument {
            name: "deployment",
            reason: format!("{deployment} has no monitor"),
        });
    };
    let logged = tables
        .iter()
        .filter(|t| **t != monitor.reference)
        .cloned()
        .collect::<Vec<_>>();
    let Some(first) = logged.first() else {
        return Err(OfflineError::NoLoggedPredictions {
            deployment: deployment.to_owned(),
        });
    };
    let inputs: Vec<String> = lake.columns(first).await?.into_iter().map(|(c, _)| c).collect();
    let reference_columns: Vec<String> = lake
        .columns(&monitor.reference)
        .await?
        .into_iter()
        .map(|(c, _)| c)
        .collect();
    let columns: Vec<String> = if monitor.columns.is_empty() {
        reference_columns
            .iter()
            .filter(|c| !monitor.ignore.contains(c) && inputs.contains(c))
            .cloned()
            .collect()
    } else {
        monitor.columns.iter().filter(|c| inputs.contains(c)).cloned().collect()
    };
    if columns.is_empty() {
        return Err(OfflineError::ColumnsDoNotLineUp {
            detail: "no monitored column is both a logged input and a reference column; ".into(),
            inputs,
            reference: monitor.reference.clone(),
            reference_columns,
        });
    }
    let select = columns
        .iter()
        .map(|c| format!("CAST({q} AS DOUBLE) AS {q}", q = quote(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let all: Vec<String> = tables.to_vec();
    let reference = lake
        .sql_on(
            &format!(
                "SELECT {select} FROM {} LIMIT {MAX_REFERENCE_ROWS}",
                quote(&monitor.reference)
            ),
            &all,
        )
        .await?;
    let from = now_us - (monitor.window_seconds as i64).saturating_mul(1_000_000);
    let window_sql = logged
        .iter()
        .map(|t| {
            format!(
                "SELECT {select} FROM {} WHERE deployment = '{deployment}' AND ts >= to_timestamp_micros({from}) AND ts < to_timestamp_micros({})",
                quote(t),
                now_us + 1
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ");
    let current = lake.sql_on(&window_sql, &all).await?;
    let rows = |b: &[RecordBatch]| b.iter().map(RecordBatch::num_rows).sum::<usize>() as u64;
    let (reference_rows, current_rows) = (rows(&reference), rows(&current));
    let options = DriftOptions {
        method: monitor.method.parse().unwrap_or_default(),
        threshold: monitor.threshold,
        ..DriftOptions::default()
    };
    let names = columns.clone();
    let (drift, histograms) = tokio::task::spawn_blocking(move || {
        let drift = if current_rows > 0 && reference_rows > 0 {
            Some(keel_monitor::drift_batches(&reference, &current, &options))
        } else {
            None
        };
        let histograms: Vec<ColumnHistograms> = names
            .iter()
            .enumerate()
            .map(|(i, c)| bin(c, &values(&reference, i), &values(&current, i), BINS))
            .collect();
        (drift, histograms)
    })
    .await
    .map_err(|_| OfflineError::Task("histograms"))?;
    Ok(MonitorHistograms {
        deployment: deployment.to_owned(),
        reference: monitor.reference.clone(),
        tables: logged,
        window_seconds: monitor.window_seconds,
        reference_rows,
        current_rows,
        columns: histograms,
        drift: drift.transpose()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_share_the_bins_and_missing_values_are_apart() {
        let reference = [Some(0.0), Some(1.0), Some(2.0), Some(10.0), None, Some(f64::NAN)];
        let current = [Some(9.0), Some(9.5), Some(20.0), Some(f64::INFINITY)];
        let h = bin("x", &reference, &current, 4);
        assert_eq!(h.edges, [0.0, 5.0, 10.0, 15.0, 20.0]);
        assert_eq!(h.reference, [3, 0, 1, 0]);
        assert_eq!(h.current, [0, 2, 0, 1], "the largest value falls in the last bin");
        assert_eq!((h.reference_missing, h.current_missing), (2, 1));
        let flat = bin("y", &[Some(3.0), Some(3.0)], &[], 5);
        assert_eq!(flat.reference.iter().sum::<u64>(), 2);
        assert_eq!(flat.edges.len(), 6);
    }
}
