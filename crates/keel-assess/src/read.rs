//! Column-at-a-time reading of a list of Parquet files (a Delta table version or one plain file).
//!
//! Only the projected column is decoded, in bounded batches, file after file in the order given,
//! so row `i` of every column read is the same table row. Each file's footer is read once.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{
    DataType, Field, Float64Type, Int64Type, Schema, SchemaRef, TimeUnit, TimestampMicrosecondType,
};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};
use serde::Serialize;

use crate::error::{AssessError, Result};

/// Rows decoded at a time; bounds the memory of one column read beyond its values.
const BATCH_ROWS: usize = 64 * 1024;
/// Marks a missing category code.
pub(crate) const MISSING_CODE: u32 = u32::MAX;
/// Marks a missing time.
pub(crate) const MISSING_TIME: i64 = i64::MIN;

/// How a column is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    /// Integers, floats, decimals: read as f64.
    Numeric,
    /// Strings, dictionaries of strings, booleans.
    Categorical,
    /// Timestamps and dates (microseconds since the epoch, UTC).
    Time,
    /// Anything else (lists, structs, binary): counted, not summarised.
    Unsupported,
}

/// How a column of this Arrow type is treated (keel-stats' column kinds).
pub(crate) fn kind_of(data_type: &DataType) -> ColumnKind {
    match keel_stats::column::column_kind(data_type) {
        keel_stats::column::ColumnKind::Numeric => ColumnKind::Numeric,
        keel_stats::column::ColumnKind::Categorical => ColumnKind::Categorical,
        keel_stats::column::ColumnKind::Time => ColumnKind::Time,
        keel_stats::column::ColumnKind::Unsupported => ColumnKind::Unsupported,
    }
}

pub(crate) use keel_stats::column::is_string;

struct FileMeta {
    path: PathBuf,
    meta: ArrowReaderMetadata,
}

/// The files of one table: their footers, the schema of the first, the total row count.
pub(crate) struct Source {
    files: Vec<FileMeta>,
    pub schema: SchemaRef,
    pub rows: u64,
}

