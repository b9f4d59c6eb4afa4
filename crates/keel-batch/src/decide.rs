//! `batch decide`: one decision per row of a lake table, logged by the deployment exactly like an
//! online decide, written to an output table ready to hand to an e-mail system.
//!
//! The input is streamed (only the unit column and the deployment's context features are read);
//! rows are decided in chunks of [`DecideJob::batch_rows`] through
//! [`Deployments::decide_many`] (one lock and one durable wait per chunk), two chunks in flight
//! so one chunk's fsync overlaps the next chunk's work. The output is appended in commits of at
//! most [`COMMIT_ROWS`] rows, so memory stays bounded and a run that fails leaves the output at
//! its last commit.
//!
//! Re-running a run never decides a unit twice: the decisions the run already logged are read
//! back from the decision log ([`keel_experiments::Deployment::run_decisions`]); units whose
//! decision the output already holds are skipped, and decisions the log has but the output lacks
//! (a crash between the durable log and the output commit) are written without deciding again.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use keel_data::{Caller, TablePass, Workspace, Write};
use keel_experiments::{DecisionOut, DeploymentSpec, Deployments, UnitContext};
use keel_lake::VersionOrTimestamp;
use keel_lake::WriteMode;
use keel_lake::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt64Array,
};
use keel_lake::arrow::compute::cast;
use keel_lake::arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::control::{Control, Refusals};
use crate::{BatchError, columns, split_table};

/// Output rows appended per Delta commit (at most; the last commit holds the rest).
pub const COMMIT_ROWS: usize = 262_144;

/// One batch decide run.
#[derive(Debug, Clone)]
pub struct DecideJob {
    /// The deployment deciding (its variants must be actions, not models).
    pub deployment: String,
    /// A lake table, optionally at a version: `customers` or `customers@v3`.
    pub from: String,
    /// The input column naming the unit (customer) decided for.
    pub unit_column: String,
    /// The output table (created on the first run).
    pub into: String,
    /// Names the run; `None`: `DEPLOYMENT-TABLE-vVERSION`, so a re-run is recognised.
    pub run_id: Option<String>,
    /// Rows per `decide_many` call.
    pub batch_rows: usize,
}

/// What a batch decide run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecideReport {
    pub run_id: String,
    pub deployment: String,
    pub input: String,
    pub input_version: u64,
    pub output: String,
    /// The output table's newest version after the run (`None`: nothing was ever written).
    pub output_version: Option<u64>,
    /// Input rows read.
    pub rows: u64,
    /// Decisions made (and durably logged) by this invocation.
    pub decided: u64,
    /// Decisions an earlier attempt of this run had logged but not written to the output,
    /// written now without deciding again.
    pub recovered: u64,
    /// Units whose decision of this run the output already held (nothing done).
    pub already_written: u64,
    /// Rows whose unit appeared earlier in the input (decided once).
    pub duplicates: u64,
    /// Rows not decided because their unit was decided already: `already_written + recovered +
    /// duplicates`.
    pub skipped: u64,
    /// Rows refused (a bad context value, a null unit), by reason.
    pub refused: u64,
    pub refusals: Refusals,
    /// Rows appended to the output by this invocation (`decided + recovered`).
    pub written: u64,
    /// Delta commits made to the output.
    pub commits: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// How a unit column or a context feature is read from the input.
#[derive(Debug, Clone)]
enum Feature {
    Numeric(String),
    Categorical(String),
}

/// A chunk being decided: units and their contexts, owned.
struct Pending {
    units: Vec<String>,
    contexts: Vec<Option<Map<String, Value>>>,
}

/// One output row.
struct Row {
    unit: String,
    decision: DecisionOut,
}

