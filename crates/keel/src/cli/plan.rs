//! `keel plan`, `keel apply`, `keel export`: changes as code; `keel changes pending`,
//! `keel approve`, `keel reject`: approvals; `keel webhook`: event subscriptions.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The folder of declared files (deployments/, schedules/, aliases.json, grants.json, policy.json)
    pub dir: PathBuf,
    /// Also delete aliases, schedules and grants that are live but not in the folder
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The folder of declared files
    pub dir: PathBuf,
    /// Also delete aliases, schedules and grants that are live but not in the folder
    #[arg(long)]
    pub prune: bool,
    /// Apply without asking (scripts, CI)
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Args)]
pub struct StateExportArgs {
    /// Where to write the declared files of what runs now
    pub dir: PathBuf,
    /// Overwrite declared files already there
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Subcommand)]
pub enum ChangesCommand {
    /// Changes waiting for a second person (the approvals policy in policy.json names them)
    Pending(PendingArgs),
}

#[derive(Debug, Args)]
pub struct PendingArgs {
    /// Also list approved and rejected ones (newest first)
    #[arg(long)]
    pub all: bool,
    /// How many
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct ApproveArgs {
    /// The change's number (`keel changes pending` lists them)
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct RejectArgs {
    /// The change's number
    pub id: i64,
    /// Why (recorded in the change log)
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Subscribe a URL to events (model.pushed, alias.moved, deployment.changed, alert.fired,
    /// schedule.run, change.pending, change.approved, change.rejected, or * for all)
    Add(WebhookAddArgs),
    /// List subscriptions (URLs shown without their path, which may hold a secret)
    Ls,
    /// Remove a subscription; its deliveries not yet made are cancelled
    Rm {
        /// The webhook's number
        id: i64,
    },
    /// Deliveries and their attempts, newest first
    Deliveries(DeliveriesArgs),
}

#[derive(Debug, Args)]
pub struct WebhookAddArgs {
    /// Where to POST the events (http or https)
    pub url: String,
    /// Comma-separated event names, or * for every event
    #[arg(long, value_delimiter = ',', required = true)]
    pub events: Vec<String>,
    /// The environment variable of `keel serve` holding the signing secret (the secret itself
    /// is never stored); each request carries `keel-signature: t=TIMESTAMP,v1=HMAC-SHA256-HEX`
    #[arg(long)]
    pub secret_env: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeliveriesArgs {
    /// Only this webhook's
    #[arg(long)]
    pub webhook: Option<i64>,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}
