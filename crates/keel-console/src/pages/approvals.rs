//! `/ui/changes/pending`: the changes the approvals policy holds for a second person, each
//! with its diff, who asked and from where, and buttons to approve or reject it.
//!
//! The buttons are forms posted to this server (the only forms of the console that write
//! besides logging in). A post from another site is refused (its `Origin` must be this
//! server; the login cookie is also `SameSite=Strict`, so another site's form carries no
//! credential). Approving needs the change's own scope (`registry` for an alias, `deploy` for
//! a deployment, `admin` for a grant or the policy) and a person other than the requester; the
//! applied change is recorded as the approver, as `POST /v1/changes/pending/ID/approve` does.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keel_auth::{Principal, Scope};
use keel_plan::{approvals, changes};
use serde::Deserialize;

use super::{Who, viewer_of};
use crate::html::{Cell, Table, esc, time};
use crate::{Console, Failure, answer, redirect};

const MAX_FORM: usize = 16 * 1024;

#[derive(Debug, Default, Deserialize)]
pub(crate) struct PendingQuery {
    /// What was just done (`approved`/`rejected`) and to which change, shown above the table.
    done: Option<String>,
    id: Option<i64>,
}

pub(crate) async fn handler(State(c): State<Arc<Console>>, Query(q): Query<PendingQuery>, who: Who) -> Response {
    let viewer = viewer_of(&who);
    let notice = match (q.done.as_deref(), q.id) {
        (Some(done @ ("approved" | "rejected")), Some(id)) => Some(format!("Change #{id} {done}.")),
        _ => None,
    };
    answer(viewer.as_ref(), "Approvals", render(&c, notice.as_deref(), None).await)
}

