//! Model performance once labels arrive: logged predictions joined with labels (by prediction
//! id and row) and with experiment feedback (by decision id, first row), per model version and
//! time bucket, with DataFusion SQL over the lake.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use keel_lake::Lake;
use keel_lake::arrow::array::{Array, Float64Array, Int64Array, RecordBatch, StringArray};
use serde::Serialize;

use crate::record::{FEEDBACK_TABLE, LABELS_TABLE, PREDICTIONS_PREFIX, predictions_table};
use crate::stats::{Bin, auc, calibration, log_loss};
use crate::{PredlogError, Result};

/// Time buckets of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bucket {
    Hour,
    Day,
}

impl std::str::FromStr for Bucket {
    type Err = PredlogError;
    fn from_str(s: &str) -> Result<Bucket> {
        match s {
            "hour" => Ok(Bucket::Hour),
            "day" => Ok(Bucket::Day),
            other => Err(PredlogError::Invalid(format!("bucket {other:?}: use hour or day"))),
        }
    }
}

impl Bucket {
    fn sql(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
        }
    }
}

/// What to report.
#[derive(Debug, Clone)]
pub struct PerformanceOptions {
    /// Only predictions at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub bucket: Bucket,
    /// The score column (the predicted probability of the positive outcome); default: found
    /// from the table (`out_probabilities_1`, `out_probability_1`, `out_score`, or the only
    /// numeric output column).
    pub score: Option<String>,
    /// Reliability bins.
    pub bins: usize,
}

impl Default for PerformanceOptions {
    fn default() -> Self {
        PerformanceOptions {
            since: None,
            bucket: Bucket::Day,
            score: None,
            bins: 10,
        }
    }
}

/// Performance of one version, over the whole range or one time bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub version: i64,
    /// Start of the bucket (UTC); `None` for the whole range.
    pub bucket: Option<String>,
    /// Rows logged (in range).
    pub predictions: u64,
    /// Rows with a label or feedback.
    pub labelled: u64,
    /// Mean outcome: the positive (conversion) rate for a 0/1 outcome.
    pub positive_rate: Option<f64>,
    pub mean_score: Option<f64>,
    pub auc: Option<f64>,
    pub log_loss: Option<f64>,
    /// Expected calibration error over the reliability bins.
    pub ece: Option<f64>,
    pub bins: Vec<Bin>,
}

/// The report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PerformanceReport {
    pub model: String,
    pub table: String,
    pub score_column: String,
    pub bucket: Bucket,
    /// Per version over the whole range.
    pub versions: Vec<Group>,
    /// Per version and bucket, oldest first.
    pub buckets: Vec<Group>,
    /// Labels whose prediction id (and row) is in no prediction table: a typo, a prediction
    /// whose log was dropped, or one removed by retention.
    pub unmatched_labels: u64,
    /// Up to 10 of them.
    pub unmatched_examples: Vec<String>,
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

const NO_LABELS: &str = "SELECT CAST(NULL AS VARCHAR) AS prediction_id, CAST(NULL AS BIGINT) AS \"row\", CAST(NULL AS DOUBLE) AS label WHERE false";
const NO_FEEDBACK: &str = "SELECT CAST(NULL AS VARCHAR) AS decision_id, CAST(NULL AS DOUBLE) AS reward WHERE false";

fn labels_cte(tables: &[String]) -> String {
    if tables.iter().any(|t| t == LABELS_TABLE) {
        format!(
            "SELECT prediction_id, \"row\", label FROM (SELECT prediction_id, \"row\", label, \
             row_number() OVER (PARTITION BY prediction_id, \"row\" ORDER BY ts DESC) AS rn FROM {LABELS_TABLE}) t WHERE rn = 1"
        )
    } else {
        NO_LABELS.to_string()
    }
}

fn feedback_cte(tables: &[String]) -> String {
    if tables.iter().any(|t| t == FEEDBACK_TABLE) {
        format!(
            "SELECT decision_id, reward FROM (SELECT decision_id, reward, \
             row_number() OVER (PARTITION BY decision_id ORDER BY ts DESC) AS rn FROM {FEEDBACK_TABLE}) t WHERE rn = 1"
        )
    } else {
        NO_FEEDBACK.to_string()
    }
}

