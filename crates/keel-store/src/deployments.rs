//! Deployments: named endpoints whose definition (variants, traffic policy) changes by
//! immutable revisions, each attributed and recorded in the change log.

use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, require_non_empty};
use crate::records::DeploymentRevision;
use crate::rows::{DeploymentRow, convert_all, json_to_text, now_ms};
use crate::store::{Store, in_write_tx, on_pool};

const UPSERT_HEAD: &str = "INSERT INTO deployments (name, revision, created_at, updated_at) VALUES ($1, 0, $2, $2) \
     ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at";

const HEAD_REVISION: &str = "SELECT revision FROM deployments WHERE name = $1";

const BUMP_HEAD: &str = "UPDATE deployments SET revision = $2, updated_at = $3 WHERE name = $1";

const INSERT_REVISION: &str = "INSERT INTO deployment_revisions (name, revision, spec, created_at, created_by, reason) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const GET_REVISION: &str = "SELECT name, revision, spec, created_at, created_by, reason FROM deployment_revisions \
     WHERE name = $1 AND revision = $2";

const LATEST: &str = "SELECT r.name, r.revision, r.spec, r.created_at, r.created_by, r.reason \
     FROM deployment_revisions r JOIN deployments d ON d.name = r.name AND d.revision = r.revision";

const HISTORY: &str = "SELECT name, revision, spec, created_at, created_by, reason FROM deployment_revisions \
     WHERE name = $1 ORDER BY revision";

const INSERT_CHANGE_ONLY: &str = "INSERT INTO change_events (occurred_at, actor, kind, subject, details) \
     VALUES ($1, $2, $3, $4, $5)";

impl Store {
    /// Records a new revision of a deployment's definition (revision 1 creates it) and a
    /// `deployment.create` or `deployment.update` change, in one transaction.
    pub async fn put_deployment(
        &self,
        name: &str,
        spec: &serde_json::Value,
        by: &str,
        reason: Option<&str>,
    ) -> Result<DeploymentRevision> {
        require_non_empty("deployment name", name)?;
        require_non_empty("actor", by)?;
        let (revision, at_ms) = in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            sqlx::query(UPSERT_HEAD)
                .bind(name)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            let head: i64 = sqlx::query_scalar(HEAD_REVISION).bind(name).fetch_one(&mut *tx).await?;
            let revision = head + 1;
            sqlx::query(INSERT_REVISION)
                .bind(name)
                .bind(revision)
                .bind(json_to_text(spec))
                .bind(at_ms)
                .bind(by)
                .bind(reason)
                .execute(&mut *tx)
                .await?;
            sqlx::query(BUMP_HEAD)
                .bind(name)
                .bind(revision)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            let change = NewChange {
                at_ms,
                actor: by,
                kind: if revision == 1 {
                    "deployment.create"
                } else {
                    "deployment.update"
                },
                subject: format!("deployment/{name}/{revision}"),
                details: json!({ "deployment": name, "revision": revision, "reason": reason }),
            };
            append_change!(&mut *tx, change);
            tx.commit().await?;
            (revision, at_ms)
        });
        Ok(DeploymentRevision {
            name: name.to_owned(),
            revision,
            spec: spec.clone(),
            created_at: crate::rows::time_from_ms(at_ms)?,
            created_by: by.to_owned(),
            reason: reason.map(str::to_owned),
        })
    }

    /// The current revision of a deployment.
    pub async fn get_deployment(&self, name: &str) -> Result<DeploymentRevision> {
        let head: Option<i64> = on_pool!(self, |pool| {
            sqlx::query_scalar(HEAD_REVISION)
                .bind(name)
                .fetch_optional(pool)
                .await?
        });
        let head = head.ok_or_else(|| deployment_not_found(name))?;
        self.get_deployment_revision(name, head).await
    }

    /// One revision of a deployment.
    pub async fn get_deployment_revision(&self, name: &str, revision: i64) -> Result<DeploymentRevision> {
        let row: Option<DeploymentRow> = on_pool!(self, |pool| {
            sqlx::query_as(GET_REVISION)
                .bind(name)
                .bind(revision)
                .fetch_optional(pool)
                .await?
        });
        row.ok_or_else(|| {
            StoreError::not_found(format!(
                "deployment '{name}' has no revision {revision}; see its history for the revisions that exist"
            ))
        })?
        .try_into()
    }

    /// The current revision of every deployment, sorted by name.
    pub async fn list_deployments(&self) -> Result<Vec<DeploymentRevision>> {
        let rows: Vec<DeploymentRow> = on_pool!(self, |pool| sqlx::query_as(LATEST).fetch_all(pool).await?);
        let mut out: Vec<DeploymentRevision> = convert_all(rows)?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Every revision of a deployment, oldest first.
    pub async fn deployment_history(&self, name: &str) -> Result<Vec<DeploymentRevision>> {
        let rows: Vec<DeploymentRow> = on_pool!(self, |pool| {
            sqlx::query_as(HISTORY).bind(name).fetch_all(pool).await?
        });
        if rows.is_empty() {
            return Err(deployment_not_found(name));
        }
        convert_all(rows)
    }

    /// Appends a change made outside the store's own operations (an experiment paused by a
    /// guardrail, a canary rolled back), so every change is visible in one log.
    pub async fn record_change(
        &self,
        actor: &str,
        kind: &'static str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<()> {
        require_non_empty("actor", actor)?;
        require_non_empty("subject", subject)?;
        on_pool!(self, |pool| {
            sqlx::query(INSERT_CHANGE_ONLY)
                .bind(now_ms())
                .bind(actor)
                .bind(kind)
                .bind(subject)
                .bind(json_to_text(details))
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}

fn deployment_not_found(name: &str) -> StoreError {
    StoreError::not_found(format!(
        "deployment '{name}' does not exist; create it with `keel deployment apply FILE`"
    ))
}
