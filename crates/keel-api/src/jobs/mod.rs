//! Jobs inside the server: batch decide, batch score and feedback ingest run on its lake,
//! registry and running deployments, so an outside orchestrator (Airflow, Dagster) or
//! `keel ... --server URL` can start one, follow it and cancel it. One job table ([`Jobs`]), two
//! transports: REST under `/v1/jobs` ([`router`]) and gRPC `keel.jobs.v1.Jobs` ([`GrpcJobs`]);
//! a job started on one is seen and cancelled on the other. Behind the `lake` feature.
//!
//! - Start: `POST /v1/jobs` `{"kind": "batch_decide" | "batch_score" | "feedback_ingest", ...}`
//!   or `Jobs/Start` takes the same arguments as the command (`deployment`/`model`, `from`,
//!   `into`, ...) and answers at once (202) with the job; the job runs on the table's task
//!   tracker.
//! - Follow: `GET /v1/jobs`, `GET /v1/jobs/{id}`, `Jobs/List`, `Jobs/Get`: state (`queued`,
//!   `running`, `succeeded`, `failed`, `cancelled`), rows so far, the summary once done, the
//!   error if it failed. `Jobs/Watch` streams the status each time it changes (checked every
//!   [`WATCH_EVERY`]) until the job has finished.
//! - Cancel: `POST /v1/jobs/{id}/cancel`, `Jobs/Cancel`: the job stops between chunks; what it
//!   committed stays (a batch score, which commits once at its end, writes nothing).
//!
//! Scopes: starting or cancelling a job needs `decide` (the gate checks it: batch decide and
//! feedback ingest act on a deployment's decisions); a batch score also needs `data:write`,
//! checked here with the gate's own refusal (403 `forbidden`, gRPC `PERMISSION_DENIED`); listing
//! and following jobs need `view`. Tables are checked per table for the authenticated
//! principal, as on `/v1/data`; the job records who started it. Every start and end is written
//! to the change log (`job_started`, `job_succeeded`, `job_failed`, `job_cancelled`, subject
//! `job/ID`). Jobs are kept in memory: a restart forgets them (their outcome stays in the
//! change log, their decisions in the decision log and their committed rows in the lake;
//! running a batch decide again resumes without deciding twice).

mod grpc;
mod rest;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_auth::{AuthError, Credential, Principal, Scope};
use keel_batch::{Control, RewardKey};
use keel_data::{Caller, Workspace};
use keel_experiments::Deployments;
use keel_registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::task::TaskTracker;

use crate::error::ApiError;

pub use grpc::GrpcJobs;
pub use rest::router;

/// Finished jobs kept for listing (the oldest finished ones are forgotten first).
const KEEP_FINISHED: usize = 1000;

/// How often `Jobs/Watch` looks at a job's rows and state.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);

/// The server's job table and the operations both transports call.
#[derive(Clone)]
pub struct Jobs {
    ws: Workspace,
    registry: Registry,
    deployments: Arc<Deployments>,
    jobs: Arc<Mutex<BTreeMap<String, Arc<Job>>>>,
    tasks: TaskTracker,
    next: Arc<AtomicU64>,
}

impl Jobs {
    /// An empty job table over a lake (through `ws`), a registry and the running deployments.
    pub fn new(ws: Workspace, registry: Registry, deployments: Arc<Deployments>) -> Jobs {
        Jobs {
            ws,
            registry,
            deployments,
            jobs: Arc::new(Mutex::new(BTreeMap::new())),
            tasks: TaskTracker::new(),
            next: Arc::new(AtomicU64::new(1)),
        }
    }

