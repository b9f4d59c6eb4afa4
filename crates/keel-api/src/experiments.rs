//! REST routes of the experimentation system (`/v1/deployments/...`).

use std::sync::Arc;

use axum::extract::{Extension, Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_experiments::offline::breakdown::Breakdown;
use keel_experiments::{DecideRequest, DeploymentError, Deployments, FeedbackIn};
use keel_serving::metrics::Protocol;
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};
use keel_auth::{Credential, Principal, Scope};

#[derive(Clone)]
struct ExpState {
    experiments: Arc<Deployments>,
    max_body: usize,
    tables: Option<Arc<dyn TableUses>>,
}

/// A future a [`TableUses`] check returns.
pub type Checked<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// The lake tables other requests name, checked by the data library
/// (`keel_data::Workspace`, as on the command line); `None` in a server without lake tables.
pub trait TableUses: Send + Sync {
    /// A deployment's monitor reference: `principal` may read it (the monitor's reports reveal
    /// its distribution) and it is a table of the lake.
    fn check_reference<'a>(&'a self, principal: &'a str, table: &'a str, deployment: &'a str) -> Checked<'a, ()>;
    /// A push's training data: when it names a catalogued table, `principal` may read it, and
    /// the answer is its lineage node (`table/NAME@vN`).
    fn training_source<'a>(&'a self, principal: &'a str, reference: &'a str) -> Checked<'a, Option<String>>;
    /// Links a pushed version to its training data's node, as `principal`.
    fn record_trained_on<'a>(
        &'a self,
        principal: &'a str,
        source: &'a str,
        model: &'a str,
        version: i64,
    ) -> Checked<'a, ()>;
}

type ExpResult<T> = std::result::Result<T, ApiError>;

pub fn router(experiments: Arc<Deployments>, max_body: usize, tables: Option<Arc<dyn TableUses>>) -> Routes {
    let (view, deploy, decide_scope) = (
        Need::Scope(Scope::View),
        Need::Scope(Scope::Deploy),
        Need::Scope(Scope::Decide),
    );
    Routes::new()
        .get("/v1/deployments", view, list)
        .get("/v1/deployments/{name}", view, show)
        .put("/v1/deployments/{name}", deploy, apply)
        .post("/v1/deployments/{name}/decide", decide_scope, decide)
        .post("/v1/deployments/{name}/feedback", decide_scope, feedback)
        .get("/v1/deployments/{name}/report", view, report)
        .get("/v1/deployments/{name}/health", view, health)
        .get("/v1/health", view, server_health)
        .with_state(ExpState {
            experiments,
            max_body,
            tables,
        })
}

async fn json_body<T: for<'de> Deserialize<'de>>(req: Request, limit: usize) -> ExpResult<T> {
    let body = read_body(req.into_body(), limit).await.map_err(ApiError::from)?;
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::from(DeploymentError::InvalidRequest(format!("malformed request JSON: {e}"))))
}

async fn list(State(s): State<ExpState>) -> ExpResult<Response> {
    let all = s.experiments.store().list_deployments().await?;
    Ok(axum::Json(all).into_response())
}

