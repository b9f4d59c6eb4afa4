//! Lake tables in Delta Lake format.
//!
//! keel-lake owns keel's tabular data: it ingests CSV, Parquet and JSON lines files into
//! [Delta Lake](https://delta.io) tables under one root (`root/<table>`: a local directory, or
//! an `s3://bucket/prefix` in S3 or an S3-compatible store, see [`Lake::open_location`]), keeps every
//! write as a new table version (history and time travel by version or timestamp), and answers
//! SQL over all tables through DataFusion. The on-disk format is plain Delta, so other Delta
//! clients (Spark, the `deltalake` Python package, ...) read keel tables unchanged.
//!
//! Crash safety comes from the Delta commit protocol: data files are written first and become
//! visible only when the commit file `_delta_log/<version>.json` is created atomically (in a
//! bucket: a conditional `PUT` with `If-None-Match: *`, see the `s3` module). A killed or
//! failed ingest therefore leaves the table at its last good version (orphaned data files are not
//! referenced and can be removed by a vacuum).
//!
//! This crate is a domain crate: it must never depend on the serving stack (HTTP or gRPC servers,
//! `keel-api`, `keel-serving`); the CLI and API call into it, never the other way round. Arrow,
//! Parquet and DataFusion are used only through `deltalake`'s re-exports so that one Arrow
//! version is built.

mod error;
mod s3;
mod source;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, TimeZone, Utc};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::datafusion::prelude::SessionContext;
use deltalake::kernel::schema::cast::normalize_for_delta;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::TryStreamExt;
use url::Url;

pub use deltalake::arrow;
pub use deltalake::datafusion;
pub use deltalake::parquet;
pub use error::{LakeError, Result};
pub use source::{Format, parse_schema};

/// Default rows per batch when streaming an input file.
pub const DEFAULT_BATCH_SIZE: usize = 65_536;
/// Directory of the Delta transaction log inside a table.
const DELTA_LOG: &str = "_delta_log";

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

/// Where a lake keeps its tables: a local folder or an S3-compatible bucket.
#[derive(Debug, Clone)]
enum Root {
    /// A local directory (canonical path).
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3(Arc<s3::S3Root>),
}

/// A set of Delta tables under one root: a local directory or an `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct Lake {
    root: Root,
}

/// The Parquet data files of one table version as local files, for readers that take file
/// paths. For a local lake these are the table's own files; for a lake in a bucket they are
/// copies in a temporary folder that is removed when this value is dropped.
#[derive(Debug)]
pub struct TableFiles {
    paths: Vec<PathBuf>,
    copies: Option<tempfile::TempDir>,
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

impl Lake {
    /// Opens (creating if needed) the lake rooted at the local directory `root`.
    ///
    /// URLs are refused here: open a lake in a bucket (`s3://...`) with [`Lake::open_location`].
    pub fn open(root: &Path) -> Result<Lake> {
        let text = root.to_string_lossy();
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(LakeError::UnsupportedRoot {
                root: text.to_string(),
                reason: format!("{scheme}:// is not a local folder: open it with Lake::open_location"),
            });
        }
        std::fs::create_dir_all(root).map_err(|source| LakeError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        let root = root.canonicalize().map_err(|source| LakeError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Lake {
            root: Root::Local(root),
        })
    }

    /// Opens the lake at `location`: an `s3://bucket/prefix` URL (S3 or an S3-compatible store;
    /// endpoint and credentials from the usual `AWS_*` environment variables), a `file://` URL
    /// or a local folder path (created if needed).
    ///
    /// A bucket is checked on open (one listing), so a wrong bucket, endpoint or credentials
    /// fails here with [`LakeError::Storage`] saying what to fix.
    pub async fn open_location(location: &str) -> Result<Lake> {
        Lake::open_location_with(location, &[]).await
    }