/// Decides every row of `job.from` with `job.deployment` into `job.into`, as `caller`.
pub async fn decide(
    ws: &Workspace,
    deployments: &Arc<Deployments>,
    caller: &Caller,
    job: &DecideJob,
    control: &Control,
) -> Result<DecideReport, BatchError> {
    let started = Instant::now();
    let (table, at) = split_table(&job.from)?;
    keel_experiments::validate_name(&job.deployment)?;
    let engine = deployments.get(&job.deployment)?;
    let details = serde_json::json!({ "job": "batch decide", "deployment": job.deployment, "into": job.into });
    let input = ws
        .check::<keel_data::Read>(caller, &table, "batch_decide", details.clone())
        .await?;
    let output = ws.check_create(caller, &job.into, None, details).await?;
    let stored = deployments
        .store()
        .get_deployment(&job.deployment)
        .await
        .map_err(keel_experiments::DeploymentError::from)?;
    let spec = DeploymentSpec::from_json(&stored.spec)?;
    let features: Vec<Feature> = spec
        .context
        .iter()
        .map(|f| match f {
            keel_experiments::spec::FeatureSpec::Numeric { name } => Feature::Numeric(name.clone()),
            keel_experiments::spec::FeatureSpec::Categorical { name, .. } => Feature::Categorical(name.clone()),
        })
        .collect();
    let schema = ws.lake().schema(&table).await?;
    check_columns(&schema, &job.unit_column, &features)?;
    let input_version = match at {
        Some(v) => v,
        None => ws.versions(&input).await?.iter().map(|v| v.version).max().unwrap_or(0),
    };
    let run_id = match &job.run_id {
        Some(id) => columns::checked_run_id(id)?,
        None => format!("{}-{table}-v{input_version}", job.deployment),
    };
    let mut report = DecideReport {
        run_id: run_id.clone(),
        deployment: job.deployment.clone(),
        input: table.clone(),
        input_version,
        output: job.into.clone(),
        output_version: None,
        rows: 0,
        decided: 0,
        recovered: 0,
        already_written: 0,
        duplicates: 0,
        skipped: 0,
        refused: 0,
        refusals: Refusals::default(),
        written: 0,
        commits: 0,
        seconds: 0.0,
        rows_per_second: 0.0,
    };

    // What this run already did: decisions in the log, rows in the output.
    let written = written_units(ws, &output, &run_id).await?;
    let logged: HashMap<String, DecisionOut> = engine
        .run_decisions(&run_id)
        .await?
        .into_iter()
        .map(|d| (d.unit, d.decision))
        .collect();

    let mut wanted = vec![job.unit_column.clone()];
    wanted.extend(features.iter().map(|f| match f {
        Feature::Numeric(n) | Feature::Categorical(n) => n.clone(),
    }));
    wanted.dedup();
    let mut batches = ws
        .scan_stream(&input, Some(VersionOrTimestamp::Version(input_version)), &wanted)
        .await?;

    let rows_per_chunk = job.batch_rows.max(1);
    let mut seen: HashSet<String> = HashSet::new();
    let mut pending = Pending::new(rows_per_chunk);
    let mut out_rows: Vec<Row> = Vec::new();
    let mut in_flight = FuturesOrdered::new();
    let mut turn: Option<Turn> = None;
    let mut writer = Writer {
        ws,
        output: &output,
        run_id: &run_id,
        input: &table,
        input_version,
        deployment: &job.deployment,
        caller,
        lineage_in: false,
    };
    let mut cancelled = false;
    'read: while let Some(batch) = batches.next().await {
        let batch = batch.map_err(|e| BatchError::Internal(format!("reading the input table failed: {e}")))?;
        let units = string_column(&batch, &job.unit_column)?;
        let values = feature_columns(&batch, &features)?;
        for i in 0..batch.num_rows() {
            report.rows += 1;
            if units.is_null(i) {
                report.refused += 1;
                report.refusals.add(
                    "null_unit",
                    &format!("row {}", report.rows),
                    &format!("the unit column {:?} is null", job.unit_column),
                );
                continue;
            }
            let unit = units.value(i);
            if !seen.insert(unit.to_owned()) {
                report.duplicates += 1;
                continue;
            }
            if written.contains(unit) {
                report.already_written += 1;
                continue;
            }
            if let Some(decision) = logged.get(unit) {
                report.recovered += 1;
                out_rows.push(Row {
                    unit: unit.to_owned(),
                    decision: decision.clone(),
                });
                continue;
            }
            pending.units.push(unit.to_owned());
            pending.contexts.push(context_of(&features, &values, i));
            if pending.units.len() >= rows_per_chunk {
                let chunk = std::mem::replace(&mut pending, Pending::new(rows_per_chunk));
                if in_flight.len() >= 2
                    && let Some(done) = in_flight.next().await
                {
                    collect(done?, &mut report, &mut out_rows);
                }
                let (acknowledged, next) = decide_chunk(
                    deployments.clone(),
                    job.deployment.clone(),
                    run_id.clone(),
                    chunk,
                    turn.take(),
                );
                turn = Some(next);
                in_flight.push_back(acknowledged);
                if out_rows.len() >= COMMIT_ROWS {
                    writer.commit(std::mem::take(&mut out_rows), &mut report).await?;
                }
                control.set_rows(report.rows);
                if control.is_cancelled() {
                    cancelled = true;
                    break 'read;
                }
            }
        }
        control.set_rows(report.rows);
    }
    drop(batches);
    if !cancelled && !pending.units.is_empty() {
        let (acknowledged, _) = decide_chunk(
            deployments.clone(),
            job.deployment.clone(),
            run_id.clone(),
            pending,
            turn.take(),
        );
        in_flight.push_back(acknowledged);
    }
    // Every decision made is durable in the log; write them all, even when cancelled.
    let mut failure = None;
    while let Some(done) = in_flight.next().await {
        match done {
            Ok(done) => collect(done, &mut report, &mut out_rows),
            Err(e) => failure = failure.or(Some(e)),
        }
        if out_rows.len() >= COMMIT_ROWS {
            writer.commit(std::mem::take(&mut out_rows), &mut report).await?;
        }
    }
    if !out_rows.is_empty() {
        writer.commit(out_rows, &mut report).await?;
    }
    if let Some(e) = failure {
        return Err(e);
    }
    report.output_version = match report.output_version {
        Some(v) => Some(v),
        None if ws.lake().exists(&job.into).await? => ws.versions(&output).await?.iter().map(|v| v.version).max(),
        None => None,
    };
    report.skipped = report.already_written + report.recovered + report.duplicates;
    report.seconds = started.elapsed().as_secs_f64();
    report.rows_per_second = report.rows as f64 / report.seconds.max(1e-9);
    if cancelled {
        return Err(BatchError::Cancelled {
            rows: report.rows,
            written: report.written,
        });
    }
    Ok(report)
}