    /// Checks and queues `request` for `principal`; the job runs in the background.
    async fn start(&self, principal: &Principal, request: JobRequest) -> Result<Arc<Job>, ApiError> {
        require(principal, request.scope())?;
        let caller = caller(&self.ws, principal).await?;
        check_request(self, &request)?;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("job-{}-{n}", now());
        let job = Arc::new(Job {
            id: id.clone(),
            request,
            principal: principal.name.clone(),
            created_at_ms: now(),
            control: Control::new(),
            status: Mutex::new(Status {
                state: JobState::Queued,
                started_at_ms: None,
                finished_at_ms: None,
                summary: None,
                error: None,
            }),
        });
        {
            let mut jobs = self
                .jobs
                .lock()
                .map_err(|_| internal("the job table lock is poisoned"))?;
            // One batch decide per deployment at a time: two would both read the run's decisions
            // before deciding, and could decide a unit twice.
            if let JobRequest::BatchDecide { deployment, .. } = &job.request
                && let Some(other) = jobs.values().find(|other| {
                    !other.state().finished()
                        && matches!(&other.request, JobRequest::BatchDecide { deployment: d, .. } if d == deployment)
                })
            {
                return Err(keel_batch::BatchError::Busy(format!(
                    "job {} is already deciding for deployment '{deployment}'; wait for it or cancel it (POST /v1/jobs/{}/cancel)",
                    other.id, other.id
                ))
                .into());
            }
            forget_old(&mut jobs);
            jobs.insert(id.clone(), job.clone());
        }
        record(self, &job, "job_started", json!({ "request": job.request })).await;
        let (table, task_job) = (self.clone(), job.clone());
        self.tasks.spawn(async move { run(table, task_job, caller).await });
        Ok(job)
    }

    /// Every job in the table, oldest first.
    fn list(&self) -> Result<Vec<Arc<Job>>, ApiError> {
        Ok(self
            .jobs
            .lock()
            .map_err(|_| internal("the job table lock is poisoned"))?
            .values()
            .cloned()
            .collect())
    }

    /// The job `id`.
    fn find(&self, id: &str) -> Result<Arc<Job>, ApiError> {
        self.jobs
            .lock()
            .map_err(|_| internal("the job table lock is poisoned"))?
            .get(id)
            .cloned()
            .ok_or_else(|| keel_batch::BatchError::UnknownJob(id.escape_default().to_string()).into())
    }

    /// Asks job `id` to stop between chunks, as `principal` (who needs the scope starting it
    /// needs); a finished job is left as it is.
    async fn cancel(&self, principal: &Principal, id: &str) -> Result<Arc<Job>, ApiError> {
        let job = self.find(id)?;
        require(principal, job.request.scope())?;
        if !job.state().finished() {
            job.control.cancel();
            if let Err(e) = self
                .ws
                .catalog()
                .store()
                .record_change(
                    &principal.name,
                    "job_cancel_requested",
                    &format!("job/{}", job.id),
                    &json!({}),
                )
                .await
            {
                tracing::error!(job = %job.id, error = %e, "could not record a job cancellation");
            }
        }
        Ok(job)
    }
}

/// What a job is asked to do, the command's arguments: the body of `POST /v1/jobs` (and what a
/// job's record shows). The CLI's `--server URL` sends this type, so the two cannot drift apart.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum JobRequest {
    BatchDecide {
        deployment: String,
        from: String,
        unit_column: String,
        into: String,
        #[serde(default)]
        run_id: Option<String>,
        #[serde(default)]
        batch_rows: Option<usize>,
    },
    BatchScore {
        model: String,
        from: String,
        into: String,
        #[serde(default)]
        keep: Vec<String>,
        #[serde(default)]
        features: Vec<String>,
        #[serde(default)]
        run_id: Option<String>,
        #[serde(default)]
        batch_rows: Option<usize>,
    },
    FeedbackIngest {
        deployment: String,
        from: String,
        #[serde(default)]
        decision_column: Option<String>,
        #[serde(default)]
        unit_column: Option<String>,
        #[serde(default)]
        run_id: Option<String>,
        /// The reward's column; may be left out when `metrics` names other metrics.
        #[serde(default)]
        reward_column: Option<String>,
        /// Other declared metrics: metric name -> column.
        #[serde(default)]
        metrics: std::collections::BTreeMap<String, String>,
        #[serde(default)]
        batch_rows: Option<usize>,
    },
}

