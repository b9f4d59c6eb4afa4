//! REST routes over the lake and its catalog (`/v1/data/...`), behind the `lake` feature.
//!
//! Every route needs `Authorization: Bearer <token>` (tokens come from
//! `keel access token create`); every table read is checked against the caller's grants and
//! recorded in the audit log by keel-catalog, exactly as on the command line. A table the caller
//! may not read answers 403 whether or not it exists.

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use keel_catalog::{Actor, Catalog, CatalogError, Permission, Via};
use keel_lake::{Lake, LakeError, VersionOrTimestamp};
use serde::Deserialize;
use serde_json::json;

use crate::rest::{error_response, read_body};

/// Rows returned by `/rows` when no limit is given, and the most ever returned.
const DEFAULT_ROWS: usize = 100;
const MAX_ROWS: usize = 10_000;

#[derive(Clone)]
struct DataState {
    catalog: Catalog,
    lake: Lake,
    max_body: usize,
}

enum DataError {
    Catalog(CatalogError),
    Lake(Box<LakeError>),
    BadRequest(String),
    /// The body could not be read or is over the limit (413).
    Body(crate::error::BodyError),
}

impl From<CatalogError> for DataError {
    fn from(e: CatalogError) -> Self {
        DataError::Catalog(e)
    }
}

impl From<LakeError> for DataError {
    fn from(e: LakeError) -> Self {
        DataError::Lake(Box::new(e))
    }
}

impl From<keel_store::StoreError> for DataError {
    fn from(e: keel_store::StoreError) -> Self {
        DataError::Catalog(CatalogError::Store(e))
    }
}

impl IntoResponse for DataError {
    fn into_response(self) -> Response {
        let (status, code, message) = match &self {
            DataError::Catalog(e) => {
                let status = match e {
                    CatalogError::Denied { .. } | CatalogError::Forbidden { .. } => StatusCode::FORBIDDEN,
                    CatalogError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
                    CatalogError::Invalid(_) => StatusCode::BAD_REQUEST,
                    CatalogError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (status, e.code(), e.to_string())
            }
            DataError::Lake(e) => {
                let status = match e.as_ref() {
                    LakeError::InvalidTableName { .. }
                    | LakeError::InvalidOptions(_)
                    | LakeError::Sql(_)
                    | LakeError::VersionNotFound { .. } => StatusCode::BAD_REQUEST,
                    LakeError::TableNotFound { .. } => StatusCode::NOT_FOUND,
                    LakeError::Input { .. } | LakeError::SchemaConflict { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                    LakeError::UnsupportedRoot { .. }
                    | LakeError::Delta(_)
                    | LakeError::Arrow(_)
                    | LakeError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
                    // The lake's bucket is unreachable or refuses keel: not the caller's fault.
                    LakeError::Storage { .. } => StatusCode::SERVICE_UNAVAILABLE,
                };
                (status, e.code(), e.to_string())
            }
            DataError::BadRequest(m) => (StatusCode::BAD_REQUEST, "invalid_request", m.clone()),
            DataError::Body(e) => (crate::error::http_status(e.kind()), e.code(), e.to_string()),
        };
        if status.is_server_error() {
            tracing::error!(code, error = %message, "data request failed");
        }
        error_response(status, code, &message)
    }
}

type DataResult<T> = std::result::Result<T, DataError>;

/// The `/v1/data` routes over `lake`, checked by `catalog`.
pub fn router(catalog: Catalog, lake: Lake, max_body: usize) -> Router {
    Router::new()
        .route("/v1/data/tables", get(list_tables))
        .route("/v1/data/tables/{name}", get(show_table))
        .route("/v1/data/tables/{name}/rows", get(table_rows))
        .route("/v1/data/sql", post(sql))
        .with_state(DataState {
            catalog,
            lake,
            max_body,
        })
}

async fn caller(state: &DataState, headers: &HeaderMap) -> DataResult<Actor> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let Some(token) = header.strip_prefix("Bearer ").map(str::trim).filter(|t| !t.is_empty()) else {
        return Err(CatalogError::Unauthenticated(
            "send `Authorization: Bearer <token>`; create a token with `keel access token create`".into(),
        )
        .into());
    };
    Ok(state.catalog.actor_for_token(token).await?)
}

async fn list_tables(State(state): State<DataState>, headers: HeaderMap) -> DataResult<Response> {
    let actor = caller(&state, &headers).await?;
    let listed = state
        .catalog
        .visible_tables(&actor, &state.lake.tables().await?)
        .await?;
    Ok(axum::Json(json!({ "tables": listed })).into_response())
}

async fn show_table(
    State(state): State<DataState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> DataResult<Response> {
    let actor = caller(&state, &headers).await?;
    let entry = state
        .catalog
        .authorize(&actor, &name, Permission::Read, "read_catalog", Via::Api, json!({}))
        .await?;
    let store = state.catalog.store();
    let versions: Vec<_> = state
        .lake
        .history(&name)
        .await?
        .into_iter()
        .map(|v| {
            json!({
                "version": v.version, "timestamp": v.timestamp.map(|t| t.to_rfc3339()),
                "operation": v.operation, "rows_added": v.rows_added,
            })
        })
        .collect();
    let (upstream, downstream) = store.lineage(&format!("table/{name}")).await?;
    Ok(axum::Json(json!({
        "table": name,
        "catalog": entry,
        "versions": versions,
        "schema_history": store.schema_history(&name).await?,
        "grants": store.grants_on(&name).await?,
        "lineage": { "upstream": upstream, "downstream": downstream },
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
struct RowsQuery {
    limit: Option<usize>,
    version: Option<u64>,
}

async fn table_rows(
    State(state): State<DataState>,
    Path(name): Path<String>,
    Query(q): Query<RowsQuery>,
    headers: HeaderMap,
) -> DataResult<Response> {
    let actor = caller(&state, &headers).await?;
    let limit = q.limit.unwrap_or(DEFAULT_ROWS);
    if limit > MAX_ROWS {
        return Err(DataError::BadRequest(format!(
            "limit {limit} is above {MAX_ROWS}; page with SQL (POST /v1/data/sql) for more"
        )));
    }
    let details = json!({ "limit": limit, "version": q.version });
    state
        .catalog
        .authorize(&actor, &name, Permission::Read, "read", Via::Api, details)
        .await?;
    let batches = state
        .lake
        .head(&name, q.version.map(VersionOrTimestamp::Version), limit)
        .await?;
    Ok(json_rows(&batches)?.into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

async fn sql(State(state): State<DataState>, headers: HeaderMap, body: Body) -> DataResult<Response> {
    let actor = caller(&state, &headers).await?;
    let body = read_body(body, state.max_body).await.map_err(DataError::Body)?;
    let request: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| DataError::BadRequest(format!("the body must be {{\"sql\": \"...\"}}: {e}")))?;
    let tables = state.lake.referenced_tables(&request.sql)?;
    for table in &tables {
        state
            .catalog
            .authorize(
                &actor,
                table,
                Permission::Read,
                "query",
                Via::Api,
                json!({ "sql": request.sql }),
            )
            .await?;
    }
    let batches = state.lake.sql_on(&request.sql, &tables).await?;
    Ok(json_rows(&batches)?.into_response())
}

fn json_rows(batches: &[keel_lake::arrow::array::RecordBatch]) -> DataResult<Response> {
    let rows = keel_lake::json_rows(batches)?;
    let mut body = Vec::with_capacity(rows.len() + 10);
    body.extend_from_slice(b"{\"rows\":");
    body.extend_from_slice(&rows);
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
