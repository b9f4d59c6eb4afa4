//! `POST /v1/labels`: ground truth for logged predictions.
//!
//! A label names the `prediction_id` a prediction returned (and the row, default 0). Labels
//! are validated all at once (a bad item refuses the whole request with 400, nothing stored)
//! and written to the lake's `labels` table before the answer. A well-formed label whose
//! prediction is unknown is stored too (its prediction may still be in the log's queue, or
//! arrive from another server): the performance report counts and names such unmatched labels.
//! Labels of predictions a deployment's live monitor remembers also feed its live AUC.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use keel_predlog::{LabelIn, PredictionLog, PredlogError};
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};
use keel_auth::Scope;

#[derive(Clone)]
struct LabelState {
    log: Option<Arc<PredictionLog>>,
    experiments: Option<Arc<keel_experiments::Deployments>>,
    max_body: usize,
}

pub fn router(
    log: Option<Arc<PredictionLog>>,
    experiments: Option<Arc<keel_experiments::Deployments>>,
    max_body: usize,
) -> Routes {
    Routes::new()
        .post("/v1/labels", Need::Scope(Scope::Decide), labels)
        .with_state(LabelState {
            log,
            experiments,
            max_body,
        })
}

/// Either a bare array or `{"labels": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsBody {
    Bare(Vec<LabelIn>),
    Wrapped { labels: Vec<LabelIn> },
}

async fn labels(State(s): State<LabelState>, req: Request) -> Result<Response, ApiError> {
    // The body first, as on every route: past the limit is a 413 whether or not logging is on.
    let body = read_body(req.into_body(), s.max_body).await?;
    let Some(log) = s.log else {
        return Err(PredlogError::Disabled.into());
    };
    let items = match serde_json::from_slice::<LabelsBody>(&body) {
        Ok(LabelsBody::Bare(v) | LabelsBody::Wrapped { labels: v }) => v,
        Err(e) => {
            return Err(PredlogError::Invalid(format!(
                "malformed labels JSON ({e}): send [{{\"prediction_id\": \"...\", \"row\": 0, \"label\": 1}}]"
            ))
            .into());
        }
    };
    let records = keel_predlog::validate_labels(&items, keel_predlog::now_us())?;
    let stored = log.write_labels(&records).await?;
    let live = s.experiments.as_ref().map_or(0, |e| e.observe_labels(&records));
    Ok(axum::Json(serde_json::json!({
        "stored": stored,
        "live_monitor_matched": live,
        "matching": "labels are joined to predictions by keel monitor performance, which counts unmatched ones",
    }))
    .into_response())
}
