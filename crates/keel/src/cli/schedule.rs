//! `keel schedule`: keel commands that `keel serve` runs on a cron expression.

use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Run a keel command on a cron expression (UTC): `keel schedule create weekly --cron
    /// "0 6 * * MON" -- batch decide promo --from customers --into sends_{date}`. `{date}`
    /// becomes the firing's date (20261207), `{datetime}` its time; `keel serve` runs it as you
    Create(ScheduleCreateArgs),
    /// List schedules with their next firing
    Ls,
    /// One schedule and its latest runs
    Show(ScheduleName),
    /// Stop firing (a run in progress finishes)
    Pause(ScheduleName),
    /// Fire again from the next firing after now (what passed while paused is skipped)
    Resume(ScheduleName),
    /// Delete a schedule (its runs stay in the record and the change log)
    Delete(ScheduleName),
    /// Queue a run now; a running `keel serve` takes it within a second
    RunNow(ScheduleName),
    /// The runs of a schedule: when, status, attempts, rows, error
    Runs(ScheduleRunsArgs),
}

#[derive(Debug, Args)]
pub struct ScheduleName {
    pub name: String,
}

#[derive(Debug, Args)]
pub struct ScheduleCreateArgs {
    pub name: String,
    /// Five fields, UTC: minute hour day-of-month month day-of-week ("0 6 * * MON")
    #[arg(long)]
    pub cron: String,
    /// A webhook told when a run has failed for good (after its retries)
    #[arg(long)]
    pub notify: Option<String>,
    /// The command, after `--` (batch, data, monitor, feedback, ope, deployment or model)
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ScheduleRunsArgs {
    pub name: String,
    /// How many runs, newest first
    #[arg(long, default_value_t = 20)]
    pub limit: i64,
}
