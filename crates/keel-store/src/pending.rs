//! Approvals: named policies (the `approvals` policy names the changes that need a second
//! person) and the changes held until one approves or rejects them.
//!
//! The store keeps the rules of the record, not of the policy: a change is requested (and the
//! request logged), claimed by an approver who is not its requester (a compare-and-set, so two
//! approvers never both apply it), then finished as approved (both people in the change log) or
//! released back to pending with why applying failed; or rejected with a reason. What a change
//! is and how it applies belongs to the caller (keel-plan).

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Value, json};

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, require_non_empty};
use crate::rows::{json_from_text, json_to_text, now_ms, time_from_ms};
use crate::store::{Store, in_write_tx, on_pool};

/// A change to hold for approval.
#[derive(Debug, Clone)]
pub struct NewPendingChange<'a> {
    /// `alias`, `deployment`, `grant` or `policy`.
    pub kind: &'a str,
    /// The change log subject of its target (`model/bc-lr/alias/production`).
    pub subject: &'a str,
    /// Exactly what applies on approval.
    pub proposal: &'a Value,
    /// One line per difference from the live state.
    pub diff: &'a [String],
    /// The target's state when requested; an approval finding another is stale.
    pub base: &'a Value,
    /// The policy rule that holds it.
    pub rule: &'a str,
    pub requested_by: &'a str,
    /// `rest`, `cli`, `apply` or `console`.
    pub source: &'a str,
    pub git_commit: Option<&'a str>,
}

/// A change held for approval, and what became of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingChange {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub proposal: Value,
    pub diff: Vec<String>,
    pub base: Value,
    pub rule: String,
    /// `pending`, `approving`, `approved` or `rejected`.
    pub status: String,
    pub requested_by: String,
    pub requested_at: DateTime<Utc>,
    pub source: String,
    pub git_commit: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    /// Why it was rejected, or why the last approval could not apply it.
    pub note: Option<String>,
}

#[derive(sqlx::FromRow)]
struct PendingRow {
    id: i64,
    kind: String,
    subject: String,
    proposal: String,
    diff: String,
    base: String,
    rule: String,
    status: String,
    requested_by: String,
    requested_at: i64,
    source: String,
    git_commit: Option<String>,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    note: Option<String>,
}

impl TryFrom<PendingRow> for PendingChange {
    type Error = StoreError;
    fn try_from(r: PendingRow) -> Result<PendingChange> {
        let diff = json_from_text("diff", &r.diff)?;
        Ok(PendingChange {
            id: r.id,
            kind: r.kind,
            subject: r.subject,
            proposal: json_from_text("proposal", &r.proposal)?,
            diff: serde_json::from_value(diff).unwrap_or_default(),
            base: json_from_text("base", &r.base)?,
            rule: r.rule,
            status: r.status,
            requested_by: r.requested_by,
            requested_at: time_from_ms(r.requested_at)?,
            source: r.source,
            git_commit: r.git_commit,
            decided_by: r.decided_by,
            decided_at: r.decided_at.map(time_from_ms).transpose()?,
            note: r.note,
        })
    }
}

macro_rules! select_pending {
    () => {
        "SELECT id, kind, subject, proposal, diff, base, rule, status, requested_by, requested_at, \
         source, git_commit, decided_by, decided_at, note FROM pending_changes"
    };
}

fn not_found(id: i64) -> StoreError {
    StoreError::not_found(format!(
        "there is no change #{id} waiting or decided; `keel changes pending` lists the waiting ones"
    ))
}

/// How an approver's claim on a change ends (see [`Store::finish_approval`]).
#[derive(Debug, Clone)]
pub enum ApprovalOutcome {
    /// Applied; `details` go into the `change.approved` entry.
    Applied { details: Value },
    /// Not applied (stale, or the change failed); back to pending with why.
    Failed { error: String },
}

