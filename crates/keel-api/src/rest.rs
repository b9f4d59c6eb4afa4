//! REST front end: the Open Inference Protocol's HTTP/JSON binding, with the binary tensor
//! data extension, the model-repository extension and `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_serving::metrics::Protocol;
use keel_serving::protocol::{decode_json_request, encode_json_response};
use keel_serving::{ErrorKind, InferenceService, ServingError};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;

/// The binary extension's header: length of the JSON part of a body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

#[derive(Clone)]
struct AppState {
    service: Arc<InferenceService>,
    metrics: PrometheusHandle,
    max_body: usize,
}

/// The HTTP status for an error kind (the one place this mapping lives).
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidArgument => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The HTTP status for a prediction-log error (labels).
pub fn log_status_of(e: &keel_predlog::PredlogError) -> StatusCode {
    use keel_predlog::PredlogError as E;
    match e {
        E::Invalid(_) => StatusCode::BAD_REQUEST,
        E::NoPredictions { .. } => StatusCode::NOT_FOUND,
        E::Disabled | E::Sink(_) | E::Lake { .. } => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// An error as the protocol's JSON error body: `{"error": "...", "code": "..."}`.
struct ApiError(ServingError);

impl From<ServingError> for ApiError {
    fn from(e: ServingError) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = status_of(self.0.kind());
        if status.is_server_error() {
            tracing::error!(code = self.0.code(), error = %self.0, "request failed");
        }
        error_response(status, self.0.code(), &self.0.to_string())
    }
}

pub(crate) fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": message, "code": code });
    (status, axum::Json(body)).into_response()
}

type ApiResult<T> = std::result::Result<T, ApiError>;

/// Builds the REST router: the inference protocol, `/metrics`, and the experiment routes
/// when experiments are served.
pub fn router(
    service: Arc<InferenceService>,
    experiments: Option<Arc<keel_experiments::Experiments>>,
    metrics: PrometheusHandle,
    max_body: usize,
) -> Router {
    let labels = crate::labels::router(service.prediction_log().cloned(), experiments.clone(), max_body);
    let state = AppState {
        service,
        metrics,
        max_body,
    };
    let extra = match experiments {
        Some(e) => crate::experiments::router(e, max_body),
        None => Router::new(),
    };
    Router::new()
        .route("/v2", get(server_metadata))
        .route("/v2/health/live", get(live))
        .route("/v2/health/ready", get(ready))
        .route("/v2/models/{name}", get(model_metadata))
        .route("/v2/models/{name}/ready", get(model_ready))
        .route("/v2/models/{name}/infer", post(infer))
        .route("/v2/models/{name}/versions/{version}", get(model_metadata_v))
        .route("/v2/models/{name}/versions/{version}/ready", get(model_ready_v))
        .route("/v2/models/{name}/versions/{version}/infer", post(infer_v))
        .route("/v2/repository/index", post(repository_index))
        .route("/v2/repository/models/{name}/load", post(load))
        .route("/v2/repository/models/{name}/unload", post(unload))
        .route("/metrics", get(metrics_text))
        .with_state(state)
        .merge(extra)
        .merge(labels)
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
    (status, axum::Json(serde_json::json!({ "ready": ready }))).into_response()
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
            ApiError(ServingError::BadRequest(
                "Inference-Header-Content-Length must be a non-negative integer".into(),
            ))
        })
}

pub(crate) async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ServingError> {
    match axum::body::to_bytes(body, limit).await {
        Ok(b) => Ok(b),
        Err(e) => {
            let too_large = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            if too_large {
                Err(ServingError::PayloadTooLarge { size: limit + 1, limit })
            } else {
                Err(ServingError::BadRequest(format!(
                    "could not read the request body: {e}"
                )))
            }
        }
    }
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
    serde_json::from_slice(body).map_err(|e| ApiError(ServingError::BadRequest(format!("malformed request JSON: {e}"))))
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
            return Err(ApiError(ServingError::BadRequest(format!(
                "parameter 'version' must be a string or number such as \"3\" or \"@staging\", got {other}"
            ))));
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
