//! Column-at-a-time Parquet reading: only the projected column is decoded, in bounded batches.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, SchemaRef};
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

/// How a column of this Arrow type is treated, if at all.
pub(crate) fn kind_of(data_type: &DataType) -> Option<ColumnKind> {
    match data_type {
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Some(ColumnKind::Numeric),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean => Some(ColumnKind::Categorical),
        DataType::Dictionary(_, value) => match kind_of(value) {
            Some(ColumnKind::Categorical) => Some(ColumnKind::Categorical),
            _ => None,
        },
        _ => None,
    }
}

/// Decodes one top-level column batch by batch and hands each batch (as an Arrow array) to `each`.
fn for_each_batch(info: &FileInfo, column: &str, mut each: impl FnMut(&dyn Array) -> Result<()>) -> Result<()> {
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

/// All values of a numeric column as f64; nulls and NaN are counted as missing, infinities counted and dropped.
pub(crate) fn read_numeric(info: &FileInfo, column: &str) -> Result<NumericValues> {
    let mut out = NumericValues {
        values: Vec::with_capacity(usize::try_from(info.rows).unwrap_or(0)),
        ..Default::default()
    };
    for_each_batch(info, column, |array| {
        push_numeric_array(&mut out, array).map_err(|e| parquet_err(&info.path, e))
    })?;
    Ok(out)
}

/// Adds the values of a numeric array: nulls and NaN counted as missing, infinities counted
/// and dropped.
pub(crate) fn push_numeric_array(out: &mut NumericValues, array: &dyn Array) -> std::result::Result<(), String> {
    let floats = cast(array, &DataType::Float64).map_err(|e| e.to_string())?;
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

/// Value counts of a categorical column (strings, dictionaries of strings, booleans); nulls counted as missing.
pub(crate) fn read_categorical(info: &FileInfo, column: &str) -> Result<CategoryCounts> {
    let mut out = CategoryCounts::default();
    for_each_batch(info, column, |array| {
        push_categorical_array(&mut out, array).map_err(|e| parquet_err(&info.path, e))
    })?;
    Ok(out)
}

/// Adds the values of a categorical array (strings, dictionaries of strings, booleans); nulls
/// counted as missing.
pub(crate) fn push_categorical_array(out: &mut CategoryCounts, array: &dyn Array) -> std::result::Result<(), String> {
    let strings = cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
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