async fn show(State(s): State<ExpState>, Path(name): Path<String>) -> ExpResult<Response> {
    let current = s.experiments.store().get_deployment(&name).await?;
    Ok(axum::Json(current).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyRequest {
    spec: serde_json::Value,
    /// Who made the change is who authenticated; an `author` naming anyone else is refused.
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

async fn apply(
    State(s): State<ExpState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    req: Request,
) -> ExpResult<Response> {
    let body: ApplyRequest = json_body(req, s.max_body).await?;
    if let Some(claimed) = body.author.as_deref().filter(|a| *a != principal.name) {
        return Err(ApiError::from(DeploymentError::InvalidRequest(format!(
            "\"author\" is {claimed:?} but the request authenticated as {:?}: a change is recorded as whoever \
             authenticated; leave \"author\" out",
            principal.name
        ))));
    }
    if let Some(table) = body
        .spec
        .get("monitor")
        .and_then(|m| m.get("reference"))
        .and_then(|t| t.as_str())
        && let Some(tables) = &s.tables
        && principal.credential != Credential::Anonymous
    {
        tables.check_reference(&principal.name, table, &name).await?;
    }
    // A spec that would not apply is refused now, not after someone approved it.
    keel_experiments::DeploymentSpec::from_json(&body.spec)?;
    let revision = match keel_plan::changes::revise_deployment(
        keel_plan::approvals::Revise::Live(&s.experiments),
        &name,
        &body.spec,
        body.reason.as_deref(),
        crate::changes::rest(&principal),
    )
    .await?
    {
        keel_plan::changes::Outcome::Held(change) => return Ok(crate::changes::held_answer(&change)),
        keel_plan::changes::Outcome::Done(revision) => revision,
    };
    Ok((StatusCode::OK, axum::Json(revision)).into_response())
}

/// A decide body. `inputs` is only skimmed here: the model inputs are decoded once, straight
/// from the body's text, by the V2 request decoder.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideBody {
    #[serde(default)]
    unit_id: Option<String>,
    #[serde(default)]
    context: Option<serde_json::Map<String, serde_json::Value>>,
    /// The variants this unit may get (by name); absent: all of them.
    #[serde(default)]
    eligible: Option<Vec<String>>,
    /// For deployments whose variants are models: the model inputs, as in an infer request.
    #[serde(default)]
    inputs: Option<serde::de::IgnoredAny>,
}

async fn decide(State(s): State<ExpState>, Path(name): Path<String>, req: Request) -> ExpResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await.map_err(ApiError::from)?;
    let request = decode_decide(&body)?;
    let out = s.experiments.decide_request(&name, request).await?;
    crate::metrics_endpoint::count_decisions(&name, "rest", 1);
    Ok(axum::Json(out).into_response())
}

/// One decide request from its JSON body (the single route's body, or one item of
/// `decide:batch`).
pub(crate) fn decode_decide(body: &[u8]) -> Result<DecideRequest, DeploymentError> {
    let decide: DecideBody = serde_json::from_slice(body)
        .map_err(|e| DeploymentError::InvalidRequest(format!("malformed request JSON: {e}")))?;
    // The body has no `id`, `parameters` or `outputs` (refused above), so as an infer request
    // it is exactly its `inputs`.
    let inputs = match decide.inputs {
        None => None,
        Some(_) => Some(keel_serving::protocol::decode_json_request(body, None).map_err(DeploymentError::Serving)?),
    };
    Ok(DecideRequest {
        unit: decide.unit_id,
        context: decide.context,
        inputs,
        eligible: decide.eligible,
        protocol: Protocol::Rest,
    })
}

async fn feedback(State(s): State<ExpState>, Path(name): Path<String>, req: Request) -> ExpResult<Response> {
    let body: FeedbackIn = json_body(req, s.max_body).await?;
    let mut results = s.experiments.feedback_items(&name, std::slice::from_ref(&body)).await?;
    let one = results
        .pop()
        .ok_or_else(|| ApiError::from(DeploymentError::InvalidRequest("no feedback given".into())))?;
    let one = one?;
    crate::metrics_endpoint::count_feedback(&name, usize::from(one.counted), usize::from(!one.counted), 0);
    Ok(axum::Json(one).into_response())
}

async fn health(State(s): State<ExpState>, Path(name): Path<String>) -> ExpResult<Response> {
    Ok(axum::Json(s.experiments.health(&name)?).into_response())
}

/// The deployments that do not serve (a damaged decision log, a failed write) and why; the
/// others serve.
async fn server_health(State(s): State<ExpState>) -> ExpResult<Response> {
    let failed = s.experiments.failed();
    Ok(axum::Json(serde_json::json!({
        "deployments": s.experiments.names().len(),
        "failed_deployments": failed,
    }))
    .into_response())
}

/// The report, broken down when asked (`?segment_by=FEATURE`, `?cuped=COVARIATE`,
/// `?outcome=NAME`: [`Breakdown`], read from the decision log).
async fn report(
    State(s): State<ExpState>,
    Path(name): Path<String>,
    query: Result<axum::extract::Query<Breakdown>, axum::extract::rejection::QueryRejection>,
) -> ExpResult<Response> {
    let axum::extract::Query(breakdown) = query.map_err(|e| {
        ApiError::from(DeploymentError::InvalidRequest(format!(
            "{}; the report takes only ?segment_by=FEATURE, ?cuped=FEATURE and ?outcome=NAME",
            e.body_text()
        )))
    })?;
    breakdown.validate()?;
    let mut report = s.experiments.report(&name)?;
    if !breakdown.is_empty() {
        let experiments = s.experiments.clone();
        report = tokio::task::spawn_blocking(move || {
            breakdown
                .fill_running(&experiments, &name, &mut report)
                .map(|()| report)
        })
        .await
        .map_err(|e| ApiError::from(DeploymentError::Log(format!("reading the decision log failed: {e}"))))??;
    }
    Ok(axum::Json(report).into_response())
}