impl Pending {
    fn new(capacity: usize) -> Pending {
        Pending {
            units: Vec::with_capacity(capacity),
            contexts: Vec::with_capacity(capacity),
        }
    }
}

type Decided = (Vec<String>, Vec<keel_experiments::Result<DecisionOut>>);

/// Signalled when a chunk's decisions are made: the next chunk decides only then, so chunks are
/// decided in input order (the policy's random draws follow the rows, and the same input decides
/// the same way again) while one chunk's log write overlaps the next chunk's decisions.
type Turn = std::sync::mpsc::Receiver<()>;

/// Starts deciding one chunk on the blocking pool (the policy's work under the deployment's lock
/// is CPU work) once `previous` has decided; the returned future waits for the chunk's
/// durability and acknowledges it. The returned turn is the next chunk's `previous`.
fn decide_chunk(
    deployments: Arc<Deployments>,
    name: String,
    run: String,
    chunk: Pending,
    previous: Option<Turn>,
) -> (impl Future<Output = Result<Decided, BatchError>>, Turn) {
    let (done, turn) = std::sync::mpsc::sync_channel(1);
    let deciding = deployments.clone();
    let decided = tokio::task::spawn_blocking(move || {
        if let Some(previous) = previous {
            // An error means the previous chunk's task ended without deciding (it failed,
            // and that failure is reported by its own future): deciding this one is still right.
            let _ = previous.recv();
        }
        let rows: Vec<UnitContext<'_>> = chunk
            .units
            .iter()
            .zip(&chunk.contexts)
            .map(|(unit, context)| UnitContext {
                unit,
                context: context.as_ref(),
            })
            .collect();
        let decided = deciding.decide_many_now(&name, &rows, Some(&run));
        let _ = done.send(());
        decided
    });
    let acknowledged = async move {
        let decided = decided
            .await
            .map_err(|e| BatchError::Internal(format!("the decide task failed: {e}")))??;
        Ok(decided.durable_with_units(&deployments).await?)
    };
    (acknowledged, turn)
}

fn collect((units, results): Decided, report: &mut DecideReport, out: &mut Vec<Row>) {
    for (unit, result) in units.into_iter().zip(results) {
        match result {
            Ok(decision) => {
                report.decided += 1;
                out.push(Row { unit, decision });
            }
            Err(e) => {
                report.refused += 1;
                report.refusals.add(e.code(), &unit, &e.to_string());
            }
        }
    }
}

