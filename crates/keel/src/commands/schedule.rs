//! `keel schedule`: flags into `keel_schedule::Schedules` calls, answers for people and scripts.

use keel_schedule::Schedules;
use keel_store::{ScheduleRecord, ScheduleRun};

use crate::cli::{Global, ScheduleCommand};
use crate::context::{Context, principal};
use crate::output;

pub async fn run(global: &Global, cmd: ScheduleCommand) -> anyhow::Result<()> {
    let ctx = Context::open(global).await?;
    let schedules = Schedules::new(ctx.registry.store().clone());
    let by = principal(global);
    match cmd {
        ScheduleCommand::Create(args) => {
            let s = schedules
                .create(&args.name, &args.cron, &args.command, args.notify.as_deref(), &by)
                .await?;
            if global.json {
                return output::json(&s);
            }
            println!(
                "schedule {} created: `keel {}` on \"{}\" (UTC), next at {}; `keel serve` runs it as {by}",
                s.name,
                s.args.join(" "),
                s.cron,
                s.next_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        ScheduleCommand::Ls => {
            let all = schedules.list().await?;
            if global.json {
                return output::json(&all);
            }
            let rows: Vec<Vec<String>> = all.iter().map(row).collect();
            output::table(&["NAME", "CRON (UTC)", "NEXT", "STATE", "BY", "COMMAND"], &rows);
        }
        ScheduleCommand::Show(n) => {
            let s = schedules.show(&n.name).await?;
            let runs = schedules.runs(&n.name, 5).await?;
            if global.json {
                return output::json(&serde_json::json!({"schedule": s, "runs": runs}));
            }
            output::table(&["NAME", "CRON (UTC)", "NEXT", "STATE", "BY", "COMMAND"], &[row(&s)]);
            if let Some(url) = &s.notify {
                println!("failures announced to {url}");
            }
            println!();
            print_runs(&runs);
        }
        ScheduleCommand::Pause(n) => {
            schedules.pause(&n.name, &by).await?;
            println!("schedule {} paused", n.name);
        }
        ScheduleCommand::Resume(n) => {
            schedules.resume(&n.name, &by).await?;
            let s = schedules.show(&n.name).await?;
            println!(
                "schedule {} resumed; next at {}",
                n.name,
                s.next_at.format("%Y-%m-%d %H:%M UTC")
            );
        }
        ScheduleCommand::Delete(n) => {
            schedules.delete(&n.name, &by).await?;
            println!("schedule {} deleted (its runs stay in `keel changes`)", n.name);
        }
        ScheduleCommand::RunNow(n) => {
            let at = schedules.run_now(&n.name, &by).await?;
            if global.json {
                return output::json(&serde_json::json!({"schedule": n.name, "queued_for": at}));
            }
            println!(
                "run of {} queued; a running `keel serve` takes it within a second (`keel schedule runs {}`)",
                n.name, n.name
            );
        }
        ScheduleCommand::Runs(args) => {
            let runs = schedules.runs(&args.name, args.limit).await?;
            if global.json {
                return output::json(&runs);
            }
            print_runs(&runs);
        }
    }
    Ok(())
}

fn row(s: &ScheduleRecord) -> Vec<String> {
    vec![
        s.name.clone(),
        s.cron.clone(),
        s.next_at.format("%Y-%m-%d %H:%M").to_string(),
        if s.paused { "paused" } else { "active" }.to_string(),
        s.created_by.clone(),
        s.args.join(" "),
    ]
}

fn print_runs(runs: &[ScheduleRun]) {
    let fmt =
        |t: &Option<chrono::DateTime<chrono::Utc>>| t.map_or_else(String::new, |t| t.format("%H:%M:%S").to_string());
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                r.scheduled_for.format("%Y-%m-%d %H:%M").to_string(),
                r.trigger.clone(),
                r.status.clone(),
                r.attempts.to_string(),
                fmt(&r.started_at),
                fmt(&r.finished_at),
                r.rows.map_or_else(String::new, |n| n.to_string()),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    output::table(
        &[
            "FIRING (UTC)",
            "TRIGGER",
            "STATUS",
            "ATTEMPTS",
            "START",
            "END",
            "ROWS",
            "ERROR",
        ],
        &rows,
    );
}
