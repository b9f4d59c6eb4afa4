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

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use hashbrown::{HashMap, HashSet};
use keel_data::{Caller, TablePass, Workspace, Write};
use keel_experiments::{DecisionOut, DeploymentSpec, Deployments};
use keel_lake::VersionOrTimestamp;
use keel_lake::arrow::array::Array;
use serde::{Deserialize, Serialize};

use crate::columns::string_column;
use crate::control::{Control, Refusals};
use crate::in_flight::InFlight;
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

mod input;
mod output;

use input::{Feature, Pending, Seen, check_columns, feature_columns};
use output::{Commits, OutRows, Writer};

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
    let mut in_flight = InFlight::new();
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
                    if let Some(done) = in_flight.room().await {
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
                    in_flight.push(acknowledged);
                    if out_rows.len >= COMMIT_ROWS {
                        commits.start(&mut out_rows).await?;
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
            in_flight.push(acknowledged);
        }
        // Every decision made is durable in the log; write them all, even when cancelled.
        let mut failure = None;
        while let Some(done) = in_flight.next().await {
            match done {
                Ok(done) => collect(done, &mut report, &mut out_rows, &mut spare),
                Err(e) => failure = failure.or(Some(e)),
            }
            if out_rows.len >= COMMIT_ROWS {
                commits.start(&mut out_rows).await?;
            }
        }
        commits.start(&mut out_rows).await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(cancelled),
        }
    }
    .await;
    // A commit still running finishes (and counts) before the run answers, even a failed one.
    let waited = commits.wait().await;
    report.written += commits.written;
    report.commits += commits.count;
    let cancelled = outcome?;
    waited?;
    report.output_version = match commits.version {
        Some(v) => Some(v),
        None if ws.lake().exists(&job.into).await? => Some(ws.lake().latest_version(&job.into).await?),
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
