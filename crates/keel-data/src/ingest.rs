//! Writing tables: ingest a file, and bring the catalog in step with a commit.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use keel_catalog::{CanWrite, TablePass, pii};
use keel_lake::arrow::array::RecordBatch;
use keel_lake::{Format, IngestOptions, IngestReport, VersionOrTimestamp, WriteMode};
use serde_json::json;

use crate::{Caller, DataError, Result, Workspace};

/// Rows sampled after a write to look for personal data.
const PII_SAMPLE_ROWS: usize = 1000;

/// One file to ingest into one table, with what the catalog should record about it.
#[derive(Debug, Clone, Default)]
pub struct Ingest {
    pub table: String,
    pub file: PathBuf,
    /// `None` infers the format from the file's extension.
    pub format: Option<Format>,
    /// Explicit schema `name:type,...` (CSV and JSON lines).
    pub schema: Option<String>,
    /// Replace the table's rows instead of appending.
    pub overwrite: bool,
    pub partition_by: Option<String>,
    /// The owner team of a new table (ignored for an existing one).
    pub owner: Option<String>,
    /// The description of a new table (set on version 0 only).
    pub description: Option<String>,
    /// Lineage sources (`table/x@v3`, ...) the new version is derived from.
    pub derived_from: Vec<String>,
    /// Progress: the ingest adds every row read to this counter.
    pub rows_read: Option<Arc<AtomicU64>>,
}

/// What an ingest did.
#[derive(Debug, Clone)]
pub struct Ingested {
    pub report: IngestReport,
    /// The team owning the table.
    pub owner: String,
    /// Columns that look like personal data in a sample of the new version.
    pub detected: Vec<pii::Detected>,
}

impl Workspace {
    /// Ingests a file: checks write access (or who will own a new table), writes one new
    /// version, then records it in the catalog (columns, schema history, PII, description,
    /// lineage) and the audit log.
    pub async fn ingest(&self, caller: &Caller, request: &Ingest) -> Result<Ingested> {
        let table = request.table.as_str();
        let details = json!({ "file": request.file.display().to_string(), "overwrite": request.overwrite });
        let pass = self
            .check_create(caller, table, request.owner.as_deref(), details)
            .await?;
        let options = IngestOptions {
            format: request.format,
            schema: request.schema.clone(),
            mode: if request.overwrite {
                WriteMode::Overwrite
            } else {
                WriteMode::Append
            },
            partition_by: request.partition_by.clone(),
            rows_read: request.rows_read.clone(),
            ..IngestOptions::default()
        };
        let report = self
            .lake
            .ingest(table, &request.file, &options)
            .await
            .map_err(|e| DataError::Ingest {
                table: table.to_owned(),
                source: Box::new(e),
            })?;
        // The data is committed: bring the catalog in step.
        let details = json!({
            "file": request.file.display().to_string(), "rows": report.rows, "version": report.version,
            "overwrite": request.overwrite,
        });
        let detected = self.record_commit(&pass, report.version, true, details).await?;
        let store = self.catalog.store();
        if let Some(d) = &request.description
            && report.version == 0
        {
            store.set_table_description(table, Some(d), caller.name()).await?;
        }
        for source in &request.derived_from {
            store
                .add_lineage(
                    source,
                    &format!("table/{table}@v{}", report.version),
                    "derived_from",
                    caller.name(),
                )
                .await?;
        }
        let owner = pass.owner().unwrap_or_default().to_owned();
        Ok(Ingested {
            report,
            owner,
            detected,
        })
    }

    /// Writes `batches` to the pass's table as one new version (appending, or replacing its
    /// rows) and returns that version; record it with [`Workspace::record_commit`].
    pub async fn write(
        &self,
        pass: &TablePass<impl CanWrite>,
        batches: Vec<RecordBatch>,
        mode: WriteMode,
    ) -> Result<u64> {
        Ok(match mode {
            WriteMode::Append => self.lake.append(pass.table(), batches, &[]).await?,
            WriteMode::Overwrite => self.lake.overwrite(pass.table(), batches).await?,
        })
    }

    /// Appends a stream of batches to the pass's table as one new version, in bounded memory
    /// (see [`keel_lake::StreamAppend`]); nothing commits before its `finish`.
    pub fn append_stream(&self, pass: &TablePass<impl CanWrite>) -> Result<keel_lake::StreamAppend> {
        Ok(self.lake.append_stream(pass.table())?)
    }

    /// Records in the catalog that `version` of the pass's table was committed by its holder:
    /// catalogues a new table, updates columns and schema history, and (with `detect_pii`) flags
    /// the columns a sample of that version shows to hold personal data. Returns those columns.
    pub async fn record_commit(
        &self,
        pass: &TablePass<impl CanWrite>,
        version: u64,
        detect_pii: bool,
        details: serde_json::Value,
    ) -> Result<Vec<pii::Detected>> {
        let table = pass.table();
        let columns = self.lake.columns(table).await?;
        let detected = if detect_pii {
            let sample = self
                .lake
                .head(table, Some(VersionOrTimestamp::Version(version)), PII_SAMPLE_ROWS)
                .await?;
            pii::detect(&sample)
        } else {
            Vec::new()
        };
        self.catalog
            .record_commit(pass, version as i64, &columns, &detected, details)
            .await?;
        Ok(detected)
    }
}
