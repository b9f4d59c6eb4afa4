//! `batch decide`: one decision per row of a lake table, logged by the deployment exactly like an
//! online decide, written to an output table ready to hand to an e-mail system.
//!
//! The input is streamed (only the unit column and the deployment's context features are read);
//! rows are decided in chunks of [`DecideJob::batch_rows`] through
//! [`Deployments::decide_many`] (one lock and one durable wait per chunk), two chunks in flight
//! so one chunk's fsync overlaps the next chunk's work. The output is appended in commits of at
//! most [`COMMIT_ROWS`] rows, so memory stays bounded and a run that fails leaves the output at
//! its last commit. Commits are made in order, one at a time, each as its own task while the
//! chunks after it are decided; the run answers only once the last one is done (or failed).
//!
//! The rows' hot path allocates little: the units read are kept once, in one buffer (the run's
//! seen set), each chunk's units and contexts live in buffers reused chunk after chunk (a
//! recycled context map has its values overwritten, so the deployment reads the very map a fresh
//! one would be), and the output rows go straight into Arrow builders.
//!
//! Re-running a run never decides a unit twice: the decisions the run already logged are read
//! back from the decision log ([`keel_experiments::Deployment::run_decisions`]); units whose
//! decision the output already holds are skipped, and decisions the log has but the output lacks
//! (a crash between the durable log and the output commit) are written without deciding again.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use hashbrown::{DefaultHashBuilder, HashMap, HashSet, HashTable};
use keel_data::{Caller, TablePass, Workspace, Write};
use keel_experiments::{DecisionOut, DeploymentSpec, Deployments, UnitContext};
use keel_lake::VersionOrTimestamp;
use keel_lake::WriteMode;
use keel_lake::arrow::array::{
    Array, ArrayRef, BooleanBuilder, Float64Array, Float64Builder, Int64Builder, RecordBatch, StringArray,
    StringBuilder, TimestampMicrosecondArray, UInt64Builder,
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

/// A chunk being decided: units and their contexts, owned. Its buffers are reused by a later
/// chunk once this one is decided, so a chunk after the first few allocates nothing per row.
struct Pending {
    /// The units, one after the other; unit `i` ends at `ends[i]`.
    units: String,
    ends: Vec<usize>,
    /// Row `i`'s context is `contexts[i]` when the deployment declares features (else every
    /// row's context is `None`); maps beyond `ends.len()` are kept for reuse.
    contexts: Vec<Map<String, Value>>,
    with_context: bool,
}

/// The units of the input read so far, each once: their bytes in one buffer, a hash table of
/// where each starts and ends (no allocation per unit, no SipHash).
struct Seen {
    bytes: Vec<u8>,
    spans: HashTable<(usize, usize)>,
    hasher: DefaultHashBuilder,
}

impl Seen {
    fn new() -> Seen {
        Seen {
            bytes: Vec::new(),
            spans: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
        }
    }

    /// Adds `unit`; false if it was there already.
    fn insert(&mut self, unit: &str) -> bool {
        let unit = unit.as_bytes();
        let Seen { bytes, spans, hasher } = self;
        let hash = hasher.hash_one(unit);
        match spans.entry(
            hash,
            |&(start, end)| &bytes[start..end] == unit,
            |&(start, end)| hasher.hash_one(&bytes[start..end]),
        ) {
            hashbrown::hash_table::Entry::Occupied(_) => false,
            hashbrown::hash_table::Entry::Vacant(slot) => {
                let start = bytes.len();
                bytes.extend_from_slice(unit);
                slot.insert((start, bytes.len()));
                true
            }
        }
    }
}

/// Output rows not yet committed, as the output table's columns.
struct OutRows {
    unit: StringBuilder,
    decision_id: StringBuilder,
    variant: StringBuilder,
    propensity: Float64Builder,
    policy_version: UInt64Builder,
    revision: Int64Builder,
    control: BooleanBuilder,
    no_action: BooleanBuilder,
    len: usize,
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
    let with_context = !features.is_empty();
    let mut seen = Seen::new();
    let mut pending = Pending::new(rows_per_chunk, with_context);
    // Chunks decided, their buffers ready for another chunk.
    let mut spare: Vec<Pending> = Vec::new();
    let mut out_rows = OutRows::new();
    let mut in_flight = FuturesOrdered::new();
    let mut turn: Option<Turn> = None;
    let mut commits = Commits::new(Writer {
        ws: ws.clone(),
        output: output.clone(),
        run_id: run_id.clone(),
        input: table.clone(),
        input_version,
        deployment: job.deployment.clone(),
        caller: caller.clone(),
        lineage_in: false,
    });
    let outcome: Result<bool, BatchError> = async {
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
                if !seen.insert(unit) {
                    report.duplicates += 1;
                    continue;
                }
                if written.contains(unit) {
                    report.already_written += 1;
                    continue;
                }
                if let Some(decision) = logged.get(unit) {
                    report.recovered += 1;
                    out_rows.push(unit, decision);
                    continue;
                }
                pending.push(unit, &values, i);
                if pending.len() >= rows_per_chunk {
                    let next = spare
                        .pop()
                        .unwrap_or_else(|| Pending::new(rows_per_chunk, with_context));
                    let chunk = std::mem::replace(&mut pending, next);
                    if in_flight.len() >= 2
                        && let Some(done) = in_flight.next().await
                    {
                        collect(done?, &mut report, &mut out_rows, &mut spare);
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
                    if out_rows.len >= COMMIT_ROWS {
                        commits.start(&mut out_rows, &mut report).await?;
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
        if !cancelled && pending.len() > 0 {
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
                Ok(done) => collect(done, &mut report, &mut out_rows, &mut spare),
                Err(e) => failure = failure.or(Some(e)),
            }
            if out_rows.len >= COMMIT_ROWS {
                commits.start(&mut out_rows, &mut report).await?;
            }
        }
        commits.start(&mut out_rows, &mut report).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(cancelled),
        }
    }
    .await;
    // A commit still running finishes (and counts) before the run answers, even a failed one.
    let waited = commits.wait(&mut report).await;
    let cancelled = outcome?;
    waited?;
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
    fn new(capacity: usize, with_context: bool) -> Pending {
        Pending {
            units: String::new(),
            ends: Vec::with_capacity(capacity),
            contexts: Vec::with_capacity(if with_context { capacity } else { 0 }),
            with_context,
        }
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Empties the chunk, keeping its buffers (and its context maps) for the next.
    fn clear(&mut self) {
        self.units.clear();
        self.ends.clear();
    }

    /// Adds a row: `unit`, and its context from row `i` of `values`.
    fn push(&mut self, unit: &str, values: &[Values], i: usize) {
        self.units.push_str(unit);
        self.ends.push(self.units.len());
        if self.with_context {
            let n = self.ends.len() - 1;
            if n == self.contexts.len() {
                self.contexts.push(Map::new());
            }
            fill_context(&mut self.contexts[n], values, i);
        }
    }

    /// The rows as the deployment takes them.
    fn rows(&self) -> Vec<UnitContext<'_>> {
        let mut start = 0;
        self.ends
            .iter()
            .enumerate()
            .map(|(i, &end)| {
                let unit = &self.units[start..end];
                start = end;
                UnitContext {
                    unit,
                    context: self.with_context.then(|| &self.contexts[i]),
                }
            })
            .collect()
    }
}

/// A chunk's units and results (in row order), and its buffers to reuse.
type Decided = (Vec<String>, Vec<keel_experiments::Result<DecisionOut>>, Pending);

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
        let rows = chunk.rows();
        let decided = deciding.decide_many_now(&name, &rows, Some(&run));
        let _ = done.send(());
        drop(rows);
        (decided, chunk)
    });
    let acknowledged = async move {
        let (decided, chunk) = decided
            .await
            .map_err(|e| BatchError::Internal(format!("the decide task failed: {e}")))?;
        let (units, results) = decided?.durable_with_units(&deployments).await?;
        Ok((units, results, chunk))
    };
    (acknowledged, turn)
}

