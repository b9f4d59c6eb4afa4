//! The plain values of the lake API: write modes, ingest options and reports, versions, table files.

use crate::source::Format;
use crate::{DEFAULT_BATCH_SIZE, LakeError, Result};
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;

/// Append to or replace a table's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WriteMode {
    /// Add the file's rows to the table (creating it if needed).
    #[default]
    Append,
    /// Replace the table's rows with the file's rows (same schema; the old version stays readable).
    Overwrite,
}

/// How to read and write one ingested file.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Input format; `None` infers it from the file extension.
    pub format: Option<Format>,
    /// Explicit schema `name:type,...` (CSV and JSON lines); `None` infers it from the first rows.
    pub schema: Option<String>,
    /// Append or overwrite.
    pub mode: WriteMode,
    /// Partition column, used when the table is created (must match on later writes).
    pub partition_by: Option<String>,
    /// Rows per streamed batch.
    pub batch_size: usize,
    /// A counter the ingest adds every row read to, for progress displays.
    pub rows_read: Option<Arc<std::sync::atomic::AtomicU64>>,
}

impl Default for IngestOptions {
    fn default() -> Self {
        IngestOptions {
            format: None,
            schema: None,
            mode: WriteMode::Append,
            partition_by: None,
            batch_size: DEFAULT_BATCH_SIZE,
            rows_read: None,
        }
    }
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestReport {
    /// Table written.
    pub table: String,
    /// Rows read from the file and written.
    pub rows: u64,
    /// Size of the input file in bytes.
    pub bytes: u64,
    /// The table version this ingest created.
    pub version: u64,
    /// Wall time of the ingest.
    pub seconds: f64,
}

/// One entry of a table's history.
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// Table version.
    pub version: u64,
    /// Commit time.
    pub timestamp: Option<DateTime<Utc>>,
    /// Delta operation (`WRITE`, `CREATE TABLE`, ...).
    pub operation: Option<String>,
    /// Rows added by this version, when the writer recorded it.
    pub rows_added: Option<u64>,
}

/// A point in a table's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionOrTimestamp {
    /// An exact version.
    Version(u64),
    /// The latest version committed at or before this time.
    Timestamp(DateTime<Utc>),
}

impl std::fmt::Display for VersionOrTimestamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VersionOrTimestamp::Version(v) => write!(f, "{v}"),
            VersionOrTimestamp::Timestamp(t) => write!(f, "at {}", t.to_rfc3339()),
        }
    }
}

/// Splits a table reference, `NAME` or `NAME@vN` (`orders@v3`), into the table and the version
/// asked for. `@v` followed by anything but digits stays part of the name (which then fails
/// [`validate_table_name`] where a name is checked); a version past `u64` is a version the table
/// does not have. The one parser of `@vN` for the CLI, the API, SQL and the jobs.
pub fn split_version(reference: &str) -> Result<(&str, Option<u64>)> {
    match reference.rsplit_once("@v") {
        Some((table, v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
            let version = v.parse().map_err(|_| LakeError::VersionNotFound {
                table: table.to_owned(),
                at: v.to_owned(),
            })?;
            Ok((table, Some(version)))
        }
        _ => Ok((reference, None)),
    }
}

/// Checks a table name against `[a-z0-9_][a-z0-9_.-]{0,127}` (so it can never hold a path).
pub fn validate_table_name(name: &str) -> Result<()> {
    let bytes = name.as_bytes();
    let first_ok = bytes
        .first()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
    let rest_ok = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if first_ok && rest_ok && bytes.len() <= 128 {
        Ok(())
    } else {
        Err(LakeError::InvalidTableName { name: name.to_string() })
    }
}

/// The Parquet data files of one table version as local files, for readers that take file
/// paths. For a local lake these are the table's own files; for a lake in a bucket they are
/// copies in a temporary folder that is removed when this value is dropped.
#[derive(Debug)]
pub struct TableFiles {
    pub(crate) paths: Vec<PathBuf>,
    pub(crate) copies: Option<tempfile::TempDir>,
}

impl TableFiles {
    /// Local files as they are (nothing is copied or removed).
    pub fn from_paths(paths: Vec<PathBuf>) -> TableFiles {
        TableFiles { paths, copies: None }
    }

    /// The local paths.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// Whether the files are temporary copies of objects in a bucket.
    pub fn is_copy(&self) -> bool {
        self.copies.is_some()
    }
}

impl std::ops::Deref for TableFiles {
    type Target = [PathBuf];

    fn deref(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// What [`Lake::compact`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompactReport {
    /// The table's version afterwards.
    pub version: u64,
    /// Whether a new version was written (nothing to compact: no).
    pub changed: bool,
    pub files_removed: u64,
    pub files_added: u64,
    pub partitions: u64,
    /// Data files deleted from storage by the vacuum that followed.
    pub files_vacuumed: usize,
}
