//! keel-assess owns the feasibility assessment of a table for a binary prediction task: it answers
//! *do we have the right data?* (rows, entities, target balance, missing values, constant and
//! duplicate columns, cardinality, suspected leakage, how informative each feature is, a quick
//! cross-validated baseline) and *does it arrive fast enough?* (freshness, coverage, arrivals over
//! time, gaps), and ends with a verdict and the reasons behind it. [`profile()`] is the statistics
//! part alone; [`assess`] is all of it. Both read a list of Parquet files (a Delta table version,
//! or one plain file) one column at a time, columns in parallel on rayon's pool.
//!
//! It is a domain crate: it must never depend on HTTP, gRPC, the serving crates or on the lake
//! (deltalake); the CLI resolves a table to its files and calls [`assess`] (a CPU-bound call: run
//! it on a compute pool or `spawn_blocking`, not on the reactor). The report renders itself as
//! JSON (serde), Markdown, plain text and a standalone HTML page with inline SVG charts.

mod arrival;
mod baseline;
mod error;
mod inform;
mod profile;
mod read;
mod render;
mod stats;
mod verdict;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use arrow::datatypes::Field;
use chrono::{DateTime, Utc};
use rayon::prelude::*;
use serde::Serialize;

pub use arrival::{Arrival, Bucket, Gap, human_duration};
pub use baseline::Baseline;
pub use error::{AssessError, Result};
pub use inform::{FeatureInfo, TargetSummary};
pub use profile::rfc3339;
pub use profile::{
    ColumnProfile, Histogram, NumericSummary, Profile, ProfileOptions, TimeSummary, ValueCount, profile,
};
pub use read::{ColumnKind, parse_time};
pub use verdict::{Check, Status, Verdict};

use crate::profile::Values;
use crate::read::{ColumnKind as Kind, Source};

/// Limits that decide each check. Defaults are stated in the field docs.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// A feature whose single-feature AUC strength (max(auc, 1 - auc)) reaches this is suspected
    /// leakage (0.98).
    pub leakage_auc: f64,
    /// Newest row older than this (seconds) fails freshness (2 days).
    pub max_freshness_seconds: f64,
    /// Fewer labelled rows fail (1,000).
    pub min_rows: u64,
    /// Fewer rows of either class fail (100).
    pub min_positives: u64,
    /// A smaller share of the minority class warns (1%).
    pub min_minority_share: f64,
    /// A column missing more than this share warns (50%).
    pub max_missing_share: f64,
    /// More duplicate rows than this share warns (5%).
    pub max_duplicate_row_share: f64,
    /// More empty time buckets than this share warns (10%).
    pub max_empty_bucket_share: f64,
    /// A baseline with a lower mean AUC warns (0.55); so does the best single feature.
    pub min_auc: f64,
    /// Inter-arrival gaps longer than this many median inter-arrivals are listed (50).
    pub gap_factor: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            leakage_auc: 0.98,
            max_freshness_seconds: 2.0 * 86_400.0,
            min_rows: 1000,
            min_positives: 100,
            min_minority_share: 0.01,
            max_missing_share: 0.5,
            max_duplicate_row_share: 0.05,
            max_empty_bucket_share: 0.1,
            min_auc: 0.55,
            gap_factor: 50.0,
        }
    }
}

/// What to assess and how.
#[derive(Debug, Clone)]
pub struct AssessOptions {
    /// The binary target column (numbers or booleans with two values; the larger is positive).
    pub target: String,
    /// The event-time column (timestamp, date, or RFC 3339 strings); `None` skips arrival checks.
    pub time: Option<String>,
    /// The entity column (customer, user, device...): counted, and left out of the features.
    pub entity: Option<String>,
    /// "Now" for freshness (injectable for tests).
    pub now: DateTime<Utc>,
    pub thresholds: Thresholds,
    /// Run the cross-validated baseline.
    pub baseline: bool,
    /// The baseline uses at most this many labelled rows (a deterministic hash sample): 200,000.
    pub max_rows: usize,
    /// Folds of the cross-validation and of the out-of-fold target encoding (5).
    pub folds: usize,
    /// Seed of the row sample and fold assignment.
    pub seed: u64,
    /// Worker threads for columns; `None` uses rayon's global pool.
    pub threads: Option<usize>,
    /// What the report is about (a table name or a path), shown in the title.
    pub title: Option<String>,
}