fn collect(
    (units, results, mut chunk): Decided,
    report: &mut DecideReport,
    out: &mut OutRows,
    spare: &mut Vec<Pending>,
) {
    for (unit, result) in units.iter().zip(results) {
        match result {
            Ok(decision) => {
                report.decided += 1;
                out.push(unit, &decision);
            }
            Err(e) => {
                report.refused += 1;
                report.refusals.add(e.code(), unit, &e.to_string());
            }
        }
    }
    chunk.clear();
    spare.push(chunk);
}

/// Appends output rows and records each commit (catalog, lineage). Owned, so that a commit
/// runs as its own task while the next chunks are decided.
struct Writer {
    ws: Workspace,
    output: TablePass<Write>,
    run_id: String,
    input: String,
    input_version: u64,
    deployment: String,
    caller: Caller,
    lineage_in: bool,
}

/// What one commit appended.
struct Committed {
    rows: u64,
    version: u64,
}

impl Writer {
    async fn commit(&mut self, batch: RecordBatch) -> Result<Committed, BatchError> {
        let n = batch.num_rows() as u64;
        let version = self.ws.write(&self.output, vec![batch], WriteMode::Append).await?;
        let details = serde_json::json!({ "run_id": self.run_id, "deployment": self.deployment, "rows": n });
        self.ws.record_commit(&self.output, version, false, details).await?;
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
        Ok(Committed { rows: n, version })
    }
}

