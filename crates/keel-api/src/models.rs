//! REST routes of the model registry (`/v1/models/...`), so a CI job can ship a model with a
//! token and no database connection. Each handler is a thin caller of one
//! [`keel_registry::Registry`] operation, as `keel models ...` is on the command line.
//!
//! A push (`POST /v1/models/{name}/versions`) takes the ONNX bytes as the body, streamed to a
//! staged file (never held whole in memory), with their SHA-256 in the [`SHA256_HEADER`]
//! header; it answers 400 `hash_mismatch` when the bytes differ, 413 past
//! `--max-model-bytes`, and writes nothing in either case. Who pushed or moved an alias is who
//! authenticated.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use keel_auth::{Credential, Principal, Scope};
use keel_plan::changes::Outcome;
use keel_registry::{PushRequest, Registry, RegistryError, UploadCheck, VersionSelector};
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};

/// The request header carrying the SHA-256 of a pushed model (`HEX` or `sha256:HEX`).
pub const SHA256_HEADER: &str = "x-keel-sha256";

#[derive(Clone)]
struct ModelsState {
    registry: Registry,
    max_body: usize,
    max_model_bytes: u64,
    /// Checks a push's training data and links it (a server with lake tables).
    tables: Option<Arc<dyn crate::TableUses>>,
}

type ModelsResult<T> = std::result::Result<T, ApiError>;

/// The registry's routes: reads need `view`, pushes and alias moves need `registry`.
pub fn router(
    registry: Registry,
    max_body: usize,
    max_model_bytes: u64,
    tables: Option<Arc<dyn crate::TableUses>>,
) -> Routes {
    let (view, write) = (Need::Scope(Scope::View), Need::Scope(Scope::Registry));
    Routes::new()
        .get("/v1/models", view, list_models)
        .get("/v1/models/{name}/versions", view, list_versions)
        .post("/v1/models/{name}/versions", write, push)
        .get("/v1/models/{name}/versions/{version}", view, show_version)
        .get("/v1/models/{name}/aliases", view, list_aliases)
        .put("/v1/models/{name}/aliases/{alias}", write, set_alias)
        .add(
            axum::http::Method::DELETE,
            "/v1/models/{name}/aliases/{alias}",
            write,
            axum::routing::delete(delete_alias),
        )
        .with_state(ModelsState {
            registry,
            max_body,
            max_model_bytes,
            tables,
        })
}

fn invalid(message: String) -> ApiError {
    ApiError::from(RegistryError::Invalid(message))
}

async fn list_models(State(s): State<ModelsState>) -> ModelsResult<Response> {
    Ok(axum::Json(s.registry.list_models().await?).into_response())
}

async fn list_versions(State(s): State<ModelsState>, Path(name): Path<String>) -> ModelsResult<Response> {
    Ok(axum::Json(s.registry.list_versions(&name).await?).into_response())
}

/// `/v1/models/NAME/versions/3`, `.../latest` or `.../@production`.
async fn show_version(
    State(s): State<ModelsState>,
    Path((name, version)): Path<(String, String)>,
) -> ModelsResult<Response> {
    let selector = VersionSelector::parse(&version)?;
    Ok(axum::Json(s.registry.resolve(&name, &selector).await?).into_response())
}

/// The aliases of a model and every move of them, oldest first.
async fn list_aliases(State(s): State<ModelsState>, Path(name): Path<String>) -> ModelsResult<Response> {
    let aliases = s.registry.list_aliases(&name).await?;
    let history = s.registry.alias_history(&name, None).await?;
    Ok(axum::Json(serde_json::json!({ "model": name, "aliases": aliases, "history": history })).into_response())
}

/// `?description=...&training_data=...&metric=auc=0.97&alias=staging` (metric and alias
/// repeatable), read as pairs so a repeated key keeps every value.
fn push_request(
    name: String,
    author: String,
    query: Vec<(String, String)>,
) -> ModelsResult<(PushRequest, Vec<String>)> {
    let mut request = PushRequest {
        name,
        author,
        ..PushRequest::default()
    };
    let (mut metrics, mut aliases) = (Vec::new(), Vec::new());
    for (key, value) in query {
        match key.as_str() {
            "description" => request.description = Some(value),
            "training_data" => request.training_data = Some(value),
            "metric" => metrics.push(value),
            "alias" => aliases.push(value),
            other => {
                return Err(invalid(format!(
                    "unknown query parameter {other:?}: a push takes description, training_data, metric (KEY=NUMBER or a JSON object) and alias"
                )));
            }
        }
    }
    request.metrics = keel_registry::parse_metrics(&metrics)?;
    Ok((request, keel_registry::alias_names(&aliases)?))
}