impl AssessOptions {
    /// Defaults for `target`: no time or entity column, now = the clock, baseline on.
    pub fn new(target: impl Into<String>) -> AssessOptions {
        AssessOptions {
            target: target.into(),
            time: None,
            entity: None,
            now: Utc::now(),
            thresholds: Thresholds::default(),
            baseline: true,
            max_rows: 200_000,
            folds: 5,
            seed: 0x6b65_656c,
            threads: None,
            title: None,
        }
    }
}

/// Entities in the table.
#[derive(Debug, Clone, Serialize)]
pub struct EntitySummary {
    pub column: String,
    /// Distinct non-missing entities.
    pub entities: u64,
    /// Rows without an entity.
    pub missing: u64,
    pub mean_rows_per_entity: f64,
    pub max_rows_per_entity: u64,
}

/// The assessment: the profile, the target, the features, the baseline, the arrival, the checks
/// and the verdict. Serialises to the JSON report.
#[derive(Debug, Clone, Serialize)]
pub struct Assessment {
    pub title: String,
    pub generated_at: String,
    pub rows: u64,
    pub columns: usize,
    pub target: TargetSummary,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entities: Option<EntitySummary>,
    /// Feature columns (all but target, time and entity) by strength, strongest first.
    pub features: Vec<FeatureInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<Baseline>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arrival: Option<Arrival>,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
    /// The checks that warn or fail, one sentence each.
    pub reasons: Vec<String>,
    pub profile: Profile,
    pub thresholds: ThresholdsReport,
    pub seconds: f64,
}

/// The thresholds used, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct ThresholdsReport {
    pub leakage_auc: f64,
    pub max_freshness_seconds: f64,
    pub min_rows: u64,
    pub min_positives: u64,
    pub min_minority_share: f64,
    pub max_missing_share: f64,
    pub max_duplicate_row_share: f64,
    pub max_empty_bucket_share: f64,
    pub min_auc: f64,
    pub gap_factor: f64,
}

impl From<&Thresholds> for ThresholdsReport {
    fn from(t: &Thresholds) -> Self {
        ThresholdsReport {
            leakage_auc: t.leakage_auc,
            max_freshness_seconds: t.max_freshness_seconds,
            min_rows: t.min_rows,
            min_positives: t.min_positives,
            min_minority_share: t.min_minority_share,
            max_missing_share: t.max_missing_share,
            max_duplicate_row_share: t.max_duplicate_row_share,
            max_empty_bucket_share: t.max_empty_bucket_share,
            min_auc: t.min_auc,
            gap_factor: t.gap_factor,
        }
    }
}

fn unknown(source: &Source, role: &'static str, column: &str) -> AssessError {
    AssessError::UnknownColumn {
        role,
        column: column.to_string(),
        available: source.column_names(),
    }
}

fn check_options(options: &AssessOptions) -> Result<()> {
    let bad = |m: String| Err(AssessError::InvalidOptions(m));
    if options.target.is_empty() {
        return bad("the target column name is empty".into());
    }
    if options.time.as_deref() == Some(options.target.as_str()) {
        return bad("the time column cannot be the target".into());
    }
    if options.entity.as_deref() == Some(options.target.as_str()) {
        return bad("the entity column cannot be the target".into());
    }
    if !(2..=50).contains(&options.folds) {
        return bad(format!("folds must be between 2 and 50, not {}", options.folds));
    }
    if options.max_rows < 100 {
        return bad(format!("max rows must be at least 100, not {}", options.max_rows));
    }
    let t = &options.thresholds;
    if !(0.5..=1.0).contains(&t.leakage_auc) || !(0.5..=1.0).contains(&t.min_auc) {
        return bad("AUC thresholds must be between 0.5 and 1".into());
    }
    Ok(())
}