/// Appends output rows and records each commit (catalog, lineage).
struct Writer<'a> {
    ws: &'a Workspace,
    output: &'a TablePass<Write>,
    run_id: &'a str,
    input: &'a str,
    input_version: u64,
    deployment: &'a str,
    caller: &'a Caller,
    lineage_in: bool,
}

impl Writer<'_> {
    async fn commit(&mut self, rows: Vec<Row>, report: &mut DecideReport) -> Result<(), BatchError> {
        if rows.is_empty() {
            return Ok(());
        }
        let n = rows.len() as u64;
        let batch = output_batch(&rows, self.run_id)?;
        drop(rows);
        let version = self.ws.write(self.output, vec![batch], WriteMode::Append).await?;
        let details = serde_json::json!({ "run_id": self.run_id, "deployment": self.deployment, "rows": n });
        self.ws.record_commit(self.output, version, false, details).await?;
        let store = self.ws.catalog().store();
        let node = format!("deployment/{}", self.deployment);
        if !self.lineage_in {
            store
                .add_lineage(
                    &format!("table/{}@v{}", self.input, self.input_version),
                    &node,
                    "decided_by",
                    self.caller.name(),
                )
                .await
                .map_err(keel_data::DataError::from)?;
            self.lineage_in = true;
        }
        store
            .add_lineage(
                &node,
                &format!("table/{}@v{version}", self.output.table()),
                "decided_into",
                self.caller.name(),
            )
            .await
            .map_err(keel_data::DataError::from)?;
        report.written += n;
        report.commits += 1;
        report.output_version = Some(version);
        Ok(())
    }
}

/// The output table's columns: unit, decision_id, variant (null when the unit is held back with
/// no action), propensity, policy_version, revision, control, no_action, run_id, decided_at.
fn output_batch(rows: &[Row], run_id: &str) -> Result<RecordBatch, BatchError> {
    let n = rows.len();
    let now = chrono::Utc::now().timestamp_micros();
    let fields = vec![
        Field::new("unit", ArrowType::Utf8, false),
        Field::new("decision_id", ArrowType::Utf8, false),
        Field::new("variant", ArrowType::Utf8, true),
        Field::new("propensity", ArrowType::Float64, false),
        Field::new("policy_version", ArrowType::UInt64, false),
        Field::new("revision", ArrowType::Int64, false),
        Field::new("control", ArrowType::Boolean, false),
        Field::new("no_action", ArrowType::Boolean, false),
        Field::new("run_id", ArrowType::Utf8, false),
        Field::new(
            "decided_at",
            ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
    ];
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.unit.as_str()))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.decision.decision_id.as_str()),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.decision.chosen()))),
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|r| r.decision.propensity),
        )),
        Arc::new(UInt64Array::from_iter_values(
            rows.iter().map(|r| r.decision.policy_version),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.decision.revision))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.decision.control)))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.decision.no_action)))),
        Arc::new(StringArray::from(vec![run_id; n])),
        Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
    ];
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| BatchError::Internal(e.to_string()))
}

/// Units of `run_id` already in the output table.
async fn written_units(ws: &Workspace, output: &TablePass<Write>, run_id: &str) -> Result<HashSet<String>, BatchError> {
    if !ws.lake().exists(output.table()).await? {
        return Ok(HashSet::new());
    }
    let columns = ws.lake().columns(output.table()).await?;
    for needed in ["unit", "run_id", "decision_id"] {
        if !columns.iter().any(|(c, _)| c == needed) {
            return Err(BatchError::Invalid(format!(
                "table {:?} exists and has no {needed} column: it was not written by keel batch decide; choose another --into",
                output.table()
            )));
        }
    }
    let query = format!(
        "SELECT unit FROM \"{}\" WHERE run_id = '{}'",
        output.table(),
        run_id.replace('\'', "''")
    );
    let found = ws.sql_on(&query, std::slice::from_ref(output)).await?;
    let mut units = HashSet::new();
    for batch in &found {
        let column = string_column(batch, "unit")?;
        for i in 0..column.len() {
            if !column.is_null(i) {
                units.insert(column.value(i).to_owned());
            }
        }
    }
    Ok(units)
}

