//! Access: principals, teams and their members, per-table grants and the audit log (API tokens
//! are in `tokens`).
//!
//! The store records who belongs where and who was granted what; the decision "may X do Y" is
//! made in keel-catalog from these facts.

use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, require_non_empty};
use crate::records::{AuditEvent, Grant, Principal, Team, TeamMember};
use crate::rows::{json_from_text, json_to_text, now_ms, time_from_ms};
use crate::store::{Store, in_write_tx, on_pool};

/// Team roles.
pub const TEAM_ROLES: [&str; 2] = ["member", "admin"];
/// Table permissions, weakest first.
pub const PERMISSIONS: [&str; 3] = ["read", "write", "admin"];

/// An audit record to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent<'a> {
    pub actor: &'a str,
    /// `read`, `write`, `grant`, `revoke`, `list`, ...
    pub action: &'a str,
    /// `table/<name>`, `team/<name>`, ...
    pub resource: &'a str,
    pub allowed: bool,
    /// `cli` or `api`.
    pub via: &'a str,
    pub details: serde_json::Value,
}

#[derive(Debug, sqlx::FromRow)]
struct PrincipalRow {
    name: String,
    is_admin: bool,
    created_at: i64,
    created_by: String,
}

impl TryFrom<PrincipalRow> for Principal {
    type Error = StoreError;
    fn try_from(r: PrincipalRow) -> Result<Self> {
        Ok(Principal {
            created_at: time_from_ms(r.created_at)?,
            name: r.name,
            is_admin: r.is_admin,
            created_by: r.created_by,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct GrantRow {
    table_name: String,
    team: String,
    permission: String,
    granted_at: i64,
    granted_by: String,
}

impl TryFrom<GrantRow> for Grant {
    type Error = StoreError;
    fn try_from(r: GrantRow) -> Result<Self> {
        Ok(Grant {
            granted_at: time_from_ms(r.granted_at)?,
            table: r.table_name,
            team: r.team,
            permission: r.permission,
            granted_by: r.granted_by,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct AuditRow {
    id: i64,
    occurred_at: i64,
    actor: String,
    action: String,
    resource: String,
    allowed: bool,
    via: String,
    details: String,
}

impl TryFrom<AuditRow> for AuditEvent {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<Self> {
        Ok(AuditEvent {
            at: time_from_ms(r.occurred_at)?,
            details: json_from_text("details", &r.details)?,
            id: r.id,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            allowed: r.allowed,
            via: r.via,
        })
    }
}

macro_rules! select_principals {
    () => {
        "SELECT name, is_admin, created_at, created_by FROM principals"
    };
}

macro_rules! select_grants {
    () => {
        "SELECT table_name, team, permission, granted_at, granted_by FROM table_grants"
    };
}

impl Store {
    /// The principal `name`, created on first sight. The very first principal of a workspace
    /// becomes its admin (whoever sets the workspace up owns it); later ones start without roles.
    pub async fn ensure_principal(&self, name: &str) -> Result<Principal> {
        require_non_empty("principal", name)?;
        if let Some(p) = self.principal(name).await? {
            return Ok(p);
        }
        in_write_tx!(self, |tx| {
            let existing: Option<PrincipalRow> = sqlx::query_as(concat!(select_principals!(), " WHERE name = $1"))
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(row) = existing {
                return Principal::try_from(row);
            }
            let count: i64 = sqlx::query_scalar("SELECT count(*) FROM principals")
                .fetch_one(&mut *tx)
                .await?;
            let at_ms = now_ms();
            let is_admin = count == 0;
            sqlx::query("INSERT INTO principals (name, is_admin, created_at, created_by) VALUES ($1, $2, $3, $1)")
                .bind(name)
                .bind(is_admin)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: name,
                    kind: "principal.create",
                    subject: format!("principal/{name}"),
                    details: json!({ "admin": is_admin, "first_principal": is_admin }),
                }
            );
            tx.commit().await?;
            Ok(Principal {
                name: name.to_owned(),
                is_admin,
                created_at: time_from_ms(at_ms)?,
                created_by: name.to_owned(),
            })
        })
    }

    /// The principal `name`, if known.
    pub async fn principal(&self, name: &str) -> Result<Option<Principal>> {
        let row: Option<PrincipalRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_principals!(),
            " WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await?);
        row.map(Principal::try_from).transpose()
    }

    /// Every principal, by name.
    pub async fn list_principals(&self) -> Result<Vec<Principal>> {
        let rows: Vec<PrincipalRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_principals!(),
            " ORDER BY name"
        ))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Principal::try_from).collect()
    }

    /// Makes `name` a workspace admin or takes that away (creating the principal if needed).
    pub async fn set_admin(&self, name: &str, is_admin: bool, by: &str) -> Result<()> {
        self.ensure_principal(name).await?;
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            if !is_admin {
                let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM principals WHERE is_admin AND name <> $1")
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?;
                if admins == 0 {
                    return Err(StoreError::conflict(format!(
                        "{name} is the last workspace admin; make someone else admin first"
                    )));
                }
            }
            sqlx::query("UPDATE principals SET is_admin = $2 WHERE name = $1")
                .bind(name)
                .bind(is_admin)
                .execute(&mut *tx)
                .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "principal.admin",
                    subject: format!("principal/{name}"),
                    details: json!({ "admin": is_admin }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Creates a team; its creator becomes its first admin.
    pub async fn create_team(&self, name: &str, description: Option<&str>, by: &str) -> Result<Team> {
        require_non_empty("team name", name)?;
        self.ensure_principal(by).await?;
        in_write_tx!(self, |tx| {
            let exists: Option<String> = sqlx::query_scalar("SELECT name FROM teams WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Err(StoreError::conflict(format!("team {name:?} already exists")));
            }
            let at_ms = now_ms();
            sqlx::query("INSERT INTO teams (name, description, created_at, created_by) VALUES ($1, $2, $3, $4)")
                .bind(name)
                .bind(description)
                .bind(at_ms)
                .bind(by)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO team_members (team, principal, role, added_at, added_by) VALUES ($1, $2, 'admin', $3, $2)",
            )
            .bind(name)
            .bind(by)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "team.create",
                    subject: format!("team/{name}"),
                    details: json!({ "team": name, "description": description }),
                }
            );
            tx.commit().await?;
            Ok::<(), StoreError>(())
        })?;
        self.team(name)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("team {name:?} vanished after creation")))
    }

