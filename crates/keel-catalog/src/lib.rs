//! The data catalog's rules.
//!
//! keel-catalog decides who may read, write or administer a lake table, records every decision
//! in the audit log, and keeps the catalog in step with what writers observe (columns, schema
//! versions, PII detected in the values). API tokens are keel-auth's. Facts live in keel-store; data
//! lives in keel-lake; this crate knows neither HTTP nor Delta Lake, so the CLI and the API ask
//! the same questions and get the same answers.
//!
//! The model:
//! - A **principal** acts (a person, or a service with an API token). The first principal of a
//!   workspace becomes its admin; admins may do anything.
//! - **Teams** own tables. Members of the owner team hold `admin` on the table.
//! - A **grant** gives another team `read`, `write` or `admin` on one table: sharing is a grant.
//! - A denial reads the same whether or not the table exists, and lists of tables show only
//!   what the actor may read.
//! - A check returns a [`TablePass`] (`Read`, `Write` or `Admin`) and writes its audit record
//!   itself; table operations take the pass, so an unchecked write does not compile.

mod error;
mod pass;
pub mod pii;

use std::marker::PhantomData;

use keel_store::{Grant, NewAuditEvent, ObservedColumn, Store, TableEntry};
use serde::Serialize;
use serde_json::json;

pub use error::{CatalogError, Result};
pub use pass::{Access, Admin, CanRead, CanWrite, Read, TablePass, Write};

/// The team a workspace admin's tables go to when the admin belongs to no team.
pub const DEFAULT_TEAM: &str = "default";

/// What may be done with a table, weakest first: each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    Read,
    Write,
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Admin => "admin",
        }
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Permission {
    type Err = CatalogError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "read" => Ok(Permission::Read),
            "write" => Ok(Permission::Write),
            "admin" => Ok(Permission::Admin),
            other => Err(CatalogError::Invalid(format!(
                "unknown permission {other:?}: use read, write or admin"
            ))),
        }
    }
}

/// Which entry point acted, for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cli,
    Api,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Cli => "cli",
            Via::Api => "api",
        }
    }
}

/// A principal with what they belong to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actor {
    pub name: String,
    pub is_admin: bool,
    /// `(team, role)` pairs.
    pub teams: Vec<(String, String)>,
}

impl Actor {
    fn in_team(&self, team: &str) -> bool {
        self.teams.iter().any(|(t, _)| t == team)
    }

    fn team_admin(&self, team: &str) -> bool {
        self.teams.iter().any(|(t, r)| t == team && r == "admin")
    }
}

/// A table as one actor sees it in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listed {
    pub name: String,
    /// `None` for a lake table not yet in the catalog (listed to admins only).
    pub entry: Option<TableEntry>,
    pub permission: Permission,
}

/// The catalog's rules over one metadata store.
#[derive(Debug, Clone)]
pub struct Catalog {
    store: Store,
}

