//! `GET /v1/deployments/{name}/timeline?bucket=auto|30s|5m|1h|1d`: each variant's decisions,
//! share and reward rate per bucket of time, from the deployment's decision log
//! (`keel_experiments::offline::timeline`, the call the console's charts make too, through the
//! same [`Timelines`], which the console keeps current).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use keel_auth::Scope;
use keel_experiments::offline::timeline::{BucketSize, Timelines};
use keel_experiments::{DeploymentError, Deployments};
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TimelineQuery {
    bucket: Option<String>,
}

#[derive(Clone)]
struct TimelineState {
    experiments: Arc<Deployments>,
    /// Each deployment's timeline, followed as its log grows.
    timelines: Arc<Timelines>,
}

pub(crate) fn router(experiments: Arc<Deployments>, timelines: Arc<Timelines>) -> Routes {
    Routes::new()
        .get("/v1/deployments/{name}/timeline", Need::Scope(Scope::View), timeline)
        .with_state(TimelineState { experiments, timelines })
}

async fn timeline(
    State(s): State<TimelineState>,
    Path(name): Path<String>,
    query: Result<Query<TimelineQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::from(DeploymentError::InvalidRequest(format!(
            "{}; the timeline takes only ?bucket=auto or a size such as 30s, 5m, 1h, 1d",
            e.body_text()
        )))
    })?;
    let size = BucketSize::parse(query.bucket.as_deref().unwrap_or("auto"))?;
    let timeline = s.timelines.of_running(&s.experiments, &name, size).await?;
    Ok(axum::Json(timeline).into_response())
}
