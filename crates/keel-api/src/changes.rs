//! REST routes of approvals (`/v1/changes/...`): the changes the approvals policy holds for a
//! second person, and approving or rejecting them. Also the answer every route that makes an
//! approvable change gives when the policy holds it ([`held_answer`]: 202 with the change).
//!
//! Who may approve: a person who could make the change themselves (the `registry` scope for an
//! alias, `deploy` for a deployment, `admin` for a grant or the policy) and who did not request
//! it. Listing needs `view`; approving and rejecting are routed with `view` and the handler
//! checks the change's own scope, since the scope depends on the change.

use std::sync::Arc;

use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keel_auth::{Principal, Scope};
use keel_experiments::Deployments;
use keel_plan::PlanError;
use keel_plan::approvals::{self, Requester};
use keel_plan::changes;
use keel_registry::Registry;
use keel_store::PendingChange;
use serde::Deserialize;

use crate::access::{Need, Routes};
use crate::error::{ApiError, read_body};

#[derive(Clone)]
struct ChangesState {
    registry: Registry,
    deployments: Arc<Deployments>,
    max_body: usize,
}

type ChangesResult<T> = std::result::Result<T, ApiError>;

pub fn router(registry: Registry, deployments: Arc<Deployments>, max_body: usize) -> Routes {
    let view = Need::Scope(Scope::View);
    Routes::new()
        .get("/v1/changes/pending", view, list)
        .get("/v1/changes/pending/{id}", view, show)
        .post("/v1/changes/pending/{id}/approve", view, approve)
        .post("/v1/changes/pending/{id}/reject", view, reject)
        .with_state(ChangesState {
            registry,
            deployments,
            max_body,
        })
}

/// Who asks, through REST.
pub(crate) fn rest(principal: &Principal) -> Requester<'_> {
    Requester {
        by: &principal.name,
        source: "rest",
        git_commit: None,
    }
}

/// The answer to a change held for a second person: 202 with the change and what to do.
pub(crate) fn held_answer(change: &PendingChange) -> Response {
    let message = approvals::held_message(change);
    let body = serde_json::json!({ "status": "pending", "change": change, "message": message });
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// `pending` (the default) or `all`.
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<i64>,
}

async fn list(State(s): State<ChangesState>, Query(q): Query<ListQuery>) -> ChangesResult<Response> {
    let status = match q.status.as_deref() {
        None | Some("pending") => Some("pending"),
        Some("all") => None,
        Some(other) => {
            return Err(ApiError::from(PlanError::Invalid(vec![format!(
                "status={other:?}: use pending (the default) or all"
            )])));
        }
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let changes = s.registry.store().list_pending_changes(status, limit).await?;
    Ok(axum::Json(changes).into_response())
}

async fn show(State(s): State<ChangesState>, Path(id): Path<i64>) -> ChangesResult<Response> {
    Ok(axum::Json(s.registry.store().pending_change(id).await?).into_response())
}

/// The change's own scope must be the caller's too.
fn may_decide(principal: &Principal, change: &keel_store::PendingChange) -> ChangesResult<()> {
    let proposal = approvals::proposal_of(change)?;
    let scope = match proposal.scope() {
        "registry" => Scope::Registry,
        "deploy" => Scope::Deploy,
        _ => Scope::Admin,
    };
    if !principal.scopes.allows(scope) {
        return Err(ApiError::from(PlanError::Forbidden(format!(
            "deciding change #{} ({}) takes the `{}` scope, which your credential does not grant",
            change.id,
            change.subject,
            scope.as_str()
        ))));
    }
    Ok(())
}

async fn approve(
    State(s): State<ChangesState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<i64>,
) -> ChangesResult<Response> {
    let change = s.registry.store().pending_change(id).await?;
    may_decide(&principal, &change)?;
    let done = changes::approve(
        &s.registry,
        Some(&s.deployments),
        id,
        &principal.name,
        keel_catalog::Via::Api,
    )
    .await?;
    Ok(axum::Json(done).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectBody {
    reason: String,
}

async fn reject(
    State(s): State<ChangesState>,
    Extension(principal): Extension<Arc<Principal>>,
    Path(id): Path<i64>,
    req: Request,
) -> ChangesResult<Response> {
    let body = read_body(req.into_body(), s.max_body).await?;
    let body: RejectBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::from(PlanError::Invalid(vec![format!(
            "malformed request JSON: {e}; send {{\"reason\": \"why\"}}"
        )]))
    })?;
    let change = s.registry.store().pending_change(id).await?;
    // The requester may withdraw their own change; anyone else needs the change's scope.
    if change.requested_by != principal.name {
        may_decide(&principal, &change)?;
    }
    let done = changes::reject(&s.registry, id, &principal.name, &body.reason).await?;
    Ok(axum::Json(done).into_response())
}
