//! The command line, as clap structures. These files stay declarative: behaviour lives in
//! `commands/`. The data side (`data`, `monitor`, `access`) is in [`data`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[cfg(feature = "lake")]
mod campaign;
#[cfg(feature = "cluster")]
mod cluster;
mod data;
mod ope;
mod plan;
mod schedule;

#[cfg(feature = "lake")]
pub use campaign::*;
#[cfg(feature = "cluster")]
pub use cluster::*;
pub use data::*;
pub use ope::*;
pub use plan::*;
pub use schedule::*;

/// Environment variable names (documented in the README).
pub mod env {
    pub const HOME: &str = "KEEL_HOME";
    pub const STORE: &str = "KEEL_STORE_URL";
    pub const ARTIFACTS: &str = "KEEL_ARTIFACTS";
    pub const LAKE: &str = "KEEL_LAKE";
    pub const AUTHOR: &str = "KEEL_AUTHOR";
    pub const USER: &str = "KEEL_USER";
    pub const TOKEN: &str = "KEEL_TOKEN";
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
    /// API token sent to a keel server by commands that talk to one (simulate, experiment
    /// report --url)
    #[arg(long, global = true, env = env::TOKEN, hide_env_values = true)]
    pub token: Option<String>,
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
    /// Schedules: keel commands that `keel serve` runs on a cron expression
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Compare a folder of declared state (deployments, aliases, schedules, grants) with what runs
    Plan(PlanArgs),
    /// Apply a folder of declared state, object by object, recorded with you and its git commit
    Apply(ApplyArgs),
    /// Write what runs as a folder of declared state
    Export(StateExportArgs),
    /// Approve a change held for a second person, and apply it as you
    Approve(ApproveArgs),
    /// Close a change held for a second person without applying it
    Reject(RejectArgs),
    /// Webhooks: keel's events posted, signed, to URLs
    #[command(subcommand)]
    Webhook(WebhookCommand),
    #[cfg(feature = "lake")]
    /// Monitoring: labels for logged predictions, and model performance once they arrive
    #[command(subcommand)]
    Monitor(MonitorCommand),
    #[cfg(feature = "lake")]
    /// Bulk jobs over lake tables: score a table with a model version into another table, or
    /// decide every row of a table with a deployment
    #[command(subcommand)]
    Batch(BatchCommand),
    #[cfg(feature = "lake")]
    /// Rewards in bulk: conversions from a table or a file, for a deployment's decisions
    #[command(subcommand)]
    Feedback(FeedbackCommand),
    #[cfg(feature = "cluster")]
    /// The distributed engine: an Apache DataFusion Ballista scheduler, or an executor that
    /// scores with this keel home's models (`keel batch score --engine ballista://HOST:PORT`)
    #[command(subcommand)]
    Cluster(ClusterCommand),
}

#[cfg(feature = "lake")]
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Score every row of a lake table with a model and append the outputs (with the key
    /// columns, model version and run id) to another table, in one commit; re-running the same
    /// model version over the same table version writes nothing
    Score(BatchScoreArgs),
    /// One decision per row of a lake table with a deployment's policy, each durably logged like
    /// an online decide, written (unit, decision_id, variant, propensity, ...) to another table
    /// in chunked commits; re-running the same run decides no unit twice
    Decide(BatchDecideArgs),
}

#[cfg(feature = "lake")]
#[derive(Debug, Args)]
pub struct BatchScoreArgs {
    /// NAME, NAME@alias or NAME:version (NAME alone: @production, else the newest)
    pub model: String,
    /// The input lake table, optionally at a version (customers@v3)
    #[arg(long)]
    pub from: String,
    /// The output lake table (created on the first run)
    #[arg(long)]
    pub into: String,
    /// Input columns copied to the output (keys), comma separated
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
    /// For a model with one [N, k] input: its k columns in order (default INPUT_0..INPUT_{k-1})
    #[arg(long, value_delimiter = ',')]
    pub features: Vec<String>,
    /// Name of the run (default: MODEL-vVERSION-TABLE-vVERSION, so a re-run is recognised)
    #[arg(long)]
    pub run_id: Option<String>,
    /// Rows per model call
    #[arg(long, default_value_t = 4096)]
    pub batch_rows: usize,
    /// Where the rows are scored: in this process (default), or on a Ballista cluster named by
    /// its scheduler, ballista://HOST:PORT (`keel cluster scheduler`; needs a keel built with
    /// the `cluster` feature). The output is written here either way, in one commit
    #[arg(long)]
    pub engine: Option<String>,
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
    /// Seed of the simulated world (customers, tastes, conversions)
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Draw the promotions' appeal from the seed too (a world other than keel's own)
    #[arg(long)]
    pub drawn_world: bool,
    /// The promotions' appeal shifts from this customer on (a season, a competitor's offer)
    #[arg(long)]
    pub drift_at: Option<usize>,
    /// Seed of the deployments' own randomness (kept apart from the world's)
    #[arg(long, default_value_t = 11)]
    pub policy_seed: u64,
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
    /// Share of customers in the holdout control group (the status quo: promotions rotated
    /// uniformly at random, sticky per customer)
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
    /// Check a deployment's decision log: records, sequence range, damage and its offset
    /// (exits non-zero on damage)
    Verify { name: String },
    /// Move a damaged decision log's records from a point onward aside (nothing is deleted):
    /// a log in files from a byte offset into a sibling file, a log in PostgreSQL from a
    /// sequence number into deployment_log_repaired; record the repair in the change log
    Repair {
        name: String,
        /// Where to cut a log in files: the offset `keel deployment verify` reports
        #[arg(long, conflicts_with = "from_seq")]
        from_offset: Option<u64>,
        /// Where to cut a log in PostgreSQL: the sequence number `keel deployment verify` reports
        #[arg(long)]
        from_seq: Option<u64>,
    },
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
        /// Break the report down by this context feature (per-segment rates and lifts over the
        /// control group, with Bonferroni-adjusted intervals), from the decision log
        #[arg(long, value_name = "FEATURE")]
        segment_by: Option<String>,
        /// For a fixed-weight A/B test: adjust the variants' differences by this pre-period
        /// covariate of the decide context (CUPED), from the decision log
        #[arg(long, value_name = "FEATURE")]
        cuped: Option<String>,
        /// What --segment-by and --cuped compare: the decision metric (`reward`, the default),
        /// `net` (minus the variants' costs) or another declared metric's name
        #[arg(long, value_name = "OUTCOME")]
        outcome: Option<String>,
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
    /// Do not run schedules here (another server on the same store runs them)
    #[arg(long)]
    pub no_schedules: bool,
    /// Do not deliver webhook events here (another server on the same store delivers them)
    #[arg(long)]
    pub no_webhooks: bool,
    /// Attempts per webhook delivery, the first included
    #[arg(long, default_value_t = 6)]
    pub webhook_attempts: i64,
    /// Seconds before a failed webhook delivery's first retry (doubled after each failure)
    #[arg(long, default_value_t = 10.0)]
    pub webhook_backoff: f64,
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
    /// Serve REST and gRPC over TLS with this certificate chain (PEM, the server's first);
    /// re-read on SIGHUP or when it changes. Needs --tls-key
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, unencrypted). Needs --tls-cert
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    #[command(flatten)]
    pub access: ServeAccessArgs,
}

