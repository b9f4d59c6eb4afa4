//! REST routes of webhook subscriptions (`/v1/webhooks`), as `keel webhook` on the command
//! line: list, add, remove, and the deliveries with every attempt. All need the `admin` scope
//! (a subscription sends keel's events to any URL). URLs are answered without their path (chat
//! webhooks carry their secret there); the signing secret is never stored, only the name of the
//! server's environment variable that holds it.

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_auth::{Principal, Scope};
use keel_store::{Store, StoreError};
use serde::Deserialize;
use std::sync::Arc;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};

#[derive(Clone)]
struct HooksState {
    store: Store,
    max_body: usize,
}

type HooksResult<T> = std::result::Result<T, ApiError>;

pub fn router(store: Store, max_body: usize) -> Routes {
    let admin = Need::Scope(Scope::Admin);
    Routes::new()
        .get("/v1/webhooks", admin, list)
        .post("/v1/webhooks", admin, add)
        .add(
            axum::http::Method::DELETE,
            "/v1/webhooks/{id}",
            admin,
            axum::routing::delete(remove),
        )
        .get("/v1/webhooks/deliveries", admin, deliveries)
        .with_state(HooksState { store, max_body })
}

fn invalid(message: String) -> ApiError {
    ApiError::from(StoreError::Invalid(message))
}

async fn list(State(s): State<HooksState>) -> HooksResult<Response> {
    Ok(axum::Json(s.store.list_webhooks().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    url: String,
    events: Vec<String>,
    #[serde(default)]
    secret_env: Option<String>,
}

async fn add(
    State(s): State<HooksState>,
    Extension(principal): Extension<Arc<Principal>>,
    req: Request,
) -> HooksResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let body: AddBody = serde_json::from_slice(&body).map_err(|e| {
        invalid(format!(
            "malformed request JSON: {e}; send {{\"url\": \"https://...\", \"events\": [\"alias.moved\"], \"secret_env\": \"HOOK_SECRET\"}}"
        ))
    })?;
    keel_guard::webhook::check_subscription(&body.url, &body.events, body.secret_env.as_deref())?;
    let hook = s
        .store
        .add_webhook(&body.url, &body.events, body.secret_env.as_deref(), &principal.name)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(hook)).into_response())
}

async fn remove(
    State(s): State<HooksState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<i64>,
) -> HooksResult<Response> {
    s.store.remove_webhook(id, &principal.name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    #[serde(default)]
    webhook: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn deliveries(State(s): State<HooksState>, Query(q): Query<DeliveriesQuery>) -> HooksResult<Response> {
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let out = keel_guard::webhook::deliveries(&s.store, q.webhook, limit).await?;
    Ok(axum::Json(out).into_response())
}
