//! Approvals: a policy (`policy.json` in the folder, applied like the rest) names changes that
//! need a second person. Every entry point (REST, the command line, `keel apply`, the console)
//! passes its change through [`gate`] first: a change the policy names is held as pending (who,
//! when, exactly what, the diff, the git commit) instead of applied. [`approve`] applies it as
//! the approver, who must not be the requester, and refuses it when its target moved since the
//! request (stale); [`reject`] closes it with a reason.
//!
//! ```json
//! {"approvals": {"aliases": ["production"], "deployment_traffic": ["*"], "pii_grants": true}}
//! ```
//!
//! - `aliases`: alias names (any model), or `MODEL@ALIAS`, whose moves and removals are held;
//! - `deployment_traffic`: deployments (names, `*` for all) whose traffic changes are held: a
//!   new deployment, or a revision whose `variants`, `policy` or `control` differ;
//! - `pii_grants`: grants on catalog tables with a PII column are held.
//!
//! While the policy holds anything, changing the policy itself is held too, so no one weakens
//! it alone.

/// Through which transport a change is made (the catalog audits grants with it).
pub use keel_catalog::Via;
use keel_catalog::{Catalog, Permission};
use keel_experiments::Deployments;
use keel_registry::{Registry, VersionSelector};
use keel_store::{ApprovalOutcome, DeploymentRevision, NewPendingChange, PendingChange, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{PlanError, Result, diff};

/// The store's name for the policy.
pub const POLICY: &str = "approvals";

/// Which changes need a second person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deployment_traffic: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pii_grants: bool,
}

/// `policy.json`: `{"approvals": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyFile {
    pub approvals: Policy,
}

impl Policy {
    pub fn holds_anything(&self) -> bool {
        !self.aliases.is_empty() || !self.deployment_traffic.is_empty() || self.pii_grants
    }

    /// The live policy (none set: holds nothing).
    pub async fn live(store: &Store) -> Result<Option<Policy>> {
        match store.get_policy(POLICY).await? {
            None => Ok(None),
            Some(body) => serde_json::from_value(body)
                .map(Some)
                .map_err(|e| PlanError::Invalid(vec![format!("the stored approvals policy is unreadable: {e}")])),
        }
    }
}

/// A change that may be held: exactly what applies on approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Proposal {
    /// Point `alias` at `version`, or remove it (`None`).
    Alias {
        model: String,
        alias: String,
        version: Option<i64>,
        #[serde(default)]
        reason: Option<String>,
    },
    /// A new revision of a deployment.
    Deployment {
        name: String,
        spec: Value,
        #[serde(default)]
        reason: Option<String>,
    },
    /// Give a team a permission on a table.
    Grant {
        table: String,
        team: String,
        permission: String,
    },
    /// Set (or remove) the approvals policy.
    Policy { policy: Option<Policy> },
}

impl Proposal {
    pub fn kind(&self) -> &'static str {
        match self {
            Proposal::Alias { .. } => "alias",
            Proposal::Deployment { .. } => "deployment",
            Proposal::Grant { .. } => "grant",
            Proposal::Policy { .. } => "policy",
        }
    }

    /// Its change-log subject.
    pub fn subject(&self) -> String {
        match self {
            Proposal::Alias { model, alias, .. } => format!("model/{model}/alias/{alias}"),
            Proposal::Deployment { name, .. } => format!("deployment/{name}"),
            Proposal::Grant { table, team, .. } => format!("table/{table}/grant/{team}"),
            Proposal::Policy { .. } => format!("policy/{POLICY}"),
        }
    }

    /// The same change, with `reason` where it has none (alias moves and deployment revisions
    /// keep why they were asked for; `keel apply` gives its folder and git commit).
    pub fn with_reason(mut self, why: &str) -> Proposal {
        if let Proposal::Alias { reason, .. } | Proposal::Deployment { reason, .. } = &mut self
            && reason.is_none()
        {
            *reason = Some(why.to_string());
        }
        self
    }

    /// The API scope that making this change takes, and so approving it too: `registry`,
    /// `deploy` or `admin`.
    pub fn scope(&self) -> &'static str {
        match self {
            Proposal::Alias { .. } => "registry",
            Proposal::Deployment { .. } => "deploy",
            Proposal::Grant { .. } | Proposal::Policy { .. } => "admin",
        }
    }
}