impl Catalog {
    pub fn new(store: Store) -> Catalog {
        Catalog { store }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The principal `name` with their teams (created on first sight; see
    /// [`Store::ensure_principal`] for the first-admin rule).
    pub async fn actor(&self, name: &str) -> Result<Actor> {
        let principal = self.store.ensure_principal(name).await?;
        let teams = self.store.teams_of(name).await?;
        Ok(Actor {
            name: principal.name,
            is_admin: principal.is_admin,
            teams,
        })
    }

    /// The strongest permission `actor` holds on `table`, or `None`.
    pub async fn permission(&self, actor: &Actor, table: &str) -> Result<Option<Permission>> {
        if actor.is_admin {
            return Ok(Some(Permission::Admin));
        }
        let entry = self.store.table_entry(table).await?;
        let grants = self.store.grants_on(table).await?;
        Ok(held(actor, entry.as_ref(), &grants))
    }

    /// Checks that `actor` holds `A` on `table` for `action` and records the attempt in the audit
    /// log either way. The pass carries the catalog entry (`None` for an uncatalogued table an
    /// admin reached).
    pub async fn check<A: Access>(
        &self,
        actor: &Actor,
        table: &str,
        action: &str,
        via: Via,
        details: serde_json::Value,
    ) -> Result<TablePass<A>> {
        let entry = self.checked(actor, table, A::PERMISSION, action, via, details).await?;
        Ok(TablePass {
            actor: actor.clone(),
            table: table.to_owned(),
            via,
            entry,
            owner: None,
            access: PhantomData,
        })
    }

    /// A write pass for a table that may not exist yet. A catalogued table needs a write grant
    /// (`owner` is ignored: it keeps its owner team); a table in the lake but not catalogued
    /// (`in_lake`) needs a write check (admins only) and then an owner; a new table needs only an
    /// owner team the actor may create tables for (see [`Catalog::owner_for_new_table`]), and
    /// its audit record is the one [`Catalog::record_commit`] writes.
    #[allow(clippy::too_many_arguments)]
    pub async fn check_create(
        &self,
        actor: &Actor,
        table: &str,
        owner: Option<&str>,
        in_lake: bool,
        action: &str,
        via: Via,
        details: serde_json::Value,
    ) -> Result<TablePass<Write>> {
        let (entry, owner) = match self.store.table_entry(table).await? {
            Some(_) => {
                let entry = self
                    .checked(actor, table, Permission::Write, action, via, details)
                    .await?;
                (entry, None)
            }
            None if in_lake => {
                // Written before the catalog, or a crash between the commit and the catalog
                // update: admins adopt it.
                let entry = self
                    .checked(actor, table, Permission::Write, action, via, details)
                    .await?;
                (entry, Some(self.owner_for_new_table(actor, table, owner).await?))
            }
            None => (None, Some(self.owner_for_new_table(actor, table, owner).await?)),
        };
        Ok(TablePass {
            actor: actor.clone(),
            table: table.to_owned(),
            via,
            entry,
            owner,
            access: PhantomData,
        })
    }

    /// The check behind every pass: decides, audits, and returns the entry when allowed.
    async fn checked(
        &self,
        actor: &Actor,
        table: &str,
        needed: Permission,
        action: &str,
        via: Via,
        details: serde_json::Value,
    ) -> Result<Option<TableEntry>> {
        let entry = self.store.table_entry(table).await?;
        let grants = match &entry {
            Some(_) if !actor.is_admin => self.store.grants_on(table).await?,
            _ => Vec::new(),
        };
        let allowed = held(actor, entry.as_ref(), &grants).is_some_and(|p| p >= needed);
        self.store
            .audit(NewAuditEvent {
                actor: &actor.name,
                action,
                resource: &format!("table/{table}"),
                allowed,
                via: via.as_str(),
                details,
            })
            .await?;
        if !allowed {
            return Err(CatalogError::Denied {
                actor: actor.name.clone(),
                action: action.to_owned(),
                table: table.to_owned(),
                needed: needed.as_str().to_owned(),
            });
        }
        Ok(entry)
    }

    /// The grants `actor` may see: those on `table` (after an audited read check), else every
    /// grant for an admin, else the grants on tables the actor holds any permission on.
    pub async fn visible_grants(&self, actor: &Actor, table: Option<&str>, via: Via) -> Result<Vec<Grant>> {
        if let Some(table) = table {
            self.check::<Read>(actor, table, "read_grants", via, json!({})).await?;
            return Ok(self.store.grants_on(table).await?);
        }
        let all = self.store.list_grants().await?;
        if actor.is_admin {
            return Ok(all);
        }
        let mut visible = Vec::new();
        for grant in all {
            if self.permission(actor, &grant.table).await?.is_some() {
                visible.push(grant);
            }
        }
        Ok(visible)
    }

    /// The tables `actor` may read. `lake_tables` are the tables present in the lake: admins
    /// also see those not yet catalogued; a catalogued table missing from the lake is skipped.
    pub async fn visible_tables(&self, actor: &Actor, lake_tables: &[String]) -> Result<Vec<Listed>> {
        let entries = self.store.list_table_entries().await?;
        let grants = self.store.list_grants().await?;
        let mut out = Vec::new();
        for name in lake_tables {
            let entry = entries.iter().find(|e| &e.name == name).cloned();
            if entry.is_none() && !actor.is_admin {
                continue;
            }
            let on_table: Vec<Grant> = grants.iter().filter(|g| &g.table == name).cloned().collect();
            if let Some(permission) = held(actor, entry.as_ref(), &on_table) {
                out.push(Listed {
                    name: name.clone(),
                    entry,
                    permission,
                });
            }
        }
        Ok(out)
    }

    /// Who will own a table `actor` is about to create: `owner` if given (the actor must be in it,
    /// or an admin), else the actor's only team, else for an admin in no team [`DEFAULT_TEAM`]
    /// (created on first use).
    pub async fn owner_for_new_table(&self, actor: &Actor, table: &str, owner: Option<&str>) -> Result<String> {
        if let Some(owner) = owner {
            if self.store.team(owner).await?.is_none() {
                return Err(CatalogError::Invalid(format!(
                    "team {owner:?} does not exist; create it with `keel access team create {owner}`"
                )));
            }
            if !actor.is_admin && !actor.in_team(owner) {
                return Err(self.forbidden(
                    actor,
                    format!("create table {table:?} for team {owner:?}"),
                    "only its members or an admin may",
                ));
            }
            return Ok(owner.to_owned());
        }
        match actor.teams.as_slice() {
            [(only, _)] => Ok(only.clone()),
            [] if actor.is_admin => {
                if self.store.team(DEFAULT_TEAM).await?.is_none() {
                    self.store
                        .create_team(
                            DEFAULT_TEAM,
                            Some("tables of workspace admins in no other team"),
                            &actor.name,
                        )
                        .await?;
                }
                Ok(DEFAULT_TEAM.to_owned())
            }
            [] => Err(self.forbidden(
                actor,
                format!("create table {table:?}"),
                "you belong to no team; ask an admin to add you to one (keel access team add)",
            )),
            many => Err(CatalogError::Invalid(format!(
                "you belong to {} teams ({}): pass --owner TEAM to say which owns table {table:?}",
                many.len(),
                many.iter().map(|(t, _)| t.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// Records a write committed under `pass`: catalogues a new table under the pass's owner
    /// team, updates its columns and schema history with what the writer saw and what PII
    /// detection found, and audits it as `write`.
    pub async fn record_commit(
        &self,
        pass: &TablePass<impl CanWrite>,
        version: i64,
        columns: &[(String, String)],
        detected: &[pii::Detected],
        details: serde_json::Value,
    ) -> Result<()> {
        let (actor, table) = (&pass.actor, pass.table.as_str());
        let Some(owner) = pass.owner() else {
            return Err(CatalogError::Invalid(format!(
                "table {table:?} has no owner team: check it with check_create before its first write"
            )));
        };
        self.store.register_table(table, owner, None, &actor.name).await?;
        let observed: Vec<ObservedColumn> = columns
            .iter()
            .map(|(name, ty)| ObservedColumn {
                name: name.clone(),
                data_type: ty.clone(),
                detected_pii: detected.iter().find(|d| &d.column == name).map(|d| d.kind.to_owned()),
            })
            .collect();
        self.store
            .record_table_write(table, version, &observed, &actor.name)
            .await?;
        self.store
            .audit(NewAuditEvent {
                actor: &actor.name,
                action: "write",
                resource: &format!("table/{table}"),
                allowed: true,
                via: pass.via.as_str(),
                details,
            })
            .await?;
        Ok(())
    }

    /// Whether `actor` may grant `team` a permission on `table`: they need `admin` on it (the
    /// check is audited) and the table must be in the catalog. Checked when a grant is asked for,
    /// so one an approvals policy holds is refused at once, and again when it is made.
    pub async fn check_grant(
        &self,
        actor: &Actor,
        table: &str,
        team: &str,
        permission: Permission,
        via: Via,
    ) -> Result<TablePass<Admin>> {
        let details = json!({ "team": team, "permission": permission });
        let pass = self.check::<Admin>(actor, table, "grant", via, details).await?;
        if self.store.table_entry(table).await?.is_none() {
            return Err(CatalogError::Invalid(format!(
                "table {table:?} is not in the catalog yet: a workspace admin catalogues it with `keel data adopt {table} --owner TEAM` (or write to it once with `keel data ingest`) before sharing it"
            )));
        }
        Ok(pass)
    }

    /// Grants `team` a permission on `table` (the actor needs `admin` on it: [`check_grant`](Self::check_grant)).
    pub async fn grant(&self, actor: &Actor, table: &str, team: &str, permission: Permission, via: Via) -> Result<()> {
        self.check_grant(actor, table, team, permission, via).await?;
        self.store.grant(table, team, permission.as_str(), &actor.name).await?;
        Ok(())
    }

    /// Takes back `team`'s grant on `table` (the actor needs `admin` on it).
    pub async fn revoke(&self, actor: &Actor, table: &str, team: &str, via: Via) -> Result<()> {
        self.check::<Admin>(actor, table, "revoke", via, json!({ "team": team }))
            .await?;
        self.store.revoke(table, team, &actor.name).await?;
        Ok(())
    }

    /// Creates a team (admins only); the creator becomes its admin.
    pub async fn create_team(&self, actor: &Actor, team: &str, description: Option<&str>) -> Result<()> {
        if !actor.is_admin {
            return Err(self.forbidden(
                actor,
                format!("create team {team:?}"),
                "only workspace admins create teams",
            ));
        }
        validate_name("team", team)?;
        self.store.create_team(team, description, &actor.name).await?;
        Ok(())
    }

    /// Adds or re-roles a member (workspace admins and the team's admins).
    pub async fn add_member(&self, actor: &Actor, team: &str, principal: &str, role: &str) -> Result<()> {
        if !actor.is_admin && !actor.team_admin(team) {
            return Err(self.forbidden(
                actor,
                format!("manage team {team:?}"),
                "only its admins or a workspace admin may",
            ));
        }
        validate_name("principal", principal)?;
        self.store.add_member(team, principal, role, &actor.name).await?;
        Ok(())
    }

    /// Removes a member (workspace admins and the team's admins).
    pub async fn remove_member(&self, actor: &Actor, team: &str, principal: &str) -> Result<()> {
        if !actor.is_admin && !actor.team_admin(team) {
            return Err(self.forbidden(
                actor,
                format!("manage team {team:?}"),
                "only its admins or a workspace admin may",
            ));
        }
        self.store.remove_member(team, principal, &actor.name).await?;
        Ok(())
    }

    /// Makes someone a workspace admin or takes it away (admins only).
    pub async fn set_admin(&self, actor: &Actor, principal: &str, is_admin: bool) -> Result<()> {
        if !actor.is_admin {
            return Err(self.forbidden(actor, "change workspace admins".into(), "only workspace admins may"));
        }
        self.store.set_admin(principal, is_admin, &actor.name).await?;
        Ok(())
    }

    fn forbidden(&self, actor: &Actor, what: String, why: &str) -> CatalogError {
        CatalogError::Forbidden {
            actor: actor.name.clone(),
            what,
            why: why.to_owned(),
        }
    }
}

/// What `actor` holds on a table with catalog `entry` (`None`: not catalogued) and `grants`.
fn held(actor: &Actor, entry: Option<&TableEntry>, grants: &[Grant]) -> Option<Permission> {
    if actor.is_admin {
        return Some(Permission::Admin);
    }
    let entry = entry?;
    if actor.in_team(&entry.owner_team) {
        return Some(Permission::Admin);
    }
    grants
        .iter()
        .filter(|g| actor.in_team(&g.team))
        .filter_map(|g| g.permission.parse::<Permission>().ok())
        .max()
}

/// Team and principal names: 1-64 characters of `[A-Za-z0-9_.@-]`.
pub fn validate_name(what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(CatalogError::Invalid(format!(
            "invalid {what} name {name:?}: use 1-64 characters of letters, digits, _ . @ -"
        )))
    }
}