impl Store {
    /// The policy called `name`, if one was set.
    pub async fn get_policy(&self, name: &str) -> Result<Option<Value>> {
        let body: Option<String> = on_pool!(self, |pool| {
            sqlx::query_scalar("SELECT body FROM policies WHERE name = $1")
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        body.map(|b| json_from_text("body", &b)).transpose()
    }

    /// Sets (or with `None` removes) the policy called `name`, logged as `policy.set`.
    pub async fn put_policy(&self, name: &str, body: Option<&Value>, by: &str) -> Result<()> {
        require_non_empty("policy name", name)?;
        require_non_empty("actor", by)?;
        let at = now_ms();
        in_write_tx!(self, |tx| {
            match body {
                Some(body) => {
                    sqlx::query(
                        "INSERT INTO policies (name, body, updated_at, updated_by) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (name) DO UPDATE SET body = excluded.body, updated_at = excluded.updated_at, \
                         updated_by = excluded.updated_by",
                    )
                    .bind(name)
                    .bind(json_to_text(body))
                    .bind(at)
                    .bind(by)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query("DELETE FROM policies WHERE name = $1")
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: "policy.set",
                    subject: format!("policy/{name}"),
                    details: json!({ "policy": body }),
                }
            );
            tx.commit().await?;
        });
        Ok(())
    }

    /// Holds a change for approval, logged as `change.requested` on its subject.
    pub async fn request_change(&self, new: NewPendingChange<'_>) -> Result<PendingChange> {
        require_non_empty("change kind", new.kind)?;
        require_non_empty("subject", new.subject)?;
        require_non_empty("requester", new.requested_by)?;
        let at = now_ms();
        let diff = json_to_text(&json!(new.diff));
        let id: i64 = in_write_tx!(self, |tx| {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO pending_changes (kind, subject, proposal, diff, base, rule, status, requested_by, \
                 requested_at, source, git_commit) VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $9, $10) RETURNING id",
            )
            .bind(new.kind)
            .bind(new.subject)
            .bind(json_to_text(new.proposal))
            .bind(&diff)
            .bind(json_to_text(new.base))
            .bind(new.rule)
            .bind(new.requested_by)
            .bind(at)
            .bind(new.source)
            .bind(new.git_commit)
            .fetch_one(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: new.requested_by,
                    kind: "change.requested",
                    subject: new.subject.to_owned(),
                    details: json!({
                        "change": id, "kind": new.kind, "rule": new.rule, "diff": new.diff,
                        "source": new.source, "git_commit": new.git_commit,
                    }),
                }
            );
            tx.commit().await?;
            id
        });
        self.pending_change(id).await
    }

    /// One held change, whatever its status.
    pub async fn pending_change(&self, id: i64) -> Result<PendingChange> {
        let row: Option<PendingRow> = on_pool!(self, |pool| {
            sqlx::query_as(concat!(select_pending!(), " WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| not_found(id))?.try_into()
    }

    /// Held changes with `status` (all of them with `None`), oldest first, at most `limit`.
    pub async fn list_pending_changes(&self, status: Option<&str>, limit: i64) -> Result<Vec<PendingChange>> {
        let rows: Vec<PendingRow> = on_pool!(self, |pool| match status {
            Some(status) => {
                sqlx::query_as(concat!(select_pending!(), " WHERE status = $1 ORDER BY id LIMIT $2"))
                    .bind(status)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
            None => {
                sqlx::query_as(concat!(select_pending!(), " ORDER BY id DESC LIMIT $1"))
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
            }
        });
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Claims a waiting change for `approver` (pending -> approving). Refused (a conflict) when
    /// it is not waiting or `approver` requested it; only one approver ever holds the claim.
    pub async fn claim_approval(&self, id: i64, approver: &str) -> Result<PendingChange> {
        require_non_empty("approver", approver)?;
        let done = on_pool!(self, |pool| {
            sqlx::query(
                "UPDATE pending_changes SET status = 'approving', decided_by = $2 \
                 WHERE id = $1 AND status = 'pending' AND requested_by <> $2",
            )
            .bind(id)
            .bind(approver)
            .execute(pool)
            .await?
            .rows_affected()
        });
        let change = self.pending_change(id).await?;
        if done == 0 {
            return Err(if change.requested_by == approver {
                StoreError::conflict(format!(
                    "change #{id} was requested by {approver}; someone else must approve it"
                ))
            } else {
                not_waiting(&change)
            });
        }
        Ok(change)
    }

    /// Ends `approver`'s claim: approved (logged as `change.approved` with both people), or
    /// back to pending with why it could not apply.
    pub async fn finish_approval(&self, id: i64, approver: &str, outcome: &ApprovalOutcome) -> Result<PendingChange> {
        let at = now_ms();
        let change = self.pending_change(id).await?;
        in_write_tx!(self, |tx| {
            let (status, note, decided_by, decided_at) = match outcome {
                ApprovalOutcome::Applied { .. } => ("approved", None, Some(approver), Some(at)),
                ApprovalOutcome::Failed { error } => ("pending", Some(error.as_str()), None, None),
            };
            let done = sqlx::query(
                "UPDATE pending_changes SET status = $3, note = $4, decided_by = $5, decided_at = $6 \
                 WHERE id = $1 AND status = 'approving' AND decided_by = $2",
            )
            .bind(id)
            .bind(approver)
            .bind(status)
            .bind(note)
            .bind(decided_by)
            .bind(decided_at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::conflict(format!(
                    "change #{id} is not being approved by {approver}"
                )));
            }
            let (kind, details) = match outcome {
                ApprovalOutcome::Applied { details } => ("change.approved", details.clone()),
                ApprovalOutcome::Failed { error } => ("change.approval_failed", json!({ "error": error })),
            };
            let mut details = details;
            if let Value::Object(map) = &mut details {
                map.insert("change".into(), json!(id));
                map.insert("kind".into(), json!(change.kind));
                map.insert("requested_by".into(), json!(change.requested_by));
                map.insert("approved_by".into(), json!(approver));
                map.insert("git_commit".into(), json!(change.git_commit));
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: approver,
                    kind,
                    subject: change.subject.clone(),
                    details,
                }
            );
            tx.commit().await?;
        });
        self.pending_change(id).await
    }

    /// Closes a waiting change without applying it, logged as `change.rejected` with the reason.
    pub async fn reject_change(&self, id: i64, by: &str, reason: &str) -> Result<PendingChange> {
        require_non_empty("actor", by)?;
        require_non_empty("reason", reason)?;
        let at = now_ms();
        let change = self.pending_change(id).await?;
        in_write_tx!(self, |tx| {
            let done = sqlx::query(
                "UPDATE pending_changes SET status = 'rejected', decided_by = $2, decided_at = $3, note = $4 \
                 WHERE id = $1 AND status = 'pending'",
            )
            .bind(id)
            .bind(by)
            .bind(at)
            .bind(reason)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(not_waiting(&change));
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms: at,
                    actor: by,
                    kind: "change.rejected",
                    subject: change.subject.clone(),
                    details: json!({
                        "change": id, "kind": change.kind, "requested_by": change.requested_by,
                        "rejected_by": by, "reason": reason,
                    }),
                }
            );
            tx.commit().await?;
        });
        self.pending_change(id).await
    }
}

fn not_waiting(change: &PendingChange) -> StoreError {
    let by = change.decided_by.as_deref().unwrap_or("someone");
    StoreError::conflict(match change.status.as_str() {
        "approving" => format!("change #{} is being approved by {by} right now", change.id),
        status => format!("change #{} is not waiting: it was {status} by {by}", change.id),
    })
}