/// Who asks for a change, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub by: &'a str,
    /// `rest`, `cli`, `apply` or `console`.
    pub source: &'a str,
    pub git_commit: Option<&'a str>,
}

/// What [`gate`] decided.
#[derive(Debug)]
pub enum Gate {
    /// The policy does not name this change: apply it now.
    Proceed,
    /// Held for a second person.
    Held(Box<PendingChange>),
}

/// The current state of a change's target: what an approval compares with the request's.
async fn base_of(store: &Store, p: &Proposal) -> Result<Value> {
    Ok(match p {
        Proposal::Alias { model, alias, .. } => match store.get_alias(model, alias).await {
            Ok(a) => json!({ "version": a.version }),
            Err(StoreError::NotFound { .. }) => json!({ "version": null }),
            Err(e) => return Err(e.into()),
        },
        Proposal::Deployment { name, .. } => match store.get_deployment(name).await {
            Ok(d) => json!({ "revision": d.revision, "spec": d.spec }),
            Err(StoreError::NotFound { .. }) => json!({ "revision": null }),
            Err(e) => return Err(e.into()),
        },
        Proposal::Grant { table, team, .. } => {
            let current = store
                .list_grants()
                .await?
                .into_iter()
                .find(|g| &g.table == table && &g.team == team)
                .map(|g| g.permission);
            json!({ "permission": current })
        }
        Proposal::Policy { .. } => json!({ "policy": store.get_policy(POLICY).await? }),
    })
}

/// The rule of `policy` that holds `p`, if any.
async fn rule_for(store: &Store, policy: &Policy, p: &Proposal, base: &Value) -> Result<Option<String>> {
    Ok(match p {
        Proposal::Alias { model, alias, .. } => policy
            .aliases
            .iter()
            .find(|a| *a == alias || **a == format!("{model}@{alias}"))
            .map(|a| format!("aliases: {a}")),
        Proposal::Deployment { name, spec, .. } => {
            let named = policy.deployment_traffic.iter().find(|d| *d == "*" || *d == name);
            let traffic = |s: &Value| ["variants", "policy", "control"].map(|k| s.get(k).cloned());
            let changes_traffic = match base.get("spec") {
                None => true,
                Some(old) => traffic(old) != traffic(spec),
            };
            named
                .filter(|_| changes_traffic)
                .map(|d| format!("deployment_traffic: {d}"))
        }
        Proposal::Grant { table, .. } if policy.pii_grants => {
            let pii: Vec<String> = store
                .table_entry(table)
                .await?
                .map(|t| t.columns.into_iter().filter(|c| c.pii).map(|c| c.name).collect())
                .unwrap_or_default();
            (!pii.is_empty()).then(|| format!("pii_grants: {table} has PII columns ({})", pii.join(", ")))
        }
        Proposal::Grant { .. } => None,
        Proposal::Policy { policy: new } => {
            (Some(policy) != new.as_ref()).then(|| "a change to an approvals policy that holds changes".to_string())
        }
    })
}

/// One line per difference from the live state.
fn diff_of(p: &Proposal, base: &Value) -> Vec<String> {
    match p {
        Proposal::Alias { version, .. } => {
            let from = base["version"].as_i64();
            vec![match (from, version) {
                (Some(f), Some(t)) => format!("version {f} -> {t}"),
                (None, Some(t)) => format!("-> version {t}"),
                (Some(f), None) => format!("version {f} -> (removed)"),
                (None, None) => "(no alias) -> (removed)".to_string(),
            }]
        }
        Proposal::Deployment { spec, .. } => match base.get("spec") {
            Some(old) => diff::json(old, spec),
            None => crate::summary_of_spec(spec),
        },
        Proposal::Grant {
            table,
            team,
            permission,
        } => {
            let from = base["permission"].as_str().unwrap_or("(none)");
            vec![format!("{team} on {table}: {from} -> {permission}")]
        }
        Proposal::Policy { policy } => {
            let old = base["policy"].clone();
            let new = policy.as_ref().map_or(Value::Null, |p| json!(p));
            diff::json(&old, &new)
        }
    }
}

