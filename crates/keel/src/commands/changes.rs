//! `keel changes`: the change log; `keel changes pending`, `keel approve`, `keel reject`: changes
//! held for a second person by the approvals policy.

use keel_plan::approvals::{self, Proposal, Requester};
use keel_plan::changes;
use keel_store::{PendingChange, Store};

use crate::cli::{ApproveArgs, ChangesArgs, ChangesCommand, Global, PendingArgs, RejectArgs};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, args: ChangesArgs) -> anyhow::Result<()> {
    if let Some(ChangesCommand::Pending(p)) = args.command {
        return pending(global, p).await;
    }
    let ctx = Context::open(global).await?;
    let changes = ctx
        .registry
        .store()
        .list_changes(args.limit, args.subject.as_deref())
        .await?;
    if global.json {
        return output::json(&changes);
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                output::time(&c.at),
                c.actor.clone(),
                c.kind.clone(),
                c.subject.clone(),
                c.details.to_string(),
            ]
        })
        .collect();
    output::table(&["WHEN (UTC)", "WHO", "WHAT", "SUBJECT", "DETAILS"], &rows);
    Ok(())
}

async fn pending(global: &Global, args: PendingArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let status = (!args.all).then_some("pending");
    let changes = ctx.registry.store().list_pending_changes(status, args.limit).await?;
    if global.json {
        return output::json(&changes);
    }
    let rows: Vec<Vec<String>> = changes
        .iter()
        .map(|c| {
            vec![
                c.id.to_string(),
                c.status.clone(),
                output::time(&c.requested_at),
                c.requested_by.clone(),
                c.subject.clone(),
                c.diff.join("; "),
                c.git_commit.clone().unwrap_or_else(|| c.source.clone()),
                c.note.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "ID",
            "STATUS",
            "REQUESTED (UTC)",
            "BY",
            "SUBJECT",
            "CHANGE",
            "FROM",
            "NOTE",
        ],
        &rows,
    );
    if changes.is_empty() {
        println!("(no change is waiting for approval)");
    }
    Ok(())
}

pub async fn approve(global: &Global, args: ApproveArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let by = principal(global);
    let done = changes::approve(&ctx.registry, None, args.id, &by, keel_catalog::Via::Cli).await?;
    if global.json {
        return output::json(&done);
    }
    println!(
        "approved change #{} ({}) requested by {}; applied as {by}: {}",
        done.id,
        done.subject,
        done.requested_by,
        done.diff.join("; ")
    );
    Ok(())
}

pub async fn reject(global: &Global, args: RejectArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let by = principal(global);
    let done = changes::reject(&ctx.registry, args.id, &by, &args.reason).await?;
    if global.json {
        return output::json(&done);
    }
    println!("rejected change #{} ({}): {}", done.id, done.subject, args.reason);
    Ok(())
}

/// Passes a command's change through the approvals policy: `true` when it was held (and
/// reported), so the command must not apply it.
pub async fn held(global: &Global, store: &Store, proposal: &Proposal, by: &str) -> anyhow::Result<bool> {
    match changes::gate(store, proposal, cli(by)).await? {
        None => Ok(false),
        Some(change) => {
            report_held(global, &change)?;
            Ok(true)
        }
    }
}

/// Who asks, on the command line.
pub fn cli(by: &str) -> Requester<'_> {
    Requester {
        by,
        source: "cli",
        git_commit: None,
    }
}

pub fn report_held(global: &Global, change: &PendingChange) -> anyhow::Result<()> {
    let message = approvals::held_message(change);
    if global.json {
        return output::json(&serde_json::json!({ "status": "pending", "change": change, "message": message }));
    }
    println!("{message}");
    for line in &change.diff {
        println!("  {line}");
    }
    Ok(())
}
