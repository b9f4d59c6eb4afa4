//! `feedback ingest`: rewards and other declared metrics in bulk from a lake table or a file, by
//! decision id or by unit and the batch run that decided it, through the deployment's own
//! feedback (the same checks as online: range, attribution window, conflicts; idempotent per
//! decision and metric).
//!
//! Every row gets an answer and a refused row never stops the others; the summary counts what
//! was counted, what was a duplicate (the same reward already counted), what came after its
//! window closed (late) and what was refused, with the first few examples of each reason.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use keel_data::{Caller, Workspace};
use keel_experiments::{Deployments, FeedbackIn, FeedbackOut};
use keel_lake::arrow::array::Array;
use keel_lake::arrow::datatypes::{DataType as ArrowType, Schema};
use serde::{Deserialize, Serialize};

use crate::columns::{column_names, float_column, is_text, string_column};
use crate::control::{Control, Refusals};
use crate::in_flight::InFlight;
use crate::{BatchError, source};

/// How rows name the decision they reward.
#[derive(Debug, Clone)]
pub enum RewardKey {
    /// A column holding the decision id decide returned.
    Decision { column: String },
    /// A column holding the unit, decided by the batch run `run`.
    Unit { column: String, run: String },
}

impl RewardKey {
    /// The key from its columns as the transports name them: `decision_column` (default
    /// `decision_id`), or `unit_column` with the batch run `run_id`; any other mix is refused.
    pub fn from_columns(
        decision_column: Option<String>,
        unit_column: Option<String>,
        run_id: Option<String>,
    ) -> Result<RewardKey, BatchError> {
        match (decision_column, unit_column, run_id) {
            (decision, None, None) => Ok(RewardKey::Decision {
                column: decision.unwrap_or_else(|| "decision_id".into()),
            }),
            (None, Some(column), Some(run)) => Ok(RewardKey::Unit { column, run }),
            _ => Err(BatchError::Invalid(
                "name the rewarded decisions either by decision_column, or by unit_column with run_id".into(),
            )),
        }
    }
}

/// One bulk feedback run.
#[derive(Debug, Clone)]
pub struct IngestJob {
    pub deployment: String,
    /// A lake table (`conversions`, `conversions@v2`) or a `.parquet`/`.csv` file.
    pub from: String,
    pub key: RewardKey,
    /// The column holding the reward, the decision metric (a number; booleans count as 0/1);
    /// `None`: the rows carry other metrics only.
    pub reward_column: Option<String>,
    /// Other metrics the deployment declares: metric name -> the column holding its values
    /// (numbers or booleans; a null leaves that metric out of that row).
    pub metric_columns: BTreeMap<String, String>,
    /// Rewards per feedback call.
    pub batch_rows: usize,
    /// Whether `from` may be a local file (the command line; never a server job).
    pub files: bool,
}

/// What a bulk feedback run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestReport {
    pub deployment: String,
    pub source: String,
    /// Rows read.
    pub rows: u64,
    /// Rewards counted now.
    pub counted: u64,
    /// The same reward was already counted (a re-run, or the row twice): nothing changed.
    pub duplicate: u64,
    /// The decision's attribution window had closed: not counted.
    pub late: u64,
    /// Refused rows (unknown decision or unit, reward out of range, conflicting reward, nulls).
    pub refused: u64,
    /// Late and refused rows by code, with the first few examples.
    pub refusals: Refusals,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// Sends every row's reward of `job.from` to `job.deployment`'s feedback, as `caller`.