/// Holds `p` as pending when the live policy names it; else says to proceed.
pub async fn gate(store: &Store, p: &Proposal, who: Requester<'_>) -> Result<Gate> {
    let Some(policy) = Policy::live(store).await?.filter(Policy::holds_anything) else {
        return Ok(Gate::Proceed);
    };
    let base = base_of(store, p).await?;
    let Some(rule) = rule_for(store, &policy, p, &base).await? else {
        return Ok(Gate::Proceed);
    };
    let proposal = serde_json::to_value(p).map_err(|e| PlanError::Invalid(vec![e.to_string()]))?;
    let diff = diff_of(p, &base);
    let held = store
        .request_change(NewPendingChange {
            kind: p.kind(),
            subject: &p.subject(),
            proposal: &proposal,
            diff: &diff,
            base: &base,
            rule: &rule,
            requested_by: who.by,
            source: who.source,
            git_commit: who.git_commit,
        })
        .await?;
    Ok(Gate::Held(Box::new(held)))
}

/// The message a held change is answered with.
pub fn held_message(c: &PendingChange) -> String {
    format!(
        "change #{} ({}) needs a second person under the approvals policy ({}): someone other than {} with the `{}` scope approves it with `keel approve {}` (or POST /v1/changes/{}/approve, or the console's Changes page)",
        c.id,
        c.subject,
        c.rule,
        c.requested_by,
        proposal_of(c).map_or("admin", |p| p.scope()),
        c.id,
        c.id
    )
}

/// The proposal a held change stores.
pub fn proposal_of(c: &PendingChange) -> Result<Proposal> {
    serde_json::from_value(c.proposal.clone())
        .map_err(|e| PlanError::Invalid(vec![format!("change #{} holds an unreadable proposal: {e}", c.id)]))
}

/// Makes the change, as `by` acting through `via` (no policy check: callers gate first, or
/// approve). A grant is made through the catalog, so `by` needs `admin` on the table.
pub async fn execute(
    registry: &Registry,
    live: Option<&Deployments>,
    p: &Proposal,
    by: &str,
    reason: Option<&str>,
    via: Via,
) -> std::result::Result<Value, String> {
    let store = registry.store();
    match p {
        Proposal::Alias {
            model,
            alias,
            version: Some(v),
            ..
        } => registry
            .set_alias(model, alias, &VersionSelector::Number(*v), by, reason)
            .await
            .map(|a| json!({ "to_version": a.version }))
            .map_err(|e| e.to_string()),
        Proposal::Alias {
            model,
            alias,
            version: None,
            ..
        } => registry
            .delete_alias(model, alias, by, reason)
            .await
            .map(|()| json!({ "removed": true }))
            .map_err(|e| e.to_string()),
        Proposal::Deployment { name, spec, .. } => Revise::of(registry, live)
            .revision(name, spec, by, reason)
            .await
            .map(|revision| json!({ "revision": revision.revision }))
            .map_err(|e| e.to_string()),
        Proposal::Grant {
            table,
            team,
            permission,
        } => {
            let catalog = Catalog::new(store.clone());
            let granted = async {
                let actor = catalog.actor(by).await?;
                let level: Permission = permission.parse()?;
                catalog.grant(&actor, table, team, level, via).await
            };
            granted
                .await
                .map(|()| json!({ "permission": permission }))
                .map_err(|e| e.to_string())
        }
        Proposal::Policy { policy } => {
            let body = policy.as_ref().map(|p| json!(p));
            store
                .put_policy(POLICY, body.as_ref(), by)
                .await
                .map(|()| json!({}))
                .map_err(|e| e.to_string())
        }
    }
}

