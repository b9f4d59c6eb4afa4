//! A deployment's outcomes table: its decisions, logged to the lake by the prediction log,
//! joined with their rewards into one table the data team can train on, catalogued with
//! lineage, with the conversion by control group and a feasibility assessment of the table.
//! `keel demo` (step 5) prints what [`build`] returns.

use keel_data::{Caller, DataError, Workspace};
use keel_lake::arrow::record_batch::RecordBatch;
use keel_lake::{LakeError, WriteMode};
use keel_predlog::record::{DECISIONS_TABLE, FEEDBACK_TABLE};
use keel_store::StoreError;
use keel_types::ErrorKind;

/// What the outcomes of a deployment became.
#[derive(Debug)]
pub struct Outcomes {
    /// The lake table written.
    pub table: String,
    /// Its version as catalogued.
    pub version: u64,
    /// Decisions in it (one row each, with `converted` 0 when no reward came).
    pub rows: usize,
    /// `control, customers, conversion` per control group (false first).
    pub lift: Vec<RecordBatch>,
    /// The feasibility of the table as training data for `converted`, in time order by `ts`.
    pub assessment: keel_assess::Assessment,
}

/// Everything that can go wrong building an outcomes table.
#[derive(Debug, thiserror::Error)]
pub enum OutcomesError {
    /// The deployment name is not a valid one (it is quoted into SQL).
    #[error(transparent)]
    Deployment(Box<crate::DeploymentError>),
    /// A catalog check or a write of the workspace failed.
    #[error(transparent)]
    Data(Box<DataError>),
    /// A lake read failed.
    #[error(transparent)]
    Lake(Box<LakeError>),
    /// The metadata store failed (descriptions, lineage).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The assessment of the table failed.
    #[error(transparent)]
    Assess(Box<keel_assess::AssessError>),
    /// The assessment could not finish (it panicked or was cancelled).
    #[error("the assessment task failed")]
    Task,
}

impl OutcomesError {
    /// The kind of the error, for the API and CLI layers to map.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OutcomesError::Deployment(e) => e.kind(),
            OutcomesError::Data(e) => e.kind(),
            OutcomesError::Lake(e) => e.kind(),
            OutcomesError::Store(e) => e.kind(),
            OutcomesError::Assess(_) => ErrorKind::Unprocessable,
            OutcomesError::Task => ErrorKind::Internal,
        }
    }

    /// Stable public code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            OutcomesError::Deployment(e) => e.code(),
            OutcomesError::Data(e) => e.code(),
            OutcomesError::Lake(e) => e.code(),
            OutcomesError::Store(e) => e.code(),
            OutcomesError::Assess(e) => e.code(),
            OutcomesError::Task => "outcomes.task",
        }
    }
}

impl keel_types::KeelError for OutcomesError {
    fn kind(&self) -> ErrorKind {
        OutcomesError::kind(self)
    }

    fn code(&self) -> &'static str {
        OutcomesError::code(self)
    }
}

impl From<crate::DeploymentError> for OutcomesError {
    fn from(e: crate::DeploymentError) -> Self {
        OutcomesError::Deployment(Box::new(e))
    }
}

impl From<DataError> for OutcomesError {
    fn from(e: DataError) -> Self {
        OutcomesError::Data(Box::new(e))
    }
}

impl From<LakeError> for OutcomesError {
    fn from(e: LakeError) -> Self {
        OutcomesError::Lake(Box::new(e))
    }
}

impl From<keel_assess::AssessError> for OutcomesError {
    fn from(e: keel_assess::AssessError) -> Self {
        OutcomesError::Assess(Box::new(e))
    }
}

/// Result alias of this module.
pub type Result<T, E = OutcomesError> = std::result::Result<T, E>;

