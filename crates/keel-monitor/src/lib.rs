//! keel-monitor owns drift detection and data-quality summaries: it compares a reference and a current
//! Parquet table column by column (reading only the columns it needs, one at a time), applies
//! Evidently 0.7's default per-column tests (or PSI/KS/... on request) with the same numbers, and returns
//! a serialisable [`DriftReport`] with missing values, out-of-range values and new categories.
//!
//! It is a domain crate: it must never depend on HTTP, gRPC or serving crates; the CLI and the API call
//! [`drift_files`] on Parquet files or [`drift_batches`] on record batches already in memory (one
//! code path; CPU-bound calls: run them on a compute pool or `spawn_blocking`, not on the reactor).

mod column;
mod error;
pub mod live;
mod read;
mod report;
mod stats;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Instant;

use arrow::array::RecordBatch;
use rayon::prelude::*;

pub use arrow;
pub use error::{MonitorError, Result};
use read::Table;
pub use report::{ColumnDrift, ColumnKind, ColumnQuality, DriftReport, StatDetails, TestKind};

/// Which test to apply to every column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Method {
    /// Evidently's default choice per column (see the crate README).
    #[default]
    Auto,
    /// Population stability index (sturges bins for numeric columns with > 20 distinct reference values).
    Psi,
    /// Kolmogorov-Smirnov (numeric columns; categorical columns keep the default test).
    Ks,
    /// Normed Wasserstein distance (numeric columns; categorical columns keep the default test).
    Wasserstein,
    /// Jensen-Shannon distance.
    JensenShannon,
}

/// A drift method name that is none of `Method`'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown drift method {0}; use auto, psi, ks, wasserstein or jensenshannon")]
pub struct UnknownMethod(pub String);

impl UnknownMethod {
    /// Always `InvalidArgument`: the caller named the method.
    pub fn kind(&self) -> keel_types::ErrorKind {
        keel_types::ErrorKind::InvalidArgument
    }

    /// Stable public code.
    pub fn code(&self) -> &'static str {
        "monitor.unknown_method"
    }
}

impl keel_types::KeelError for UnknownMethod {
    fn kind(&self) -> keel_types::ErrorKind {
        UnknownMethod::kind(self)
    }

    fn code(&self) -> &'static str {
        UnknownMethod::code(self)
    }
}

impl std::str::FromStr for Method {
    type Err = UnknownMethod;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Method::Auto),
            "psi" => Ok(Method::Psi),
            "ks" => Ok(Method::Ks),
            "wasserstein" => Ok(Method::Wasserstein),
            "jensenshannon" | "js" => Ok(Method::JensenShannon),
            other => Err(UnknownMethod(other.to_string())),
        }
    }
}

/// Options of a drift computation.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftOptions {
    pub method: Method,
    /// Overrides the test's default threshold (distance: drift at >=; p-value: drift at <).
    pub threshold: Option<f64>,
    /// Columns to compare; `None` compares all columns (which must then be the same in both files).
    pub columns: Option<Vec<String>>,
    /// The dataset drifts when at least this share of columns drifts (Evidently: 0.5).
    pub drift_share: f64,
    /// Worker threads for columns; `None` uses rayon's global pool.
    pub threads: Option<usize>,
}

impl Default for DriftOptions {
    fn default() -> Self {
        DriftOptions {
            method: Method::Auto,
            threshold: None,
            columns: None,
            drift_share: 0.5,
            threads: None,
        }
    }
}

/// Compares `current` against `reference` (two Parquet files) and returns the drift report.
pub fn drift_files(reference: &Path, current: &Path, options: &DriftOptions) -> Result<DriftReport> {
    let started = Instant::now();
    let reference = read::file_info(reference)?;
    let current = read::file_info(current)?;
    for info in [&reference, &current] {
        if info.rows == 0 {
            return Err(MonitorError::EmptyFile {
                path: info.path.clone(),
            });
        }
    }
    drift_tables(&Table::File(reference), &Table::File(current), options, started)
}

/// Compares `current` against `reference` (record batches in memory, each side's batches of one
/// schema) and returns the drift report: the same tests and report as [`drift_files`].
pub fn drift_batches(
    reference: &[RecordBatch],
    current: &[RecordBatch],
    options: &DriftOptions,
) -> Result<DriftReport> {
    let started = Instant::now();
    drift_tables(
        &batches_side(reference, "reference")?,
        &batches_side(current, "current")?,
        options,
        started,
    )
}

