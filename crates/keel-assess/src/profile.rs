//! Per-column statistics over a list of Parquet files: the profile.
//!
//! Every statistic is exact: distinct counts come from sorting (numerics, times) or a hash map
//! (categories), quantiles from the sorted values with linear interpolation (numpy's default).
//! Duplicate columns and duplicate rows are found by 64-bit content hashes (a collision among a
//! few million rows has a probability near 1e-7).

use std::sync::Mutex;
use std::time::Instant;

use arrow::datatypes::Field;
use rayon::prelude::*;
use serde::Serialize;

use crate::error::{AssessError, Result};
use crate::read::{self, Categories, ColumnKind, MISSING_CODE, MISSING_TIME, Source};
use crate::stats;

/// Numeric columns with at most this many distinct values also list their value counts.
const FEW_VALUES: usize = 20;
/// Top values listed per column.
const TOP_VALUES: usize = 10;
/// Bins of the numeric histograms (equal width between min and max).
const HISTOGRAM_BINS: usize = 20;

/// Options of a profile.
#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// Worker threads for columns; `None` uses rayon's global pool (one per core).
    pub threads: Option<usize>,
    /// Count duplicate rows (one 64-bit hash per row kept while the columns are read: 8 bytes a row).
    pub duplicate_rows: bool,
}

impl Default for ProfileOptions {
    fn default() -> Self {
        ProfileOptions {
            threads: None,
            duplicate_rows: true,
        }
    }
}

/// Per-column statistics of a table, plus duplicate columns and rows.
#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    /// Parquet files read.
    pub files: usize,
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
    /// Groups of columns with identical content (same kind, same value in every row).
    pub duplicate_columns: Vec<Vec<String>>,
    /// Rows equal to an earlier row in every supported column (`None` when not counted).
    pub duplicate_rows: Option<u64>,
    /// Wall time of the profile.
    pub seconds: f64,
}

