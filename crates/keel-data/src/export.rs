//! Exporting a table (at a version) to a CSV or Parquet file: the hand-off of a batch run's
//! output to a system outside the lake (an e-mail tool).
//!
//! The rows are streamed from the lake to a writer on the blocking pool through a channel of a
//! few batches, so memory holds a few batches, not the table. The file is written under a
//! temporary name in the target folder, synced, then renamed over the target: a failure leaves
//! no half file, and an existing file is only replaced when asked (`force`).

use std::path::{Path, PathBuf};

use futures::StreamExt;
use keel_lake::VersionOrTimestamp;
use keel_lake::arrow::array::RecordBatch;
use serde::Serialize;
use serde_json::json;

use crate::{Caller, DataError, Read, Result, Workspace};

/// Batches in flight between the lake reader and the file writer.
const CHANNEL_BATCHES: usize = 4;

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet (zstd-compressed).
    Parquet,
}

impl std::str::FromStr for ExportFormat {
    type Err = DataError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(ExportFormat::Csv),
            "parquet" => Ok(ExportFormat::Parquet),
            other => Err(DataError::Invalid(format!(
                "unknown export format {other:?}: use csv or parquet"
            ))),
        }
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Exported {
    pub table: String,
    pub version: u64,
    pub format: ExportFormat,
    pub path: PathBuf,
    pub rows: u64,
    pub bytes: u64,
}

impl Workspace {
    /// Writes `table` at `version` (latest when `None`) to `path` as `format`, audited as
    /// `export`. Refuses an existing `path` unless `force`.
    pub async fn export(
        &self,
        caller: &Caller,
        table: &str,
        version: Option<u64>,
        format: ExportFormat,
        path: &Path,
        force: bool,
    ) -> Result<Exported> {
        let details = json!({ "version": version, "format": format, "file": path.display().to_string() });
        let pass = self.check::<Read>(caller, table, "export", details).await?;
        if path.is_dir() {
            return Err(DataError::Invalid(format!(
                "{} is a folder: name the file to write",
                path.display()
            )));
        }
        if path.exists() && !force {
            return Err(DataError::Invalid(format!(
                "{} already exists; pass --force to replace it",
                path.display()
            )));
        }
        let folder = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |what: String| move |source: std::io::Error| DataError::Io { what, source };
        let temp = tempfile::Builder::new()
            .prefix(".keel-export-")
            .suffix(".tmp")
            .tempfile_in(&folder)
            .map_err(io(format!("cannot write in {}", folder.display())))?;
        let version = match version {
            Some(v) => v,
            None => self.versions(&pass).await?.iter().map(|v| v.version).max().unwrap_or(0),
        };
        let mut stream = self
            .scan_stream(&pass, Some(VersionOrTimestamp::Version(version)), &[])
            .await?;
        let schema = stream.schema();
        let (tx, rx) = std::sync::mpsc::sync_channel::<RecordBatch>(CHANNEL_BATCHES);
        let writer = tokio::task::spawn_blocking(move || write_file(temp, &schema, format, rx));
        let mut read_error = None;
        while let Some(batch) = stream.next().await {
            match batch {
                Ok(batch) => {
                    if tx.send(batch).is_err() {
                        break; // the writer stopped: its error is the answer
                    }
                }
                Err(e) => {
                    read_error = Some(DataError::Invalid(format!("reading {table} failed: {e}")));
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| DataError::Task {
            what: "export",
            message: e.to_string(),
        })?;
        if let Some(e) = read_error {
            return Err(e); // the temporary file is removed when `written` drops
        }
        let (temp, rows) = written?;
        let bytes = temp.as_file().metadata().map(|m| m.len()).unwrap_or(0);
        let persisted = if force {
            temp.persist(path)
        } else {
            temp.persist_noclobber(path)
        };
        persisted.map_err(|e| DataError::Io {
            what: format!("cannot write {}", path.display()),
            source: e.error,
        })?;
        if let Ok(dir) = std::fs::File::open(&folder) {
            let _ = dir.sync_all();
        }
        Ok(Exported {
            table: table.to_owned(),
            version,
            format,
            path: path.to_path_buf(),
            rows,
            bytes,
        })
    }
}

/// Writes every batch received to `temp` and syncs it; returns the file and the rows written.
fn write_file(
    temp: tempfile::NamedTempFile,
    schema: &keel_lake::arrow::datatypes::SchemaRef,
    format: ExportFormat,
    batches: std::sync::mpsc::Receiver<RecordBatch>,
) -> Result<(tempfile::NamedTempFile, u64)> {
    let failed = |e: &dyn std::fmt::Display| DataError::Invalid(format!("writing the export failed: {e}"));
    let mut rows = 0u64;
    let file = std::io::BufWriter::with_capacity(1 << 20, temp.as_file().try_clone().map_err(|e| failed(&e))?);
    match format {
        ExportFormat::Csv => {
            let mut writer = keel_lake::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(file);
            for batch in batches {
                writer.write(&batch).map_err(|e| failed(&e))?;
                rows += batch.num_rows() as u64;
            }
            let mut file = writer.into_inner();
            std::io::Write::flush(&mut file).map_err(|e| failed(&e))?;
        }
        ExportFormat::Parquet => {
            use keel_lake::parquet::basic::{Compression, ZstdLevel};
            let properties = keel_lake::parquet::file::properties::WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .build();
            let mut writer = keel_lake::parquet::arrow::ArrowWriter::try_new(file, schema.clone(), Some(properties))
                .map_err(|e| failed(&e))?;
            for batch in batches {
                writer.write(&batch).map_err(|e| failed(&e))?;
                rows += batch.num_rows() as u64;
            }
            let mut file = writer.into_inner().map_err(|e| failed(&e))?;
            std::io::Write::flush(&mut file).map_err(|e| failed(&e))?;
        }
    }
    temp.as_file().sync_all().map_err(|e| failed(&e))?;
    Ok((temp, rows))
}