/// One side of an in-memory comparison; an error when it holds no rows.
fn batches_side<'a>(batches: &'a [RecordBatch], side: &'static str) -> Result<Table<'a>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    match batches.first() {
        Some(first) if rows > 0 => Ok(Table::Batches {
            schema: first.schema(),
            batches,
            rows: rows as u64,
        }),
        _ => Err(MonitorError::EmptyBatches { side }),
    }
}

/// The one drift computation over two tables of rows, whatever holds them.
fn drift_tables(
    reference: &Table<'_>,
    current: &Table<'_>,
    options: &DriftOptions,
    started: Instant,
) -> Result<DriftReport> {
    let names = select_columns(reference, current, options.columns.as_deref())?;
    let mut plan = Vec::with_capacity(names.len());
    for name in names {
        plan.push((name.clone(), column_kind(reference, current, &name)?));
    }

    let run = || -> Result<Vec<ColumnDrift>> {
        plan.par_iter()
            .with_max_len(1)
            .map(|(name, kind)| column::drift_column(reference, current, name, *kind, options))
            .collect()
    };
    let columns = match options.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| MonitorError::ThreadPool(e.to_string()))?
            .install(run)?,
        None => run()?,
    };

    let mut report = summarize(columns, options, reference.rows(), current.rows());
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The report over scored columns: which drifted, and whether the dataset did.
pub(crate) fn summarize(
    columns: Vec<ColumnDrift>,
    options: &DriftOptions,
    reference_rows: u64,
    current_rows: u64,
) -> DriftReport {
    let drifted_columns: Vec<String> = columns.iter().filter(|c| c.drifted).map(|c| c.name.clone()).collect();
    let share_drifted = if columns.is_empty() {
        0.0
    } else {
        drifted_columns.len() as f64 / columns.len() as f64
    };
    DriftReport {
        dataset_drift: !columns.is_empty() && share_drifted >= options.drift_share,
        share_drifted,
        drift_share: options.drift_share,
        drifted_columns,
        columns,
        reference_rows,
        current_rows,
        seconds: 0.0,
    }
}

fn select_columns(reference: &Table<'_>, current: &Table<'_>, wanted: Option<&[String]>) -> Result<Vec<String>> {
    let ref_names: Vec<String> = reference.schema().fields().iter().map(|f| f.name().clone()).collect();
    let cur_names: BTreeSet<String> = current.schema().fields().iter().map(|f| f.name().clone()).collect();
    match wanted {
        Some(wanted) => {
            let only_ref: Vec<String> = wanted
                .iter()
                .filter(|w| ref_names.contains(w) && !cur_names.contains(*w))
                .cloned()
                .collect();
            let only_cur: Vec<String> = wanted
                .iter()
                .filter(|w| !ref_names.contains(w) && cur_names.contains(*w))
                .cloned()
                .collect();
            if !only_ref.is_empty() || !only_cur.is_empty() {
                return Err(MonitorError::ColumnMismatch {
                    only_in_reference: only_ref,
                    only_in_current: only_cur,
                });
            }
            if let Some(missing) = wanted.iter().find(|w| !ref_names.contains(w)) {
                return Err(MonitorError::UnknownColumn(missing.clone()));
            }
            Ok(wanted.to_vec())
        }
        None => {
            let ref_set: BTreeSet<&String> = ref_names.iter().collect();
            let only_ref: Vec<String> = ref_names.iter().filter(|n| !cur_names.contains(*n)).cloned().collect();
            let only_cur: Vec<String> = cur_names.iter().filter(|n| !ref_set.contains(n)).cloned().collect();
            if !only_ref.is_empty() || !only_cur.is_empty() {
                return Err(MonitorError::ColumnMismatch {
                    only_in_reference: only_ref,
                    only_in_current: only_cur,
                });
            }
            Ok(ref_names)
        }
    }
}

fn column_kind(reference: &Table<'_>, current: &Table<'_>, name: &str) -> Result<ColumnKind> {
    let kind = |table: &Table<'_>| -> Result<ColumnKind> {
        let field = table
            .schema()
            .field_with_name(name)
            .map_err(|_| MonitorError::UnknownColumn(name.to_string()))?;
        read::kind_of(field.data_type()).ok_or_else(|| MonitorError::UnsupportedType {
            column: name.to_string(),
            data_type: field.data_type().to_string(),
        })
    };
    let (r, c) = (kind(reference)?, kind(current)?);
    if r != c {
        return Err(MonitorError::TypeMismatch {
            column: name.to_string(),
            reference: format!("{r:?}").to_lowercase(),
            current: format!("{c:?}").to_lowercase(),
        });
    }
    Ok(r)
}
