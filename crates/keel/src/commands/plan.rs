//! `keel plan DIR`, `keel apply DIR`, `keel export DIR`: a folder of declared state compared
//! with, applied to, and written from the live state (`keel_plan`).

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use keel_plan::{Action, Plan, Source};

use crate::cli::{ApplyArgs, Global, PlanArgs, StateExportArgs};
use crate::context::{Context, principal};
use crate::output;

pub async fn plan(global: &Global, args: PlanArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let declared = keel_plan::read_dir(&args.dir)?;
    let plan = keel_plan::plan(&declared, &keel_plan::live(&ctx.registry).await?, args.prune);
    if global.json {
        return output::json(&plan);
    }
    print(&plan);
    if !plan.is_empty() {
        println!("\n`keel apply {}` makes these changes.", args.dir.display());
    }
    Ok(())
}

pub async fn apply(global: &Global, args: ApplyArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let declared = keel_plan::read_dir(&args.dir)?;
    let plan = keel_plan::plan(&declared, &keel_plan::live(&ctx.registry).await?, args.prune);
    if plan.is_empty() {
        if global.json {
            return output::json(&serde_json::json!({"applied": [], "plan": plan}));
        }
        println!(
            "nothing to change: the live state is what {} declares",
            args.dir.display()
        );
        return Ok(());
    }
    if !global.json {
        print(&plan);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            anyhow::bail!("keel apply asks before changing anything; pass --yes to apply without asking (scripts, CI)");
        }
        eprint!("\napply {} change(s)? [y/N] ", plan.actionable().count());
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            anyhow::bail!("nothing applied");
        }
    }
    let source = Source::of(&args.dir, &principal(global));
    let done = keel_plan::apply(&plan, &declared, &ctx.registry, &source).await?;
    let failed = done.iter().filter(|a| a.error.is_some()).count();
    if global.json {
        output::json(&serde_json::json!({"applied": done, "source": source}))?;
    } else {
        for a in &done {
            match (&a.error, a.pending) {
                (None, Some(id)) => println!(
                    "PENDING {} {}: waits for approval as change #{id}\n        {}",
                    a.change.kind,
                    a.change.name,
                    a.message.as_deref().unwrap_or("")
                ),
                (None, None) => println!("done    {} {}", a.change.kind, a.change.name),
                (Some(e), _) => println!("FAILED  {} {}: {e}", a.change.kind, a.change.name),
            }
        }
        let from = source
            .git_commit
            .as_deref()
            .map_or_else(String::new, |c| format!(" from git {c}"));
        println!("recorded as done by {}{from}", source.by);
        if plan
            .changes
            .iter()
            .any(|c| c.kind == "deployment" && c.action != Action::Unmanaged)
        {
            println!(
                "new deployment revisions take effect when a running `keel serve` restarts, or through PUT /v1/deployments/NAME"
            );
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} change(s) failed; the others were applied (see above)");
    }
    Ok(())
}

pub async fn export(global: &Global, args: StateExportArgs) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let state = keel_plan::live(&ctx.registry).await?;
    std::fs::create_dir_all(&args.dir)?;
    let written = keel_plan::export(&state, &args.dir, args.force)?;
    if global.json {
        return output::json(&written);
    }
    println!("wrote {} file(s) to {}:", written.len(), args.dir.display());
    for f in &written {
        println!("  {f}");
    }
    Ok(())
}

fn print(plan: &Plan) {
    if plan.changes.is_empty() {
        println!("no changes: the live state is what the folder declares");
        return;
    }
    for c in &plan.changes {
        let mark = match c.action {
            Action::Create => "+ create",
            Action::Update => "~ change",
            Action::Delete => "- delete",
            Action::Unmanaged => "  keep  ",
        };
        let note = if c.action == Action::Unmanaged {
            " (live, not in the folder; --prune deletes aliases, schedules and grants)"
        } else {
            ""
        };
        println!("{mark} {} {}{note}", c.kind, c.name);
        for d in &c.details {
            println!("           {d}");
        }
    }
}
