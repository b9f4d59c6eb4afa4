//! REST routes over the lake and its catalog (`/v1/data/...`), behind the `lake` feature.
//!
//! Every route needs the `data:read` scope (the gate checks the credential and hands the
//! principal over); the handlers only turn a request into a keel-data call and its answer into
//! JSON. keel-data checks every table read against the principal's grants and records it in the
//! audit log, exactly as on the command line. A table the caller may not read answers 403
//! whether or not it exists. With authentication off, requests act as `anonymous`, who holds
//! no grant unless one is given.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use keel_catalog::Catalog;
use keel_data::{Caller, DataError, Workspace};
use keel_lake::{Lake, VersionOrTimestamp};
use serde::Deserialize;
use serde_json::json;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};
use keel_auth::{Credential, Principal, Scope};

/// Rows returned by `/rows` when no limit is given, and the most ever returned.
const DEFAULT_ROWS: usize = 100;
const MAX_ROWS: usize = 10_000;

#[derive(Clone)]
struct DataState {
    ws: Workspace,
    max_body: usize,
}

type DataResult<T> = std::result::Result<T, ApiError>;

/// The `/v1/data` routes over `lake`, checked by `catalog`.
pub fn router(catalog: Catalog, lake: Lake, max_body: usize) -> Routes {
    let ws = Workspace::new(catalog, lake);
    let read = Need::Scope(Scope::DataRead);
    Routes::new()
        .get("/v1/data/tables", read, list_tables)
        .get("/v1/data/tables/{name}", read, show_table)
        .get("/v1/data/tables/{name}/rows", read, table_rows)
        .post("/v1/data/sql", read, sql)
        .with_state(DataState { ws, max_body })
}

/// The data routes act as a person whose grants are checked per table, so they need a
/// credential even on a server where authentication is off.
async fn caller(state: &DataState, principal: &Principal) -> DataResult<Caller> {
    if principal.credential == Credential::Anonymous {
        return Err(keel_catalog::CatalogError::Unauthenticated(
            "the data routes act as a person whose grants are checked per table: send `Authorization: Bearer <token>` \
             (keel access token create NAME --scope data:read)"
                .into(),
        )
        .into());
    }
    Ok(state.ws.api_caller(&principal.name).await?)
}

async fn list_tables(
    State(state): State<DataState>,
    Extension(principal): Extension<Arc<Principal>>,
) -> DataResult<Response> {
    let caller = caller(&state, &principal).await?;
    let listed = state.ws.list(&caller, None).await?;
    Ok(axum::Json(json!({ "tables": listed })).into_response())
}

async fn show_table(
    State(state): State<DataState>,
    Path(name): Path<String>,
    Extension(principal): Extension<Arc<Principal>>,
) -> DataResult<Response> {
    let caller = caller(&state, &principal).await?;
    Ok(axum::Json(state.ws.show(&caller, &name).await?).into_response())
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
    Extension(principal): Extension<Arc<Principal>>,
) -> DataResult<Response> {
    let caller = caller(&state, &principal).await?;
    let limit = q.limit.unwrap_or(DEFAULT_ROWS);
    if limit > MAX_ROWS {
        return Err(DataError::Invalid(format!(
            "limit {limit} is above {MAX_ROWS}; page with SQL (POST /v1/data/sql) for more"
        ))
        .into());
    }
    let batches = state
        .ws
        .head(&caller, &name, q.version.map(VersionOrTimestamp::Version), limit)
        .await?;
    json_rows(&batches)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

async fn sql(
    State(state): State<DataState>,
    Extension(principal): Extension<Arc<Principal>>,
    body: Body,
) -> DataResult<Response> {
    let caller = caller(&state, &principal).await?;
    let body = read_body(body, state.max_body).await?;
    let request: SqlRequest = serde_json::from_slice(&body)
        .map_err(|e| DataError::Invalid(format!("the body must be {{\"sql\": \"...\"}}: {e}")))?;
    let batches = state.ws.sql(&caller, &request.sql).await?;
    json_rows(&batches)
}

fn json_rows(batches: &[keel_lake::arrow::array::RecordBatch]) -> DataResult<Response> {
    let rows = keel_lake::json_rows(batches).map_err(DataError::from)?;
    let mut body = Vec::with_capacity(rows.len() + 10);
    body.extend_from_slice(b"{\"rows\":");
    body.extend_from_slice(&rows);
    body.push(b'}');
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}