    /// Like [`open_location`](Lake::open_location), with S3 settings given explicitly (e.g.
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("aws_allow_http", "true")`) on top of the
    /// `AWS_*` environment. Ignored for local lakes.
    pub async fn open_location_with(location: &str, s3_config: &[(&str, &str)]) -> Result<Lake> {
        if location.starts_with("s3://") {
            let root = s3::S3Root::open(location, s3_config).await?;
            return Ok(Lake {
                root: Root::S3(Arc::new(root)),
            });
        }
        if let Some(rest) = location.strip_prefix("file://") {
            let url = Url::parse(location).map_err(|e| LakeError::UnsupportedRoot {
                root: location.to_string(),
                reason: e.to_string(),
            })?;
            let path = url.to_file_path().map_err(|()| LakeError::UnsupportedRoot {
                root: location.to_string(),
                reason: format!("{rest} is not an absolute local path"),
            })?;
            return Lake::open(&path);
        }
        if let Some((scheme, _)) = location.split_once("://") {
            return Err(LakeError::UnsupportedRoot {
                root: location.to_string(),
                reason: format!("{scheme}:// is not supported: use a local folder or s3://bucket/prefix"),
            });
        }
        Lake::open(Path::new(location))
    }

    /// The lake's root directory, for a local lake.
    pub fn local_root(&self) -> Option<&Path> {
        match &self.root {
            Root::Local(path) => Some(path),
            Root::S3(_) => None,
        }
    }

    /// Where the lake is, for messages: its folder, or its `s3://bucket/prefix/` URL.
    pub fn location(&self) -> String {
        match &self.root {
            Root::Local(path) => path.display().to_string(),
            Root::S3(s3) => s3.url().to_string(),
        }
    }