impl Profile {
    /// The column named `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Statistics of one column.
#[derive(Debug, Clone, Serialize)]
pub struct ColumnProfile {
    pub name: String,
    /// Arrow type as stored.
    pub data_type: String,
    pub kind: ColumnKind,
    /// Non-missing values (for numerics: finite values).
    pub count: u64,
    /// Nulls (and NaN for numerics).
    pub missing: u64,
    pub missing_share: f64,
    /// Exact number of distinct non-missing values.
    pub distinct: u64,
    /// At most one distinct non-missing value.
    pub constant: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numeric: Option<NumericSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<TimeSummary>,
    /// Most frequent values (categoricals; numerics with at most 20 distinct values), most frequent first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub top: Vec<ValueCount>,
}

/// Moments and exact quantiles of the finite values of a numeric column.
#[derive(Debug, Clone, Serialize)]
pub struct NumericSummary {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (ddof = 1, as pandas).
    pub std: f64,
    pub p01: f64,
    pub p25: f64,
    pub p50: f64,
    pub p75: f64,
    pub p99: f64,
    pub zeros: u64,
    /// +inf and -inf (not in the other figures).
    pub infinite: u64,
    pub histogram: Histogram,
}

/// Equal-width histogram: `counts[i]` values in `[edges[i], edges[i + 1])` (the last bin closed).
#[derive(Debug, Clone, Serialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

/// Range of a time column (RFC 3339, UTC).
#[derive(Debug, Clone, Serialize)]
pub struct TimeSummary {
    pub min: String,
    pub max: String,
}

/// A value and how often it occurs.
#[derive(Debug, Clone, Serialize)]
pub struct ValueCount {
    pub value: String,
    pub count: u64,
}

/// The decoded values of one column, aligned with the table's rows.
pub(crate) enum Values {
    Numeric(Vec<f64>),
    Categorical(Categories),
    Time(Vec<i64>),
    Unsupported { missing: u64 },
}

/// Reads one column in the representation its kind calls for.
pub(crate) fn read_values(source: &Source, field: &Field) -> Result<Values> {
    let name = field.name();
    Ok(match read::kind_of(field.data_type()) {
        ColumnKind::Numeric => Values::Numeric(source.read_numeric(name)?),
        ColumnKind::Categorical => Values::Categorical(source.read_categorical(name)?),
        ColumnKind::Time => Values::Time(source.read_time(name, false)?),
        ColumnKind::Unsupported => Values::Unsupported {
            missing: source.count_missing(name)?,
        },
    })
}

/// The profile of one column plus its content hash (`None`: not hashed, unsupported type).
pub(crate) fn summarise(field: &Field, values: &Values, rows: u64) -> (ColumnProfile, Option<u64>) {
    let mut p = ColumnProfile {
        name: field.name().clone(),
        data_type: field.data_type().to_string(),
        kind: read::kind_of(field.data_type()),
        count: 0,
        missing: 0,
        missing_share: 0.0,
        distinct: 0,
        constant: true,
        numeric: None,
        time: None,
        top: Vec::new(),
    };
    let mut hash = 0x5151_u64;
    match values {
        Values::Numeric(v) => {
            let mut finite = Vec::with_capacity(v.len());
            let mut infinite = 0u64;
            hash ^= content_hash(v.iter().map(|x| numeric_bits(*x)));
            for x in v {
                if x.is_finite() {
                    finite.push(*x);
                } else if x.is_infinite() {
                    infinite += 1;
                }
            }
            p.missing = v.len() as u64 - finite.len() as u64 - infinite;
            keel_stats::sort_f64(&mut finite);
            p.count = finite.len() as u64;
            p.distinct = stats::distinct_sorted(&finite) as u64;
            if !finite.is_empty() {
                let (mean, std) = keel_stats::mean_std_sample(&finite);
                let q = |x| keel_stats::quantile_sorted(&finite, x);
                p.numeric = Some(NumericSummary {
                    min: finite[0],
                    max: finite[finite.len() - 1],
                    mean,
                    std,
                    p01: q(0.01),
                    p25: q(0.25),
                    p50: q(0.5),
                    p75: q(0.75),
                    p99: q(0.99),
                    zeros: (finite.partition_point(|x| *x < 0.0)..finite.partition_point(|x| *x <= 0.0)).len() as u64,
                    infinite,
                    histogram: histogram(&finite),
                });
                if p.distinct as usize <= FEW_VALUES {
                    p.top = numeric_value_counts(&finite);
                }
            }
        }
        Values::Categorical(c) => {
            hash ^= content_hash(c.codes.iter().map(|c| u64::from(*c)));
            // Codes follow first appearance, so equal codes sequences mean equal columns only
            // together with equal value lists.
            for value in &c.values {
                hash = stats::mix64(hash ^ stats::hash_str(value));
            }
            p.missing = c.missing;
            p.count = c.codes.len() as u64 - c.missing;
            p.distinct = c.values.len() as u64;
            let mut order: Vec<usize> = (0..c.values.len()).collect();
            order.sort_by(|a, b| c.counts[*b].cmp(&c.counts[*a]).then(c.values[*a].cmp(&c.values[*b])));
            p.top = order
                .into_iter()
                .take(TOP_VALUES)
                .map(|i| ValueCount {
                    value: c.values[i].clone(),
                    count: c.counts[i],
                })
                .collect();
        }
        Values::Time(t) => {
            let mut present: Vec<i64> = Vec::with_capacity(t.len());
            hash ^= content_hash(t.iter().map(|x| *x as u64));
            for x in t {
                if *x != MISSING_TIME {
                    present.push(*x);
                }
            }
            p.missing = t.len() as u64 - present.len() as u64;
            p.count = present.len() as u64;
            present.sort_unstable();
            p.distinct = if present.is_empty() {
                0
            } else {
                1 + present.windows(2).filter(|w| w[0] != w[1]).count() as u64
            };
            if let (Some(lo), Some(hi)) = (present.first(), present.last()) {
                p.time = Some(TimeSummary {
                    min: rfc3339(*lo),
                    max: rfc3339(*hi),
                });
            }
        }
        Values::Unsupported { missing } => {
            p.missing = *missing;
            p.count = rows.saturating_sub(*missing);
            p.distinct = 0;
        }
    }
    p.constant = p.distinct <= 1 && !matches!(values, Values::Unsupported { .. });
    p.missing_share = if rows == 0 { 0.0 } else { p.missing as f64 / rows as f64 };
    let hash = (!matches!(values, Values::Unsupported { .. })).then_some(hash);
    (p, hash)
}

/// An order-sensitive hash of a sequence: the wrapping sum of `mix64(value + position * golden)`.
/// The terms are independent (no chain from row to row), so the loop pipelines.
fn content_hash(values: impl Iterator<Item = u64>) -> u64 {
    let mut h = 0u64;
    let mut position = 0u64;
    for v in values {
        h = h.wrapping_add(stats::mix64(v ^ position));
        position = position.wrapping_add(0x9E37_79B9_7F4A_7C15);
    }
    h
}

/// Canonical bits of a numeric value (every NaN the same).
fn numeric_bits(x: f64) -> u64 {
    if x.is_nan() { 0x7ff8_0000_0000_0000 } else { x.to_bits() }
}

/// Adds this column's per-row hashes into the row accumulator (order-free: wrapping sum).
pub(crate) fn add_row_hashes(acc: &Mutex<Vec<u64>>, name: &str, values: &Values) {
    let seed = stats::hash_str(name);
    let Ok(mut acc) = acc.lock() else { return };
    match values {
        Values::Numeric(v) => {
            for (a, x) in acc.iter_mut().zip(v) {
                *a = a.wrapping_add(stats::mix64(seed ^ numeric_bits(*x)));
            }
        }
        Values::Categorical(c) => {
            let hashes: Vec<u64> = c.values.iter().map(|v| stats::hash_str(v)).collect();
            for (a, code) in acc.iter_mut().zip(&c.codes) {
                let h = if *code == MISSING_CODE {
                    0x9e37
                } else {
                    hashes[*code as usize]
                };
                *a = a.wrapping_add(stats::mix64(seed ^ h));
            }
        }
        Values::Time(t) => {
            for (a, x) in acc.iter_mut().zip(t) {
                *a = a.wrapping_add(stats::mix64(seed ^ (*x as u64)));
            }
        }
        Values::Unsupported { .. } => {}
    }
}

fn histogram(sorted: &[f64]) -> Histogram {
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    if lo == hi {
        return Histogram {
            edges: vec![lo, hi],
            counts: vec![sorted.len() as u64],
        };
    }
    let width = (hi - lo) / HISTOGRAM_BINS as f64;
    let edges: Vec<f64> = (0..=HISTOGRAM_BINS).map(|i| lo + width * i as f64).collect();
    let mut counts = Vec::with_capacity(HISTOGRAM_BINS);
    let mut start = 0;
    for (i, edge) in edges.iter().enumerate().skip(1) {
        let end = if i == HISTOGRAM_BINS {
            sorted.len()
        } else {
            sorted.partition_point(|x| x < edge)
        };
        counts.push((end - start) as u64);
        start = end;
    }
    Histogram { edges, counts }
}

fn numeric_value_counts(sorted: &[f64]) -> Vec<ValueCount> {
    let mut out: Vec<(f64, u64)> = Vec::new();
    for x in sorted {
        match out.last_mut() {
            Some((v, n)) if v == x => *n += 1,
            _ => out.push((*x, 1)),
        }
    }
    out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.total_cmp(&b.0)));
    out.into_iter()
        .take(TOP_VALUES)
        .map(|(v, count)| ValueCount {
            value: format_number(v),
            count,
        })
        .collect()
}

