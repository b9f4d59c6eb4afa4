//! The data side of the command line: `keel data`, `keel monitor` and `keel access`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

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
    /// Catalogue a lake table the catalog does not know yet (the prediction, decision and
    /// feedback logs serving writes) with TEAM as its owner, so it can be described and shared
    /// (workspace admins only)
    Adopt {
        table: String,
        /// The owner team
        #[arg(long)]
        owner: String,
    },
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
    #[cfg(feature = "lake")]
    /// Write a table (at a version: TABLE@vN) to a CSV or Parquet file, streamed; an existing
    /// file is only replaced with --force, and a failure leaves no half-written file
    Export(ExportArgs),
}

#[cfg(feature = "lake")]
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The lake table, optionally at a version (sends@v3)
    pub table: String,
    /// The file to write
    pub file: PathBuf,
    /// csv (with a header row) or parquet
    #[arg(long, value_parser = ["csv", "parquet"])]
    pub format: String,
    /// Replace the file if it exists
    #[arg(long)]
    pub force: bool,
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
    /// API tokens for keel servers (Authorization: Bearer ..., gRPC metadata authorization)
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
    /// Create a token acting as NAME (yourself by default; admins for anyone); the secret is
    /// printed once
    Create {
        /// The principal the token acts as (a person, or a service such as promo-mailer)
        name: Option<String>,
        /// What the token may do (repeat or comma-separate): infer, decide, view, deploy,
        /// registry, data:read, data:write, metrics, admin
        #[arg(long = "scope", value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// Lifetime, e.g. 12h, 30d, 2w (default: until revoked)
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        label: Option<String>,
    },
    /// List tokens (yours; admins see everyone's), never their secrets
    Ls {
        /// Only this principal's
        #[arg(long)]
        principal: Option<String>,
    },
    /// Revoke a token by id (tok_...), or every token of a principal with --all-of
    Revoke {
        #[arg(required_unless_present = "all_of", conflicts_with = "all_of")]
        id: Option<String>,
        #[arg(long)]
        all_of: Option<String>,
    },
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