    /// Names of the tables in the lake, sorted.
    pub async fn tables(&self) -> Result<Vec<String>> {
        let root = match &self.root {
            Root::Local(root) => root,
            Root::S3(s3) => return s3.tables().await,
        };
        let entries = std::fs::read_dir(root).map_err(|source| LakeError::Io {
            path: root.clone(),
            source,
        })?;
        let mut names = BTreeSet::new();
        for entry in entries {
            let entry = entry.map_err(|source| LakeError::Io {
                path: root.clone(),
                source,
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if validate_table_name(&name).is_ok() && entry.path().join(DELTA_LOG).is_dir() {
                names.insert(name);
            }
        }
        Ok(names.into_iter().collect())
    }

    fn table_url(&self, table: &str) -> Result<Url> {
        validate_table_name(table)?;
        match &self.root {
            Root::Local(root) => {
                let path = root.join(table);
                Url::from_directory_path(&path).map_err(|()| LakeError::UnsupportedRoot {
                    root: path.display().to_string(),
                    reason: "not an absolute path".into(),
                })
            }
            Root::S3(s3) => s3
                .url()
                .join(&format!("{table}/"))
                .map_err(|e| LakeError::UnsupportedRoot {
                    root: s3.url().to_string(),
                    reason: e.to_string(),
                }),
        }
    }

    /// A delta-rs table handle for `table` (not loaded), on the lake's storage.
    fn builder(&self, table: &str) -> Result<DeltaTable> {
        let url = self.table_url(table)?;
        Ok(match &self.root {
            Root::Local(_) => DeltaTableBuilder::from_url(url)?.build()?,
            Root::S3(s3) => DeltaTableBuilder::from_url(url.clone())?
                .with_storage_backend(s3.store(), url)
                .build()?,
        })
    }

    /// Whether `table` is a table of this lake (it has a Delta log). A name that cannot be a
    /// table is an error, not `false`.
    pub async fn exists(&self, table: &str) -> Result<bool> {
        validate_table_name(table)?;
        match &self.root {
            Root::Local(root) => Ok(root.join(table).join(DELTA_LOG).is_dir()),
            Root::S3(s3) => s3.exists(table).await,
        }
    }

    /// Before a write: makes a new table's folder (local lakes), or checks once that the bucket
    /// makes commits atomic (lakes in a bucket).
    async fn prepare_write(&self, table: &str, new: bool) -> Result<()> {
        match &self.root {
            Root::Local(root) if new => std::fs::create_dir_all(root.join(table)).map_err(|source| LakeError::Io {
                path: root.join(table),
                source,
            }),
            Root::Local(_) => Ok(()),
            Root::S3(s3) => s3.check_commits().await,
        }
    }

    /// The underlying delta-rs table at its latest version, for what keel-lake does not wrap
    /// (its log store, operations...).
    pub async fn delta_table(&self, table: &str) -> Result<DeltaTable> {
        self.load(table, None).await
    }

    /// Loads an existing table at its latest version, or at `at`.
    async fn load(&self, table: &str, at: Option<VersionOrTimestamp>) -> Result<DeltaTable> {
        let mut delta = self.builder(table)?;
        if !self.exists(table).await? {
            return Err(LakeError::TableNotFound {
                table: table.to_string(),
            });
        }
        let not_found = |at: VersionOrTimestamp| LakeError::VersionNotFound {
            table: table.to_string(),
            at: at.to_string(),
        };
        match at {
            None => delta.load().await?,
            Some(at @ VersionOrTimestamp::Version(v)) => {
                if v > delta.get_latest_version().await? {
                    return Err(not_found(at));
                }
                delta.load_version(v).await.map_err(|e| match e {
                    DeltaTableError::InvalidVersion(_) => not_found(at),
                    other => LakeError::Delta(other),
                })?
            }
            Some(at @ VersionOrTimestamp::Timestamp(t)) => {
                delta.load_with_datetime(t).await.map_err(|e| match e {
                    DeltaTableError::InvalidVersion(_) | DeltaTableError::InvalidDateTimeString { .. } => not_found(at),
                    other => LakeError::Delta(other),
                })?;
                // deltalake answers version 0 for a time before the table existed: refuse that.
                if delta.version() == Some(0) {
                    let commits: Vec<_> = delta.history(None).try_collect().await?;
                    let created = commits.iter().filter_map(|c| c.timestamp).min();
                    if created.is_some_and(|ms| ms > t.timestamp_millis()) {
                        return Err(not_found(at));
                    }
                }
            }
        }
        Ok(delta)
    }

    /// Streams `file` into `table` as one new version. Creates the table on first ingest.
    ///
    /// On any error (unreadable row, schema conflict, ...) nothing is committed and the table stays
    /// at its previous version.
    pub async fn ingest(&self, table: &str, file: &Path, options: &IngestOptions) -> Result<IngestReport> {
        let started = Instant::now();
        validate_table_name(table)?;
        let format = match options.format {
            Some(f) => f,
            None => Format::from_path(file).ok_or_else(|| {
                LakeError::InvalidOptions(format!(
                    "cannot tell the format of {} from its extension: pass a format (csv, parquet, jsonl)",
                    file.display()
                ))
            })?,
        };
        let bytes = std::fs::metadata(file)
            .map_err(|e| LakeError::Input {
                file: file.to_path_buf(),
                message: e.to_string(),
            })?
            .len();
        let schema = options.schema.as_deref().map(parse_schema).transpose()?;
        let batch_size = options.batch_size.max(1);
        let path = file.to_path_buf();
        // Appending to an existing table: parse the file with the table's column types, so a bad
        // value is reported at its line instead of silently changing the inferred type.
        let existing = if self.exists(table).await? {
            Some(self.load(table, None).await?)
        } else {
            None
        };
        let hint = match &existing {
            Some(delta) => Some(delta.snapshot()?.snapshot().arrow_schema()),
            None => None,
        };
        let input =
            tokio::task::spawn_blocking(move || source::InputFile::open(&path, format, schema, hint, batch_size))
                .await
                .map_err(|e| LakeError::Input {
                    file: file.to_path_buf(),
                    message: e.to_string(),
                })??;
        let mut input = input;
        if let Some(counter) = &options.rows_read {
            input.count_into(counter.clone());
        }
        let input = Arc::new(input);

        if let Some(col) = &options.partition_by
            && input.schema_ref().field_with_name(col).is_err()
        {
            return Err(LakeError::InvalidOptions(format!(
                "partition column {col:?} is not in {}: columns are {}",
                file.display(),
                source::schema_string(input.schema_ref())
            )));
        }

        let delta = if let Some(delta) = existing {
            check_schema(
                table,
                file,
                input.schema_ref(),
                &delta.snapshot()?.snapshot().arrow_schema(),
            )?;
            self.prepare_write(table, false).await?;
            delta
        } else {
            self.prepare_write(table, true).await?;
            self.builder(table)?
        };

        let provider = StreamingTable::try_new(input.schema_ref().clone(), vec![input.clone()])?;
        let plan = LogicalPlanBuilder::scan(table, provider_as_source(Arc::new(provider)), None)?.build()?;
        let mut write = delta
            .write(Vec::new())
            .with_input_plan(plan)
            .with_table_name(table)
            .with_save_mode(match options.mode {
                WriteMode::Append => SaveMode::Append,
                WriteMode::Overwrite => SaveMode::Overwrite,
            })
            .with_write_batch_size(batch_size);
        if let Some(col) = &options.partition_by {
            write = write.with_partition_columns([col.clone()]);
        }
        let written = match write.await {
            Ok(t) => t,
            Err(e) => {
                return Err(match input.failure() {
                    Some(message) => LakeError::Input {
                        file: file.to_path_buf(),
                        message,
                    },
                    None => LakeError::Delta(e),
                });
            }
        };
        let version = written.version().unwrap_or(0);
        tracing::info!(table, rows = input.rows(), version, "ingested {}", file.display());
        Ok(IngestReport {
            table: table.to_string(),
            rows: input.rows(),
            bytes,
            version,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Appends Arrow batches to `table` as one new version, creating the table (partitioned by
    /// `partition_by`) on the first write.
    ///
    /// Columns the table does not have yet are added (Delta schema merge; older rows read them
    /// as null), so writers whose rows gain columns keep appending. A column whose type differs
    /// from the table's is refused with [`LakeError::Delta`] and nothing is committed. Returns
    /// the version created.
    pub async fn append(&self, table: &str, batches: Vec<RecordBatch>, partition_by: &[&str]) -> Result<u64> {
        self.write_batches(table, batches, partition_by, WriteMode::Append)
            .await
    }

    /// Replaces the rows of an existing `table` with `batches` as one new version (older
    /// versions stay readable); the schema must match.
    pub async fn overwrite(&self, table: &str, batches: Vec<RecordBatch>) -> Result<u64> {
        if !self.exists(table).await? {
            return Err(LakeError::TableNotFound {
                table: table.to_string(),
            });
        }
        self.write_batches(table, batches, &[], WriteMode::Overwrite).await
    }

    async fn write_batches(
        &self,
        table: &str,
        batches: Vec<RecordBatch>,
        partition_by: &[&str],
        mode: WriteMode,
    ) -> Result<u64> {
        let delta = if self.exists(table).await? {
            self.prepare_write(table, false).await?;
            self.load(table, None).await?
        } else {
            self.prepare_write(table, true).await?;
            self.builder(table)?
        };
        let mut write = delta.write(batches).with_table_name(table);
        write = match mode {
            WriteMode::Append => write
                .with_save_mode(SaveMode::Append)
                .with_schema_mode(SchemaMode::Merge),
            WriteMode::Overwrite => write.with_save_mode(SaveMode::Overwrite),
        };
        if !partition_by.is_empty() {
            write = write.with_partition_columns(partition_by.iter().map(|c| c.to_string()));
        }
        let written = write.await?;
        Ok(written.version().unwrap_or(0))
    }

    /// Compacts a table's small files into files of about `target_bytes` (default 128 MiB) as
    /// one new version (the rows do not change; older versions stay readable), then removes
    /// the data files that no version of the last `keep_hours` needs (`None`: removes nothing).
    pub async fn compact(
        &self,
        table: &str,
        target_bytes: Option<u64>,
        keep_hours: Option<u64>,
    ) -> Result<CompactReport> {
        let delta = self.load(table, None).await?;
        self.prepare_write(table, false).await?;
        let before = delta.version();
        let mut optimize = delta.optimize();
        if let Some(target) = target_bytes.and_then(std::num::NonZeroU64::new) {
            optimize = optimize.with_target_size(target);
        }
        let (delta, metrics) = optimize.await?;
        let mut report = CompactReport {
            version: delta.version().unwrap_or(0),
            changed: delta.version() != before,
            files_removed: metrics.num_files_removed,
            files_added: metrics.num_files_added,
            partitions: metrics.partitions_optimized,
            files_vacuumed: 0,
        };
        if let Some(hours) = keep_hours {
            let (_, vacuumed) = delta
                .vacuum()
                .with_retention_period(chrono::Duration::hours(
                    i64::try_from(hours).unwrap_or(i64::MAX / 3_600_000),
                ))
                .with_enforce_retention_duration(false)
                .await?;
            report.files_vacuumed = vacuumed.files_deleted.len();
        }
        Ok(report)
    }

    /// An appender for a stream of appends to one table (see [`Appender`]).
    pub fn appender(&self, table: &str, partition_by: &[&str]) -> Appender {
        Appender {
            lake: self.clone(),
            table: table.to_owned(),
            partition_by: partition_by.iter().map(|c| (*c).to_owned()).collect(),
            open: None,
        }
    }

    /// Deletes the rows matching a SQL `predicate` (for example `date < '2024-01-01'`) as one
    /// new version, then removes the data files no version from now on needs (vacuum with no
    /// retention window: older versions that referenced them can no longer be read).
    /// Returns the rows deleted (when known) and the files removed.
    pub async fn delete_where(&self, table: &str, predicate: &str) -> Result<(Option<u64>, usize)> {
        let delta = self.load(table, None).await?;
        self.prepare_write(table, false).await?;
        let (delta, metrics) = delta.delete().with_predicate(predicate.to_string()).await?;
        let (_, vacuumed) = delta
            .vacuum()
            .with_retention_period(chrono::Duration::zero())
            .with_enforce_retention_duration(false)
            .await?;
        Ok((metrics.num_deleted_rows.map(|n| n as u64), vacuumed.files_deleted.len()))
    }

    /// The Arrow schema of a table at its latest version.
    pub async fn schema(&self, table: &str) -> Result<Arc<Schema>> {
        let delta = self.load(table, None).await?;
        Ok(delta.snapshot()?.snapshot().arrow_schema())
    }

    /// The table's versions, newest first.
    pub async fn history(&self, table: &str) -> Result<Vec<VersionInfo>> {
        let delta = self.load(table, None).await?;
        let latest = delta.version().unwrap_or(0);
        let commits: Vec<_> = delta.history(None).try_collect().await?;
        let mut out = Vec::with_capacity(commits.len());
        for (i, commit) in commits.into_iter().enumerate() {
            let version = commit
                .read_version
                .map(|v| v + 1)
                .unwrap_or(latest.saturating_sub(i as u64));
            let rows_added = commit
                .info
                .get("operationMetrics")
                .and_then(|m| m.get("num_added_rows"))
                .and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())));
            out.push(VersionInfo {
                version,
                timestamp: commit.timestamp.and_then(|ms| Utc.timestamp_millis_opt(ms).single()),
                operation: commit.operation,
                rows_added,
            });
        }
        Ok(out)
    }

    /// The Parquet data files of a table at its latest version or at `at` (the files a reader of
    /// that version scans; partition column values live in the paths, not in the files), as
    /// local files: the table's own for a local lake, downloaded copies in a temporary folder
    /// (kept while the returned value lives) for a lake in a bucket.
    pub async fn files(&self, table: &str, at: Option<VersionOrTimestamp>) -> Result<TableFiles> {
        let delta = self.load(table, at).await?;
        if let Root::S3(s3) = &self.root {
            let files: Vec<_> = delta
                .snapshot()?
                .log_data()
                .into_iter()
                .map(|f| (f.object_store_path(), f.path().into_owned()))
                .collect();
            let dir = tempfile::Builder::new()
                .prefix("keel-lake-")
                .tempdir()
                .map_err(|source| LakeError::Io {
                    path: std::env::temp_dir(),
                    source,
                })?;
            let store = delta.log_store().object_store(None);
            let paths = s3::download(s3.url().as_str(), store, files, dir.path()).await?;
            return Ok(TableFiles {
                paths,
                copies: Some(dir),
            });
        }
        let mut out = Vec::new();
        for uri in delta.get_file_uris()? {
            // The local store answers plain absolute paths; file:// URLs are accepted too.
            let path = match Url::parse(&uri) {
                Ok(u) if u.scheme() == "file" => u.to_file_path().ok(),
                _ => Some(PathBuf::from(&uri)).filter(|p| p.is_absolute()),
            };
            let path = path.ok_or_else(|| LakeError::UnsupportedRoot {
                root: uri.clone(),
                reason: "a data file that is not on the local filesystem".into(),
            })?;
            out.push(path);
        }
        Ok(TableFiles {
            paths: out,
            copies: None,
        })
    }

    /// Reads a whole table at its latest version or at `at`.
    pub async fn scan(&self, table: &str, at: Option<VersionOrTimestamp>) -> Result<Vec<RecordBatch>> {
        let ctx = SessionContext::new();
        self.register(&ctx, table, table, at).await?;
        Ok(ctx.sql(&format!("SELECT * FROM \"{table}\"")).await?.collect().await?)
    }

    async fn register(
        &self,
        ctx: &SessionContext,
        name: &str,
        table: &str,
        at: Option<VersionOrTimestamp>,
    ) -> Result<()> {
        let delta = self.load(table, at).await?;
        delta.update_datafusion_session(&ctx.state())?;
        let provider = delta.table_provider().await?;
        ctx.register_table(name, provider)?;
        Ok(())
    }

    /// Runs a SQL query over every table of the lake (latest versions).
    ///
    /// A table at an older version is named `"<table>@v<version>"` (double quotes needed), for
    /// example `SELECT count(*) FROM "events@v3"`.
    pub async fn sql(&self, query: &str) -> Result<Vec<RecordBatch>> {
        self.sql_on(query, &self.tables().await?).await
    }

    /// The lake tables a query names (`"events@v3"` counts as `events`), sorted, so a caller can
    /// check access before running it. Parsing only: nothing is read.
    pub fn referenced_tables(&self, query: &str) -> Result<Vec<String>> {
        let ctx = SessionContext::new();
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = state.sql_to_statement(query, &dialect)?;
        let mut names = BTreeSet::new();
        for reference in state.resolve_table_references(&statement)? {
            let name = reference.table();
            let base = match name.rsplit_once("@v") {
                Some((base, v)) if !v.is_empty() && v.chars().all(|c| c.is_ascii_digit()) => base,
                _ => name,
            };
            names.insert(base.to_owned());
        }
        Ok(names.into_iter().collect())
    }

    /// Runs a read-only SQL query that may use only `tables` (and their older versions): any other
    /// table is unknown to the query. DDL and DML statements are refused.
    pub async fn sql_on(&self, query: &str, tables: &[String]) -> Result<Vec<RecordBatch>> {
        let ctx = SessionContext::new();
        for table in tables {
            if !self.exists(table).await? {
                continue;
            }
            self.register(&ctx, table, table, None).await?;
            for version in versions_referenced(query, table) {
                let name = format!("{table}@v{version}");
                self.register(&ctx, &name, table, Some(VersionOrTimestamp::Version(version)))
                    .await?;
            }
        }
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        Ok(ctx.sql_with_options(query, options).await?.collect().await?)
    }

    /// The first `rows` rows of a table at `version` (for PII detection and previews).
    pub async fn head(&self, table: &str, at: Option<VersionOrTimestamp>, rows: usize) -> Result<Vec<RecordBatch>> {
        let ctx = SessionContext::new();
        self.register(&ctx, table, table, at).await?;
        Ok(ctx.table(table).await?.limit(0, Some(rows))?.collect().await?)
    }

    /// The `name:type` columns of a table at its latest version.
    pub async fn columns(&self, table: &str) -> Result<Vec<(String, String)>> {
        let delta = self.load(table, None).await?;
        let schema = delta.snapshot()?.snapshot().arrow_schema();
        Ok(schema
            .fields()
            .iter()
            .map(|f| (f.name().clone(), f.data_type().to_string()))
            .collect())
    }
}

/// Versions `N` named as `<table>@vN` in a query.
fn versions_referenced(query: &str, table: &str) -> BTreeSet<u64> {
    let needle = format!("{table}@v");
    let mut out = BTreeSet::new();
    for (pos, _) in query.match_indices(&needle) {
        let before_ok = query[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        let digits: String = query[pos + needle.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if before_ok && let Ok(v) = digits.parse() {
            out.insert(v);
        }
    }
    out
}

/// Refuses a file whose columns differ from the table's, naming both schemas.
fn check_schema(table: &str, file: &Path, file_schema: &Schema, table_schema: &Schema) -> Result<()> {
    let incoming = normalize_for_delta(&Arc::new(file_schema.clone()));
    let mut problems = Vec::new();
    for field in incoming.fields() {
        match table_schema.field_with_name(field.name()) {
            Ok(existing) if existing.data_type() == field.data_type() => {}
            Ok(existing) => problems.push(format!(
                "column {:?} is {} in the file but {} in the table",
                field.name(),
                field.data_type(),
                existing.data_type()
            )),
            Err(_) => problems.push(format!("column {:?} is not in the table", field.name())),
        }
    }
    for field in table_schema.fields() {
        if incoming.field_with_name(field.name()).is_err() {
            problems.push(format!("table column {:?} is missing from the file", field.name()));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(LakeError::SchemaConflict {
        table: table.to_string(),
        file: file.to_path_buf(),
        detail: problems.join("; "),
        file_schema: source::schema_string(file_schema),
        table_schema: source::schema_string(table_schema),
    })
}

/// Renders batches as a JSON array of row objects (`[]` when there are none), for `--json` and
/// the REST routes.
pub fn json_rows(batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let mut writer = deltalake::arrow::json::ArrayWriter::new(Vec::new());
    for b in batches {
        writer.write(b)?;
    }
    writer.finish()?;
    let bytes = writer.into_inner();
    Ok(if bytes.is_empty() { b"[]".to_vec() } else { bytes })
}

/// Renders batches as a text table for the CLI.
pub fn pretty(batches: &[RecordBatch]) -> Result<String> {
    Ok(deltalake::arrow::util::pretty::pretty_format_batches(batches)?.to_string())
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

/// Appends to one table again and again, as a log writer does: the table stays open between
/// appends (no log replay per append), and batches with exactly the table's columns go
/// through delta-rs's `RecordBatchWriter` (Parquet files plus one commit, no query plan), with
/// dictionary encoding only for text columns. A batch with other columns takes
/// [`Lake::append`] (which evolves the schema), and the table is reopened after it. Appends do
/// not conflict with other writers' commits: a stale snapshot commits at the next free version.
pub struct Appender {
    lake: Lake,
    table: String,
    partition_by: Vec<String>,
    open: Option<DeltaTable>,
}

impl Appender {
    /// Appends `batches` as one new version; returns the version.
    pub async fn append(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        let Some(first) = batches.first() else {
            return Err(LakeError::InvalidOptions("nothing to append".into()));
        };
        let schema = first.schema();
        if self.open.is_none() {
            if !self.lake.exists(&self.table).await? {
                return self.general(batches).await;
            }
            self.open = Some(self.lake.load(&self.table, None).await?);
        }
        let Some(delta) = self.open.as_mut() else {
            return self.general(batches).await;
        };
        let table_columns: BTreeSet<String> = delta.snapshot()?.schema().fields().map(|f| f.name().clone()).collect();
        let batch_columns: BTreeSet<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        if table_columns != batch_columns || batches.iter().any(|b| b.schema() != schema) {
            return self.general(batches).await;
        }
        // The table's own partitioning (not the appender's wish): the one its files follow.
        let partitioned_by = delta.snapshot()?.metadata().partition_columns().to_vec();
        self.lake.prepare_write(&self.table, false).await?;
        let mut writer = deltalake::writer::RecordBatchWriter::for_table(delta)?
            .with_writer_properties(log_writer_properties(&batches));
        for batch in &batches {
            // A batch within one partition (a log's batch: one day, but at midnight) goes
            // straight to that partition's file; delta-rs's general `write` would hash every
            // row's partition values and copy every column to split it.
            let written = match single_partition(batch, &partitioned_by) {
                Some(values) => writer
                    .write_partition(batch.clone(), &values, deltalake::writer::WriteMode::Default)
                    .await
                    .map(drop),
                None => deltalake::writer::DeltaWriter::write(&mut writer, batch.clone()).await,
            };
            if let Err(e) = written {
                // Nothing is committed yet: the general path decides (and explains).
                tracing::debug!(table = %self.table, error = %e, "fast append refused; using the general path");
                return self.general(batches).await;
            }
        }
        match deltalake::writer::DeltaWriter::flush_and_commit(&mut writer, delta).await {
            Ok(version) => Ok(version),
            Err(e) => {
                self.open = None;
                Err(e.into())
            }
        }
    }

    /// Forgets the open table (after another writer rewrote it, for instance).
    pub fn reopen(&mut self) {
        self.open = None;
    }

    async fn general(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        self.open = None;
        let partition_by: Vec<&str> = self.partition_by.iter().map(String::as_str).collect();
        self.lake.append(&self.table, batches, &partition_by).await
    }
}

/// The partition values every row of `batch` shares, or `None` when rows differ (or a value is
/// null, or the table is not partitioned).
/// (Generic over the value type: delta-rs's partition value type, the kernel's `Scalar`, is not
/// exported, so the caller's use of the map names it.)
fn single_partition<V: deltalake::kernel::scalars::ScalarExt>(
    batch: &RecordBatch,
    partition_by: &[String],
) -> Option<indexmap::IndexMap<String, V>> {
    use deltalake::arrow::array::{Array, Scalar};
    if partition_by.is_empty() || batch.num_rows() == 0 {
        return None;
    }
    let mut values = indexmap::IndexMap::new();
    for name in partition_by {
        let column = batch.column_by_name(name)?;
        if column.null_count() > 0 {
            return None;
        }
        let first = Scalar::new(column.slice(0, 1));
        let same = deltalake::arrow::compute::kernels::cmp::eq(column, &first).ok()?;
        if same.true_count() != batch.num_rows() {
            return None;
        }
        values.insert(name.clone(), V::from_array(column.as_ref(), 0)?);
    }
    Some(values)
}

/// Parquet settings for log files: Snappy, statistics per column chunk (what the Delta log's
/// file statistics and file skipping use; page-level ones cost every page and serve little on
/// append-only logs), and dictionaries only for text columns whose values repeat (a model or
/// variant name: yes; a prediction id, unique per row: no, a dictionary for it is built,
/// outgrows its page and is abandoned in every file).
fn log_writer_properties(batches: &[RecordBatch]) -> deltalake::parquet::file::properties::WriterProperties {
    use deltalake::parquet::basic::Compression;
    use deltalake::parquet::file::properties::{EnabledStatistics, WriterProperties};
    use deltalake::parquet::schema::types::ColumnPath;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_dictionary_enabled(false);
    if let Some(first) = batches.first() {
        for (i, field) in first.schema().fields().iter().enumerate() {
            if text_values_repeat(first.column(i).as_ref()) {
                props = props.set_column_dictionary_enabled(ColumnPath::from(field.name().as_str()), true);
            }
        }
    }
    props.build()
}

/// Whether a text column's values repeat, judged on a sample of its first values: fewer distinct
/// non-null values than half the sample. Non-text columns: no.
fn text_values_repeat(column: &dyn deltalake::arrow::array::Array) -> bool {
    use deltalake::arrow::array::AsArray;
    use deltalake::arrow::datatypes::DataType;
    const SAMPLE: usize = 64;
    let distinct = |values: &mut dyn Iterator<Item = Option<&str>>| {
        let (mut seen, mut n) = (std::collections::HashSet::new(), 0usize);
        for v in values.take(SAMPLE).flatten() {
            seen.insert(v);
            n += 1;
        }
        n == 0 || seen.len() * 2 <= n
    };
    match column.data_type() {
        DataType::Utf8 => distinct(&mut column.as_string::<i32>().iter()),
        DataType::LargeUtf8 => distinct(&mut column.as_string::<i64>().iter()),
        DataType::Utf8View => distinct(&mut column.as_string_view().iter()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_only_for_text_that_repeats() {
        use deltalake::arrow::array::{Float64Array, StringArray};
        let ids: Vec<String> = (0..100).map(|i| format!("0199-{i:04}")).collect();
        let unique = StringArray::from_iter_values(&ids);
        let names = StringArray::from_iter_values((0..100).map(|i| ["bc-lr", "bc-rf"][i % 2]));
        let nulls = StringArray::from(vec![None::<&str>; 10]);
        let numbers = Float64Array::from(vec![1.0; 10]);
        assert!(!text_values_repeat(&unique));
        assert!(text_values_repeat(&names));
        assert!(text_values_repeat(&nulls));
        assert!(!text_values_repeat(&numbers));
    }

    #[test]
    fn table_names() {
        for ok in ["events", "a", "_x", "0a", "a.b-c_d"] {
            assert!(validate_table_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "A", ".x", "-x", "a b", "a\\b", &"a".repeat(129)] {
            assert!(validate_table_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn version_references() {
        let q = r#"SELECT * FROM "events@v3" JOIN "events@v12" ON 1=1 JOIN "xevents@v5" ON 1=1"#;
        assert_eq!(
            versions_referenced(q, "events").into_iter().collect::<Vec<_>>(),
            vec![3, 12]
        );
    }

    #[test]
    fn schema_strings() {
        let s = parse_schema("a:int, b:string,c:double").unwrap();
        assert_eq!(s.fields().len(), 3);
        assert!(parse_schema("a:blob").is_err());
        assert!(parse_schema("a").is_err());
    }
}