/// Assesses the table made of `files` for predicting `options.target`.
pub fn assess(files: &[PathBuf], options: &AssessOptions) -> Result<Assessment> {
    let started = Instant::now();
    check_options(options)?;
    let source = Source::open(files)?;
    if source.rows == 0 {
        return Err(AssessError::Empty);
    }
    let rows = source.rows;
    let target_field = source
        .field(&options.target)
        .ok_or_else(|| unknown(&source, "target", &options.target))?
        .clone();
    let entity_field = match &options.entity {
        Some(e) => Some(source.field(e).ok_or_else(|| unknown(&source, "entity", e))?.clone()),
        None => None,
    };
    // The time column first: a bad one is refused before any heavy work.
    let times = match &options.time {
        None => None,
        Some(t) => {
            let field = source.field(t).ok_or_else(|| unknown(&source, "time", t))?;
            match read::kind_of(field.data_type()) {
                Kind::Time => Some(source.read_time(t, false)?),
                _ if read::is_string(field.data_type()) => Some(source.read_time(t, true)?),
                _ => {
                    return Err(AssessError::TimeType {
                        column: t.clone(),
                        data_type: field.data_type().to_string(),
                    });
                }
            }
        }
    };
    let target_values = profile::read_values(&source, &target_field)?;
    let (target, labels) = inform::target(&options.target, &target_field.data_type().to_string(), &target_values)?;
    drop(target_values);

    let k = options.folds;
    let folds: Vec<u8> = (0..labels.len())
        .map(|i| (stats::mix64(i as u64 ^ options.seed) % k as u64) as u8)
        .collect();
    let labelled = target.positives + target.negatives;
    let sample = options.baseline.then(|| {
        let keep = (options.max_rows as f64 / labelled as f64).min(1.0);
        let mut s = baseline::Sample::default();
        for (i, y) in labels.iter().enumerate() {
            if *y == inform::NO_LABEL {
                continue;
            }
            let u = (stats::mix64(i as u64 ^ options.seed.rotate_left(17)) >> 11) as f64 / (1u64 << 53) as f64;
            if keep >= 1.0 || u < keep {
                s.rows.push(i);
                s.y.push(f64::from(*y));
                s.fold.push(folds[i]);
            }
        }
        s
    });
    let ctx = inform::TargetCtx {
        labels: &labels,
        folds: &folds,
        k,
        positives: target.positives,
        labelled,
        entropy: target.entropy,
        leakage_auc: options.thresholds.leakage_auc,
    };
    let is_feature = |name: &str| {
        name != options.target && Some(name) != options.time.as_deref() && Some(name) != options.entity.as_deref()
    };

    struct ColumnOut {
        profile: ColumnProfile,
        hash: Option<u64>,
        feature: Option<FeatureInfo>,
        block: Option<baseline::Block>,
        entity_max: Option<u64>,
    }
    let acc = Mutex::new(vec![0u64; usize::try_from(rows).unwrap_or(0)]);
    let fields: Vec<&Field> = source.schema.fields().iter().map(|f| f.as_ref()).collect();
    let outs = profile::in_pool(options.threads, || {
        fields
            .par_iter()
            .with_max_len(1)
            .map(|field| {
                let name = field.name().as_str();
                let values = profile::read_values(&source, field)?;
                profile::add_row_hashes(&acc, name, &values);
                let (profile, hash) = profile::summarise(field, &values, rows);
                let (feature, block) = if is_feature(name) {
                    let feature = inform::feature(name, &values, &ctx);
                    let block = sample.as_ref().and_then(|s| baseline::extract(name, &values, s));
                    (feature, block)
                } else {
                    (None, None)
                };
                let entity_max = (Some(name) == options.entity.as_deref()).then(|| max_rows_per_value(&values));
                Ok(ColumnOut {
                    profile,
                    hash,
                    feature,
                    block,
                    entity_max,
                })
            })
            .collect::<Result<Vec<_>>>()
    })?;

    let keys: Vec<(String, Kind, Option<u64>)> = outs
        .iter()
        .map(|o| (o.profile.name.clone(), o.profile.kind, o.hash))
        .collect();
    let duplicate_rows = acc.into_inner().ok().map(profile::count_duplicates);
    let mut features = Vec::new();
    let mut blocks = Vec::new();
    let mut columns = Vec::with_capacity(outs.len());
    let mut entities = None;
    for o in outs {
        if let (Some(field), Some(max)) = (&entity_field, o.entity_max) {
            entities = Some(EntitySummary {
                column: field.name().clone(),
                entities: o.profile.distinct,
                missing: o.profile.missing,
                mean_rows_per_entity: o.profile.count as f64 / o.profile.distinct.max(1) as f64,
                max_rows_per_entity: max,
            });
        }
        features.extend(o.feature);
        blocks.extend(o.block);
        columns.push(o.profile);
    }
    features.sort_by(|a, b| b.strength.total_cmp(&a.strength).then(a.name.cmp(&b.name)));
    let profile = Profile {
        files: files.len(),
        rows,
        columns,
        duplicate_columns: profile::duplicate_groups(&keys),
        duplicate_rows,
        seconds: started.elapsed().as_secs_f64(),
    };

    let baseline = match sample {
        None => None,
        Some(sample) => {
            let leaky: Vec<&str> = features.iter().filter(|f| f.leakage).map(|f| f.name.as_str()).collect();
            let (kept, left): (Vec<_>, Vec<_>) = blocks.into_iter().partition(|b| !leaky.contains(&b.column.as_str()));
            let mut b = profile::in_pool(options.threads, || {
                Ok(baseline::cross_validate(&kept, &sample, k, labelled))
            })?;
            b.excluded = left
                .into_iter()
                .map(|b| format!("{} (suspected leakage)", b.column))
                .collect();
            Some(b)
        }
    };

    let now = options.now.timestamp_micros();
    let arrival = match (&options.time, &times) {
        (Some(name), Some(t)) => arrival::arrival(name, t, Some(&labels), now, options.thresholds.gap_factor),
        _ => None,
    };
    let mut a = Assessment {
        title: options
            .title
            .clone()
            .unwrap_or_else(|| files.first().map(|f| f.display().to_string()).unwrap_or_default()),
        generated_at: rfc3339(now),
        rows,
        columns: source.schema.fields().len(),
        target,
        entities,
        features,
        baseline,
        arrival,
        checks: Vec::new(),
        verdict: Verdict::Ready,
        reasons: Vec::new(),
        profile,
        thresholds: ThresholdsReport::from(&options.thresholds),
        seconds: 0.0,
    };
    a.checks = verdict::checks(&a, options);
    (a.verdict, a.reasons) = verdict::decide(&a.checks);
    a.seconds = started.elapsed().as_secs_f64();
    Ok(a)
}

/// Rows of the most frequent value of a column.
fn max_rows_per_value(values: &Values) -> u64 {
    match values {
        Values::Numeric(v) => {
            let mut s: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
            keel_stats::sort_f64(&mut s);
            longest_run(&s)
        }
        Values::Categorical(c) => c.counts.iter().copied().max().unwrap_or(0),
        Values::Time(t) => {
            let mut s: Vec<i64> = t.iter().copied().filter(|x| *x != read::MISSING_TIME).collect();
            s.sort_unstable();
            longest_run(&s)
        }
        Values::Unsupported { .. } => 0,
    }
}

fn longest_run<T: PartialEq>(sorted: &[T]) -> u64 {
    let (mut best, mut run) = (0u64, 0u64);
    for (i, x) in sorted.iter().enumerate() {
        run = if i > 0 && sorted[i - 1] == *x { run + 1 } else { 1 };
        best = best.max(run);
    }
    best
}
