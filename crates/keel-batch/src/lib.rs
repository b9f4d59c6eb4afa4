//! Bulk jobs over lake tables.
//!
//! [`score`] runs one model version over every row of a lake table and appends its outputs,
//! with the input's key columns, the model version and a run id, to another table: the bulk
//! side of practice 3 ("a model ships as an endpoint or as a bulk process").
//!
//! - **Columns map to inputs by name**, as the prediction log names them: one column per input
//!   of shape `[N]` or `[N, 1]`; `NAME_0 .. NAME_{k-1}` for an `[N, k]` input; or, for a model
//!   with one input, the columns given in order (`features`). A missing, null or non-numeric
//!   column is refused before any row is scored.
//! - **All cores**: the table is cut into chunks of [`ScoreJob::batch_rows`] rows, scored on the
//!   blocking pool, as many at once as the model has sessions (one per core by default).
//! - **Atomic**: all outputs are appended in one Delta commit, so a run that fails half-way leaves
//!   the output table at its last version.
//! - **Idempotent**: the run id defaults to `MODEL-vVERSION-TABLE-vINPUT_VERSION`, so running the
//!   same model version over the same table version again finds its rows and writes nothing.
//! - **Checked and traced**: a Read pass on the input and a Write pass on the output (the
//!   catalog's rules and audit log); lineage `table@v -> model/version -> table@v`.
//!
//! [`decide`] runs a deployment over every row of a table (one durably logged decision per
//! unit, chunked commits, a run never decides a unit twice) and [`ingest`] sends rewards in bulk
//! to a deployment's feedback: the campaign jobs. Both report progress and stop between chunks
//! through a [`Control`].

mod columns;
mod control;
mod decide;
mod engine;
mod error;
mod feedback;
mod in_flight;
mod source;

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use keel_data::{Caller, TablePass, Workspace, Write};
use keel_lake::VersionOrTimestamp;
use keel_lake::arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array};
use keel_lake::arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};
use keel_registry::{Registry, VersionSelector};
use keel_runtime::{ModelOptions, Runtime};
use serde::Serialize;

pub use control::{Control, Example, Refusal, Refusals};
pub use decide::{COMMIT_ROWS, DecideJob, DecideReport, decide};
pub use engine::{ScoreEngine, ScoreSpec, ScoredBatches};
pub use error::BatchError;
pub use feedback::{IngestJob, IngestReport, RewardKey, ingest};
pub use source::is_file;

