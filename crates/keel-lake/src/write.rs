//! Writing tables: ingest a file, append or overwrite batches, compact, delete.

use crate::appender::Appender;
use crate::source::{self, Format, parse_schema};
use crate::types::{CompactReport, IngestOptions, IngestReport, WriteMode, validate_table_name};
use crate::{Lake, LakeError, Result};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::catalog::streaming::StreamingTable;
use deltalake::datafusion::datasource::provider_as_source;
use deltalake::datafusion::logical_expr::LogicalPlanBuilder;
use deltalake::kernel::schema::cast::normalize_for_delta;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

impl Lake {
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

    /// Makes everything written to `table` so far durable: on a local lake every file and
    /// folder of the table is synced to disk (Delta's commits and data files are written and
    /// renamed, not synced); on an object store a write is durable once it returns, so there
    /// is nothing to do. For writers that delete their own copy once the lake has it.
    pub async fn sync_table(&self, table: &str) -> Result<()> {
        let Some(root) = self.local_root() else {
            return Ok(());
        };
        let dir = root.join(table);
        tokio::task::spawn_blocking(move || sync_tree(&dir))
            .await
            .map_err(|e| LakeError::Io {
                path: root.join(table),
                source: std::io::Error::other(e.to_string()),
            })?
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

    pub(crate) async fn write_batches(
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
}

/// Refuses a file whose columns differ from the table's, naming both schemas.
pub(crate) fn check_schema(table: &str, file: &Path, file_schema: &Schema, table_schema: &Schema) -> Result<()> {
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

/// Syncs every file under `dir`, then every folder (deepest first), then `dir` itself.
fn sync_tree(dir: &std::path::Path) -> Result<()> {
    let io = |path: &std::path::Path, source: std::io::Error| LakeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut folders = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < folders.len() {
        let folder = folders[i].clone();
        for entry in std::fs::read_dir(&folder).map_err(|e| io(&folder, e))? {
            let entry = entry.map_err(|e| io(&folder, e))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| io(&path, e))?.is_dir() {
                folders.push(path);
            } else {
                std::fs::File::open(&path)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| io(&path, e))?;
            }
        }
        i += 1;
    }
    for folder in folders.iter().rev() {
        std::fs::File::open(folder)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(folder, e))?;
    }
    Ok(())
}
