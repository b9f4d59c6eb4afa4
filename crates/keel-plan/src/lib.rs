//! Changes as code: a folder of declarative files that [`plan`] compares with the live state,
//! [`apply`] applies object by object, and [`export`] writes from what runs.
//!
//! ```text
//! DIR/
//!   deployments/<name>.json   a deployment's spec, as `keel deployment apply -f` takes it
//!   schedules/<name>.json     {"cron": "0 6 * * MON", "command": ["batch", ...], "notify": null}
//!   aliases.json              {"bc-lr": {"production": 3, "staging": 4}}
//!   grants.json               [{"table": "customers", "team": "marketing", "permission": "read"}]
//!   policy.json               {"approvals": {"aliases": ["production"], "deployment_traffic": ["*"], "pii_grants": true}}
//! ```
//!
//! The approvals policy ([`approvals`]) names changes that need a second person; `apply` holds
//! such changes as pending (with the git commit) instead of applying them, and says so.
//!
//! JSON rather than YAML: the same format the API and `keel deployment apply` take, so a file
//! can be moved between them unchanged, and no second parser (no YAML crate is a dependency).
//! Model versions themselves are artifacts pushed with `keel model push`; the folder names
//! which version each alias points at.
//!
//! Every object is validated before anything is applied (a spec that does not parse, an alias
//! to a version that does not exist, a bad cron expression stop the whole apply); then each
//! object is applied in its own transaction, recorded with the person and, when the folder is
//! in git, the commit it came from. Objects that exist but are not in the folder are listed as
//! unmanaged and left alone; `--prune` deletes aliases, schedules and grants among them
//! (deployments are never deleted: their decision logs are history).

pub mod approvals;
pub mod changes;
mod diff;
mod error;
mod files;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use keel_registry::Registry;
use serde::Serialize;
use serde_json::Value;

pub use error::PlanError;
pub use files::{Declared, ScheduleDecl, export, read_dir};

pub type Result<T, E = PlanError> = std::result::Result<T, E>;

/// What one object's change is.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Delete,
    /// Live, not in the folder, left alone (no `--prune`, or a deployment).
    Unmanaged,
}

/// One change of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub action: Action,
    /// `deployment`, `alias`, `schedule` or `grant`.
    pub kind: &'static str,
    pub name: String,
    /// What changes, one line each (`policy.type: "thompson_beta" -> "lin_ucb"`).
    pub details: Vec<String>,
}

/// The changes that bring the live state to the declared one.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Plan {
    pub changes: Vec<Change>,
}

impl Plan {
    /// Changes that `apply` would make (not the unmanaged ones).
    pub fn actionable(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.action != Action::Unmanaged)
    }

    pub fn is_empty(&self) -> bool {
        self.actionable().next().is_none()
    }
}

/// The live state in the folder's terms.
pub async fn live(registry: &Registry) -> Result<Declared> {
    let store = registry.store();
    let mut out = Declared::default();
    for d in store.list_deployments().await? {
        out.deployments.insert(d.name.clone(), d.spec.clone());
    }
    for m in registry.list_models().await? {
        let aliases: BTreeMap<String, i64> = m.aliases.iter().cloned().collect();
        if !aliases.is_empty() {
            out.aliases.insert(m.name.clone(), aliases);
        }
    }
    for s in store.list_schedules().await? {
        out.schedules.insert(
            s.name.clone(),
            ScheduleDecl {
                cron: s.cron.clone(),
                command: s.args.clone(),
                notify: s.notify.clone(),
            },
        );
    }
    for g in store.list_grants().await? {
        out.grants.insert((g.table, g.team, g.permission));
    }
    out.policy = approvals::Policy::live(store).await?;
    Ok(out)
}