impl JobRequest {
    fn kind(&self) -> &'static str {
        match self {
            JobRequest::BatchDecide { .. } => "batch_decide",
            JobRequest::BatchScore { .. } => "batch_score",
            JobRequest::FeedbackIngest { .. } => "feedback_ingest",
        }
    }

    /// The scope starting or cancelling this kind of job needs beside `decide`.
    fn scope(&self) -> Scope {
        match self {
            JobRequest::BatchDecide { .. } | JobRequest::FeedbackIngest { .. } => Scope::Decide,
            JobRequest::BatchScore { .. } => Scope::DataWrite,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    fn finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed | JobState::Cancelled)
    }
}

/// One job: what was asked, by whom, and how far it got.
struct Job {
    id: String,
    request: JobRequest,
    principal: String,
    created_at_ms: i64,
    control: Control,
    status: Mutex<Status>,
}

#[derive(Debug, Clone)]
struct Status {
    state: JobState,
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    summary: Option<Value>,
    error: Option<Value>,
}

impl Job {
    fn view(&self) -> Value {
        let status = self.snapshot();
        json!({
            "id": self.id,
            "kind": self.request.kind(),
            "state": status.state,
            "principal": self.principal,
            "request": self.request,
            "rows": self.control.rows(),
            "created_at_ms": self.created_at_ms,
            "started_at_ms": status.started_at_ms,
            "finished_at_ms": status.finished_at_ms,
            "summary": status.summary,
            "error": status.error,
        })
    }

