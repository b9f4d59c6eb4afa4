//! `GET /v1/deployments/{name}/histograms`: per monitored column, the reference table's and the
//! monitor's current window's histograms over the same bins, with keel-monitor's drift on those
//! very values (`keel_experiments::offline::histograms`, the call the console's monitoring page
//! draws), behind the `lake` feature.
//!
//! The figures are the contents of tables, so its gate is `/v1/data`'s (`data:read`), and the
//! caller needs a read grant on the reference and on every prediction-log table read (checked
//! and audited by the catalog as the person calling; a credential is needed even where
//! authentication is off).

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use keel_auth::{Credential, Principal, Scope};
use keel_catalog::CatalogError;
use keel_data::Workspace;
use keel_experiments::DeploymentError;
use keel_experiments::offline::histograms::of_deployment;
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::ApiError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramsQuery {}

pub(crate) fn router(ws: Workspace) -> Routes {
    Routes::new()
        // The figures are the contents of the reference and prediction-log tables: the data
        // routes' scope, and a read grant on each table below.
        .get(
            "/v1/deployments/{name}/histograms",
            Need::Scope(Scope::DataRead),
            handler,
        )
        .with_state(ws)
}

async fn handler(
    State(ws): State<Workspace>,
    Path(name): Path<String>,
    query: Result<Query<HistogramsQuery>, QueryRejection>,
    Extension(principal): Extension<Arc<Principal>>,
) -> Result<Response, ApiError> {
    query.map_err(|e| {
        ApiError::from(DeploymentError::InvalidRequest(format!(
            "{}; the histograms take no parameters",
            e.body_text()
        )))
    })?;
    if principal.credential == Credential::Anonymous {
        return Err(CatalogError::Unauthenticated(
            "the histograms are read as a person whose grants are checked per table: send `Authorization: Bearer <token>` \
             (keel access token create NAME --scope data:read)"
                .into(),
        )
        .into());
    }
    let caller = ws.api_caller(&principal.name).await?;
    let h = of_deployment(&ws, &caller, &name, "api", keel_predlog::now_us()).await?;
    Ok(axum::Json(h).into_response())
}
