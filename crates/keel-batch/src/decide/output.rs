//! The output side of batch decide: the decided rows as the output table's columns, and
//! their commits (catalog record, lineage), in order and one at a time, each beside the
//! deciding of the chunks after it.

use std::sync::Arc;

use keel_data::{Caller, TablePass, Workspace, Write};
use keel_experiments::DecisionOut;
use keel_lake::WriteMode;
use keel_lake::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Builder,
};
use keel_lake::arrow::datatypes::{DataType as ArrowType, Field, Schema, TimeUnit};

use crate::BatchError;

/// Output rows not yet committed, as the output table's columns.
pub(super) struct OutRows {
    pub(super) unit: StringBuilder,
    pub(super) decision_id: StringBuilder,
    pub(super) variant: StringBuilder,
    pub(super) propensity: Float64Builder,
    pub(super) policy_version: UInt64Builder,
    pub(super) revision: Int64Builder,
    pub(super) control: BooleanBuilder,
    pub(super) no_action: BooleanBuilder,
    pub(super) len: usize,
}

/// Appends output rows and records each commit (catalog, lineage). Owned, so that a commit
/// runs as its own task while the next chunks are decided.
pub(super) struct Writer {
    pub(super) ws: Workspace,
    pub(super) output: TablePass<Write>,
    pub(super) run_id: String,
    pub(super) input: String,
    pub(super) input_version: u64,
    pub(super) deployment: String,
    pub(super) caller: Caller,
    pub(super) lineage_in: bool,
}

/// What one commit appended.
pub(super) struct Committed {
    pub(super) rows: u64,
    pub(super) version: u64,
}

impl Writer {
    pub(super) async fn commit(&mut self, batch: RecordBatch) -> Result<Committed, BatchError> {
        let n = batch.num_rows() as u64;
        let version = self.ws.write(&self.output, vec![batch], WriteMode::Append).await?;
        let details = serde_json::json!({ "run_id": self.run_id, "deployment": self.deployment, "rows": n });
        self.ws.record_commit(&self.output, version, false, details).await?;
        let store = self.ws.catalog().store();
        let node = format!("deployment/{}", self.deployment);
        if !self.lineage_in {
            store
                .add_lineage(
                    &format!("table/{}@v{}", self.input, self.input_version),
                    &node,
                    "decided_by",
                    self.caller.name(),
                )
                .await
                .map_err(keel_data::DataError::from)?;
            self.lineage_in = true;
        }
        store
            .add_lineage(
                &node,
                &format!("table/{}@v{version}", self.output.table()),
                "decided_into",
                self.caller.name(),
            )
            .await
            .map_err(keel_data::DataError::from)?;
        Ok(Committed { rows: n, version })
    }
}

/// The output's commits, in order and one at a time, each running beside the deciding of the
/// chunks that follow it (the output's Parquet encoding no longer stops the decisions).
pub(super) struct Commits {
    /// The writer, when no commit is running.
    pub(super) idle: Option<Writer>,
    pub(super) running: Option<tokio::task::JoinHandle<(Writer, Result<Committed, BatchError>)>>,
    /// Rows appended and commits made so far, and the output's version after the last.
    pub(super) written: u64,
    pub(super) count: u64,
    pub(super) version: Option<u64>,
}

impl Commits {
    pub(super) fn new(writer: Writer) -> Commits {
        Commits {
            idle: Some(writer),
            running: None,
            written: 0,
            count: 0,
            version: None,
        }
    }

    /// Waits for the commit running, if any, and counts it in `report`.
    pub(super) async fn wait(&mut self) -> Result<(), BatchError> {
        let Some(task) = self.running.take() else {
            return Ok(());
        };
        let (writer, committed) = task
            .await
            .map_err(|e| BatchError::Internal(format!("the output commit task failed: {e}")))?;
        self.idle = Some(writer);
        let Committed { rows, version } = committed?;
        self.written += rows;
        self.count += 1;
        self.version = Some(version);
        Ok(())
    }

    /// Starts appending `rows` (and empties them) once the commit before is done.
    pub(super) async fn start(&mut self, rows: &mut OutRows) -> Result<(), BatchError> {
        if rows.len == 0 {
            return Ok(());
        }
        self.wait().await?;
        let mut writer = self
            .idle
            .take()
            .ok_or_else(|| BatchError::Internal("the output writer was lost".into()))?;
        let batch = rows.batch(&writer.run_id)?;
        self.running = Some(tokio::spawn(async move {
            let committed = writer.commit(batch).await;
            (writer, committed)
        }));
        Ok(())
    }
}

impl OutRows {
    pub(super) fn new() -> OutRows {
        OutRows {
            unit: StringBuilder::new(),
            decision_id: StringBuilder::new(),
            variant: StringBuilder::new(),
            propensity: Float64Builder::new(),
            policy_version: UInt64Builder::new(),
            revision: Int64Builder::new(),
            control: BooleanBuilder::new(),
            no_action: BooleanBuilder::new(),
            len: 0,
        }
    }

    pub(super) fn push(&mut self, unit: &str, decision: &DecisionOut) {
        self.unit.append_value(unit);
        self.decision_id.append_value(&decision.decision_id);
        self.variant.append_option(decision.chosen());
        self.propensity.append_value(decision.propensity);
        self.policy_version.append_value(decision.policy_version);
        self.revision.append_value(decision.revision);
        self.control.append_value(decision.control);
        self.no_action.append_value(decision.no_action);
        self.len += 1;
    }

    /// The rows as the output table's columns: unit, decision_id, variant (null when the unit is
    /// held back with no action), propensity, policy_version, revision, control, no_action,
    /// run_id, decided_at. Leaves the builders empty.
    pub(super) fn batch(&mut self, run_id: &str) -> Result<RecordBatch, BatchError> {
        let n = std::mem::take(&mut self.len);
        let now = chrono::Utc::now().timestamp_micros();
        let fields = vec![
            Field::new("unit", ArrowType::Utf8, false),
            Field::new("decision_id", ArrowType::Utf8, false),
            Field::new("variant", ArrowType::Utf8, true),
            Field::new("propensity", ArrowType::Float64, false),
            Field::new("policy_version", ArrowType::UInt64, false),
            Field::new("revision", ArrowType::Int64, false),
            Field::new("control", ArrowType::Boolean, false),
            Field::new("no_action", ArrowType::Boolean, false),
            Field::new("run_id", ArrowType::Utf8, false),
            Field::new(
                "decided_at",
                ArrowType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ];
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.unit.finish()),
            Arc::new(self.decision_id.finish()),
            Arc::new(self.variant.finish()),
            Arc::new(self.propensity.finish()),
            Arc::new(self.policy_version.finish()),
            Arc::new(self.revision.finish()),
            Arc::new(self.control.finish()),
            Arc::new(self.no_action.finish()),
            Arc::new(StringArray::from(vec![run_id; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![now; n]).with_timezone("UTC")),
        ];
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).map_err(|e| BatchError::Internal(e.to_string()))
    }
}
