//! The command line, as clap structures. This file stays declarative: behaviour lives in
//! `commands/`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Environment variable names (documented in the README).
pub mod env {
    pub const HOME: &str = "KEEL_HOME";
    pub const STORE: &str = "KEEL_STORE_URL";
    pub const ARTIFACTS: &str = "KEEL_ARTIFACTS";
    pub const LAKE: &str = "KEEL_LAKE";
    pub const AUTHOR: &str = "KEEL_AUTHOR";
    pub const USER: &str = "KEEL_USER";
    pub const LOG: &str = "KEEL_LOG";
    pub const LOG_FORMAT: &str = "KEEL_LOG_FORMAT";
    /// The OpenTelemetry standard variable.
    pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
}

#[derive(Debug, Parser)]
#[command(
    name = "keel",
    version,
    about = "Take machine-learning models to production and keep them honest there"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Workspace folder for the embedded store and artifacts
    #[arg(long, global = true, env = env::HOME, default_value = "keel-data")]
    pub home: PathBuf,
    /// Metadata store: sqlite:///path/keel.db or postgres://user@host/db (default: SQLite in --home)
    #[arg(long, global = true, env = env::STORE)]
    pub store: Option<String>,
    /// Artifact store: a folder, file:///path or s3://bucket/prefix (default: --home/artifacts)
    #[arg(long, global = true, env = env::ARTIFACTS)]
    pub artifacts: Option<String>,
    /// Lake tables: a folder, file:///path or s3://bucket/prefix (default: --home/lake). S3
    /// settings come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION
    /// (and AWS_ALLOW_HTTP=true for an http:// endpoint)
    #[arg(long, global = true, env = env::LAKE)]
    pub lake: Option<String>,
    /// Print machine-readable JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,
    /// Who is acting, for access checks and the audit log (default: $KEEL_AUTHOR, else $USER)
    #[arg(long, global = true, env = env::USER)]
    pub user: Option<String>,
    /// Log format on stderr: text or json
    #[arg(long, global = true, env = env::LOG_FORMAT, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Export traces over OTLP/gRPC to this collector (e.g. http://127.0.0.1:4317)
    #[arg(long, global = true, env = env::OTLP_ENDPOINT)]
    pub otlp_endpoint: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Register, inspect and alias models
    #[command(subcommand)]
    Model(ModelCommand),
    /// Serve every registered model over the Open Inference Protocol (REST and gRPC)
    Serve(ServeArgs),
    /// Run keel's main job end to end on embedded defaults: register the fixture models,
    /// serve them, and call them over REST and gRPC
    Demo(DemoArgs),
    /// Show the change log: who changed what, when
    Changes(ChangesArgs),
    /// Create, revise and inspect deployments (variants and their traffic policy)
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Experiment results
    #[command(subcommand)]
    Experiment(ExperimentCommand),
    /// Drive a running keel server with a simulated world through its public API
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// Off-policy evaluation: estimate a candidate policy's value on logged data
    #[command(subcommand)]
    Ope(OpeCommand),
    /// Data: lake tables, catalog, lineage, drift and quality
    #[command(subcommand)]
    Data(DataCommand),
    /// Access: teams, grants, API tokens and the audit log
    #[command(subcommand)]
    Access(AccessCommand),
    #[cfg(feature = "lake")]
    /// Monitoring: labels for logged predictions, and model performance once they arrive
    #[command(subcommand)]
    Monitor(MonitorCommand),
}