/// The output's commits, in order and one at a time, each running beside the deciding of the
/// chunks that follow it (the output's Parquet encoding no longer stops the decisions).
struct Commits {
    /// The writer, when no commit is running.
    idle: Option<Writer>,
    running: Option<tokio::task::JoinHandle<(Writer, Result<Committed, BatchError>)>>,
}

impl Commits {
    fn new(writer: Writer) -> Commits {
        Commits {
            idle: Some(writer),
            running: None,
        }
    }

    /// Waits for the commit running, if any, and counts it in `report`.
    async fn wait(&mut self, report: &mut DecideReport) -> Result<(), BatchError> {
        let Some(task) = self.running.take() else {
            return Ok(());
        };
        let (writer, committed) = task
            .await
            .map_err(|e| BatchError::Internal(format!("the output commit task failed: {e}")))?;
        self.idle = Some(writer);
        let Committed { rows, version } = committed?;
        report.written += rows;
        report.commits += 1;
        report.output_version = Some(version);
        Ok(())
    }

    /// Starts appending `rows` (and empties them) once the commit before is done.
    async fn start(&mut self, rows: &mut OutRows, report: &mut DecideReport) -> Result<(), BatchError> {
        if rows.len == 0 {
            return Ok(());
        }
        self.wait(report).await?;
        let mut writer = self
            .idle
            .take()
            .ok_or_else(|| BatchError::Internal("the output writer was lost".into()))?;
        let batch = rows.batch(&writer.run_id)?;
        self.running = Some(tokio::spawn(async move {
            let committed = writer.commit(batch).await;
            (writer, committed)
        }));
        Ok(())
    }
}

impl OutRows {
    fn new() -> OutRows {
        OutRows {
            unit: StringBuilder::new(),
            decision_id: StringBuilder::new(),
            variant: StringBuilder::new(),
            propensity: Float64Builder::new(),
            policy_version: UInt64Builder::new(),
            revision: Int64Builder::new(),
            control: BooleanBuilder::new(),
            no_action: BooleanBuilder::new(),
            len: 0,
        }
    }

    fn push(&mut self, unit: &str, decision: &DecisionOut) {
        self.unit.append_value(unit);
        self.decision_id.append_value(&decision.decision_id);
        self.variant.append_option(decision.chosen());
        self.propensity.append_value(decision.propensity);
        self.policy_version.append_value(decision.policy_version);
        self.revision.append_value(decision.revision);
        self.control.append_value(decision.control);
        self.no_action.append_value(decision.no_action);
        self.len += 1;
    }