/// One scoring run.
#[derive(Debug, Clone)]
pub struct ScoreJob {
    /// `NAME`, `NAME@alias` or `NAME:version` (`NAME` alone: the version `@production` points
    /// at, else the newest).
    pub model: String,
    /// A lake table, optionally at a version: `customers` or `customers@v3`.
    pub from: String,
    /// The output table (created on the first run).
    pub into: String,
    /// Input columns copied to the output (keys such as `customer_id`).
    pub keep: Vec<String>,
    /// For a model with one `[N, k]` input: its `k` columns, in order.
    pub features: Vec<String>,
    /// Names the run; `None`: derived from the model version and the input table version.
    pub run_id: Option<String>,
    /// Rows per model call.
    pub batch_rows: usize,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct ScoreReport {
    pub run_id: String,
    pub model: String,
    pub model_version: i64,
    pub input: String,
    pub input_version: u64,
    pub output: String,
    /// The output table's version holding this run's rows.
    pub output_version: Option<u64>,
    /// Where the rows were scored: `in-process`, or the engine (`ballista://HOST:PORT`); empty
    /// when the run had already been written.
    pub engine: String,
    pub rows: u64,
    /// The run had already been written: nothing was scored or appended.
    pub already_done: bool,
    pub seconds: f64,
    pub rows_per_second: f64,
}

/// Scores `job.from` with `job.model` into `job.into` as `caller`, in this process; `progress`
/// hears the rows scored so far as chunks finish.
pub async fn score(
    ws: &Workspace,
    registry: &Registry,
    caller: &Caller,
    job: &ScoreJob,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ScoreReport, BatchError> {
    score_on(ws, registry, caller, job, progress, None).await
}

/// [`score`], with the rows scored by `engine` (`None`: in this process). The checks, the run
/// id, the one commit and the lineage are the same either way: only where the model runs
/// differs.
pub async fn score_on(
    ws: &Workspace,
    registry: &Registry,
    caller: &Caller,
    job: &ScoreJob,
    progress: &(dyn Fn(u64) + Sync),
    engine: Option<&dyn ScoreEngine>,
) -> Result<ScoreReport, BatchError> {
    let started = Instant::now();
    let (table, at) = split_table(&job.from)?;
    let details = serde_json::json!({ "job": "batch score", "model": job.model, "into": job.into });
    let input = ws
        .check::<keel_data::Read>(caller, &table, "batch_score", details.clone())
        .await?;
    let output = ws.check_create(caller, &job.into, None, details).await?;
    let (name, selector) = match job.model.split_once(['@', ':']) {
        Some(_) => VersionSelector::split_reference(&job.model)?,
        None => (
            job.model.clone(),
            VersionSelector::parse("@production").unwrap_or(VersionSelector::Latest),
        ),
    };
    let record = match registry.resolve(&name, &selector).await {
        Ok(r) => r,
        Err(e) if job.model == name => registry.serving_version(&name).await.map_err(|_| e)?,
        Err(e) => return Err(e.into()),
    };
    let input_version = match at {
        Some(v) => v,
        None => ws.versions(&input).await?.iter().map(|v| v.version).max().unwrap_or(0),
    };
    let run_id = match &job.run_id {
        Some(id) => columns::checked_run_id(id)?,
        None => format!("{name}-v{}-{table}-v{input_version}", record.version),
    };
    let mut report = ScoreReport {
        run_id: run_id.clone(),
        model: name.clone(),
        model_version: record.version,
        input: table.clone(),
        input_version,
        output: job.into.clone(),
        output_version: None,
        engine: String::new(),
        rows: 0,
        already_done: false,
        seconds: 0.0,
        rows_per_second: 0.0,
    };
    if let Some((rows, version)) = already_scored(ws, &output, &run_id).await? {
        report.rows = rows;
        report.output_version = version;
        report.already_done = true;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }

    let bytes = registry.fetch(&record).await?;
    let model = Arc::new(
        tokio::task::spawn_blocking(move || {
            Runtime::global().and_then(|rt| rt.load_model(&bytes, &ModelOptions::default()))
        })
        .await
        .map_err(|e| BatchError::Internal(format!("model loading task failed: {e}")))??,
    );
    // Only the columns the job needs are read, as a stream, and the outputs stream to Parquet
    // files: memory holds the chunks being scored and the file being written, not the tables.
    let schema = ws.lake().schema(&table).await?;
    let plan = columns::Plan::new(model.inputs(), &schema, &job.features, &job.keep)?;
    let mut stream: ScoredBatches = match engine {
        None => {
            report.engine = "in-process".into();
            in_process(ws, &input, input_version, model, plan, job.batch_rows).await?
        }
        Some(engine) => {
            report.engine = engine.name();
            if ws.lake().local_root().is_none() {
                return Err(BatchError::Invalid(format!(
                    "{} reads the lake's data files where they are, and this lake is in a bucket ({}); score in process (no --engine)",
                    engine.name(),
                    ws.lake().location()
                )));
            }
            let spec = ScoreSpec::probe(&name, record.version, &model, &plan)?;
            // The engine's processes read the version's data files themselves.
            let files = ws.files(&input, Some(input_version)).await?;
            engine.score(&spec, files.paths()).await?
        }
    };
    let mut total = 0u64;
    let scored_at = chrono::Utc::now().timestamp_micros();
    let mut run_columns = RunColumns::new(&name, record.version, &run_id, scored_at);
    // Outputs go to Parquet files as chunks finish; the one commit comes after the last chunk.
    let mut sink = ws.append_stream(&output)?;
    while let Some(next) = stream.next().await {
        let scored = next?;
        total += scored.num_rows() as u64;
        let batch = run_columns.add(scored)?;
        sink.send(batch).await.map_err(keel_data::DataError::from)?;
        progress(total);
    }
    drop(stream);
    report.rows = total;
    if let Some(version) = sink.finish().await.map_err(keel_data::DataError::from)? {
        let details = serde_json::json!({ "run_id": run_id, "model": name, "model_version": record.version, "rows": total, "engine": report.engine });
        ws.record_commit(&output, version, false, details).await?;
        let store = ws.catalog().store();
        let model_node = format!("model/{name}/{}", record.version);
        store
            .add_lineage(
                &format!("table/{table}@v{input_version}"),
                &model_node,
                "scored_by",
                caller.name(),
            )
            .await
            .map_err(keel_data::DataError::from)?;
        store
            .add_lineage(
                &model_node,
                &format!("table/{}@v{version}", job.into),
                "scored_into",
                caller.name(),
            )
            .await
            .map_err(keel_data::DataError::from)?;
        report.output_version = Some(version);
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.rows_per_second = total as f64 / report.seconds.max(1e-9);
    Ok(report)
}

/// The input table's version scored in this process: only the needed columns read as a stream,
/// cut into chunks of `batch_rows`, as many chunks scored at once on the blocking pool as the
/// model has sessions; yields the kept columns then the outputs.
async fn in_process(
    ws: &Workspace,
    input: &TablePass<keel_data::Read>,
    input_version: u64,
    model: Arc<keel_runtime::Model>,
    plan: columns::Plan,
    batch_rows: usize,
) -> Result<ScoredBatches, BatchError> {
    let batches = ws
        .scan_stream(input, Some(VersionOrTimestamp::Version(input_version)), &plan.columns())
        .await?;
    let rows_per_chunk = batch_rows.max(1);
    let chunked = batches
        .map(move |read| match read {
            Ok(batch) => futures::stream::iter(
                columns::chunks(&[batch], rows_per_chunk)
                    .into_iter()
                    .map(Ok)
                    .collect::<Vec<_>>(),
            ),
            Err(e) => futures::stream::iter(vec![Err(BatchError::Internal(format!(
                "reading the input table failed: {e}"
            )))]),
        })
        .flatten();
    let parallel = ModelOptions::default().sessions.max(1);
    let plan = Arc::new(plan);
    Ok(chunked
        .map(move |chunk| {
            let (model, plan) = (model.clone(), plan.clone());
            async move {
                let chunk = chunk?;
                tokio::task::spawn_blocking(move || {
                    let scored = plan.score(&model, &chunk)?;
                    plan.output_batch(&chunk, scored)
                })
                .await
                .map_err(|e| BatchError::Internal(format!("scoring task failed: {e}")))?
            }
        })
        .buffered(parallel)
        .boxed())
}

/// `table` or `table@vN`.
pub(crate) fn split_table(from: &str) -> Result<(String, Option<u64>), BatchError> {
    match keel_lake::split_version(from) {
        Ok((table, version)) if !table.contains('@') => Ok((table.to_owned(), version)),
        Ok(_) => Err(BatchError::Invalid(format!(
            "cannot read {from:?}: name a lake table, optionally at a version (customers@v3)"
        ))),
        Err(e) => Err(BatchError::Invalid(format!("cannot read {from:?}: {e}"))),
    }
}

/// Rows of `run_id` already in the output table, and the newest version holding them.
async fn already_scored(
    ws: &Workspace,
    output: &TablePass<Write>,
    run_id: &str,
) -> Result<Option<(u64, Option<u64>)>, BatchError> {
    if !ws.lake().exists(output.table()).await? {
        return Ok(None);
    }
    let columns = ws.lake().columns(output.table()).await?;
    if !columns.iter().any(|(c, _)| c == "run_id") {
        return Err(BatchError::Invalid(format!(
            "table {:?} exists and has no run_id column: it was not written by keel batch score; choose another --into",
            output.table()
        )));
    }
    let query = format!(
        "SELECT COUNT(*) AS n FROM \"{}\" WHERE run_id = '{run_id}'",
        output.table()
    );
    let found = ws.sql_on(&query, std::slice::from_ref(output)).await?;
    let n = found
        .first()
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<keel_lake::arrow::array::Int64Array>()
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    if n == 0 {
        return Ok(None);
    }
    let version = ws.versions(output).await?.iter().map(|v| v.version).max();
    Ok(Some((n as u64, version)))
}

/// The run's constant columns (model, model_version, run_id, scored_at) appended to each output
/// chunk: built once at the chunk size and sliced (no copy) for each chunk, instead of repeating
/// the strings row by row for every chunk.
struct RunColumns {
    fields: [Field; 4],
    model: String,
    version: u64,
    run_id: String,
    scored_at_us: i64,
    /// Columns of `rows` rows, rebuilt when a chunk is longer.
    built: Vec<ArrayRef>,
    rows: usize,
}

impl RunColumns {
    fn new(model: &str, version: i64, run_id: &str, scored_at_us: i64) -> RunColumns {
        RunColumns {
            fields: [
                Field::new("model", ArrowType::Utf8, false),
                Field::new("model_version", ArrowType::UInt64, false),
                Field::new("run_id", ArrowType::Utf8, false),
                Field::new(
                    "scored_at",
                    ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
            ],
            model: model.to_owned(),
            version: version.max(0) as u64,
            run_id: run_id.to_owned(),
            scored_at_us,
            built: Vec::new(),
            rows: 0,
        }
    }

    /// `batch` with the run's columns appended.
    fn add(&mut self, batch: RecordBatch) -> Result<RecordBatch, BatchError> {
        let n = batch.num_rows();
        if n > self.rows || self.built.is_empty() {
            let repeat = |s: &str| StringArray::from_iter_values(std::iter::repeat_n(s, n));
            self.built = vec![
                Arc::new(repeat(&self.model)),
                Arc::new(UInt64Array::from_value(self.version, n)),
                Arc::new(repeat(&self.run_id)),
                Arc::new(TimestampMicrosecondArray::from_value(self.scored_at_us, n).with_timezone("UTC")),
            ];
            self.rows = n;
        }
        let mut fields: Vec<Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
        fields.extend(self.fields.iter().cloned());
        columns.extend(self.built.iter().map(|c| c.slice(0, n)));
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| BatchError::Internal(e.to_string()))
    }
}
