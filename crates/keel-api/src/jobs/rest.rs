//! `/v1/jobs` over REST: the job table's operations as JSON routes.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_auth::{Principal, Scope};
use serde_json::{Value, json};

use super::{JobRequest, Jobs};
use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};

#[derive(Clone)]
struct RestJobs {
    jobs: Jobs,
    max_body: usize,
}

/// The `/v1/jobs` routes over `jobs` (bodies up to `max_body` bytes).
pub fn router(jobs: Jobs, max_body: usize) -> Routes {
    let (view, decide) = (Need::Scope(Scope::View), Need::Scope(Scope::Decide));
    Routes::new()
        .post("/v1/jobs", decide, start)
        .get("/v1/jobs", view, list)
        .get("/v1/jobs/{id}", view, show)
        .post("/v1/jobs/{id}/cancel", decide, cancel)
        .with_state(RestJobs { jobs, max_body })
}

async fn start(
    State(state): State<RestJobs>,
    Extension(principal): Extension<Arc<Principal>>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, state.max_body).await?;
    let request: JobRequest = serde_json::from_slice(&body).map_err(|e| {
        keel_batch::BatchError::Invalid(format!(
            "the body must be a job: {{\"kind\": \"batch_decide\" | \"batch_score\" | \"feedback_ingest\", ...the command's arguments}}: {e}"
        ))
    })?;
    let job = state.jobs.start(&principal, request).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job.view())).into_response())
}

async fn list(State(state): State<RestJobs>) -> Result<Response, ApiError> {
    let jobs: Vec<Value> = state.jobs.list()?.iter().map(|j| j.view()).collect();
    Ok(axum::Json(json!({ "jobs": jobs })).into_response())
}

async fn show(State(state): State<RestJobs>, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(axum::Json(state.jobs.find(&id)?.view()).into_response())
}

async fn cancel(
    State(state): State<RestJobs>,
    Path(id): Path<String>,
    Extension(principal): Extension<Arc<Principal>>,
) -> Result<Response, ApiError> {
    let job = state.jobs.cancel(&principal, &id).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(job.view())).into_response())
}
