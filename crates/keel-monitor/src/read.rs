//! Column-at-a-time reading of a table, a Parquet file (only the projected column is decoded,
//! in bounded batches) or record batches already in memory.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, SchemaRef};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{MonitorError, Result};
use crate::report::ColumnKind;

/// Rows decoded at a time; bounds the memory of one column read beyond its values.
const BATCH_ROWS: usize = 64 * 1024;

/// Schema and row count of one Parquet file.
#[derive(Debug, Clone)]
pub(crate) struct FileInfo {
    pub path: PathBuf,
    pub schema: SchemaRef,
    pub rows: u64,
}

/// One side of a drift comparison: a Parquet file or record batches in memory.
pub(crate) enum Table<'a> {
    File(FileInfo),
    Batches {
        schema: SchemaRef,
        batches: &'a [RecordBatch],
        rows: u64,
    },
}

impl Table<'_> {
    pub(crate) fn schema(&self) -> &SchemaRef {
        match self {
            Table::File(info) => &info.schema,
            Table::Batches { schema, .. } => schema,
        }
    }

    pub(crate) fn rows(&self) -> u64 {
        match self {
            Table::File(info) => info.rows,
            Table::Batches { rows, .. } => *rows,
        }
    }

    /// Every batch's array of `column`, in order, handed to `each`.
    fn for_each_batch(
        &self,
        column: &str,
        mut each: impl FnMut(&dyn Array) -> std::result::Result<(), ArrowError>,
    ) -> Result<()> {
        match self {
            Table::File(info) => for_each_file_batch(info, column, |array| {
                each(array).map_err(|e| parquet_err(&info.path, e))
            }),
            Table::Batches { batches, .. } => {
                for batch in batches.iter() {
                    let array = batch
                        .column_by_name(column)
                        .ok_or_else(|| MonitorError::UnknownColumn(column.to_string()))?;
                    each(array.as_ref()).map_err(|e| MonitorError::Arrow {
                        column: column.to_string(),
                        message: e.to_string(),
                    })?;
                }
                Ok(())
            }
        }
    }

    /// All values of a numeric column as f64; nulls and NaN are counted as missing, infinities
    /// counted and dropped.
    pub(crate) fn read_numeric(&self, column: &str) -> Result<NumericValues> {
        let mut out = NumericValues {
            values: Vec::with_capacity(usize::try_from(self.rows()).unwrap_or(0)),
            ..Default::default()
        };
        self.for_each_batch(column, |array| push_numeric_array(&mut out, array))?;
        Ok(out)
    }

    /// Value counts of a categorical column (strings, dictionaries of strings, booleans); nulls
    /// counted as missing.
    pub(crate) fn read_categorical(&self, column: &str) -> Result<CategoryCounts> {
        let mut out = CategoryCounts::default();
        self.for_each_batch(column, |array| push_categorical_array(&mut out, array))?;
        Ok(out)
    }
}

/// Finite values of a numeric column plus its missing counts.
#[derive(Debug, Clone, Default)]
pub struct NumericValues {
    pub values: Vec<f64>,
    /// null or NaN
    pub missing: u64,
    /// +inf or -inf (dropped like Evidently does)
    pub infinite: u64,
}

/// Value counts of a categorical column plus its missing count.
#[derive(Debug, Clone, Default)]
pub struct CategoryCounts {
    pub counts: HashMap<String, u64>,
    pub missing: u64,
}

impl CategoryCounts {
    pub fn total(&self) -> u64 {
        self.counts.values().sum()
    }
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> MonitorError {
    MonitorError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

fn open(path: &Path) -> Result<ParquetRecordBatchReaderBuilder<File>> {
    let file = File::open(path).map_err(|source| MonitorError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| parquet_err(path, e))
}

/// Reads the footer only.
pub(crate) fn file_info(path: &Path) -> Result<FileInfo> {
    let builder = open(path)?;
    let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
    Ok(FileInfo {
        path: path.to_path_buf(),
        schema: builder.schema().clone(),
        rows,
    })
}

/// How a column of this Arrow type is treated, if at all (keel-stats' column kinds; times and
/// dictionaries of numbers are not compared).
pub(crate) fn kind_of(data_type: &DataType) -> Option<ColumnKind> {
    use keel_stats::column::{ColumnKind as Kind, column_kind, is_dictionary};
    match column_kind(data_type) {
        Kind::Numeric if !is_dictionary(data_type) => Some(ColumnKind::Numeric),
        Kind::Categorical => Some(ColumnKind::Categorical),
        Kind::Numeric | Kind::Time | Kind::Unsupported => None,
    }
}

/// Decodes one top-level column batch by batch and hands each batch (as an Arrow array) to `each`.
fn for_each_file_batch(info: &FileInfo, column: &str, mut each: impl FnMut(&dyn Array) -> Result<()>) -> Result<()> {
    let path = info.path.as_path();
    let index = info
        .schema
        .index_of(column)
        .map_err(|_| MonitorError::UnknownColumn(column.to_string()))?;
    let builder = open(path)?;
    let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| parquet_err(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| parquet_err(path, e))?;
        each(batch.column(0).as_ref())?;
    }
    Ok(())
}

/// Adds the values of a numeric array: nulls and NaN counted as missing, infinities counted
/// and dropped.
pub(crate) fn push_numeric_array(out: &mut NumericValues, array: &dyn Array) -> std::result::Result<(), ArrowError> {
    let floats = cast(array, &DataType::Float64)?;
    let floats = floats.as_primitive::<Float64Type>();
    let values = floats.values();
    match floats.nulls() {
        None => push_finite(out, values.iter().copied()),
        Some(nulls) => {
            out.missing += nulls.null_count() as u64;
            push_finite(
                out,
                values
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| nulls.is_valid(*i))
                    .map(|(_, v)| *v),
            );
        }
    }
    Ok(())
}

pub(crate) fn push_finite(out: &mut NumericValues, values: impl Iterator<Item = f64>) {
    for v in values {
        if v.is_finite() {
            out.values.push(v);
        } else if v.is_nan() {
            out.missing += 1;
        } else {
            out.infinite += 1;
        }
    }
}

/// Adds the values of a categorical array (strings, dictionaries of strings, booleans); nulls
/// counted as missing.
pub(crate) fn push_categorical_array(
    out: &mut CategoryCounts,
    array: &dyn Array,
) -> std::result::Result<(), ArrowError> {
    let strings = cast(array, &DataType::Utf8)?;
    let strings = strings.as_string::<i32>();
    out.missing += strings.null_count() as u64;
    for value in strings.iter().flatten() {
        match out.counts.get_mut(value) {
            Some(count) => *count += 1,
            None => {
                out.counts.insert(value.to_string(), 1);
            }
        }
    }
    Ok(())
}