/// Compares the folder with the live state.
pub fn plan(declared: &Declared, live: &Declared, prune: bool) -> Plan {
    let mut changes = Vec::new();
    let gone = |prunable: bool| {
        if prune && prunable {
            Action::Delete
        } else {
            Action::Unmanaged
        }
    };
    for (name, spec) in &declared.deployments {
        match live.deployments.get(name) {
            None => changes.push(change(Action::Create, "deployment", name, summary_of_spec(spec))),
            Some(old) if old != spec => changes.push(change(Action::Update, "deployment", name, diff::json(old, spec))),
            Some(_) => {}
        }
    }
    for name in live
        .deployments
        .keys()
        .filter(|n| !declared.deployments.contains_key(*n))
    {
        changes.push(change(gone(false), "deployment", name, vec![]));
    }
    let flat = |d: &Declared| -> BTreeMap<String, i64> {
        d.aliases
            .iter()
            .flat_map(|(m, a)| a.iter().map(move |(alias, v)| (format!("{m}@{alias}"), *v)))
            .collect()
    };
    let (want, have) = (flat(declared), flat(live));
    for (name, v) in &want {
        match have.get(name) {
            None => changes.push(change(Action::Create, "alias", name, vec![format!("-> version {v}")])),
            Some(old) if old != v => changes.push(change(
                Action::Update,
                "alias",
                name,
                vec![format!("version {old} -> {v}")],
            )),
            Some(_) => {}
        }
    }
    for name in have.keys().filter(|n| !want.contains_key(*n)) {
        changes.push(change(gone(true), "alias", name, vec![]));
    }
    for (name, s) in &declared.schedules {
        match live.schedules.get(name) {
            None => changes.push(change(
                Action::Create,
                "schedule",
                name,
                vec![format!("\"{}\": keel {}", s.cron, s.command.join(" "))],
            )),
            Some(old) if old != s => {
                let old_v = serde_json::to_value(old).unwrap_or(Value::Null);
                let new_v = serde_json::to_value(s).unwrap_or(Value::Null);
                changes.push(change(Action::Update, "schedule", name, diff::json(&old_v, &new_v)));
            }
            Some(_) => {}
        }
    }
    for name in live.schedules.keys().filter(|n| !declared.schedules.contains_key(*n)) {
        changes.push(change(gone(true), "schedule", name, vec![]));
    }
    let grant_name = |(t, team, p): &(String, String, String)| format!("{team} {p} {t}");
    for g in declared.grants.difference(&live.grants) {
        changes.push(change(Action::Create, "grant", &grant_name(g), vec![]));
    }
    for g in live.grants.difference(&declared.grants) {
        changes.push(change(gone(true), "grant", &grant_name(g), vec![]));
    }
    match (&declared.policy, &live.policy) {
        (Some(want), have) if Some(want) != have.as_ref() => {
            let old = have.as_ref().map_or(Value::Null, |p| serde_json::json!(p));
            let action = if have.is_some() { Action::Update } else { Action::Create };
            changes.push(change(
                action,
                "policy",
                approvals::POLICY,
                diff::json(&old, &serde_json::json!(want)),
            ));
        }
        (None, Some(_)) => changes.push(change(gone(true), "policy", approvals::POLICY, vec![])),
        _ => {}
    }
    Plan { changes }
}

fn change(action: Action, kind: &'static str, name: &str, details: Vec<String>) -> Change {
    Change {
        action,
        kind,
        name: name.to_string(),
        details,
    }
}