async fn render(c: &Console, notice: Option<&str>, error: Option<&str>) -> Result<String, Failure> {
    let back = ("/ui/changes", "the change log");
    let store = c.deployments.store();
    let waiting = store
        .list_pending_changes(Some("pending"), 500)
        .await
        .map_err(|e| Failure::from_error(c.status_of, &e, "Changes", back))?;
    let decided: Vec<_> = store
        .list_pending_changes(None, 50)
        .await
        .map_err(|e| Failure::from_error(c.status_of, &e, "Changes", back))?
        .into_iter()
        .filter(|ch| ch.status != "pending")
        .collect();
    let mut out = String::new();
    if let Some(n) = notice {
        let _ = write!(out, r#"<p class="notice" id="notice">{}</p>"#, esc(n));
    }
    if let Some(e) = error {
        let _ = write!(out, r#"<p class="failure" id="error">{}</p>"#, esc(e));
    }
    out.push_str(
        r#"<p class="hint">Changes the approvals policy (<code>policy.json</code>) holds until a second person approves them. Approving applies the change as you; the person who asked cannot approve it.</p>"#,
    );
    let mut t = Table::new(
        "pending",
        &["#", "Requested", "By", "Subject", "Change", "Rule", "From", "Decide"],
    );
    for ch in &waiting {
        let from = ch
            .git_commit
            .as_deref()
            .map_or_else(|| ch.source.clone(), |g| format!("{} (git {g})", ch.source));
        let mut diff = ch
            .diff
            .iter()
            .map(|d| esc(d).to_string())
            .collect::<Vec<_>>()
            .join("<br>");
        if let Some(note) = &ch.note {
            let _ = write!(diff, r#"<br><em class="note">last attempt: {}</em>"#, esc(note));
        }
        let forms = format!(
            r#"<form method="post" action="/ui/changes/pending/{id}/approve" class="inline"><button type="submit" class="approve" data-change="{id}">Approve</button></form>
<form method="post" action="/ui/changes/pending/{id}/reject" class="inline"><input name="reason" required placeholder="why not" aria-label="reason to reject #{id}"><button type="submit" class="reject" data-change="{id}">Reject</button></form>"#,
            id = ch.id
        );
        t.named_row(
            &ch.id.to_string(),
            vec![
                Cell::num(ch.id as f64, ch.id.to_string()),
                Cell::text(&time(&ch.requested_at)).sort_by(ch.requested_at.timestamp_millis().to_string()),
                Cell::text(&ch.requested_by).key("by"),
                Cell::text(&ch.subject).key("subject"),
                Cell::html(format!("<code>{diff}</code>")).key("change"),
                Cell::text(&ch.rule).key("rule"),
                Cell::text(&from).key("from"),
                Cell::html(forms),
            ],
        );
    }
    out.push_str("<h2>Waiting</h2>");
    out.push_str(&t.render("no change is waiting for approval"));
    let mut d = Table::new(
        "decided",
        &["#", "Subject", "Requested by", "Status", "Decided by", "When", "Note"],
    );
    for ch in &decided {
        d.named_row(
            &ch.id.to_string(),
            vec![
                Cell::num(ch.id as f64, ch.id.to_string()),
                Cell::text(&ch.subject),
                Cell::text(&ch.requested_by),
                Cell::text(&ch.status).key("status"),
                Cell::text(ch.decided_by.as_deref().unwrap_or("")).key("decided_by"),
                Cell::text(&ch.decided_at.as_ref().map(time).unwrap_or_default()),
                Cell::text(ch.note.as_deref().unwrap_or("")),
            ],
        );
    }
    out.push_str("<h2>Recently decided</h2>");
    out.push_str(&d.render("nothing decided yet"));
    Ok(out)
}

#[derive(Deserialize)]
struct RejectForm {
    reason: String,
}

/// What the person is told when a decision is refused: the page again, with why.
async fn refused(c: &Console, who: &Who, status: u16, message: &str) -> Response {
    let viewer = viewer_of(who);
    let body = render(c, None, Some(message)).await;
    let mut r = answer(viewer.as_ref(), "Approvals", body);
    *r.status_mut() = axum::http::StatusCode::from_u16(status).unwrap_or(axum::http::StatusCode::BAD_REQUEST);
    r
}

/// The principal may decide this change: it grants the change's own scope.
fn may_decide(principal: &Principal, proposal: &approvals::Proposal) -> Result<(), String> {
    let scope = match proposal.scope() {
        "registry" => Scope::Registry,
        "deploy" => Scope::Deploy,
        _ => Scope::Admin,
    };
    if principal.scopes.allows(scope) {
        Ok(())
    } else {
        Err(format!(
            "deciding this change takes the `{}` scope, which your token does not grant",
            scope.as_str()
        ))
    }
}

pub(crate) async fn approve(
    State(c): State<Arc<Console>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    who: Who,
) -> Response {
    decide(&c, id, &headers, &who, None).await
}

pub(crate) async fn reject(
    State(c): State<Arc<Console>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    who: Who,
    body: Body,
) -> Response {
    let form = match axum::body::to_bytes(body, MAX_FORM).await {
        Ok(bytes) => serde_urlencoded::from_bytes::<RejectForm>(&bytes).ok(),
        Err(_) => None,
    };
    let Some(form) = form.filter(|f| !f.reason.trim().is_empty()) else {
        return refused(&c, &who, 400, "say why the change is rejected (the reason field)").await;
    };
    decide(&c, id, &headers, &who, Some(form.reason.trim())).await
}

/// Approves (`reason` None) or rejects change `id` as the signed-in person.
async fn decide(c: &Console, id: i64, headers: &HeaderMap, who: &Who, reason: Option<&str>) -> Response {
    if !crate::login::same_origin(headers) {
        return refused(
            c,
            who,
            403,
            "this form was posted from another site; decide from this server's own page",
        )
        .await;
    }
    let Some(principal) = who.as_ref().map(|e| e.0.clone()) else {
        return refused(c, who, 401, "log in to decide changes").await;
    };
    let store = c.deployments.store();
    let change = match store.pending_change(id).await {
        Ok(ch) => ch,
        Err(e) => return refused(c, who, (c.status_of)(e.kind()), &e.to_string()).await,
    };
    let proposal = match approvals::proposal_of(&change) {
        Ok(p) => p,
        Err(e) => return refused(c, who, 409, &e.to_string()).await,
    };
    // The requester may withdraw their own change; anyone else needs its scope.
    if (reason.is_none() || change.requested_by != principal.name)
        && let Err(why) = may_decide(&principal, &proposal)
    {
        return refused(c, who, 403, &why).await;
    }
    let result = match reason {
        None => {
            changes::approve(
                &c.registry,
                Some(&c.deployments),
                id,
                &principal.name,
                keel_plan::approvals::Via::Api,
            )
            .await
        }
        Some(r) => changes::reject(&c.registry, id, &principal.name, r).await,
    };
    match result {
        Ok(_) => {
            let word = if reason.is_none() { "approved" } else { "rejected" };
            redirect(&format!("/ui/changes/pending?done={word}&id={id}"))
        }
        Err(e) => {
            use keel_types::KeelError as _;
            refused(c, who, (c.status_of)(e.kind()), &e.to_string()).await
        }
    }
}