pub async fn ingest(
    ws: &Workspace,
    deployments: &Arc<Deployments>,
    caller: &Caller,
    job: &IngestJob,
    control: &Control,
) -> Result<IngestReport, BatchError> {
    let started = Instant::now();
    keel_experiments::validate_name(&job.deployment)?;
    let engine = deployments.get(&job.deployment)?;
    let key_column = match &job.key {
        RewardKey::Decision { column } | RewardKey::Unit { column, .. } => column.clone(),
    };
    if job.reward_column.is_none() && job.metric_columns.is_empty() {
        return Err(BatchError::Invalid(
            "nothing to ingest: name the reward column (--reward-column) or at least one metric (--metric NAME[=COLUMN])"
                .into(),
        ));
    }
    let declared = engine.metric_names()?;
    let undeclared: Vec<&str> = job
        .metric_columns
        .keys()
        .filter(|m| !declared.contains(m))
        .map(String::as_str)
        .collect();
    if !undeclared.is_empty() {
        return Err(BatchError::Invalid(format!(
            "deployment '{}' declares no metric {}: its metrics are [{}] (the reward is --reward-column)",
            job.deployment,
            undeclared.join(", "),
            declared.join(", ")
        )));
    }
    let details = serde_json::json!({ "job": "feedback ingest", "deployment": job.deployment });
    // Each column read once, even when the reward and metrics (or several metrics) share one.
    let mut columns = vec![key_column.clone()];
    for c in job.reward_column.iter().chain(job.metric_columns.values()) {
        if !columns.contains(c) {
            columns.push(c.clone());
        }
    }
    let mut source = source::open(ws, caller, &job.from, &columns, job.files, "feedback_ingest", details).await?;
    check_columns(
        &source.schema,
        &key_column,
        job.reward_column.as_deref(),
        &job.metric_columns,
    )?;
    // By unit: the run's decisions, read from the log.
    let by_unit: Option<HashMap<String, String>> = match &job.key {
        RewardKey::Decision { .. } => None,
        RewardKey::Unit { run, .. } => {
            let run = crate::columns::checked_run_id(run)?;
            let decisions = engine.run_decisions(&run).await?;
            if decisions.is_empty() {
                return Err(BatchError::Invalid(format!(
                    "deployment '{}' has no decision of a run {:?}: name the run keel batch decide reported (--run-id)",
                    job.deployment,
                    match &job.key {
                        RewardKey::Unit { run, .. } => run.as_str(),
                        RewardKey::Decision { .. } => "",
                    }
                )));
            }
            Some(
                decisions
                    .into_iter()
                    .map(|d| (d.unit, d.decision.decision_id))
                    .collect(),
            )
        }
    };
    let mut report = IngestReport {
        deployment: job.deployment.clone(),
        source: source.name.clone(),
        rows: 0,
        counted: 0,
        duplicate: 0,
        late: 0,
        refused: 0,
        refusals: Refusals::default(),
        seconds: 0.0,
        rows_per_second: 0.0,
    };
    let per_call = job.batch_rows.max(1);
    let mut items: Vec<FeedbackIn> = Vec::with_capacity(per_call);
    let mut in_flight = InFlight::new();
    let mut cancelled = false;
    'read: while let Some(batch) = source.batches.next().await {
        let batch = batch?;
        let keys = string_column(&batch, &key_column)?;
        let rewards = job
            .reward_column
            .as_ref()
            .map(|c| float_column(&batch, c))
            .transpose()?;
        let metrics = job
            .metric_columns
            .iter()
            .map(|(name, column)| Ok((name, float_column(&batch, column)?)))
            .collect::<Result<Vec<_>, BatchError>>()?;
        for i in 0..batch.num_rows() {
            report.rows += 1;
            if keys.is_null(i) {
                report.refused += 1;
                report.refusals.add(
                    "null_key",
                    &format!("row {}", report.rows),
                    &format!("column {key_column:?} is null"),
                );
                continue;
            }
            let key = keys.value(i);
            let reward = rewards.as_ref().filter(|r| !r.is_null(i)).map(|r| r.value(i));
            let values: BTreeMap<String, f64> = metrics
                .iter()
                .filter(|(_, m)| !m.is_null(i))
                .map(|(name, m)| ((*name).clone(), m.value(i)))
                .collect();
            if reward.is_none() && values.is_empty() {
                report.refused += 1;
                let (reason, what) = match (&job.reward_column, job.metric_columns.is_empty()) {
                    (Some(c), true) => ("null_reward", format!("column {c:?} is null")),
                    _ => (
                        "null_values",
                        format!("every value column ({}) is null", columns[1..].join(", ")),
                    ),
                };
                report.refusals.add(reason, key, &what);
                continue;
            }
            let decision_id = match &by_unit {
                None => key.to_owned(),
                Some(map) => match map.get(key) {
                    Some(id) => id.clone(),
                    None => {
                        report.refused += 1;
                        report.refusals.add(
                            "unknown_unit",
                            key,
                            &format!("unit {key:?} was not decided by this run"),
                        );
                        continue;
                    }
                },
            };
            items.push(FeedbackIn {
                decision_id,
                reward,
                metrics: values,
            });
            if items.len() >= per_call {
                let chunk = std::mem::replace(&mut items, Vec::with_capacity(per_call));
                if let Some(done) = in_flight.room().await {
                    tally(done?, &mut report);
                }
                in_flight.push(send(deployments.clone(), job.deployment.clone(), chunk));
                control.set_rows(report.rows);
                if control.is_cancelled() {
                    cancelled = true;
                    break 'read;
                }
            }
        }
        control.set_rows(report.rows);
    }
    drop(source);
    if !cancelled && !items.is_empty() {
        in_flight.push(send(deployments.clone(), job.deployment.clone(), items));
    }
    let mut failure = None;
    while let Some(done) = in_flight.next().await {
        match done {
            Ok(done) => tally(done, &mut report),
            Err(e) => failure = failure.or(Some(e)),
        }
    }
    if let Some(e) = failure {
        return Err(e);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.rows_per_second = report.rows as f64 / report.seconds.max(1e-9);
    if cancelled {
        return Err(BatchError::Cancelled {
            rows: report.rows,
            written: report.counted,
        });
    }
    Ok(report)
}

