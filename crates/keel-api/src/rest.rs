//! REST front end: the Open Inference Protocol's HTTP/JSON binding, with the binary tensor
//! data extension, the model-repository extension and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keel_serving::metrics::Protocol;
use keel_serving::protocol::{decode_json_request, encode_json_response};
use keel_serving::{InferenceService, ServingError};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::ApiError;
use crate::error::{error_response, read_body};
use keel_auth::Scope;

/// The binary extension's header: length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Clone)]
struct AppState {
    service: Arc<InferenceService>,
    metrics: PrometheusHandle,
    max_body: usize,
    experiments: Option<Arc<keel_experiments::Deployments>>,
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// Builds the REST routes: the inference protocol, `/metrics`, the labels route, and the
/// experiment routes when experiments are served. Each route names the scope it needs.
pub fn router(
    service: Arc<InferenceService>,
    experiments: Option<Arc<keel_experiments::Deployments>>,
    metrics: PrometheusHandle,
    max_body: usize,
    tables: Option<Arc<dyn crate::experiments::TableUses>>,
) -> Routes {
    let labels = crate::labels::router(service.prediction_log().cloned(), experiments.clone(), max_body);
    let state = AppState {
        service,
        metrics,
        max_body,
        experiments: experiments.clone(),
    };
    let infer_scope = Need::Scope(Scope::Infer);
    let deploy = Need::Scope(Scope::Deploy);
    let routes = Routes::new()
        .get("/v2", infer_scope, server_metadata)
        .get("/v2/health/live", Need::Open, live)
        .get("/v2/health/ready", Need::Open, ready)
        .get("/v2/models/{name}", infer_scope, model_metadata)
        .get("/v2/models/{name}/ready", infer_scope, model_ready)
        .post("/v2/models/{name}/infer", infer_scope, infer)
        .get("/v2/models/{name}/versions/{version}", infer_scope, model_metadata_v)
        .get("/v2/models/{name}/versions/{version}/ready", infer_scope, model_ready_v)
        .post("/v2/models/{name}/versions/{version}/infer", infer_scope, infer_v)
        .post("/v2/repository/index", deploy, repository_index)
        .post("/v2/repository/models/{name}/load", deploy, load)
        .post("/v2/repository/models/{name}/unload", deploy, unload)
        .get("/metrics", Need::Scope(Scope::Metrics), metrics_text)
        .with_state(state)
        .merge(labels);
    match experiments {
        Some(e) => routes
            .merge(crate::batch_routes::deprecated_router(e.clone(), max_body))
            .merge(crate::experiments::router(e, max_body, tables)),
        None => routes,
    }
}

/// What every REST app ends with, after the gate: answers for unknown routes and methods, and
/// a caught panic as a 500 (never a dropped connection).
pub(crate) fn finish(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error while handling the request; it has been logged",
    )
}

async fn not_found(req: Request) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        "no_route",
        &format!(
            "no route for {} {}; see the Open Inference Protocol paths under /v2",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> Response {
    error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

async fn server_metadata(State(s): State<AppState>) -> Response {
    axum::Json(s.service.server_metadata()).into_response()
}

async fn live(State(s): State<AppState>) -> Response {
    axum::Json(serde_json::json!({ "live": s.service.server_live() })).into_response()
}

async fn ready(State(s): State<AppState>) -> Response {
    let ready = s.service.server_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::json!({ "ready": ready });
    // The server stays ready while some deployments do not serve (a damaged decision log): the
    // others do. This probe is open to anyone, so it only counts them; which ones and why is on
    // GET /v1/health (the view scope).
    if let Some(failed) = s.experiments.as_ref().map(|e| e.failed().len()).filter(|n| *n > 0) {
        body["deployments_failed"] = serde_json::json!(failed);
    }
    (status, axum::Json(body)).into_response()
}

async fn model_metadata(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    Ok(axum::Json(s.service.model_metadata(&name, None)?).into_response())
}

async fn model_metadata_v(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    Ok(axum::Json(s.service.model_metadata(&name, Some(&version))?).into_response())
}

async fn model_ready(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    s.service.model(&name, None)?;
    Ok(axum::Json(serde_json::json!({ "name": name, "ready": true })).into_response())
}

async fn model_ready_v(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    s.service.model(&name, Some(&version))?;
    Ok(axum::Json(serde_json::json!({ "name": name, "version": version, "ready": true })).into_response())
}

async fn infer(State(s): State<AppState>, Path(name): Path<String>, req: Request) -> ApiResult<Response> {
    do_infer(s, name, None, req).await
}

async fn infer_v(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    req: Request,
) -> ApiResult<Response> {
    do_infer(s, name, Some(version), req).await
}

async fn do_infer(s: AppState, name: String, version: Option<String>, req: Request) -> ApiResult<Response> {
    let header_len = header_length(req.headers())?;
    let body = read_body(req.into_body(), s.max_body).await?;
    let request = decode_json_request(&body, header_len)?;
    let response = s
        .service
        .infer(Protocol::Rest, &name, version.as_deref(), request)
        .await?;
    let encoded = encode_json_response(&response)?;
    let mut http = Response::new(Body::from(encoded.body));
    let headers = http.headers_mut();
    match encoded.header_len {
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
    }
    Ok(http)
}

fn header_length(headers: &HeaderMap) -> ApiResult<Option<usize>> {
    let Some(value) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .map(Some)
        .ok_or_else(|| {
            ServingError::BadRequest("Inference-Header-Content-Length must be a non-negative integer".into()).into()
        })
}

#[derive(Deserialize, Default)]
struct IndexRequest {
    #[serde(default)]
    ready: bool,
}

#[derive(Deserialize, Default)]
struct LoadRequest {
    #[serde(default)]
    parameters: serde_json::Map<String, serde_json::Value>,
}

/// Parses an optional JSON body (empty means the default).
fn optional_json<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| ServingError::BadRequest(format!("malformed request JSON: {e}")).into())
}

async fn repository_index(State(s): State<AppState>, req: Request) -> ApiResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let request: IndexRequest = optional_json(&body)?;
    Ok(axum::Json(s.service.repository_index(request.ready).await?).into_response())
}

async fn load(State(s): State<AppState>, Path(name): Path<String>, req: Request) -> ApiResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let request: LoadRequest = optional_json(&body)?;
    let version = match request.parameters.get("version") {
        None => None,
        Some(serde_json::Value::String(v)) => Some(v.clone()),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        Some(other) => {
            return Err(ServingError::BadRequest(format!(
                "parameter 'version' must be a string or number such as \"3\" or \"@staging\", got {other}"
            ))
            .into());
        }
    };
    let loaded = s.service.load_model(&name, version.as_deref()).await?;
    Ok(axum::Json(serde_json::json!({ "name": loaded.name, "version": loaded.version_str })).into_response())
}

async fn unload(State(s): State<AppState>, Path(name): Path<String>) -> ApiResult<Response> {
    s.service.unload_model(&name).await?;
    Ok(axum::Json(serde_json::json!({ "name": name, "unloaded": true })).into_response())
}

async fn metrics_text(State(s): State<AppState>) -> Response {
    let mut response = s.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