async fn push(
    State(s): State<ModelsState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(name): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    req: Request,
) -> Response {
    // Refused before the body is read: the body is drained (up to --max-body-bytes) so a client
    // still sending it reads the answer rather than a reset connection.
    let check = match push_check(&s, name, &principal, query, req.headers()) {
        Ok(check) => check,
        Err(e) => return crate::gate::after_draining(req, s.max_body, e.into_response()).await,
    };
    let (request, aliases, check) = check;
    // Training data naming a catalogued table: the pusher must be able to read it (as with
    // `keel model push`); an anonymous caller (a server with authentication off) keeps it as
    // text, as for a monitor's reference.
    let trained_on = match (&s.tables, &request.training_data) {
        (Some(tables), Some(reference)) if principal.credential != Credential::Anonymous => {
            match tables.training_source(&principal.name, reference).await {
                Ok(source) => source,
                Err(e) => return crate::gate::after_draining(req, s.max_body, e.into_response()).await,
            }
        }
        _ => None,
    };
    let mut body = req.into_body().into_data_stream().map_err(|e| e.to_string());
    let pushed = s.registry.push_stream(request, &mut body, check).await;
    let version = match pushed {
        Ok(version) => version,
        Err(e) => {
            if matches!(e, RegistryError::TooLarge { .. }) {
                drain(&mut body, s.max_body).await;
            }
            return ApiError::from(e).into_response();
        }
    };
    if let (Some(tables), Some(source)) = (&s.tables, &trained_on)
        && let Err(e) = tables
            .record_trained_on(&principal.name, source, &version.model, version.version)
            .await
    {
        return e.into_response();
    }
    // Announced, and the aliases asked for set, through the approvals policy (as the CLI does).
    match keel_plan::changes::pushed(&s.registry, &version, &aliases, crate::changes::rest(&principal)).await {
        Ok(_) => (StatusCode::CREATED, axum::Json(version)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// What a push is, from its path, query and headers, checked before a byte of the body is read.
fn push_check(
    s: &ModelsState,
    name: String,
    principal: &Principal,
    query: Vec<(String, String)>,
    headers: &HeaderMap,
) -> ModelsResult<(PushRequest, Vec<String>, UploadCheck)> {
    let (request, aliases) = push_request(name, principal.name.clone(), query)?;
    let sha256 = headers
        .get(SHA256_HEADER)
        .map(|v| v.to_str().map(str::to_string))
        .transpose()
        .map_err(|_| invalid(format!("the {SHA256_HEADER} header is not text")))?
        .ok_or_else(|| {
            invalid(format!(
                "send the model's SHA-256 in the {SHA256_HEADER} header (e.g. from `sha256sum model.onnx`) so the server can check the bytes it received"
            ))
        })?;
    keel_registry::parse_sha256(&sha256)?;
    // A declared length past the limit is refused before a byte is read.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > s.max_model_bytes) {
        return Err(ApiError::from(RegistryError::TooLarge {
            limit: s.max_model_bytes,
        }));
    }
    let check = UploadCheck {
        sha256: Some(sha256),
        max_bytes: s.max_model_bytes,
    };
    Ok((request, aliases, check))
}

/// Reads and discards what is left of a refused body, up to `limit` bytes and two seconds, so
/// the client reads the answer.
async fn drain<S>(body: &mut S, limit: usize)
where
    S: futures::Stream<Item = Result<bytes::Bytes, String>> + Unpin,
{
    use futures::StreamExt as _;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        let mut seen = 0usize;
        while let Some(Ok(chunk)) = body.next().await {
            seen += chunk.len();
            if seen > limit {
                break;
            }
        }
    })
    .await;
}

/// The body of an alias move: the version (`3`, `"3"`, `"latest"`, `"@staging"`) and why.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    version: serde_json::Value,
    #[serde(default)]
    reason: Option<String>,
}

async fn set_alias(
    State(s): State<ModelsState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((name, alias)): Path<(String, String)>,
    req: Request,
) -> ModelsResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let body: AliasBody = serde_json::from_slice(&body).map_err(|e| {
        invalid(format!(
            "malformed request JSON: {e}; send {{\"version\": 3, \"reason\": \"why\"}}"
        ))
    })?;
    let selector = match &body.version {
        serde_json::Value::Number(n) => VersionSelector::Number(
            n.as_i64()
                .ok_or_else(|| invalid(format!("version {n} is not a whole number")))?,
        ),
        serde_json::Value::String(text) => VersionSelector::parse(text)?,
        other => {
            return Err(invalid(format!(
                "version must be a number or a string such as \"latest\" or \"@staging\", not {other}"
            )));
        }
    };
    let alias = alias.trim_start_matches('@');
    let version = s.registry.resolve(&name, &selector).await?.version;
    let moved = keel_plan::changes::move_alias(
        &s.registry,
        &name,
        alias,
        Some(version),
        body.reason.as_deref(),
        crate::changes::rest(&principal),
    )
    .await?;
    Ok(match moved {
        Outcome::Held(change) => crate::changes::held_answer(&change),
        Outcome::Done(alias) => axum::Json(alias).into_response(),
    })
}

/// The optional body of an alias removal: why.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DeleteAliasBody {
    #[serde(default)]
    reason: Option<String>,
}

/// `DELETE /v1/models/NAME/aliases/ALIAS` with `{"reason": "why"}` as the body (or
/// `?reason=why`; both optional, as for a move).
async fn delete_alias(
    State(s): State<ModelsState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path((name, alias)): Path<(String, String)>,
    Query(query): Query<DeleteAliasBody>,
    req: Request,
) -> ModelsResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let body: DeleteAliasBody = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteAliasBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            invalid(format!(
                "malformed request JSON: {e}; send {{\"reason\": \"why\"}} or no body"
            ))
        })?
    };
    let reason = body.reason.or(query.reason);
    let alias = alias.trim_start_matches('@');
    let removed = keel_plan::changes::move_alias(
        &s.registry,
        &name,
        alias,
        None,
        reason.as_deref(),
        crate::changes::rest(&principal),
    )
    .await?;
    if let Outcome::Held(change) = removed {
        return Ok(crate::changes::held_answer(&change));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