/// The score column: the option, else the first of the usual names, else the only numeric
/// output column.
async fn score_column(lake: &Lake, table: &str, wanted: Option<&str>) -> Result<String> {
    let schema = lake.schema(table).await?;
    let outputs: Vec<&str> = schema
        .fields()
        .iter()
        .filter(|f| f.name().starts_with("out_") && f.data_type().is_numeric())
        .map(|f| f.name().as_str())
        .collect();
    if let Some(w) = wanted {
        return if outputs.contains(&w) {
            Ok(w.to_string())
        } else {
            Err(PredlogError::Invalid(format!(
                "score column {w:?} is not a numeric output of {table}; its outputs are {outputs:?}"
            )))
        };
    }
    for name in [
        "out_probabilities_1",
        "out_probability_1",
        "out_output_probability_1",
        "out_score",
    ] {
        if outputs.contains(&name) {
            return Ok(name.to_string());
        }
    }
    match outputs.as_slice() {
        [only] => Ok((*only).to_string()),
        _ => Err(PredlogError::Invalid(format!(
            "cannot tell which output of {table} is the score: pass --score, one of {outputs:?}"
        ))),
    }
}

fn i64s(b: &RecordBatch, i: usize) -> Result<&Int64Array> {
    b.column(i)
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| PredlogError::Sink(format!("column {i} is not int64")))
}

fn f64s(b: &RecordBatch, i: usize) -> Result<&Float64Array> {
    b.column(i)
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| PredlogError::Sink(format!("column {i} is not float64")))
}

/// A string column as strings, whatever its Arrow string type (Delta scans give string views).
fn strs(b: &RecordBatch, i: usize) -> Result<Vec<String>> {
    let cast = keel_lake::arrow::compute::cast(b.column(i), &keel_lake::arrow::datatypes::DataType::Utf8)
        .map_err(|e| PredlogError::Sink(format!("column {i} is not a string: {e}")))?;
    let array = cast
        .as_any()
        .downcast_ref::<StringArray>()
        .ok_or_else(|| PredlogError::Sink(format!("column {i} is not a string")))?;
    Ok((0..array.len())
        .map(|j| {
            if array.is_null(j) {
                String::new()
            } else {
                array.value(j).to_string()
            }
        })
        .collect())
}