impl Default for ServeAccessArgs {
    /// The flags' own defaults (so they are written once).
    fn default() -> Self {
        #[derive(Parser)]
        struct Defaults {
            #[command(flatten)]
            access: ServeAccessArgs,
        }
        Defaults::parse_from(["keel"]).access
    }
}

/// Who may call a server, and how many requests it takes at once.
#[derive(Debug, Clone, Args)]
pub struct ServeAccessArgs {
    /// auto: require a credential as soon as a listener is not on loopback, none on loopback;
    /// required: always; off: never (refused on a non-loopback address unless
    /// --allow-unauthenticated-network-access)
    #[arg(long, default_value = "auto", value_parser = ["auto", "required", "off"])]
    pub auth: String,
    /// Serve without authentication on a non-loopback address: anyone who reaches the port can
    /// change deployments
    #[arg(long)]
    pub allow_unauthenticated_network_access: bool,
    /// Serve /metrics without a credential (otherwise it needs the metrics scope)
    #[arg(long)]
    pub metrics_open: bool,
    /// Trust JSON Web Tokens signed by the keys in this JWKS (a file, or an https:// URL of an
    /// OIDC provider's jwks_uri)
    #[arg(long)]
    pub jwt_jwks: Option<String>,
    /// Required `iss` of JSON Web Tokens
    #[arg(long, requires = "jwt_jwks")]
    pub jwt_issuer: Option<String>,
    /// Required `aud` of JSON Web Tokens
    #[arg(long, requires = "jwt_jwks")]
    pub jwt_audience: Option<String>,
    /// The claim naming the principal
    #[arg(long, default_value = "sub")]
    pub jwt_principal_claim: String,
    /// The claim carrying keel scopes (space-separated string or array)
    #[arg(long, default_value = "scope")]
    pub jwt_scopes_claim: String,
    /// How long a verified credential is trusted before the store is asked again (revocations
    /// reach every server on the store at once regardless)
    #[arg(long, default_value_t = 1000)]
    pub token_cache_ms: u64,
    /// Requests in flight in the whole server (health probes not counted); past it: 503
    #[arg(long, default_value_t = 512)]
    pub max_in_flight: usize,
    /// Inference requests in flight
    #[arg(long, default_value_t = 256)]
    pub max_in_flight_inference: usize,
    /// Decide, feedback and label requests in flight
    #[arg(long, default_value_t = 256)]
    pub max_in_flight_decide: usize,
    /// Other requests in flight (deployments, models, data, reports)
    #[arg(long, default_value_t = 32)]
    pub max_in_flight_admin: usize,
    /// A request still running after this many seconds is answered 503 and abandoned
    #[arg(long, default_value_t = 30)]
    pub request_timeout_s: u64,
    /// The largest model a push over the API (POST /v1/models/NAME/versions) accepts, in bytes;
    /// past it: 413
    #[arg(long, default_value_t = keel_api::gate::DEFAULT_MAX_MODEL_BYTES)]
    pub max_model_bytes: u64,
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
#[command(args_conflicts_with_subcommands = true)]
pub struct ChangesArgs {
    #[command(subcommand)]
    pub command: Option<ChangesCommand>,
    /// How many entries, newest first
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
    /// Only subjects starting with this (e.g. model/bc-lr)
    #[arg(long)]
    pub subject: Option<String>,
}