type Sent = (Vec<FeedbackIn>, Vec<keel_experiments::Result<FeedbackOut>>);

/// One feedback call on the blocking pool (validation under the deployment's lock, then the
/// durable wait).
async fn send(deployments: Arc<Deployments>, name: String, items: Vec<FeedbackIn>) -> Result<Sent, BatchError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let results = handle.block_on(deployments.feedback_items(&name, &items))?;
        Ok((items, results))
    })
    .await
    .map_err(|e| BatchError::Internal(format!("the feedback task failed: {e}")))?
}

fn tally((items, results): Sent, report: &mut IngestReport) {
    for (item, result) in items.iter().zip(results) {
        match result {
            Ok(out) if out.counted => report.counted += 1,
            Ok(_) => report.duplicate += 1,
            Err(e) => {
                if e.code() == "window_closed" {
                    report.late += 1;
                } else {
                    report.refused += 1;
                }
                report.refusals.add(e.code(), &item.decision_id, &e.to_string());
            }
        }
    }
}

fn check_columns(
    schema: &Schema,
    key: &str,
    reward: Option<&str>,
    metrics: &BTreeMap<String, String>,
) -> Result<(), BatchError> {
    let key_field = schema.field_with_name(key).map_err(|_| {
        BatchError::Invalid(format!(
            "the input has no column {key:?}; it has {}. Name it with --decision-column or --unit-column",
            column_names(schema)
        ))
    })?;
    if !is_text(key_field.data_type()) && !key_field.data_type().is_integer() {
        return Err(BatchError::Invalid(format!(
            "column {key:?} is {}; decision ids and units are strings",
            key_field.data_type()
        )));
    }
    let values = reward.map(|c| ("the reward", c, "--reward-column")).into_iter().chain(
        metrics
            .values()
            .map(|c| ("the metric", c.as_str(), "--metric NAME=COLUMN")),
    );
    for (what, column, flag) in values {
        let field = schema.field_with_name(column).map_err(|_| {
            BatchError::Invalid(format!(
                "the input has no column {column:?} for {what}; it has {}. Name it with {flag}",
                column_names(schema)
            ))
        })?;
        if !field.data_type().is_numeric() && *field.data_type() != ArrowType::Boolean {
            return Err(BatchError::Invalid(format!(
                "column {column:?} ({what}) is {}; a value is a number (or a boolean: 1 for true)",
                field.data_type()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use keel_lake::arrow::array::{DictionaryArray, Float64Array, RecordBatch};
    use keel_lake::arrow::datatypes::{Field, Int32Type};

    use super::*;

    /// Keys as a table written from pandas categoricals or by Spark often holds them:
    /// dictionary-encoded strings, accepted as decide accepts them, and read as their text.
    #[test]
    fn dictionary_encoded_keys_are_text() {
        let keys: DictionaryArray<Int32Type> = vec!["c1", "c2", "c1"].into_iter().collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("customer", keys.data_type().clone(), false),
            Field::new("converted", ArrowType::Float64, false),
        ]));
        check_columns(&schema, "customer", Some("converted"), &BTreeMap::new()).expect("dictionary keys accepted");
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(keys), Arc::new(Float64Array::from(vec![1.0, 0.0, 1.0]))],
        )
        .expect("batch");
        let text = string_column(&batch, "customer").expect("as text");
        assert_eq!((0..3).map(|i| text.value(i)).collect::<Vec<_>>(), ["c1", "c2", "c1"]);

        let dates = Schema::new(vec![Field::new("customer", ArrowType::Date32, false)]);
        let err = check_columns(&dates, "customer", None, &BTreeMap::new())
            .expect_err("dates are not keys")
            .to_string();
        assert!(err.contains("decision ids and units are strings"), "{err}");
    }
}
