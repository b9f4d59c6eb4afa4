//! Batch REST routes of deployments: many decisions or rewards in one request, so one client
//! connection is not held to one round trip per decision.
//!
//! `POST /v1/deployments/{name}/decide:batch` `{"requests": [decide body, ...]}` and
//! `POST /v1/deployments/{name}/feedback:batch` `{"events": [{decision_id, reward, metrics}, ...]}`
//! answer one result per item, in order and carrying its `index`: the decision (or the
//! reward's outcome), or the item's own `error` and `code`. A bad item never fails or loses the
//! others. Every decision is logged durably before the answer, exactly as a single decide
//! (acknowledged = logged): a batch of plain decisions (a unit each, no model inputs, no
//! eligibility) goes through `Deployments::decide_many` (one lock and one durable wait for
//! the whole batch), any other batch through `Deployments::decide_request` per item, run
//! together so their log writes share group commits. At most [`MAX_BATCH`] items per request
//! (413 `batch_too_large` past it). The scopes are those of single decide and feedback.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use keel_auth::Scope;
use keel_experiments::{DecideRequest, DecisionOut, DeploymentError, Deployments, FeedbackIn, UnitContext};
use keel_types::{ErrorKind, KeelError};
use serde_json::value::RawValue;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};

/// The most items one batch request may carry.
pub const MAX_BATCH: usize = 10_000;

#[derive(Clone)]
struct BatchState {
    experiments: Arc<Deployments>,
    max_body: usize,
}

type BatchResult<T> = std::result::Result<T, ApiError>;

/// Why a whole batch request is refused (an item's own failure is reported in its result).
#[derive(Debug, thiserror::Error)]
enum BatchError {
    #[error("the batch has {given} items, more than the {max} a request may carry; split it into several requests")]
    TooMany { given: usize, max: usize },
    #[error("malformed request JSON: {0}; send {{\"{1}\": [...]}}")]
    Malformed(String, &'static str),
}

impl KeelError for BatchError {
    fn kind(&self) -> ErrorKind {
        match self {
            BatchError::TooMany { .. } => ErrorKind::PayloadTooLarge,
            BatchError::Malformed(..) => ErrorKind::InvalidArgument,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            BatchError::TooMany { .. } => "batch_too_large",
            BatchError::Malformed(..) => "invalid_request",
        }
    }
}

pub fn router(experiments: Arc<Deployments>, max_body: usize) -> Routes {
    let decide = Need::Scope(Scope::Decide);
    Routes::new()
        .post("/v1/deployments/{name}/decide:batch", decide, decide_batch)
        .post("/v1/deployments/{name}/feedback:batch", decide, feedback_batch)
        .with_state(BatchState { experiments, max_body })
}

/// The older `POST /v1/deployments/{name}/feedback/batch`, mounted with the deployments' routes.
pub(crate) fn deprecated_router(experiments: Arc<Deployments>, max_body: usize) -> Routes {
    Routes::new()
        .post(
            "/v1/deployments/{name}/feedback/batch",
            Need::Scope(Scope::Decide),
            deprecated_feedback_batch,
        )
        .with_state(BatchState { experiments, max_body })
}

/// Reads `{"<field>": [item, ...]}` keeping each item's text, so an item that does not parse
/// fails alone and is parsed once.
fn items<'a>(body: &'a [u8], field: &'static str) -> BatchResult<Vec<&'a RawValue>> {
    let outer: std::collections::BTreeMap<String, &RawValue> =
        serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string(), field))?;
    if let Some(other) = outer.keys().find(|k| *k != field) {
        return Err(BatchError::Malformed(format!("unknown field {other:?}"), field).into());
    }
    let list = outer
        .get(field)
        .ok_or_else(|| BatchError::Malformed(format!("no {field:?} field"), field))?;
    let list: Vec<&RawValue> = serde_json::from_str(list.get())
        .map_err(|e| BatchError::Malformed(format!("{field:?} is not a list: {e}"), field))?;
    if list.len() > MAX_BATCH {
        return Err(BatchError::TooMany {
            given: list.len(),
            max: MAX_BATCH,
        }
        .into());
    }
    Ok(list)
}

/// An item's failure as its result says it.
fn item_error(index: usize, e: &dyn KeelError) -> serde_json::Value {
    serde_json::json!({ "index": index, "error": e.to_string(), "code": e.code() })
}

fn decided(index: usize, out: &DecisionOut) -> serde_json::Value {
    serde_json::json!({ "index": index, "decision": out })
}

fn decode_item(raw: &RawValue) -> Result<DecideRequest, DeploymentError> {
    crate::experiments::decode_decide(raw.get().as_bytes())
}

