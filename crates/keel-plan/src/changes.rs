//! Changes made the same way from every transport (the command line, REST, the console, `keel
//! apply`): passed through the approvals policy ([`crate::approvals`]), made as the person who
//! asked, and announced to the webhooks (`keel_guard::webhook`), so a subscriber hears of a
//! change whichever door it came through.
//!
//! Events: `change.pending` when a change is held, `change.approved` / `change.rejected` when a
//! second person decides it (with the applied change's own event after an approval),
//! `model.pushed`, `alias.moved` (a move or a removal: `version` null), `deployment.changed`.

use keel_experiments::Deployments;
use keel_guard::webhook::Events;
use keel_registry::{Alias, ModelVersion, Registry, VersionSelector};
use keel_store::{DeploymentRevision, PendingChange, Store};
use serde_json::{Value, json};

use crate::Result;
use crate::approvals::{self, Gate, Proposal, Requester, Revise};
use keel_catalog::Via;

/// What became of a change: held for a second person, or done.
#[derive(Debug)]
pub enum Outcome<T> {
    Held(Box<PendingChange>),
    Done(T),
}

/// The approvals policy's verdict on `p` as `who` asks for it: the held change (announced as
/// `change.pending`), or none when it may proceed.
pub async fn gate(store: &Store, p: &Proposal, who: Requester<'_>) -> Result<Option<Box<PendingChange>>> {
    match approvals::gate(store, p, who).await? {
        Gate::Proceed => Ok(None),
        Gate::Held(change) => {
            Events::new(store.clone()).change("change.pending", &change).await;
            Ok(Some(change))
        }
    }
}

/// Points `model@alias` at `version` (none: removes the alias) as `who`, with `reason`: held
/// when the policy names it, else moved and announced (`alias.moved`). The alias as it now is
/// (none after a removal).
pub async fn move_alias(
    registry: &Registry,
    model: &str,
    alias: &str,
    version: Option<i64>,
    reason: Option<&str>,
    who: Requester<'_>,
) -> Result<Outcome<Option<Alias>>> {
    let alias = alias.trim_start_matches('@');
    let proposal = Proposal::Alias {
        model: model.to_string(),
        alias: alias.to_string(),
        version,
        reason: reason.map(str::to_string),
    };
    let by = who.by.to_string();
    if let Some(held) = gate(registry.store(), &proposal, who).await? {
        return Ok(Outcome::Held(held));
    }
    let moved = match version {
        Some(v) => Some(
            registry
                .set_alias(model, alias, &VersionSelector::Number(v), &by, reason)
                .await?,
        ),
        None => {
            registry.delete_alias(model, alias, &by, reason).await?;
            None
        }
    };
    if let Some((event, data)) = approvals::event_for(&proposal, Some(&by)) {
        Events::new(registry.store().clone())
            .emit(event, Value::Object(data))
            .await;
    }
    Ok(Outcome::Done(moved))
}

/// Makes `spec` deployment `name`'s next revision as `who`, with `reason`: held when the policy
/// names it; else made where `to` says (live, or recorded for the next start) and announced
/// (`deployment.changed`, with the new revision).
pub async fn revise_deployment(
    to: Revise<'_>,
    name: &str,
    spec: &Value,
    reason: Option<&str>,
    who: Requester<'_>,
) -> Result<Outcome<DeploymentRevision>> {
    let proposal = Proposal::Deployment {
        name: name.to_string(),
        spec: spec.clone(),
        reason: reason.map(str::to_string),
    };
    let by = who.by.to_string();
    if let Some(held) = gate(to.store(), &proposal, who).await? {
        return Ok(Outcome::Held(held));
    }
    let revision = to.revision(name, spec, &by, reason).await?;
    applied(to.store(), &proposal, &by, &json!({ "revision": revision.revision })).await;
    Ok(Outcome::Done(revision))
}

/// Announces a version just pushed by `who` (`model.pushed`) and points the aliases asked for
/// at push at it, each through [`move_alias`] (reason "set at push"): the version is pushed
/// either way; an alias the policy names waits for its approval.
pub async fn pushed(
    registry: &Registry,
    version: &ModelVersion,
    aliases: &[String],
    who: Requester<'_>,
) -> Result<Vec<(String, Outcome<Option<Alias>>)>> {
    Events::new(registry.store().clone())
        .emit(
            "model.pushed",
            json!({"model": version.model, "version": version.version, "content_hash": version.content_hash, "by": who.by}),
        )
        .await;
    let mut moved = Vec::with_capacity(aliases.len());
    for alias in aliases {
        let outcome = move_alias(
            registry,
            &version.model,
            alias,
            Some(version.version),
            Some("set at push"),
            who,
        )
        .await?;
        moved.push((alias.clone(), outcome));
    }
    Ok(moved)
}

/// Approves change `id` as `approver` (acting through `via`) and applies it
/// ([`approvals::approve`]), announcing the approval and the change it made.
pub async fn approve(
    registry: &Registry,
    live: Option<&Deployments>,
    id: i64,
    approver: &str,
    via: Via,
) -> Result<PendingChange> {
    let done = approvals::approve(registry, live, id, approver, via).await?;
    let events = Events::new(registry.store().clone());
    events.change("change.approved", &done).await;
    if let Some((event, data)) = approvals::event_of(&done) {
        events.emit(event, data).await;
    }
    Ok(done)
}

/// Rejects change `id` as `by` ([`approvals::reject`]), announcing it.
pub async fn reject(registry: &Registry, id: i64, by: &str, reason: &str) -> Result<PendingChange> {
    let done = approvals::reject(registry, id, by, reason).await?;
    Events::new(registry.store().clone())
        .change("change.rejected", &done)
        .await;
    Ok(done)
}

/// Announces a change `keel apply` made through [`approvals::execute`] (`details`: what it
/// answered, which names a deployment's new revision).
pub(crate) async fn applied(store: &Store, p: &Proposal, by: &str, details: &Value) {
    let Some((event, mut data)) = approvals::event_for(p, Some(by)) else {
        return;
    };
    if let Some(revision) = details.get("revision") {
        data.insert("revision".into(), revision.clone());
    }
    Events::new(store.clone()).emit(event, Value::Object(data)).await;
}