pub(crate) fn summary_of_spec(spec: &Value) -> Vec<String> {
    let variants: Vec<&str> = spec["variants"]
        .as_array()
        .map(|v| v.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    vec![format!(
        "policy {}, variants {}",
        spec["policy"]["type"].as_str().unwrap_or("?"),
        variants.join(", ")
    )]
}

/// Where a change came from: the person, and the folder's git commit if it is in git.
#[derive(Debug, Clone, Serialize)]
pub struct Source {
    pub by: String,
    pub git_commit: Option<String>,
    pub dir: String,
}

impl Source {
    /// `keel apply DIR` by `by`, with the commit of the folder's git (`-dirty` when it has
    /// uncommitted changes), if `git` finds one.
    pub fn of(dir: &Path, by: &str) -> Source {
        let git = |args: &[&str]| {
            std::process::Command::new("git")
                .arg("-C")
                .arg(dir)
                .args(args)
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        };
        let commit = git(&["rev-parse", "HEAD"]).map(|c| {
            let dirty = git(&["status", "--porcelain", "--", "."]).is_some_and(|s| !s.is_empty());
            if dirty { format!("{c}-dirty") } else { c }
        });
        Source {
            by: by.to_string(),
            git_commit: commit,
            dir: dir.display().to_string(),
        }
    }

    fn reason(&self) -> String {
        match &self.git_commit {
            Some(c) => format!("keel apply {} (git {c})", self.dir),
            None => format!("keel apply {}", self.dir),
        }
    }
}

/// Checks every declared object the plan would apply, before anything is written.
pub async fn validate(plan: &Plan, declared: &Declared, registry: &Registry) -> Result<()> {
    let mut problems = Vec::new();
    for c in plan.actionable() {
        match (c.kind, &c.action) {
            ("deployment", Action::Create | Action::Update) => {
                let spec = declared.deployments.get(&c.name).cloned().unwrap_or(Value::Null);
                if let Err(e) = keel_experiments::prepare_revision(registry, &c.name, spec).await {
                    problems.push(format!("deployments/{}.json: {e}", c.name));
                }
            }
            ("alias", Action::Create | Action::Update) => {
                let (model, alias) = c.name.split_once('@').unwrap_or((&c.name, ""));
                let version = declared.aliases.get(model).and_then(|a| a.get(alias)).copied();
                let exists = match version {
                    Some(v) => registry
                        .list_versions(model)
                        .await
                        .map(|all| all.iter().any(|mv| mv.version == v))
                        .unwrap_or(false),
                    None => false,
                };
                if !exists {
                    problems.push(format!(
                        "aliases.json: {model}@{alias} -> version {} does not exist; push it first (`keel model push {model} FILE`)",
                        version.map_or_else(|| "?".into(), |v| v.to_string())
                    ));
                }
            }
            ("grant", Action::Create) => {
                let mut parts = c.name.splitn(3, ' ');
                let (team, perm, table) = (
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                    parts.next().unwrap_or(""),
                );
                if !keel_store::PERMISSIONS.contains(&perm) {
                    problems.push(format!(
                        "grants.json: permission {perm:?} for {team} on {table}: use read, write or admin"
                    ));
                }
                if registry.store().team(team).await?.is_none() {
                    problems.push(format!(
                        "grants.json: team {team:?} does not exist (`keel access team create {team}`)"
                    ));
                }
                if registry.store().table_entry(table).await?.is_none() {
                    problems.push(format!(
                        "grants.json: table {table:?} is not in the catalog; ingest it first"
                    ));
                }
            }
            ("schedule", Action::Create | Action::Update) => {
                if let Some(s) = declared.schedules.get(&c.name)
                    && let Err(e) = keel_schedule::CronSpec::parse(&s.cron)
                {
                    problems.push(format!("schedules/{}.json: {e}", c.name));
                }
            }
            _ => {}
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(PlanError::Invalid(problems))
    }
}

/// What applying did, per change.
#[derive(Debug, Clone, Serialize)]
pub struct Applied {
    pub change: Change,
    /// `None`: applied (or held); else why it failed (the changes after it are still tried).
    pub error: Option<String>,
    /// Held for approval under the approvals policy: the pending change's id.
    pub pending: Option<i64>,
    /// What to tell the person about a held change.
    pub message: Option<String>,
}

/// The approvable form of a change: alias moves and removals, deployment revisions, grants and
/// the policy (schedules, revocations: `None`, applied directly).
fn proposal_for(c: &Change, declared: &Declared) -> Option<approvals::Proposal> {
    use approvals::Proposal;
    match (c.kind, &c.action) {
        ("deployment", Action::Create | Action::Update) => Some(Proposal::Deployment {
            name: c.name.clone(),
            spec: declared.deployments.get(&c.name).cloned().unwrap_or(Value::Null),
            reason: None,
        }),
        ("alias", action) => {
            let (model, alias) = c.name.split_once('@').unwrap_or((&c.name, ""));
            let version = match action {
                Action::Delete => None,
                _ => Some(
                    declared
                        .aliases
                        .get(model)
                        .and_then(|a| a.get(alias))
                        .copied()
                        .unwrap_or(0),
                ),
            };
            Some(Proposal::Alias {
                model: model.to_string(),
                alias: alias.to_string(),
                version,
                reason: None,
            })
        }
        ("grant", Action::Create) => {
            let mut parts = c.name.splitn(3, ' ');
            let (team, permission, table) = (parts.next()?, parts.next()?, parts.next()?);
            Some(Proposal::Grant {
                table: table.to_string(),
                team: team.to_string(),
                permission: permission.to_string(),
            })
        }
        ("policy", action) => Some(Proposal::Policy {
            policy: if *action == Action::Delete {
                None
            } else {
                declared.policy.clone()
            },
        }),
        _ => None,
    }
}

/// Applies the plan's changes, each on its own (one object, one transaction), after
/// [`validate`] passed; records one `plan.applied` change with the source and what was done.
pub async fn apply(plan: &Plan, declared: &Declared, registry: &Registry, source: &Source) -> Result<Vec<Applied>> {
    validate(plan, declared, registry).await?;
    let store = registry.store();
    let schedules = keel_schedule::Schedules::new(store.clone());
    let reason = source.reason();
    let by = source.by.as_str();
    let mut done = Vec::new();
    for c in plan.actionable() {
        let proposal = proposal_for(c, declared).map(|p| p.with_reason(&reason));
        if let Some(p) = &proposal {
            let who = approvals::Requester {
                by,
                source: "apply",
                git_commit: source.git_commit.as_deref(),
            };
            match changes::gate(store, p, who).await {
                Ok(Some(held)) => {
                    done.push(Applied {
                        change: c.clone(),
                        error: None,
                        pending: Some(held.id),
                        message: Some(approvals::held_message(&held)),
                    });
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    done.push(Applied {
                        change: c.clone(),
                        error: Some(e.to_string()),
                        pending: None,
                        message: None,
                    });
                    continue;
                }
            }
        }
        let result: std::result::Result<(), String> = async {
            if let Some(p) = &proposal {
                let details = approvals::execute(registry, None, p, by, Some(&reason), keel_catalog::Via::Cli).await?;
                changes::applied(store, p, by, &details).await;
                return Ok(());
            }
            match (c.kind, &c.action) {
                ("alias", Action::Delete) => {
                    let (model, alias) = c.name.split_once('@').unwrap_or((&c.name, ""));
                    registry
                        .delete_alias(model, alias, by, Some(&reason))
                        .await
                        .map_err(|e| e.to_string())
                }
                ("schedule", action) => {
                    if matches!(action, Action::Update | Action::Delete) {
                        schedules.delete(&c.name, by).await.map_err(|e| e.to_string())?;
                    }
                    if let (Action::Create | Action::Update, Some(s)) = (action, declared.schedules.get(&c.name)) {
                        schedules
                            .create(&c.name, &s.cron, &s.command, s.notify.as_deref(), by)
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok(())
                }
                ("grant", Action::Delete) => {
                    let mut parts = c.name.splitn(3, ' ');
                    let (team, _perm, table) = (
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                        parts.next().unwrap_or(""),
                    );
                    store.revoke(table, team, by).await.map_err(|e| e.to_string())
                }
                _ => Ok(()),
            }
        }
        .await;
        done.push(Applied {
            change: c.clone(),
            error: result.err(),
            pending: None,
            message: None,
        });
    }
    let summary: Vec<Value> = done
        .iter()
        .map(|a| serde_json::json!({"action": a.change.action, "kind": a.change.kind, "name": a.change.name, "error": a.error, "pending": a.pending}))
        .collect();
    store
        .record_change(
            by,
            "plan.applied",
            "plan",
            &serde_json::json!({"dir": source.dir, "git_commit": source.git_commit, "changes": summary}),
        )
        .await?;
    Ok(done)
}

/// Grants as a set of `(table, team, permission)`.
pub type Grants = BTreeSet<(String, String, String)>;