/// Performance of `model`'s logged predictions against the labels and feedback received.
pub async fn performance(lake: &Lake, model: &str, options: &PerformanceOptions) -> Result<PerformanceReport> {
    let table = predictions_table(model);
    let tables = lake.tables().await?;
    if !tables.contains(&table) {
        return Err(PredlogError::NoPredictions {
            model: model.to_string(),
        });
    }
    let score = score_column(lake, &table, options.score.as_deref()).await?;
    let since = options.since.map_or(String::new(), |t| {
        format!(" WHERE ts >= TIMESTAMP '{}'", t.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
    });
    let bucket = options.bucket.sql();
    let p = format!(
        "SELECT prediction_id, \"row\", version, decision_id, ts, CAST({} AS DOUBLE) AS score FROM {}{since}",
        quote(&score),
        quote(&table)
    );
    let ctes = format!(
        "WITH l AS ({}), f AS ({}), p AS ({p})",
        labels_cte(&tables),
        feedback_cte(&tables)
    );
    let counts = lake
        .sql(&format!(
            "{ctes} SELECT version, CAST(date_trunc('{bucket}', ts) AS VARCHAR) AS bucket, CAST(count(*) AS BIGINT) AS n \
             FROM p GROUP BY version, date_trunc('{bucket}', ts)"
        ))
        .await?;
    let joined = lake
        .sql(&format!(
            "{ctes} SELECT p.version, CAST(date_trunc('{bucket}', p.ts) AS VARCHAR) AS bucket, p.score, \
             CAST(coalesce(l.label, f.reward) AS DOUBLE) AS y \
             FROM p LEFT JOIN l ON p.prediction_id = l.prediction_id AND p.\"row\" = l.\"row\" \
             LEFT JOIN f ON p.decision_id = f.decision_id AND p.\"row\" = 0 \
             WHERE coalesce(l.label, f.reward) IS NOT NULL AND p.score IS NOT NULL"
        ))
        .await?;

    let mut predicted: BTreeMap<(i64, String), u64> = BTreeMap::new();
    for b in &counts {
        let (v, k, n) = (i64s(b, 0)?, strs(b, 1)?, i64s(b, 2)?);
        for (i, key) in k.into_iter().enumerate() {
            *predicted.entry((v.value(i), key)).or_default() += n.value(i).max(0) as u64;
        }
    }
    let mut pairs: BTreeMap<(i64, String), Vec<(f64, f64)>> = BTreeMap::new();
    for b in &joined {
        let (v, k, s, y) = (i64s(b, 0)?, strs(b, 1)?, f64s(b, 2)?, f64s(b, 3)?);
        for (i, key) in k.into_iter().enumerate() {
            if s.is_null(i) || y.is_null(i) {
                continue;
            }
            pairs
                .entry((v.value(i), key))
                .or_default()
                .push((s.value(i), y.value(i)));
        }
    }
    let mut buckets = Vec::new();
    let mut per_version: BTreeMap<i64, (u64, Vec<(f64, f64)>)> = BTreeMap::new();
    for ((version, key), n) in &predicted {
        let ps = pairs.remove(&(*version, key.clone())).unwrap_or_default();
        let entry = per_version.entry(*version).or_default();
        entry.0 += n;
        entry.1.extend_from_slice(&ps);
        buckets.push(group(*version, Some(key.clone()), *n, &ps, options.bins));
    }
    buckets.sort_by(|a, b| (&a.bucket, a.version).cmp(&(&b.bucket, b.version)));
    let versions = per_version
        .into_iter()
        .map(|(v, (n, ps))| group(v, None, n, &ps, options.bins))
        .collect();

    let (unmatched_labels, unmatched_examples) = unmatched(lake, &tables).await?;
    Ok(PerformanceReport {
        model: model.to_string(),
        table,
        score_column: score,
        bucket: options.bucket,
        versions,
        buckets,
        unmatched_labels,
        unmatched_examples,
    })
}

fn group(version: i64, bucket: Option<String>, predictions: u64, pairs: &[(f64, f64)], bins: usize) -> Group {
    let n = pairs.len();
    let mean = |f: fn(&(f64, f64)) -> f64| (n > 0).then(|| pairs.iter().map(f).sum::<f64>() / n as f64);
    let (bins, ece) = calibration(pairs, bins);
    Group {
        version,
        bucket,
        predictions,
        labelled: n as u64,
        positive_rate: mean(|p| p.1),
        mean_score: mean(|p| p.0),
        auc: auc(pairs),
        log_loss: log_loss(pairs),
        ece,
        bins,
    }
}

/// Labels that match no logged prediction of any model: their count and up to 10 ids.
pub async fn unmatched(lake: &Lake, tables: &[String]) -> Result<(u64, Vec<String>)> {
    if !tables.iter().any(|t| t == LABELS_TABLE) {
        return Ok((0, Vec::new()));
    }
    let predictions: Vec<String> = tables
        .iter()
        .filter(|t| t.starts_with(PREDICTIONS_PREFIX))
        .map(|t| format!("SELECT prediction_id, \"row\" FROM {}", quote(t)))
        .collect();
    let all = if predictions.is_empty() {
        "SELECT CAST(NULL AS VARCHAR) AS prediction_id, CAST(NULL AS BIGINT) AS \"row\" WHERE false".to_string()
    } else {
        predictions.join(" UNION ALL ")
    };
    let query = format!(
        "WITH l AS ({}), a AS ({all}) SELECT l.prediction_id FROM l LEFT JOIN a \
         ON l.prediction_id = a.prediction_id AND l.\"row\" = a.\"row\" WHERE a.prediction_id IS NULL \
         ORDER BY l.prediction_id",
        labels_cte(tables)
    );
    let batches = lake.sql(&query).await?;
    let mut count = 0u64;
    let mut examples = Vec::new();
    for b in &batches {
        for id in strs(b, 0)? {
            count += 1;
            if examples.len() < 10 {
                examples.push(id);
            }
        }
    }
    Ok((count, examples))
}