async fn decide_batch(State(s): State<BatchState>, Path(name): Path<String>, req: Request) -> BatchResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let raw = items(&body, "requests")?;
    // A missing deployment fails the request as a whole, not each item.
    s.experiments.get(&name)?;
    let decoded: Vec<Result<DecideRequest, DeploymentError>> = raw.iter().map(|r| decode_item(r)).collect();
    let plain = decoded
        .iter()
        .all(|d| matches!(d, Ok(r) if r.unit.is_some() && r.inputs.is_none() && r.eligible.is_none()));
    let mut results: Vec<serde_json::Value> = Vec::with_capacity(decoded.len());
    if plain && !decoded.is_empty() {
        let rows: Vec<UnitContext<'_>> = decoded
            .iter()
            .filter_map(|d| d.as_ref().ok())
            .map(|r| UnitContext {
                unit: r.unit.as_deref().unwrap_or_default(),
                context: r.context.as_ref(),
            })
            .collect();
        match s.experiments.decide_many(&name, &rows, None).await {
            Ok(outs) => {
                for (index, out) in outs.iter().enumerate() {
                    results.push(match out {
                        Ok(out) => decided(index, out),
                        Err(e) => item_error(index, e),
                    });
                }
                crate::metrics_endpoint::count_decisions(
                    &name,
                    "rest_batch",
                    outs.iter().filter(|o| o.is_ok()).count(),
                );
                return Ok(answer(results));
            }
            // Model variants need inputs per item: each item below says so on its own.
            Err(e) if e.kind() == ErrorKind::InvalidArgument => {}
            Err(e) => return Err(e.into()),
        }
    }
    let experiments = &s.experiments;
    let runs = decoded.into_iter().map(|d| {
        let name = name.as_str();
        async move {
            match d {
                Ok(request) => experiments.decide_request(name, request).await,
                Err(e) => Err(e),
            }
        }
    });
    let outs = futures::future::join_all(runs).await;
    for (index, out) in outs.iter().enumerate() {
        results.push(match out {
            Ok(out) => decided(index, out),
            Err(e) => item_error(index, e),
        });
    }
    crate::metrics_endpoint::count_decisions(&name, "rest_batch", outs.iter().filter(|o| o.is_ok()).count());
    Ok(answer(results))
}

/// `{"results": [...], "ok": n, "failed": m}`.
fn answer(results: Vec<serde_json::Value>) -> Response {
    let failed = results.iter().filter(|r| r.get("error").is_some()).count();
    axum::Json(serde_json::json!({ "ok": results.len() - failed, "failed": failed, "results": results }))
        .into_response()
}

async fn feedback_batch(State(s): State<BatchState>, Path(name): Path<String>, req: Request) -> BatchResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    feedback_items(&s.experiments, &name, &body).await
}

/// `POST /v1/deployments/NAME/feedback/batch`, the older spelling kept for existing clients
/// (keel-sim): the same answer as `feedback:batch`, with `Deprecation: true` and a `Link` to
/// the route to use.
async fn deprecated_feedback_batch(State(s): State<BatchState>, Path(name): Path<String>, req: Request) -> Response {
    let result = match read_body(req.into_body(), s.max_body).await {
        Ok(body) => feedback_items(&s.experiments, &name, &body).await,
        Err(e) => Err(e.into()),
    };
    let mut r = match result {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    r.headers_mut()
        .insert("deprecation", axum::http::HeaderValue::from_static("true"));
    let link = format!("</v1/deployments/{name}/feedback:batch>; rel=\"successor-version\"");
    if let Ok(v) = axum::http::HeaderValue::from_str(&link) {
        r.headers_mut().insert(axum::http::header::LINK, v);
    }
    r
}

async fn feedback_items(experiments: &Deployments, name: &str, body: &[u8]) -> BatchResult<Response> {
    let raw = items(body, "events")?;
    experiments.get(name)?;
    let parsed: Vec<Result<FeedbackIn, DeploymentError>> = raw
        .iter()
        .map(|r| {
            serde_json::from_str::<FeedbackIn>(r.get()).map_err(|e| {
                DeploymentError::InvalidRequest(format!(
                    "malformed feedback: {e}; send {{\"decision_id\": \"...\", \"reward\": 1.0}} and/or \"metrics\": {{\"NAME\": VALUE}}"
                ))
            })
        })
        .collect();
    let good: Vec<FeedbackIn> = parsed.iter().filter_map(|p| p.as_ref().ok().cloned()).collect();
    let mut outcomes = experiments.feedback_items(name, &good).await?.into_iter();
    let mut counted = 0;
    let mut results = Vec::with_capacity(parsed.len());
    for (index, item) in parsed.iter().enumerate() {
        results.push(match item {
            Err(e) => item_error(index, e),
            Ok(_) => match outcomes.next() {
                Some(Ok(out)) => {
                    counted += usize::from(out.counted);
                    serde_json::json!({ "index": index, "decision_id": out.decision_id, "counted": out.counted })
                }
                Some(Err(e)) => item_error(index, &e),
                None => item_error(
                    index,
                    &DeploymentError::InvalidRequest("no outcome was reported for this item".into()),
                ),
            },
        });
    }
    let failed = results.iter().filter(|r| r.get("error").is_some()).count();
    crate::metrics_endpoint::count_feedback(name, counted, results.len() - failed - counted, failed);
    Ok(axum::Json(serde_json::json!({
        "ok": results.len() - failed,
        "counted": counted,
        "failed": failed,
        "results": results,
    }))
    .into_response())
}