/// Records the latest lake version of `table` in the catalog under `caller` (the owner when the
/// table is new) with its description; returns that version.
pub async fn catalogue(ws: &Workspace, caller: &Caller, table: &str, description: &str) -> Result<u64> {
    let details = serde_json::json!({"by": "keel demo"});
    let pass = ws.check_create(caller, table, None, details.clone()).await?;
    let version = ws.versions(&pass).await?.first().map_or(0, |v| v.version);
    ws.record_commit(&pass, version, false, details).await?;
    let store = ws.catalog().store();
    store
        .set_table_description(table, Some(description), caller.name())
        .await?;
    Ok(version)
}

/// Catalogues the logged `decisions` and `feedback` tables (with lineage from every
/// deployment), writes `table` with one row per decision of `deployment` and its reward
/// (`ts, variant, control, propensity, converted`; a rerun overwrites it from all logged
/// decisions, the old version stays readable), and measures and assesses it. `None` when no
/// decisions or feedback were logged.
pub async fn build(ws: &Workspace, caller: &Caller, deployment: &str, table: &str) -> Result<Option<Outcomes>> {
    crate::validate_name(deployment)?;
    let lake = ws.lake();
    let tables = lake.tables().await?;
    let logged = |t: &str| tables.iter().any(|have| have == t);
    if !(logged(DECISIONS_TABLE) && logged(FEEDBACK_TABLE)) {
        return Ok(None);
    }
    let by = caller.name().to_string();
    let store = ws.catalog().store();
    catalogue(
        ws,
        caller,
        DECISIONS_TABLE,
        "every decision of every deployment (logged by keel serve)",
    )
    .await?;
    catalogue(
        ws,
        caller,
        FEEDBACK_TABLE,
        "every counted reward (logged by keel serve)",
    )
    .await?;
    for d in store.list_deployments().await? {
        let node = format!("table/{DECISIONS_TABLE}");
        store
            .add_lineage(&format!("decisions/{}", d.name), &node, "logged_to", &by)
            .await?;
    }
    let sql = format!(
        "SELECT d.ts, d.variant, d.control, d.propensity, CAST(coalesce(f.reward, 0) AS DOUBLE) AS converted \
         FROM {DECISIONS_TABLE} d LEFT JOIN {FEEDBACK_TABLE} f ON d.decision_id = f.decision_id \
         WHERE d.deployment = '{deployment}'"
    );
    let both = [DECISIONS_TABLE.to_string(), FEEDBACK_TABLE.to_string()];
    let batches = lake.sql_on(&sql, &both).await?;
    let rows = batches.iter().map(|b| b.num_rows()).sum();
    let pass = ws
        .check_create(caller, table, None, serde_json::json!({"by": "keel demo"}))
        .await?;
    let mode = if logged(table) {
        WriteMode::Overwrite
    } else {
        WriteMode::Append
    };
    ws.write(&pass, batches, mode).await?;
    let description = "e-mail campaign: promotion chosen, control group, conversion";
    let version = catalogue(ws, caller, table, description).await?;
    for source in [DECISIONS_TABLE, FEEDBACK_TABLE] {
        let derived = format!("table/{table}@v{version}");
        store
            .add_lineage(&format!("table/{source}"), &derived, "derived_from", &by)
            .await?;
    }
    let lift_sql = format!(
        "SELECT control, count(*) AS customers, avg(converted) AS conversion FROM {table} \
         GROUP BY control ORDER BY control"
    );
    let lift = lake.sql_on(&lift_sql, &[table.to_string()]).await?;
    let files = lake.files(table, None).await?;
    let mut options = keel_assess::AssessOptions::new("converted");
    options.time = Some("ts".into());
    options.title = Some(table.into());
    let assessment = tokio::task::spawn_blocking(move || keel_assess::assess(&files, &options))
        .await
        .map_err(|_| OutcomesError::Task)??;
    let table = table.to_string();
    Ok(Some(Outcomes {
        table,
        version,
        rows,
        lift,
        assessment,
    }))
}