    /// The rows as the output table's columns: unit, decision_id, variant (null when the unit is
    /// held back with no action), propensity, policy_version, revision, control, no_action,
    /// run_id, decided_at. Leaves the builders empty.
    fn batch(&mut self, run_id: &str) -> Result<RecordBatch, BatchError> {
        let n = std::mem::take(&mut self.len);
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
            Arc::new(self.unit.finish()),
            Arc::new(self.decision_id.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.propensity.finish()),
            Arc::new(self.policy_version.finish()),
            Arc::new(self.revision.finish()),
            Arc::new(self.control.finish()),
            Arc::new(self.no_action.finish()),
            Arc::new(StringArray::from(vec![run_id; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ];
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| BatchError::Internal(e.to_string()))
    }
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

/// Makes `map` row `i`'s context: each feature's value, a null one left out (so the deployment
/// refuses that row with its own message: a missing feature). `map` holds only feature names
/// (it is only ever filled here), so overwriting the values in place leaves it equal to a map
/// built afresh, without allocating anything for a row like the one before.
fn fill_context(map: &mut Map<String, Value>, values: &[Values], i: usize) {
    for v in values {
        let (name, value) = match v {
            Values::Numeric(name, a) if !a.is_null(i) => {
                // Not finite: JSON has no such number; the deployment refuses it as not a number.
                let number = serde_json::Number::from_f64(a.value(i)).map_or(Value::Null, Value::Number);
                (name, number)
            }
            Values::Categorical(name, a) if !a.is_null(i) => {
                let level = a.value(i);
                if let Some(Value::String(s)) = map.get_mut(name.as_str()) {
                    s.clear();
                    s.push_str(level);
                    continue;
                }
                (name, Value::String(level.to_owned()))
            }
            Values::Numeric(name, _) | Values::Categorical(name, _) => {
                map.remove(name.as_str());
                continue;
            }
        };
        match map.get_mut(name.as_str()) {
            Some(slot) => *slot = value,
            None => {
                map.insert(name.clone(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row `i`'s context built afresh, as every row's was before maps were reused.
    fn fresh(values: &[Values], i: usize) -> Map<String, Value> {
        let mut map = Map::new();
        for v in values {
            match v {
                Values::Numeric(name, a) if !a.is_null(i) => {
                    let x = serde_json::Number::from_f64(a.value(i)).map_or(Value::Null, Value::Number);
                    map.insert(name.clone(), x);
                }
                Values::Categorical(name, a) if !a.is_null(i) => {
                    map.insert(name.clone(), Value::String(a.value(i).to_owned()));
                }
                _ => {}
            }
        }
        map
    }

    #[test]
    fn a_reused_context_map_equals_the_map_built_afresh_for_every_row() {
        let values = vec![
            Values::Numeric(
                "age".into(),
                Float64Array::from(vec![
                    Some(30.0),
                    None,
                    Some(f64::NAN),
                    Some(-0.0),
                    Some(f64::INFINITY),
                    Some(41.5),
                    None,
                ]),
            ),
            Values::Categorical(
                "segment".into(),
                StringArray::from(vec![
                    Some("loyal"),
                    Some("new"),
                    None,
                    Some(""),
                    Some("a much longer level than the ones before it"),
                    None,
                    Some("lapsed"),
                ]),
            ),
            Values::Numeric(
                "spend".into(),
                Float64Array::from(vec![
                    None,
                    Some(1.25),
                    Some(2.5),
                    None,
                    Some(1e300),
                    Some(0.1),
                    Some(7.0),
                ]),
            ),
        ];
        let n = 7;
        // Every row after every other row (and after itself), so each kind of value replaces
        // each kind, a null included.
        for before in 0..n {
            for i in 0..n {
                let mut map = Map::new();
                fill_context(&mut map, &values, before);
                assert_eq!(map, fresh(&values, before));
                fill_context(&mut map, &values, i);
                assert_eq!(map, fresh(&values, i), "row {i} after row {before}");
                assert_eq!(
                    serde_json::to_string(&map).expect("json"),
                    serde_json::to_string(&fresh(&values, i)).expect("json")
                );
            }
        }
    }

    #[test]
    fn a_chunk_hands_out_its_units_and_contexts_in_order_after_being_reused() {
        let values = vec![Values::Categorical(
            "segment".into(),
            StringArray::from(vec![Some("new"), None, Some("loyal")]),
        )];
        let mut chunk = Pending::new(2, true);
        chunk.push("c1", &values, 0);
        chunk.push("c22", &values, 2);
        chunk.push("c333", &values, 1);
        chunk.clear();
        chunk.push("é", &values, 2);
        chunk.push("", &values, 1);
        let rows = chunk.rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].unit, "é");
        assert_eq!(rows[0].context, Some(&fresh(&values, 2)));
        assert_eq!(rows[1].unit, "");
        assert_eq!(rows[1].context, Some(&fresh(&values, 1)));
        let without = {
            let mut c = Pending::new(2, false);
            c.push("u", &values, 0);
            c
        };
        assert!(without.rows()[0].context.is_none());
    }

    #[test]
    fn the_seen_set_holds_each_unit_once() {
        let mut seen = Seen::new();
        let units: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
        for u in &units {
            assert!(seen.insert(u));
        }
        for u in &units {
            assert!(!seen.insert(u), "{u} again");
        }
        // Prefixes and concatenations of units seen are other units.
        assert!(seen.insert("c"));
        assert!(seen.insert("c1c2"));
        assert!(seen.insert(""));
        assert!(!seen.insert(""));
        assert!(!seen.insert("c1c2"));
    }
}