fn parquet_err(path: &Path, e: impl std::fmt::Display) -> AssessError {
    AssessError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// One decoded piece of a column: a batch, or `n` rows of a file that lacks the column.
pub(crate) enum Piece<'a> {
    Batch(&'a dyn Array),
    Nulls(usize),
}

impl Source {
    /// Reads every file's footer.
    pub fn open(paths: &[PathBuf]) -> Result<Source> {
        if paths.is_empty() {
            return Err(AssessError::NoFiles);
        }
        let mut files = Vec::with_capacity(paths.len());
        let mut rows = 0u64;
        for path in paths {
            let file = File::open(path).map_err(|source| AssessError::Io {
                path: path.clone(),
                source,
            })?;
            let meta =
                ArrowReaderMetadata::load(&file, ArrowReaderOptions::default()).map_err(|e| parquet_err(path, e))?;
            rows += u64::try_from(meta.metadata().file_metadata().num_rows()).unwrap_or(0);
            files.push(FileMeta {
                path: path.clone(),
                meta,
            });
        }
        let schema = files[0].meta.schema().clone();
        Ok(Source { files, schema, rows })
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.schema.field_with_name(name).ok()
    }

    pub fn column_names(&self) -> String {
        let names: Vec<&str> = self.schema.fields().iter().map(|f| f.name().as_str()).collect();
        names.join(", ")
    }

    /// Decodes one top-level column file by file, batch by batch.
    pub fn for_each(&self, column: &str, each: impl FnMut(Piece<'_>) -> Result<()>) -> Result<()> {
        self.for_each_as(column, false, each)
    }

    /// Like [`Source::for_each`]; with `as_dictionary`, a string column is decoded as a dictionary
    /// array (keys plus distinct values): dictionary-encoded Parquet pages then skip building one
    /// string per row.
    fn for_each_as(
        &self,
        column: &str,
        as_dictionary: bool,
        mut each: impl FnMut(Piece<'_>) -> Result<()>,
    ) -> Result<()> {
        for f in &self.files {
            let path = f.path.as_path();
            let file_rows = usize::try_from(f.meta.metadata().file_metadata().num_rows()).unwrap_or(0);
            let Ok(index) = f.meta.schema().index_of(column) else {
                each(Piece::Nulls(file_rows))?;
                continue;
            };
            let file = File::open(path).map_err(|source| AssessError::Io {
                path: path.to_path_buf(),
                source,
            })?;
            let meta = if as_dictionary {
                dictionary_metadata(&f.meta, index).map_err(|e| parquet_err(path, e))?
            } else {
                f.meta.clone()
            };
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, meta);
            let mask = ProjectionMask::roots(builder.parquet_schema(), [index]);
            let reader = builder
                .with_projection(mask)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| parquet_err(path, e))?;
            for batch in reader {
                let batch = batch.map_err(|e| parquet_err(path, e))?;
                each(Piece::Batch(batch.column(0).as_ref()))?;
            }
        }
        Ok(())
    }

    fn first_path(&self) -> &Path {
        &self.files[0].path
    }

    /// All values of a numeric column as f64, aligned with the rows; missing values are NaN.
    pub fn read_numeric(&self, column: &str) -> Result<Vec<f64>> {
        let mut out = Vec::with_capacity(usize::try_from(self.rows).unwrap_or(0));
        self.for_each(column, |piece| {
            match piece {
                Piece::Nulls(n) => out.resize(out.len() + n, f64::NAN),
                Piece::Batch(array) => {
                    let floats = cast(array, &DataType::Float64).map_err(|e| parquet_err(self.first_path(), e))?;
                    let floats = floats.as_primitive::<Float64Type>();
                    let start = out.len();
                    out.extend_from_slice(floats.values());
                    if let Some(nulls) = floats.nulls() {
                        for i in 0..floats.len() {
                            if nulls.is_null(i) {
                                out[start + i] = f64::NAN;
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A categorical column as codes aligned with the rows ([`MISSING_CODE`] for missing), the
    /// distinct values (code order) and their counts.
    pub fn read_categorical(&self, column: &str) -> Result<Categories> {
        let mut out = Categories {
            codes: Vec::with_capacity(usize::try_from(self.rows).unwrap_or(0)),
            ..Default::default()
        };
        let mut index: HashMap<String, u32> = HashMap::new();
        let mut code_of = |value: &str, out: &mut Categories| -> u32 {
            if let Some(c) = index.get(value) {
                return *c;
            }
            let c = out.values.len() as u32;
            index.insert(value.to_string(), c);
            out.values.push(value.to_string());
            out.counts.push(0);
            c
        };
        self.for_each_as(column, true, |piece| {
            match piece {
                Piece::Nulls(n) => {
                    out.codes.resize(out.codes.len() + n, MISSING_CODE);
                    out.missing += n as u64;
                }
                Piece::Batch(array) => {
                    if let DataType::Dictionary(_, _) = array.data_type() {
                        // Map each dictionary entry once, then the keys.
                        let dict = array.as_any_dictionary();
                        let values =
                            cast(dict.values(), &DataType::Utf8).map_err(|e| parquet_err(self.first_path(), e))?;
                        let values = values.as_string::<i32>();
                        let map: Vec<u32> = (0..values.len())
                            .map(|i| {
                                if values.is_null(i) {
                                    MISSING_CODE
                                } else {
                                    code_of(values.value(i), &mut out)
                                }
                            })
                            .collect();
                        let keys = dict.normalized_keys();
                        for (i, k) in keys.iter().enumerate() {
                            let code = if array.is_null(i) {
                                MISSING_CODE
                            } else {
                                map.get(*k).copied().unwrap_or(MISSING_CODE)
                            };
                            push_code(&mut out, code);
                        }
                    } else {
                        let strings = cast(array, &DataType::Utf8).map_err(|e| parquet_err(self.first_path(), e))?;
                        let strings = strings.as_string::<i32>();
                        for value in strings.iter() {
                            let code = match value {
                                None => MISSING_CODE,
                                Some(v) => code_of(v, &mut out),
                            };
                            push_code(&mut out, code);
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// A time column (timestamps, dates, or strings parsed as times when `parse_strings`) as
    /// microseconds since the epoch, UTC ([`MISSING_TIME`] for missing). Naive times are taken as UTC.
    pub fn read_time(&self, column: &str, parse_strings: bool) -> Result<Vec<i64>> {
        let mut out: Vec<i64> = Vec::with_capacity(usize::try_from(self.rows).unwrap_or(0));
        self.for_each(column, |piece| {
            match piece {
                Piece::Nulls(n) => out.resize(out.len() + n, MISSING_TIME),
                Piece::Batch(array) => {
                    let dt = array.data_type().clone();
                    if parse_strings && is_string(&dt) {
                        let strings = cast(array, &DataType::Utf8).map_err(|e| parquet_err(self.first_path(), e))?;
                        let strings = strings.as_string::<i32>();
                        for value in strings.iter() {
                            let row = out.len() as u64;
                            out.push(match value {
                                None => MISSING_TIME,
                                Some(s) if s.trim().is_empty() => MISSING_TIME,
                                Some(s) => parse_time(s).ok_or_else(|| AssessError::TimeParse {
                                    column: column.to_string(),
                                    row,
                                    value: s.chars().take(80).collect(),
                                })?,
                            });
                        }
                        return Ok(());
                    }
                    let micros = match dt {
                        DataType::Timestamp(_, tz) => {
                            let c = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, tz))
                                .map_err(|e| parquet_err(self.first_path(), e))?;
                            let c = c.as_primitive::<TimestampMicrosecondType>();
                            let start = out.len();
                            out.extend_from_slice(c.values());
                            c.nulls().cloned().map(|n| (start, n))
                        }
                        DataType::Date32 | DataType::Date64 => {
                            let ms = cast(array, &DataType::Date64).map_err(|e| parquet_err(self.first_path(), e))?;
                            let ms = cast(&ms, &DataType::Int64).map_err(|e| parquet_err(self.first_path(), e))?;
                            let ms = ms.as_primitive::<Int64Type>();
                            let start = out.len();
                            out.extend(ms.values().iter().map(|v| v.saturating_mul(1000)));
                            ms.nulls().cloned().map(|n| (start, n))
                        }
                        other => {
                            return Err(AssessError::TimeType {
                                column: column.to_string(),
                                data_type: other.to_string(),
                            });
                        }
                    };
                    if let Some((start, nulls)) = micros {
                        for i in 0..nulls.len() {
                            if nulls.is_null(i) {
                                out[start + i] = MISSING_TIME;
                            }
                        }
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Non-null count of a column of any type (for unsupported types).
    pub fn count_missing(&self, column: &str) -> Result<u64> {
        let mut missing = 0u64;
        self.for_each(column, |piece| {
            missing += match piece {
                Piece::Nulls(n) => n as u64,
                Piece::Batch(array) => array.null_count() as u64,
            };
            Ok(())
        })?;
        Ok(missing)
    }
}

/// The file's reader metadata with column `index` read as `Dictionary(Int32, Utf8)` when it is a
/// plain string column (other types unchanged).
fn dictionary_metadata(meta: &ArrowReaderMetadata, index: usize) -> parquet::errors::Result<ArrowReaderMetadata> {
    let schema = meta.schema();
    if !matches!(schema.field(index).data_type(), DataType::Utf8 | DataType::LargeUtf8) {
        return Ok(meta.clone());
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| {
            if i == index {
                Field::new(
                    f.name(),
                    DataType::Dictionary(Box::new(DataType::Int32), Box::new(f.data_type().clone())),
                    f.is_nullable(),
                )
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let schema = Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
    ArrowReaderMetadata::try_new(meta.metadata().clone(), ArrowReaderOptions::new().with_schema(schema))
}

fn push_code(out: &mut Categories, code: u32) {
    if code == MISSING_CODE {
        out.missing += 1;
    } else {
        out.counts[code as usize] += 1;
    }
    out.codes.push(code);
}

/// A categorical column: codes per row, distinct values and counts.
#[derive(Debug, Default)]
pub(crate) struct Categories {
    pub codes: Vec<u32>,
    pub values: Vec<String>,
    pub counts: Vec<u64>,
    pub missing: u64,
}

/// Parses RFC 3339 (`T` or space separator), `YYYY-MM-DD HH:MM:SS[.fff]` (taken as UTC) or
/// `YYYY-MM-DD` into microseconds since the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f%#z", "%Y-%m-%dT%H:%M:%S%.f%#z"] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        let obd = parse_time("2019-11-24 00:00:20.110351+00:00").unwrap();
        assert_eq!(obd, 1_574_553_620_110_351);
        assert_eq!(parse_time("2019-11-24T00:00:20.110351Z"), Some(obd));
        assert_eq!(parse_time("2019-11-24 01:00:20.110351+01:00"), Some(obd));
        assert_eq!(parse_time("2019-11-24 00:00:20.110351"), Some(obd));
        assert_eq!(parse_time("2019-11-24"), Some(1_574_553_600_000_000));
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2019-13-45"), None);
    }
}