#[cfg(feature = "lake")]
#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Drift of a deployment's logged inputs (and predictions) against a reference lake table
    /// (its training table or a sample of it), with Evidently's default test per column
    Drift(MonitorDriftArgs),
    /// Store labels (ground truth) for logged predictions from a JSON array or JSON-lines file
    /// of {"prediction_id": ..., "row"?: 0, "label": 0|1, "ts"?: RFC 3339}
    Label { file: PathBuf },
    /// AUC, log loss, calibration and positive rate per model version and time bucket, from
    /// logged predictions joined with labels and experiment feedback
    Performance {
        model: String,
        /// Only predictions at or after this RFC 3339 time
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// hour or day
        #[arg(long, default_value = "day", value_parser = ["hour", "day"])]
        bucket: String,
        /// The output column holding the positive class probability (default: found from the table)
        #[arg(long)]
        score: Option<String>,
    },
    /// Apply retention to the prediction logs now (as `keel serve --log-retention-days` does
    /// hourly): delete rows older than N days from every log table, then their files
    Retention {
        #[arg(long)]
        days: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    #[cfg(feature = "lake")]
    /// Stream a CSV, Parquet or JSON-lines file into a lake table (Delta Lake) as one new version
    Ingest(IngestArgs),
    #[cfg(feature = "lake")]
    /// Run read-only SQL over the lake tables you may read; "<table>@v<N>" (quoted) names an
    /// older version
    Sql { query: String },
    #[cfg(feature = "lake")]
    /// A table's versions: version, time, operation, rows added
    Versions { table: String },
    #[cfg(feature = "lake")]
    /// Compact a table's small files into large ones (a new version with the same rows)
    Compact {
        table: String,
        /// Size of the files written, in MiB
        #[arg(long, default_value_t = 128)]
        target_mb: u64,
        /// Then delete data files no version of the last N hours needs (older versions stop
        /// being readable); without it nothing is deleted
        #[arg(long)]
        keep_hours: Option<u64>,
    },
    #[cfg(feature = "lake")]
    /// Print a table's first rows, optionally at a version or an RFC 3339 time
    Head {
        table: String,
        #[arg(long, conflicts_with = "at")]
        version: Option<u64>,
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Print at most this many rows
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    #[cfg(feature = "lake")]
    /// List the tables you may read, with owner, tags and PII columns
    Ls {
        /// Only tables with this tag
        #[arg(long)]
        tag: Option<String>,
    },
    #[cfg(feature = "lake")]
    /// A table's catalog card: owner, description, tags, columns (with PII flags), schema
    /// history, versions, lineage and grants
    Show { table: String },
    #[cfg(feature = "lake")]
    /// Find tables by name, description, tag or column
    Search { text: String },
    #[cfg(feature = "lake")]
    /// Set a table's description, tags, or a column's description and PII flag
    Describe(DescribeArgs),
    #[cfg(feature = "lake")]
    /// Upstream and downstream lineage of a table, model version or deployment
    /// (table/NAME, model/NAME/VERSION, deployment/NAME, decisions/DEPLOYMENT)
    Lineage { node: String },
    /// Per-column drift of CURRENT against REFERENCE (Parquet files or lake tables) with Evidently's default
    /// test per column type and size, plus data-quality counts
    Drift(DriftArgs),
    /// Feasibility assessment for predicting a binary TARGET: do we have the right data (rows,
    /// balance, missing values, duplicates, leakage, informativeness, a cross-validated baseline)
    /// and does it arrive fast enough (freshness, arrivals, gaps); ends with a verdict and reasons
    Assess(AssessArgs),
}

#[derive(Debug, Args)]
pub struct AssessArgs {
    /// A lake table name, or a .parquet file
    pub table: String,
    /// The binary target column (two values, e.g. 0/1; the larger is positive)
    #[arg(long)]
    pub target: String,
    /// The event-time column (timestamp, date or RFC 3339 strings): freshness, arrivals, gaps
    #[arg(long)]
    pub time: Option<String>,
    /// The entity column (customer, user...): counted and left out of the features
    #[arg(long)]
    pub entity: Option<String>,
    /// Table version (default: the latest)
    #[arg(long)]
    pub version: Option<u64>,
    /// Also write the report as Markdown to this file
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Also write the report as a standalone HTML page (inline SVG charts) to this file
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Skip the cross-validated baseline model
    #[arg(long)]
    pub no_baseline: bool,
    /// Labelled rows the baseline uses at most (a deterministic sample)
    #[arg(long, default_value_t = 200_000)]
    pub max_rows: usize,
    /// Freshness: the newest row may be at most this many hours old
    #[arg(long, default_value_t = 48.0)]
    pub max_lag_hours: f64,
    /// "Now" for freshness, RFC 3339 (default: the clock)
    #[arg(long)]
    pub now: Option<chrono::DateTime<chrono::Utc>>,
    /// A feature whose single-feature AUC reaches this is suspected leakage
    #[arg(long, default_value_t = 0.98)]
    pub leakage_auc: f64,
    /// Fewer labelled rows fail the assessment
    #[arg(long, default_value_t = 1000)]
    pub min_rows: u64,
    /// Fewer rows of either class fail the assessment
    #[arg(long, default_value_t = 100)]
    pub min_positives: u64,
}

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The CSV, Parquet or JSON-lines file
    pub file: PathBuf,
    /// Table to write (created on first ingest)
    #[arg(long, short = 't')]
    pub table: String,
    /// csv, parquet or jsonl (default: from the file extension)
    #[arg(long)]
    pub format: Option<String>,
    /// Explicit schema, e.g. "id:int64,name:string,score:float64" (default: inferred)
    #[arg(long)]
    pub schema: Option<String>,
    /// Replace the table's rows instead of appending (old versions stay readable)
    #[arg(long)]
    pub overwrite: bool,
    /// Partition column (fixed when the table is created)
    #[arg(long)]
    pub partition_by: Option<String>,
    /// Team that owns a new table (default: your only team)
    #[arg(long)]
    pub owner: Option<String>,
    /// Description of a new table
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Lineage: what this data was built from (table/NAME[@vN], decisions/DEPLOYMENT,
    /// model/NAME/VERSION, or any name), repeatable
    #[arg(long = "derived-from")]
    pub derived_from: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DescribeArgs {
    pub table: String,
    /// The table's description ("" clears it)
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Add tags, repeatable
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Remove tags, repeatable
    #[arg(long = "untag")]
    pub untags: Vec<String>,
    /// The column the next options apply to
    #[arg(long)]
    pub column: Option<String>,
    /// The column's description ("" clears it)
    #[arg(long, requires = "column")]
    pub column_description: Option<String>,
    /// Flag the column as personal data of this kind (email, phone, name, ...)
    #[arg(long, requires = "column", conflicts_with = "not_pii")]
    pub pii: Option<String>,
    /// Clear the column's PII flag (a manual decision detection never overrides)
    #[arg(long, requires = "column")]
    pub not_pii: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccessCommand {
    /// Who you are acting as, your teams and whether you are a workspace admin
    Whoami,
    /// Teams: create, list, add and remove members
    #[command(subcommand)]
    Team(TeamCommand),
    /// Give a team read, write or admin on a table (sharing a table is a grant)
    Grant {
        table: String,
        team: String,
        /// read, write or admin
        permission: String,
    },
    /// Take a team's grant on a table back
    Revoke { table: String, team: String },
    /// List grants, on one table or all
    Grants { table: Option<String> },
    /// Make a principal a workspace admin (or take it away with --revoke)
    Admin {
        principal: String,
        #[arg(long)]
        revoke: bool,
    },
    /// API tokens for the REST data routes (Authorization: Bearer ...)
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log: every read and write of a table, allowed or denied (admins see all,
    /// others their own)
    Audit {
        /// Only this table
        #[arg(long)]
        table: Option<String>,
        /// Only this principal
        #[arg(long)]
        actor: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum TeamCommand {
    /// Create a team (workspace admins); you become its admin
    Create {
        name: String,
        #[arg(long, short = 'd')]
        description: Option<String>,
    },
    /// List teams and members
    Ls,
    /// Add a member, or change their role
    Add {
        team: String,
        principal: String,
        /// member or admin
        #[arg(long, default_value = "member")]
        role: String,
    },
    /// Remove a member
    Remove { team: String, principal: String },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token (for yourself, or as an admin for someone else); printed once
    Create {
        principal: Option<String>,
        #[arg(long)]
        label: Option<String>,
    },
    /// Revoke every token of a principal
    Revoke { principal: String },
}

#[derive(Debug, Args)]
pub struct MonitorDriftArgs {
    pub deployment: String,
    /// Reference lake table; its columns must be inputs the deployment's models log
    #[arg(long)]
    pub reference: String,
    /// The current window: predictions logged in the last this-many seconds
    #[arg(long, default_value_t = 3600)]
    pub window_seconds: u64,
    /// Only these columns (comma separated)
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
    /// Reference columns to leave out (the target, ids...), comma separated
    #[arg(long, value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// auto (Evidently's defaults), psi, ks, wasserstein, jensenshannon
    #[arg(long, default_value = "auto")]
    pub method: String,
    #[arg(long)]
    pub threshold: Option<f64>,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The reference data: a .parquet file, or a lake table (TABLE or TABLE@vN for a version)
    pub reference: String,
    /// The current data: a .parquet file, or a lake table (TABLE or TABLE@vN)
    pub current: String,
    /// auto (Evidently's defaults), psi, ks, wasserstein, jensenshannon
    #[arg(long, default_value = "auto")]
    pub method: String,
    /// Drift threshold overriding the method's default
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Only these columns (comma separated)
    #[arg(long, value_delimiter = ',')]
    pub columns: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum OpeCommand {
    /// On an Open Bandit Dataset CSV (e.g. ../shared/data/obd/random/all/all.csv)
    Obd {
        file: PathBuf,
        /// The candidate policy: JSON inline or a file, e.g. '{"type": "thompson_beta"}'
        #[arg(long)]
        candidate: String,
        /// Share of the log (oldest first) used to warm the candidate up
        #[arg(long, default_value_t = 0.5)]
        train_fraction: f64,
        /// A log of the candidate itself, whose observed mean reward is printed as ground truth
        #[arg(long)]
        ground_truth: Option<PathBuf>,
    },
    /// On a deployment's own decision log
    Deployment {
        name: String,
        #[arg(long)]
        candidate: String,
        #[arg(long, default_value_t = 0.5)]
        train_fraction: f64,
    },
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Personalised promotional e-mails for a restaurant chain: K promotions, customers with
    /// RFM-style features, conversions that depend on who gets what
    Email(EmailArgs),
}

#[derive(Debug, Args)]
pub struct EmailArgs {
    /// The keel server to drive
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// Deployment name prefix (one deployment per policy: PREFIX-POLICY)
    #[arg(long, default_value = "email-promos")]
    pub prefix: String,
    #[arg(long, default_value_t = 200_000)]
    pub customers: usize,
    #[arg(long, default_value_t = 5)]
    pub promotions: usize,
    /// Average conversion rate of uniformly random promotions
    #[arg(long, default_value_t = 0.025)]
    pub base_rate: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Concurrent simulated senders
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Rewards arrive this many decisions after their decision (0: at once)
    #[arg(long, default_value_t = 0)]
    pub delay: usize,
    /// Send feedback in batches of this many events
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Policies to compare, in order
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "uniform,best_single,thompson,contextual"
    )]
    pub policies: Vec<String>,
    /// Share of customers in the holdout control group (gets the first promotion)
    #[arg(long, default_value_t = 0.0)]
    pub control_share: f64,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCommand {
    /// Create a deployment or record a new revision of it from a JSON definition
    Apply {
        name: String,
        /// The definition (JSON): variants, policy, context, control, reward, canary, guardrails
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Why (kept in the revision history)
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, env = env::AUTHOR)]
        author: Option<String>,
    },
    /// List deployments
    Ls,
    /// Show a deployment's current definition
    Show { name: String },
    /// Show every revision of a deployment
    History { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Per-variant results: exposures, conversions, rate with 95% interval, probability to be
    /// best, lift over control, traffic share over time, sample-ratio check
    Report {
        name: String,
        /// Ask a running server (e.g. http://127.0.0.1:8080) instead of reading the decision log
        #[arg(long)]
        url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Store a new immutable version of a model from an ONNX file
    Push(PushArgs),
    /// List models with their newest version and aliases
    Ls,
    /// Show a model's versions, or one version (NAME:3, NAME@production)
    Show { reference: String },
    /// Point an alias at a version, or delete it
    Alias(AliasArgs),
    /// Show how a model's aliases moved over time
    History {
        name: String,
        /// Only this alias
        #[arg(long)]
        alias: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PushArgs {
    /// Model name (letters, digits, '-', '_', '.')
    pub name: String,
    /// The .onnx file
    pub file: PathBuf,
    /// Who pushes it (default: $KEEL_AUTHOR, else $USER)
    #[arg(long, env = env::AUTHOR)]
    pub author: Option<String>,
    #[arg(long, short = 'd')]
    pub description: Option<String>,
    /// Metrics as a JSON object ('{"auc":0.97}') or KEY=NUMBER, repeatable
    #[arg(long = "metric", short = 'm')]
    pub metrics: Vec<String>,
    /// Reference to the training data (table, path or query)
    #[arg(long)]
    pub training_data: Option<String>,
    /// Also point these aliases at the new version
    #[arg(long = "alias")]
    pub aliases: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AliasArgs {
    pub name: String,
    /// Alias name, with or without '@'
    pub alias: String,
    /// Version to point at: a number, 'latest' or another @alias
    #[arg(required_unless_present = "delete")]
    pub version: Option<String>,
    /// Delete the alias instead
    #[arg(long, conflicts_with = "version")]
    pub delete: bool,
    /// Why (kept in the history)
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, env = env::AUTHOR)]
    pub author: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// REST address (Open Inference Protocol, /metrics)
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: SocketAddr,
    /// gRPC address (inference.GRPCInferenceService)
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub grpc_addr: SocketAddr,
    /// Largest request accepted, in bytes
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,
    /// ONNX Runtime sessions per model (default: one per core)
    #[arg(long)]
    pub sessions: Option<usize>,
    /// Threads serving requests (default: one per core); leave a core free when a load
    /// generator or another busy process shares the machine
    #[arg(long)]
    pub workers: Option<usize>,
    /// Acknowledge decisions once written to the OS instead of synced to disk (survives a
    /// killed process, not a power cut)
    #[arg(long)]
    pub no_fsync: bool,
    /// Log every prediction, decision and reward to lake tables under --home/lake (the default
    /// when keel is built with the lake feature)
    #[arg(long, overrides_with = "no_log_predictions")]
    pub log_predictions: bool,
    /// Do not log predictions
    #[arg(long)]
    pub no_log_predictions: bool,
    /// Predictions each serving thread's lane holds, and decisions and rewards the writer's
    /// queue holds, before new ones are dropped (and counted)
    #[arg(long, default_value_t = keel_predlog::DEFAULT_QUEUE)]
    pub log_queue: usize,
    /// Write a log batch once it holds this many rows...
    #[arg(long, default_value_t = keel_predlog::DEFAULT_BATCH_ROWS)]
    pub log_batch_rows: usize,
    /// ...or once its oldest row waited this many milliseconds
    #[arg(long, default_value_t = keel_predlog::DEFAULT_FLUSH_MS)]
    pub log_flush_ms: u64,
    /// Delete logged rows older than this many days (checked at start and hourly); default: keep all
    #[arg(long)]
    pub log_retention_days: Option<u32>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Folder holding the fixture models (bc-lr.onnx, bc-rf.onnx...)
    #[arg(long, default_value = "fixtures/models")]
    pub fixtures: PathBuf,
    /// Keep serving on the default addresses after the checks
    #[arg(long)]
    pub keep_serving: bool,
    /// Customers in the simulated e-mail campaign (0 skips it)
    #[arg(long, default_value_t = 20_000)]
    pub customers: usize,
}

#[derive(Debug, Args)]
pub struct ChangesArgs {
    /// How many entries, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Only subjects starting with this (e.g. model/bc-lr)
    #[arg(long)]
    pub subject: Option<String>,
}