    /// The status now.
    fn snapshot(&self) -> Status {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    fn set(&self, change: impl FnOnce(&mut Status)) {
        match self.status.lock() {
            Ok(mut s) => change(&mut s),
            Err(p) => change(&mut p.into_inner()),
        }
    }

    fn state(&self) -> JobState {
        self.status.lock().map(|s| s.state).unwrap_or(JobState::Failed)
    }
}

/// Milliseconds since the Unix epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The caller a job acts as: the authenticated principal (jobs read and write tables whose
/// grants are per person, so a credential is needed even where authentication is off).
async fn caller(ws: &Workspace, principal: &Principal) -> Result<Caller, ApiError> {
    if principal.credential == Credential::Anonymous {
        return Err(keel_catalog::CatalogError::Unauthenticated(
            "jobs act as a person whose grants are checked per table: send `Authorization: Bearer <token>` \
             (keel access token create NAME --scope decide)"
                .into(),
        )
        .into());
    }
    Ok(ws.api_caller(&principal.name).await?)
}

/// The scope a job's kind needs, refused like the gate refuses.
fn require(principal: &Principal, scope: Scope) -> Result<(), ApiError> {
    if principal.scopes.allows(scope) {
        return Ok(());
    }
    Err(AuthError::Forbidden {
        principal: principal.name.clone(),
        needed: scope,
        held: principal
            .scopes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(" "),
    }
    .into())
}

/// Refuses what no job could run, before it is queued.
fn check_request(state: &Jobs, request: &JobRequest) -> Result<(), ApiError> {
    let from = match request {
        JobRequest::BatchDecide { deployment, from, .. } | JobRequest::FeedbackIngest { deployment, from, .. } => {
            state.deployments.get(deployment)?;
            from
        }
        JobRequest::BatchScore { from, .. } => from,
    };
    if keel_batch::is_file(from) {
        return Err(keel_batch::BatchError::Invalid(format!(
            "{from:?} is a file path; a server job reads lake tables only (ingest the file with `keel data ingest FILE --table NAME` first)"
        ))
        .into());
    }
    if let JobRequest::FeedbackIngest {
        decision_column,
        unit_column,
        run_id,
        ..
    } = request
    {
        RewardKey::from_columns(decision_column.clone(), unit_column.clone(), run_id.clone())?;
    }
    Ok(())
}

/// Runs a job to its end and records the outcome.
async fn run(state: Jobs, job: Arc<Job>, caller: Caller) {
    job.set(|s| {
        s.state = JobState::Running;
        s.started_at_ms = Some(now());
    });
    let outcome: Result<Value, keel_batch::BatchError> = match &job.request {
        JobRequest::BatchDecide {
            deployment,
            from,
            unit_column,
            into,
            run_id,
            batch_rows,
        } => {
            let spec = keel_batch::DecideJob {
                deployment: deployment.clone(),
                from: from.clone(),
                unit_column: unit_column.clone(),
                into: into.clone(),
                run_id: run_id.clone(),
                batch_rows: batch_rows.unwrap_or(8192),
            };
            keel_batch::decide(&state.ws, &state.deployments, &caller, &spec, &job.control)
                .await
                .map(|r| json!(r))
        }
        JobRequest::FeedbackIngest {
            deployment,
            from,
            decision_column,
            unit_column,
            run_id,
            reward_column,
            metrics,
            batch_rows,
        } => {
            // Checked before the job was queued (`check_request`).
            match RewardKey::from_columns(decision_column.clone(), unit_column.clone(), run_id.clone()) {
                Ok(key) => {
                    let spec = keel_batch::IngestJob {
                        deployment: deployment.clone(),
                        from: from.clone(),
                        key,
                        reward_column: reward_column.clone(),
                        metric_columns: metrics.clone(),
                        batch_rows: batch_rows.unwrap_or(8192),
                        files: false,
                    };
                    keel_batch::ingest(&state.ws, &state.deployments, &caller, &spec, &job.control)
                        .await
                        .map(|r| json!(r))
                }
                Err(e) => Err(e),
            }
        }
        JobRequest::BatchScore {
            model,
            from,
            into,
            keep,
            features,
            run_id,
            batch_rows,
        } => {
            let spec = keel_batch::ScoreJob {
                model: model.clone(),
                from: from.clone(),
                into: into.clone(),
                keep: keep.clone(),
                features: features.clone(),
                run_id: run_id.clone(),
                batch_rows: batch_rows.unwrap_or(4096),
            };
            let control = job.control.clone();
            let progress = move |rows: u64| control.set_rows(rows);
            // A score commits once at its end: cancelling it drops the run before that commit.
            let scoring = keel_batch::score(&state.ws, &state.registry, &caller, &spec, &progress);
            tokio::select! {
                r = scoring => r.map(|r| json!(r)),
                () = cancelled(&job.control) => Err(keel_batch::BatchError::Cancelled { rows: job.control.rows(), written: 0 }),
            }
        }
    };
    let (state_now, kind, details) = match outcome {
        Ok(summary) => {
            let details = json!({ "summary": summary });
            job.set(|s| s.summary = Some(summary));
            (JobState::Succeeded, "job_succeeded", details)
        }
        Err(e) => {
            let cancelled = matches!(e, keel_batch::BatchError::Cancelled { .. });
            let error = json!({ "code": e.code(), "message": e.to_string() });
            if !cancelled && e.kind().is_server_fault() {
                tracing::error!(job = %job.id, error = %e, "job failed");
            }
            job.set(|s| s.error = Some(error.clone()));
            if cancelled {
                (JobState::Cancelled, "job_cancelled", json!({ "error": error }))
            } else {
                (JobState::Failed, "job_failed", json!({ "error": error }))
            }
        }
    };
    job.set(|s| {
        s.state = state_now;
        s.finished_at_ms = Some(now());
    });
    record(&state, &job, kind, details).await;
}

/// Resolves once `control` is cancelled (polled: cancellation is checked between chunks too).
async fn cancelled(control: &Control) {
    while !control.is_cancelled() {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Writes a job's start or end to the change log, as the principal who started it.
async fn record(state: &Jobs, job: &Job, kind: &'static str, mut details: Value) {
    details["kind"] = json!(job.request.kind());
    details["rows"] = json!(job.control.rows());
    if let Err(e) = state
        .ws
        .catalog()
        .store()
        .record_change(&job.principal, kind, &format!("job/{}", job.id), &details)
        .await
    {
        tracing::error!(job = %job.id, error = %e, "could not record a job in the change log");
    }
}

fn forget_old(jobs: &mut BTreeMap<String, Arc<Job>>) {
    let finished: Vec<String> = jobs
        .iter()
        .filter(|(_, j)| j.state().finished())
        .map(|(id, _)| id.clone())
        .collect();
    if finished.len() > KEEP_FINISHED {
        for id in finished.iter().take(finished.len() - KEEP_FINISHED) {
            jobs.remove(id);
        }
    }
}

fn internal(message: &str) -> ApiError {
    keel_batch::BatchError::Internal(message.into()).into()
}
