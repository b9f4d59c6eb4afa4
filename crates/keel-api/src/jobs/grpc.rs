//! `keel.jobs.v1.Jobs` over gRPC: the job table's operations as typed messages.

use std::pin::Pin;
use std::sync::Arc;

use keel_auth::Principal;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{JobRequest, JobState, Jobs, WATCH_EVERY};
use crate::error::{ApiError, grpc_code};
use crate::jobs_proto::jobs_server::Jobs as JobsApi;
use crate::jobs_proto::{self as pb, start_job_request::Job as Kind};

/// The gRPC service over a server's job table.
pub struct GrpcJobs {
    jobs: Jobs,
}

impl GrpcJobs {
    pub fn new(jobs: Jobs) -> GrpcJobs {
        GrpcJobs { jobs }
    }

    /// The service, ready to add to a tonic router.
    pub fn server(jobs: Jobs) -> pb::jobs_server::JobsServer<GrpcJobs> {
        pb::jobs_server::JobsServer::new(GrpcJobs::new(jobs))
    }
}

fn status(e: ApiError) -> Status {
    if e.kind().is_server_fault() {
        tracing::error!(code = e.code(), error = %e.message(), "grpc jobs request failed");
    }
    Status::new(grpc_code(e.kind()), e.message())
}

/// The principal the gate authenticated (every method of this service needs a scope, so the
/// gate always sets one).
fn principal<T>(req: &Request<T>) -> Result<Arc<Principal>, Status> {
    req.extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .ok_or_else(|| Status::internal("the call reached the jobs service without a principal"))
}

/// `value`, refused when empty: every job names its deployment or model and its tables.
fn required(value: String, field: &str, kind: &str) -> Result<String, Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{kind}.{field} is required (see proto/keel_jobs.proto)"
        )));
    }
    Ok(value)
}

fn optional(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

fn rows(n: u32) -> Option<usize> {
    (n > 0).then_some(n as usize)
}

/// The typed request as the job table's request (the same one REST decodes from JSON).
fn request(kind: Option<Kind>) -> Result<JobRequest, Status> {
    Ok(match kind {
        None => {
            return Err(Status::invalid_argument(
                "name the job: set one of batch_decide, batch_score or feedback_ingest",
            ));
        }
        Some(Kind::BatchDecide(j)) => JobRequest::BatchDecide {
            deployment: required(j.deployment, "deployment", "batch_decide")?,
            from: required(j.from, "from", "batch_decide")?,
            unit_column: required(j.unit_column, "unit_column", "batch_decide")?,
            into: required(j.into, "into", "batch_decide")?,
            run_id: optional(j.run_id),
            batch_rows: rows(j.batch_rows),
        },
        Some(Kind::BatchScore(j)) => JobRequest::BatchScore {
            model: required(j.model, "model", "batch_score")?,
            from: required(j.from, "from", "batch_score")?,
            into: required(j.into, "into", "batch_score")?,
            keep: j.keep,
            features: j.features,
            run_id: optional(j.run_id),
            batch_rows: rows(j.batch_rows),
        },
        Some(Kind::FeedbackIngest(j)) => JobRequest::FeedbackIngest {
            deployment: required(j.deployment, "deployment", "feedback_ingest")?,
            from: required(j.from, "from", "feedback_ingest")?,
            decision_column: optional(j.decision_column),
            unit_column: optional(j.unit_column),
            run_id: optional(j.run_id),
            reward_column: optional(j.reward_column),
            metrics: j.metrics.into_iter().collect(),
            batch_rows: rows(j.batch_rows),
        },
    })
}

fn state(s: JobState) -> pb::JobState {
    match s {
        JobState::Queued => pb::JobState::Queued,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

fn message(job: &super::Job) -> pb::Job {
    let status = job.snapshot();
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    pb::Job {
        id: job.id.clone(),
        kind: job.request.kind().to_owned(),
        state: state(status.state).into(),
        principal: job.principal.clone(),
        rows: job.control.rows(),
        created_at_ms: job.created_at_ms,
        started_at_ms: status.started_at_ms.unwrap_or_default(),
        finished_at_ms: status.finished_at_ms.unwrap_or_default(),
        request_json: serde_json::to_string(&job.request).unwrap_or_default(),
        summary_json: status.summary.as_ref().map(|s| s.to_string()).unwrap_or_default(),
        error_code: status.error.as_ref().map(|e| text(&e["code"])).unwrap_or_default(),
        error_message: status.error.as_ref().map(|e| text(&e["message"])).unwrap_or_default(),
    }
}

type JobStream = Pin<Box<dyn Stream<Item = Result<pb::Job, Status>> + Send>>;

#[tonic::async_trait]
impl JobsApi for GrpcJobs {
    async fn start(&self, req: Request<pb::StartJobRequest>) -> Result<Response<pb::Job>, Status> {
        let principal = principal(&req)?;
        let request = request(req.into_inner().job)?;
        let job = self.jobs.start(&principal, request).await.map_err(status)?;
        Ok(Response::new(message(&job)))
    }

    async fn get(&self, req: Request<pb::GetJobRequest>) -> Result<Response<pb::Job>, Status> {
        let job = self.jobs.find(&req.into_inner().id).map_err(status)?;
        Ok(Response::new(message(&job)))
    }

    async fn list(&self, _: Request<pb::ListJobsRequest>) -> Result<Response<pb::ListJobsResponse>, Status> {
        let jobs = self.jobs.list().map_err(status)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(|j| message(j)).collect(),
        }))
    }

    async fn cancel(&self, req: Request<pb::CancelJobRequest>) -> Result<Response<pb::Job>, Status> {
        let principal = principal(&req)?;
        let job = self
            .jobs
            .cancel(&principal, &req.into_inner().id)
            .await
            .map_err(status)?;
        Ok(Response::new(message(&job)))
    }

    type WatchStream = JobStream;

    async fn watch(&self, req: Request<pb::GetJobRequest>) -> Result<Response<JobStream>, Status> {
        let job = self.jobs.find(&req.into_inner().id).map_err(status)?;
        // One message now, then one per change, until the job has finished: the sender stops
        // when the job ends or the client goes away.
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut last: Option<pb::Job> = None;
            loop {
                let now = message(&job);
                // From the message itself, so the last message sent is the finished one.
                let finished = matches!(
                    pb::JobState::try_from(now.state),
                    Ok(pb::JobState::Succeeded | pb::JobState::Failed | pb::JobState::Cancelled)
                );
                let changed = last.as_ref().is_none_or(|l| l.state != now.state || l.rows != now.rows);
                if changed {
                    if tx.send(Ok(now.clone())).await.is_err() {
                        return;
                    }
                    last = Some(now);
                }
                if finished {
                    return;
                }
                tokio::select! {
                    () = tokio::time::sleep(WATCH_EVERY) => {}
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
