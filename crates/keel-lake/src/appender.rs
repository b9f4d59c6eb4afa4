//! The appender: many small appends to one table kept open, as a log writer does.

use crate::{Lake, LakeError, Result};
use deltalake::DeltaTable;
use deltalake::arrow::array::RecordBatch;
use std::collections::BTreeSet;

/// Appends to one table again and again, as a log writer does: the table stays open between
/// appends (no log replay per append), and batches with exactly the table's columns go
/// through delta-rs's `RecordBatchWriter` (Parquet files plus one commit, no query plan), with
/// dictionary encoding only for text columns. A batch with other columns takes
/// [`Lake::append`] (which evolves the schema), and the table is reopened after it. Appends do
/// not conflict with other writers' commits: a stale snapshot commits at the next free version.
pub struct Appender {
    pub(crate) lake: Lake,
    pub(crate) table: String,
    pub(crate) partition_by: Vec<String>,
    pub(crate) open: Option<DeltaTable>,
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

    pub(crate) async fn general(&mut self, batches: Vec<RecordBatch>) -> Result<u64> {
        self.open = None;
        let partition_by: Vec<&str> = self.partition_by.iter().map(String::as_str).collect();
        self.lake.append(&self.table, batches, &partition_by).await
    }
}

/// The partition values every row of `batch` shares, or `None` when rows differ (or a value is
/// null, or the table is not partitioned).
/// (Generic over the value type: delta-rs's partition value type, the kernel's `Scalar`, is not
/// exported, so the caller's use of the map names it.)
pub(crate) fn single_partition<V: deltalake::kernel::scalars::ScalarExt>(
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
pub(crate) fn log_writer_properties(batches: &[RecordBatch]) -> deltalake::parquet::file::properties::WriterProperties {
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
pub(crate) fn text_values_repeat(column: &dyn deltalake::arrow::array::Array) -> bool {
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