/// The unit column and every context feature exist with a usable type, checked before any
/// decision.
fn check_columns(schema: &Schema, unit: &str, features: &[Feature]) -> Result<(), BatchError> {
    let present = || {
        schema
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let field = schema.field_with_name(unit).map_err(|_| {
        BatchError::Invalid(format!(
            "the table has no unit column {unit:?}; it has {}. Name it with --unit-column",
            present()
        ))
    })?;
    if !is_text(field.data_type()) && !field.data_type().is_integer() {
        return Err(BatchError::Invalid(format!(
            "the unit column {unit:?} is {}; a unit is a string or an integer id",
            field.data_type()
        )));
    }
    let mut missing = Vec::new();
    for f in features {
        let (name, numeric) = match f {
            Feature::Numeric(n) => (n, true),
            Feature::Categorical(n) => (n, false),
        };
        let Ok(field) = schema.field_with_name(name) else {
            missing.push(format!("{name:?}"));
            continue;
        };
        let dt = field.data_type();
        if numeric && !dt.is_numeric() {
            return Err(BatchError::Invalid(format!(
                "column {name:?} is {dt} but the deployment's context feature {name:?} is numeric; cast it when you ingest the table"
            )));
        }
        if !numeric && !is_text(dt) {
            return Err(BatchError::Invalid(format!(
                "column {name:?} is {dt} but the deployment's context feature {name:?} is categorical (a string); cast it when you ingest the table"
            )));
        }
    }
    if !missing.is_empty() {
        return Err(BatchError::Invalid(format!(
            "the table has no column {} that the deployment's context names; it has {}",
            missing.join(", "),
            present()
        )));
    }
    Ok(())
}

fn is_text(dt: &ArrowType) -> bool {
    match dt {
        ArrowType::Utf8 | ArrowType::LargeUtf8 | ArrowType::Utf8View => true,
        ArrowType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

/// A column of `batch` as strings (integers are written in decimal).
pub(crate) fn string_column(batch: &RecordBatch, name: &str) -> Result<StringArray, BatchError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| BatchError::Internal(format!("column {name:?} vanished from the input")))?;
    let cast = cast(column, &ArrowType::Utf8).map_err(|e| BatchError::Invalid(format!("column {name:?}: {e}")))?;
    cast.as_any()
        .downcast_ref::<StringArray>()
        .cloned()
        .ok_or_else(|| BatchError::Internal(format!("column {name:?} did not cast to strings")))
}

/// A column of `batch` as float64.
pub(crate) fn float_column(batch: &RecordBatch, name: &str) -> Result<Float64Array, BatchError> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| BatchError::Internal(format!("column {name:?} vanished from the input")))?;
    let cast = cast(column, &ArrowType::Float64).map_err(|e| BatchError::Invalid(format!("column {name:?}: {e}")))?;
    cast.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .ok_or_else(|| BatchError::Internal(format!("column {name:?} did not cast to numbers")))
}

enum Values {
    Numeric(String, Float64Array),
    Categorical(String, StringArray),
}

fn feature_columns(batch: &RecordBatch, features: &[Feature]) -> Result<Vec<Values>, BatchError> {
    features
        .iter()
        .map(|f| match f {
            Feature::Numeric(n) => Ok(Values::Numeric(n.clone(), float_column(batch, n)?)),
            Feature::Categorical(n) => Ok(Values::Categorical(n.clone(), string_column(batch, n)?)),
        })
        .collect()
}

/// Row `i`'s context; a null value is left out, so the deployment refuses that row with its
/// own message (a missing feature).
fn context_of(features: &[Feature], values: &[Values], i: usize) -> Option<Map<String, Value>> {
    if features.is_empty() {
        return None;
    }
    let mut map = Map::with_capacity(values.len());
    for v in values {
        match v {
            Values::Numeric(name, a) if !a.is_null(i) => {
                let x = a.value(i);
                // Not finite: JSON has no such number; the deployment refuses it as not a number.
                map.insert(
                    name.clone(),
                    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number),
                );
            }
            Values::Categorical(name, a) if !a.is_null(i) => {
                map.insert(name.clone(), Value::String(a.value(i).to_owned()));
            }
            _ => {}
        }
    }
    Some(map)
}