    /// One team with its members, or `None`.
    pub async fn team(&self, name: &str) -> Result<Option<Team>> {
        Ok(self.list_teams().await?.into_iter().find(|t| t.name == name))
    }

    /// Every team with its members, by name.
    pub async fn list_teams(&self) -> Result<Vec<Team>> {
        let teams: Vec<(String, Option<String>, i64, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT name, description, created_at, created_by FROM teams ORDER BY name"
        )
        .fetch_all(pool)
        .await?);
        let members: Vec<(String, String, String)> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT team, principal, role FROM team_members ORDER BY team, principal"
        )
        .fetch_all(pool)
        .await?);
        teams
            .into_iter()
            .map(|(name, description, created_at, created_by)| {
                Ok(Team {
                    members: members
                        .iter()
                        .filter(|(t, _, _)| *t == name)
                        .map(|(_, p, r)| TeamMember {
                            principal: p.clone(),
                            role: r.clone(),
                        })
                        .collect(),
                    name,
                    description,
                    created_at: time_from_ms(created_at)?,
                    created_by,
                })
            })
            .collect()
    }

    /// The `(team, role)` memberships of a principal.
    pub async fn teams_of(&self, principal: &str) -> Result<Vec<(String, String)>> {
        Ok(on_pool!(self, |pool| sqlx::query_as(
            "SELECT team, role FROM team_members WHERE principal = $1 ORDER BY team"
        )
        .bind(principal)
        .fetch_all(pool)
        .await?))
    }

    /// Adds `principal` to `team` with `role` (or changes its role).
    pub async fn add_member(&self, team: &str, principal: &str, role: &str, by: &str) -> Result<()> {
        if !TEAM_ROLES.contains(&role) {
            return Err(StoreError::Invalid(format!(
                "unknown team role {role:?}: use member or admin"
            )));
        }
        if self.team(team).await?.is_none() {
            return Err(StoreError::not_found(format!("team {team:?} does not exist")));
        }
        self.ensure_principal(principal).await?;
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            sqlx::query(
                "INSERT INTO team_members (team, principal, role, added_at, added_by) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (team, principal) DO UPDATE SET role = excluded.role",
            )
            .bind(team)
            .bind(principal)
            .bind(role)
            .bind(at_ms)
            .bind(by)
            .execute(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "team.member.add",
                    subject: format!("team/{team}/member/{principal}"),
                    details: json!({ "team": team, "principal": principal, "role": role }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Removes `principal` from `team`.
    pub async fn remove_member(&self, team: &str, principal: &str, by: &str) -> Result<()> {
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            let done = sqlx::query("DELETE FROM team_members WHERE team = $1 AND principal = $2")
                .bind(team)
                .bind(principal)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found(format!(
                    "{principal} is not a member of team {team:?}"
                )));
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "team.member.remove",
                    subject: format!("team/{team}/member/{principal}"),
                    details: json!({ "team": team, "principal": principal }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Grants `team` a permission on `table` (replacing an earlier grant to that team).
    pub async fn grant(&self, table: &str, team: &str, permission: &str, by: &str) -> Result<()> {
        if !PERMISSIONS.contains(&permission) {
            return Err(StoreError::Invalid(format!(
                "unknown permission {permission:?}: use read, write or admin"
            )));
        }
        if self.team(team).await?.is_none() {
            return Err(StoreError::not_found(format!("team {team:?} does not exist")));
        }
        if self.table_entry(table).await?.is_none() {
            return Err(StoreError::not_found(format!(
                "table {table:?} is not in the catalog; ingest it first (`keel data ingest`)"
            )));
        }
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            sqlx::query(
                "INSERT INTO table_grants (table_name, team, permission, granted_at, granted_by) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (table_name, team) DO UPDATE SET permission = excluded.permission, \
                 granted_at = excluded.granted_at, granted_by = excluded.granted_by",
            )
            .bind(table)
            .bind(team)
            .bind(permission)
            .bind(at_ms)
            .bind(by)
            .execute(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.grant",
                    subject: format!("table/{table}/grant/{team}"),
                    details: json!({ "table": table, "team": team, "permission": permission }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Takes back `team`'s grant on `table`.
    pub async fn revoke(&self, table: &str, team: &str, by: &str) -> Result<()> {
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            let done = sqlx::query("DELETE FROM table_grants WHERE table_name = $1 AND team = $2")
                .bind(table)
                .bind(team)
                .execute(&mut *tx)
                .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::not_found(format!(
                    "team {team:?} holds no grant on {table:?}"
                )));
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.revoke",
                    subject: format!("table/{table}/grant/{team}"),
                    details: json!({ "table": table, "team": team }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// The grants on one table.
    pub async fn grants_on(&self, table: &str) -> Result<Vec<Grant>> {
        let rows: Vec<GrantRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_grants!(),
            " WHERE table_name = $1 ORDER BY team"
        ))
        .bind(table)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Grant::try_from).collect()
    }

    /// Every grant, by table then team.
    pub async fn list_grants(&self) -> Result<Vec<Grant>> {
        let rows: Vec<GrantRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_grants!(),
            " ORDER BY table_name, team"
        ))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(Grant::try_from).collect()
    }

    /// Appends one audit record.
    pub async fn audit(&self, event: NewAuditEvent<'_>) -> Result<()> {
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO audit_events (occurred_at, actor, action, resource, allowed, via, details) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )
        .bind(now_ms())
        .bind(event.actor)
        .bind(event.action)
        .bind(event.resource)
        .bind(event.allowed)
        .bind(event.via)
        .bind(json_to_text(&event.details))
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// The newest `limit` audit records, newest first, optionally only for resources starting
    /// with `resource_prefix` and/or by `actor`.
    pub async fn audit_events(
        &self,
        limit: i64,
        resource_prefix: Option<&str>,
        actor: Option<&str>,
    ) -> Result<Vec<AuditEvent>> {
        if limit < 0 {
            return Err(StoreError::Invalid(format!("audit limit {limit} is negative")));
        }
        let rows: Vec<AuditRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT id, occurred_at, actor, action, resource, allowed, via, details FROM audit_events \
             WHERE (CAST($1 AS TEXT) IS NULL OR substr(resource, 1, length(CAST($1 AS TEXT))) = CAST($1 AS TEXT)) \
             AND (CAST($2 AS TEXT) IS NULL OR actor = CAST($2 AS TEXT)) \
             ORDER BY id DESC LIMIT $3"
        )
        .bind(resource_prefix)
        .bind(actor)
        .bind(limit)
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(AuditEvent::try_from).collect()
    }
}
