//! Flags of the campaign jobs: `keel batch decide` and `keel feedback ingest`.

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BatchDecideArgs {
    /// The deployment deciding (its variants must be actions, not models)
    pub deployment: String,
    /// The input lake table, optionally at a version (customers@v3)
    #[arg(long)]
    pub from: String,
    /// The input column naming the unit (customer) each decision is for
    #[arg(long)]
    pub unit_column: String,
    /// The output lake table (created on the first run): unit, decision_id, variant, propensity,
    /// policy_version, revision, control, run_id, decided_at
    #[arg(long)]
    pub into: String,
    /// Name of the run (default: DEPLOYMENT-TABLE-vVERSION, so a re-run decides nothing twice)
    #[arg(long)]
    pub run_id: Option<String>,
    /// Rows per decision call (one lock and one durable log write per call)
    #[arg(long, default_value_t = 8192)]
    pub batch_rows: usize,
    /// Run the job in this keel server (needed when it serves the deployment: its decision log
    /// is locked by the server), e.g. http://127.0.0.1:8080
    #[arg(long, env = "KEEL_SERVER")]
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// Send rewards in bulk from a lake table or a Parquet/CSV file, by decision id or by unit
    /// and the batch run that decided it; idempotent (a re-run counts nothing twice). The summary
    /// counts what was counted, duplicate, late (window closed) and refused, and why
    Ingest(FeedbackIngestArgs),
}

#[derive(Debug, Args)]
pub struct FeedbackIngestArgs {
    /// The deployment the rewards are for
    pub deployment: String,
    /// A lake table (conversions, conversions@v2) or a .parquet or .csv file
    #[arg(long)]
    pub from: String,
    /// The column holding decision ids (default: decision_id, unless --unit-column is given)
    #[arg(long, conflicts_with = "unit_column")]
    pub decision_column: Option<String>,
    /// The column holding units decided by the batch run --run-id
    #[arg(long, requires = "run_id")]
    pub unit_column: Option<String>,
    /// The batch run (keel batch decide) whose decisions the units refer to
    #[arg(long, requires = "unit_column")]
    pub run_id: Option<String>,
    /// The column holding the reward (the decision metric)
    #[arg(long, required_unless_present = "metrics")]
    pub reward_column: Option<String>,
    /// Another metric the deployment declares, from the column of that name or NAME=COLUMN
    /// (repeat for several; a null leaves that metric out of that row)
    #[arg(long = "metric", value_name = "NAME[=COLUMN]")]
    pub metrics: Vec<String>,
    /// Rewards per feedback call
    #[arg(long, default_value_t = 8192)]
    pub batch_rows: usize,
    /// Run the job in this keel server (needed when it serves the deployment), e.g.
    /// http://127.0.0.1:8080; --from must then be a lake table
    #[arg(long, env = "KEEL_SERVER")]
    pub server: Option<String>,
}
