//! Appending a stream of batches as one version, in bounded memory.
//!
//! A bulk job (batch scoring millions of rows) produces its output a chunk at a time and must
//! commit it all at once (a run that fails half-way leaves the table at its last version).
//! Collecting every chunk before one [`Lake::append`] holds the whole output in memory.
//! [`StreamAppend`] instead feeds the chunks, as they come, into delta-rs's write of a
//! DataFusion plan (the same streaming path `ingest` takes): Parquet files are written while
//! the job runs and the Delta commit happens only in [`StreamAppend::finish`]. A stream that is
//! dropped or aborted before `finish` commits nothing (the files it wrote are unreferenced, for
//! a later vacuum).

use std::sync::{Arc, Mutex};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::SchemaRef;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use tokio::sync::mpsc;

use crate::types::validate_table_name;
use crate::{Lake, LakeError, Result};

/// Chunks in flight between the job and the Parquet writer.
const CHANNEL_BATCHES: usize = 2;

enum Message {
    Batch(RecordBatch),
    /// The producer finished: the write may commit.
    End,
}

/// Batches appended to one table as a single new version; see the module documentation.
pub struct StreamAppend {
    lake: Lake,
    table: String,
    open: Option<Open>,
}

struct Open {
    tx: mpsc::Sender<Message>,
    done: tokio::task::JoinHandle<Result<u64>>,
}

impl Lake {
    /// A [`StreamAppend`] to `table` (created by the commit when it does not exist; columns it
    /// does not have yet are added, as [`Lake::append`] does).
    pub fn append_stream(&self, table: &str) -> Result<StreamAppend> {
        validate_table_name(table)?;
        Ok(StreamAppend {
            lake: self.clone(),
            table: table.to_owned(),
            open: None,
        })
    }
}

impl StreamAppend {
    /// Hands one batch to the writer (the first one starts it; every batch must have the first
    /// one's schema). Waits while the writer is behind, so memory stays bounded.
    pub async fn send(&mut self, batch: RecordBatch) -> Result<()> {
        if self.open.is_none() {
            self.open = Some(self.start(batch.schema()).await?);
        }
        let Some(open) = self.open.as_ref() else {
            return Err(LakeError::InvalidOptions("the stream is closed".into()));
        };
        if open.tx.send(Message::Batch(batch)).await.is_ok() {
            return Ok(());
        }
        // The writer stopped: its error says why.
        match self.open.take() {
            Some(open) => match open.done.await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(_)) => Err(LakeError::InvalidOptions(format!(
                    "the write to {} ended before its input did",
                    self.table
                ))),
                Err(e) => Err(LakeError::InvalidOptions(format!(
                    "the write to {} failed: {e}",
                    self.table
                ))),
            },
            None => Err(LakeError::InvalidOptions("the stream is closed".into())),
        }
    }

    /// Commits everything sent as one new version of the table and returns it; `None` when no
    /// batch was sent (nothing to commit).
    pub async fn finish(mut self) -> Result<Option<u64>> {
        let Some(open) = self.open.take() else {
            return Ok(None);
        };
        // A send error means the writer already stopped; its result below says why.
        let _ = open.tx.send(Message::End).await;
        drop(open.tx);
        match open.done.await {
            Ok(version) => version.map(Some),
            Err(e) => Err(LakeError::InvalidOptions(format!(
                "the write to {} failed: {e}",
                self.table
            ))),
        }
    }

    async fn start(&self, schema: SchemaRef) -> Result<Open> {
        let lake = &self.lake;
        let delta = if lake.exists(&self.table).await? {
            lake.prepare_write(&self.table, false).await?;
            lake.load(&self.table, None).await?
        } else {
            lake.prepare_write(&self.table, true).await?;
            lake.builder(&self.table)?
        };
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let source = ChannelSource {
            schema: schema.clone(),
            rx: Mutex::new(Some(rx)),
        };
        let provider = StreamingTable::try_new(schema, vec![Arc::new(source)])?;
        let plan = LogicalPlanBuilder::scan(&self.table, provider_as_source(Arc::new(provider)), None)?.build()?;
        let write = delta
            .write(Vec::new())
            .with_input_plan(plan)
            .with_table_name(&self.table)
            .with_save_mode(SaveMode::Append)
            .with_schema_mode(SchemaMode::Merge);
        let done = tokio::spawn(async move {
            let written = write.await?;
            Ok(written.version().unwrap_or(0))
        });
        Ok(Open { tx, done })
    }
}

impl Drop for StreamAppend {
    /// Dropped before `finish` (an error, a cancelled job): the write is cancelled before its
    /// commit, so the table stays at its last version.
    fn drop(&mut self) {
        if let Some(open) = self.open.take() {
            open.done.abort();
        }
    }
}

/// The job's batches as the input of the write's plan. The stream ends only at
/// [`Message::End`]; a producer that goes away without it fails the write (nothing commits).
struct ChannelSource {
    schema: SchemaRef,
    rx: Mutex<Option<mpsc::Receiver<Message>>>,
}

impl std::fmt::Debug for ChannelSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelSource").finish()
    }
}

impl PartitionStream for ChannelSource {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let Some(rx) = self.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            let again = DataFusionError::Execution("the stream's input was already consumed".into());
            let stream = futures::stream::iter([Err(again)]);
            return Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream));
        };
        let rx = Some(rx);
        let stream = futures::stream::unfold(rx, |rx| async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(Message::Batch(batch)) => Some((Ok(batch), Some(rx))),
                Some(Message::End) => None,
                None => Some((
                    Err(DataFusionError::Execution(
                        "the producer stopped before the end of its output: nothing is committed".into(),
                    )),
                    None,
                )),
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}