/// Short rendering of a number: integers without a fraction, others with up to 6 significant digits.
pub(crate) fn format_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.4e}")
    } else {
        let s = format!("{v:.6}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Groups of columns with the same kind and content hash.
pub(crate) fn duplicate_groups(columns: &[(String, ColumnKind, Option<u64>)]) -> Vec<Vec<String>> {
    let mut groups: Vec<(ColumnKind, u64, Vec<String>)> = Vec::new();
    for (name, kind, hash) in columns {
        let Some(hash) = hash else { continue };
        match groups.iter_mut().find(|(k, h, _)| k == kind && h == hash) {
            Some((_, _, names)) => names.push(name.clone()),
            None => groups.push((*kind, *hash, vec![name.clone()])),
        }
    }
    groups.into_iter().filter(|g| g.2.len() > 1).map(|g| g.2).collect()
}

/// Rows equal to an earlier row, from the per-row hashes.
pub(crate) fn count_duplicates(mut hashes: Vec<u64>) -> u64 {
    keel_stats::radix_sort_u64(&mut hashes);
    hashes.windows(2).filter(|w| w[0] == w[1]).count() as u64
}

/// Runs `work` on rayon's global pool or on a pool of `threads`.
pub(crate) fn in_pool<T: Send>(threads: Option<usize>, work: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    match threads {
        None => work(),
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build()
            .map_err(|e| AssessError::InvalidOptions(format!("cannot start {n} worker threads: {e}")))?
            .install(work),
    }
}

/// Profiles every column of the files.
pub fn profile(files: &[std::path::PathBuf], options: &ProfileOptions) -> Result<Profile> {
    let started = Instant::now();
    let source = Source::open(files)?;
    if source.rows == 0 {
        return Err(AssessError::Empty);
    }
    let rows = source.rows;
    let acc = options
        .duplicate_rows
        .then(|| Mutex::new(vec![0u64; usize::try_from(rows).unwrap_or(0)]));
    let fields: Vec<&Field> = source.schema.fields().iter().map(|f| f.as_ref()).collect();
    let results = in_pool(options.threads, || {
        fields
            .par_iter()
            .with_max_len(1)
            .map(|field| {
                let values = read_values(&source, field)?;
                if let Some(acc) = &acc {
                    add_row_hashes(acc, field.name(), &values);
                }
                Ok(summarise(field, &values, rows))
            })
            .collect::<Result<Vec<_>>>()
    })?;
    let keys: Vec<(String, ColumnKind, Option<u64>)> =
        results.iter().map(|(p, h)| (p.name.clone(), p.kind, *h)).collect();
    let duplicate_rows = acc.and_then(|m| m.into_inner().ok()).map(count_duplicates);
    Ok(Profile {
        files: files.len(),
        rows,
        columns: results.into_iter().map(|(p, _)| p).collect(),
        duplicate_columns: duplicate_groups(&keys),
        duplicate_rows,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// RFC 3339 (UTC, microseconds when needed) of microseconds since the epoch.
pub fn rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros).map_or_else(
        || format!("{micros}us"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_value_counts() {
        let v: Vec<f64> = (0..100).map(f64::from).collect();
        let h = histogram(&v);
        assert_eq!(h.counts.len(), 20);
        assert_eq!(h.counts.iter().sum::<u64>(), 100);
        assert!(h.counts.iter().all(|c| *c == 5), "{:?}", h.counts);
        let top = numeric_value_counts(&[1.0, 1.0, 2.0, 3.0, 3.0, 3.0]);
        assert_eq!(top[0].value, "3");
        assert_eq!(top[0].count, 3);
        assert_eq!(format_number(0.5), "0.5");
        assert_eq!(format_number(12.0), "12");
    }
}