/// Approves change `id` as `approver` and applies it: refused when `approver` requested it
/// (or is anonymous), when it is not waiting, or when its target moved since the request.
/// `live`: the server's running deployments, so an approved revision switches traffic there.
pub async fn approve(
    registry: &Registry,
    live: Option<&Deployments>,
    id: i64,
    approver: &str,
    via: Via,
) -> Result<PendingChange> {
    let store = registry.store();
    let change = store.pending_change(id).await?;
    if approver == keel_auth::ANONYMOUS {
        return Err(PlanError::Forbidden(format!(
            "change #{id} needs a second, named person: approve it with a credential of your own (this server checks none)"
        )));
    }
    if change.requested_by == approver {
        return Err(PlanError::Forbidden(format!(
            "you ({approver}) requested change #{id}; another person must approve it"
        )));
    }
    let p = proposal_of(&change)?;
    // Approving makes the change as the approver: one who could not make it is refused before
    // the change is claimed, so it stays pending for someone who can.
    if let Proposal::Grant {
        table,
        team,
        permission,
    } = &p
    {
        let catalog = Catalog::new(store.clone());
        let actor = catalog.actor(approver).await?;
        catalog
            .check_grant(&actor, table, team, permission.parse()?, via)
            .await?;
    }
    let change = store.claim_approval(id, approver).await?;
    let now = base_of(store, &p).await?;
    if now != change.base {
        let why = format!(
            "stale: {} changed since change #{id} was requested ({} then, {} now); reject it and request the change again",
            change.subject,
            brief(&change.base),
            brief(&now)
        );
        store
            .finish_approval(id, approver, &ApprovalOutcome::Failed { error: why.clone() })
            .await?;
        return Err(PlanError::Stale(why));
    }
    let reason = match &p {
        Proposal::Alias { reason: Some(r), .. } | Proposal::Deployment { reason: Some(r), .. } => {
            format!("approved change #{id} requested by {}: {r}", change.requested_by)
        }
        _ => format!("approved change #{id} requested by {}", change.requested_by),
    };
    match execute(registry, live, &p, approver, Some(&reason), via).await {
        Ok(details) => Ok(store
            .finish_approval(id, approver, &ApprovalOutcome::Applied { details })
            .await?),
        Err(error) => {
            store
                .finish_approval(id, approver, &ApprovalOutcome::Failed { error: error.clone() })
                .await?;
            Err(PlanError::Failed(format!("change #{id} could not be applied: {error}")))
        }
    }
}

/// Where a deployment's next revision goes.
#[derive(Clone, Copy)]
pub enum Revise<'a> {
    /// Switched live on a running server's deployments.
    Live(&'a Deployments),
    /// Recorded (its models resolved in the registry) for the next start.
    Record(&'a Registry),
}

impl<'a> Revise<'a> {
    /// `live` when there is one, else recorded through `registry`.
    pub fn of(registry: &'a Registry, live: Option<&'a Deployments>) -> Self {
        live.map_or(Revise::Record(registry), Revise::Live)
    }

    pub fn store(&self) -> &'a Store {
        match self {
            Revise::Live(d) => d.store(),
            Revise::Record(r) => r.store(),
        }
    }

    /// Deployment `name`'s next revision, `spec`, made by `by`.
    pub async fn revision(
        self,
        name: &str,
        spec: &Value,
        by: &str,
        reason: Option<&str>,
    ) -> keel_experiments::Result<DeploymentRevision> {
        match self {
            Revise::Live(d) => d.apply(name, spec, by, reason).await,
            Revise::Record(registry) => {
                keel_experiments::prepare_revision(registry, name, spec.clone())
                    .await?
                    .record(registry.store(), by, reason)
                    .await
            }
        }
    }
}

/// The event (name and data) of the change an approval applied: `alias.moved` or
/// `deployment.changed` (none for grants and the policy).
pub fn event_of(done: &PendingChange) -> Option<(&'static str, Value)> {
    let (event, mut data) = event_for(&proposal_of(done).ok()?, done.decided_by.as_deref())?;
    data.insert("approved_change".into(), json!(done.id));
    Some((event, Value::Object(data)))
}

/// The event a change makes once applied by `by`, and its data: `alias.moved` (`version` null
/// for a removal) or `deployment.changed`; none for grants and the policy.
pub(crate) fn event_for(p: &Proposal, by: Option<&str>) -> Option<(&'static str, serde_json::Map<String, Value>)> {
    let (event, data) = match p {
        Proposal::Alias {
            model,
            alias,
            version,
            reason,
        } => (
            "alias.moved",
            json!({"model": model, "alias": alias, "version": version, "by": by, "reason": reason}),
        ),
        Proposal::Deployment { name, reason, .. } => (
            "deployment.changed",
            json!({"deployment": name, "by": by, "reason": reason}),
        ),
        Proposal::Grant { .. } | Proposal::Policy { .. } => return None,
    };
    match data {
        Value::Object(map) => Some((event, map)),
        _ => None,
    }
}

/// Closes change `id` without applying it.
pub async fn reject(registry: &Registry, id: i64, by: &str, reason: &str) -> Result<PendingChange> {
    if reason.trim().is_empty() {
        return Err(PlanError::Invalid(vec![format!(
            "say why change #{id} is rejected (--reason \"...\")"
        )]));
    }
    Ok(registry.store().reject_change(id, by, reason).await?)
}

fn brief(base: &Value) -> String {
    match base {
        Value::Object(m) => m
            .iter()
            .filter(|(k, _)| *k != "spec")
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}
