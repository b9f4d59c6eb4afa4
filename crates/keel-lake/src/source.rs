//! Input files (CSV, Parquet, JSON lines) as a bounded stream of record batches.
//!
//! Parsing runs on a blocking thread and hands batches to the async writer through a channel of
//! [`CHANNEL_BATCHES`] slots, so memory stays bounded whatever the file size.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use deltalake::arrow::error::ArrowError;
use deltalake::datafusion::error::DataFusionError;
use deltalake::datafusion::execution::{SendableRecordBatchStream, TaskContext};
use deltalake::datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use deltalake::datafusion::physical_plan::streaming::PartitionStream;
use deltalake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{LakeError, Result};

/// Batches in flight between the parser thread and the writer.
const CHANNEL_BATCHES: usize = 2;
/// Records read to infer a CSV or JSON schema.
const INFER_RECORDS: usize = 1000;

/// Input file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// One JSON object per line.
    JsonLines,
}

impl Format {
    /// The format implied by a file extension (`csv`, `parquet`/`pq`, `jsonl`/`ndjson`/`json`).
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            "jsonl" | "ndjson" | "json" => Some(Format::JsonLines),
            _ => None,
        }
    }
}

impl std::str::FromStr for Format {
    type Err = LakeError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "csv" => Ok(Format::Csv),
            "parquet" => Ok(Format::Parquet),
            "json" | "jsonl" | "ndjson" => Ok(Format::JsonLines),
            other => Err(LakeError::InvalidOptions(format!(
                "unknown format {other:?}: use csv, parquet or jsonl"
            ))),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Csv => "csv",
            Format::Parquet => "parquet",
            Format::JsonLines => "jsonl",
        })
    }
}

/// Parses a schema string `name:type,name:type`. Types: string, int32, int64 (int, bigint), float32,
/// float64 (float, double), bool (boolean), date, timestamp (microseconds, UTC).
pub fn parse_schema(spec: &str) -> Result<Schema> {
    let mut fields = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, ty) = part
            .split_once(':')
            .ok_or_else(|| LakeError::InvalidOptions(format!("schema entry {part:?} is not name:type")))?;
        let data_type = match ty.trim().to_ascii_lowercase().as_str() {
            "string" | "str" | "utf8" | "text" => DataType::Utf8,
            "int32" | "integer" => DataType::Int32,
            "int" | "int64" | "bigint" | "long" => DataType::Int64,
            "float32" | "real" => DataType::Float32,
            "float" | "float64" | "double" => DataType::Float64,
            "bool" | "boolean" => DataType::Boolean,
            "date" | "date32" => DataType::Date32,
            "timestamp" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            other => {
                return Err(LakeError::InvalidOptions(format!(
                    "unknown type {other:?} for column {name:?}: use string, int32, int64, float32, float64, bool, date or timestamp"
                )));
            }
        };
        fields.push(Field::new(name.trim(), data_type, true));
    }
    if fields.is_empty() {
        return Err(LakeError::InvalidOptions("schema string is empty".into()));
    }
    Ok(Schema::new(fields))
}

/// A compact `name:type, ...` rendering of a schema, for error messages.
pub fn schema_string(schema: &Schema) -> String {
    let parts: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("{}:{}", f.name(), f.data_type()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The inferred schema with the types of `hint` for the columns `hint` has (file column order kept).
fn with_hint(inferred: Schema, hint: Option<&Schema>) -> Schema {
    let Some(hint) = hint else { return inferred };
    let fields: Vec<Field> = inferred
        .fields()
        .iter()
        .map(|f| match hint.field_with_name(f.name()) {
            Ok(h) => Field::new(f.name(), h.data_type().clone(), true),
            Err(_) => f.as_ref().clone(),
        })
        .collect();
    Schema::new(fields)
}

/// Arrow's CSV value errors say `at line N` with N counted from 0 (header included); the
/// record-shape errors say `for line N` counted from 1. Rewrite the former so both give the
/// 1-based line of the file (exact unless quoted fields span lines).
fn csv_file_lines(message: &str) -> String {
    const AT: &str = "at line ";
    let Some(pos) = message.find(AT) else {
        return message.to_string();
    };
    let start = pos + AT.len();
    let digits: String = message[start..].chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<u64>() {
        Ok(n) => format!("{}{}{}", &message[..start], n + 1, &message[start + digits.len()..]),
        Err(_) => message.to_string(),
    }
}

type BatchIter = Box<dyn Iterator<Item = std::result::Result<RecordBatch, ArrowError>> + Send>;

/// An opened input file: its schema and a not-yet-started batch reader.
pub struct InputFile {
    path: PathBuf,
    format: Format,
    schema: SchemaRef,
    reader: Mutex<Option<BatchIter>>,
    rows: Arc<AtomicU64>,
    failure: Arc<Mutex<Option<String>>>,
}

impl fmt::Debug for InputFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InputFile")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish()
    }
}

fn input_err(path: &Path, message: impl fmt::Display) -> LakeError {
    LakeError::Input {
        file: path.to_path_buf(),
        message: message.to_string(),
    }
}

impl InputFile {
    /// Opens `path`, inferring the schema unless `schema` is given (CSV and JSON only).
    /// `hint` is the existing table's schema: columns found in it are read with its types.
    pub fn open(
        path: &Path,
        format: Format,
        schema: Option<Schema>,
        hint: Option<SchemaRef>,
        batch_size: usize,
    ) -> Result<InputFile> {
        let file = File::open(path).map_err(|e| input_err(path, e))?;
        let (schema, reader): (SchemaRef, BatchIter) = match format {
            Format::Csv => {
                let mut file = file;
                let schema = match schema {
                    Some(s) => Arc::new(s),
                    None => {
                        let fmt = deltalake::arrow::csv::reader::Format::default().with_header(true);
                        let (s, _) = fmt
                            .infer_schema(&mut file, Some(INFER_RECORDS))
                            .map_err(|e| input_err(path, e))?;
                        file.seek(SeekFrom::Start(0)).map_err(|e| input_err(path, e))?;
                        Arc::new(with_hint(s, hint.as_deref()))
                    }
                };
                let reader = deltalake::arrow::csv::ReaderBuilder::new(schema.clone())
                    .with_header(true)
                    .with_batch_size(batch_size)
                    .build(BufReader::new(file))
                    .map_err(|e| input_err(path, e))?;
                (schema, Box::new(reader))
            }
            Format::JsonLines => {
                let mut buf = BufReader::new(file);
                let schema = match schema {
                    Some(s) => Arc::new(s),
                    None => {
                        let (s, _) = deltalake::arrow::json::reader::infer_json_schema(&mut buf, Some(INFER_RECORDS))
                            .map_err(|e| input_err(path, e))?;
                        buf.seek(SeekFrom::Start(0)).map_err(|e| input_err(path, e))?;
                        Arc::new(with_hint(s, hint.as_deref()))
                    }
                };
                let reader = deltalake::arrow::json::ReaderBuilder::new(schema.clone())
                    .with_batch_size(batch_size)
                    .build(buf)
                    .map_err(|e| input_err(path, e))?;
                (schema, Box::new(reader))
            }
            Format::Parquet => {
                if schema.is_some() {
                    return Err(LakeError::InvalidOptions(
                        "a schema string applies to csv and json lines only: parquet files carry their schema".into(),
                    ));
                }
                let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| input_err(path, e))?;
                let schema = builder.schema().clone();
                let reader = builder
                    .with_batch_size(batch_size)
                    .build()
                    .map_err(|e| input_err(path, e))?;
                (schema, Box::new(reader))
            }
        };
        Ok(InputFile {
            path: path.to_path_buf(),
            format,
            schema,
            reader: Mutex::new(Some(reader)),
            rows: Arc::new(AtomicU64::new(0)),
            failure: Arc::new(Mutex::new(None)),
        })
    }

    /// Counts rows read into `counter` (shared with a progress display) instead of a private one.
    pub fn count_into(&mut self, counter: Arc<AtomicU64>) {
        self.rows = counter;
    }

    /// The schema of the rows this file yields.
    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// Rows read so far.
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    /// The first parse error, if reading failed.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }
}

impl PartitionStream for InputFile {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<RecordBatch, DataFusionError>>(CHANNEL_BATCHES);
        let reader = self.reader.lock().ok().and_then(|mut r| r.take());
        let rows = self.rows.clone();
        let failure = self.failure.clone();
        let path = self.path.clone();
        let format = self.format;
        // Parsing is CPU-bound and does blocking reads: keep it off the async reactor.
        tokio::task::spawn_blocking(move || {
            let Some(reader) = reader else {
                let _ = tx.blocking_send(Err(DataFusionError::Execution(
                    "input file was already consumed".into(),
                )));
                return;
            };
            for item in reader {
                let item = match item {
                    Ok(batch) => {
                        rows.fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                        Ok(batch)
                    }
                    Err(e) => {
                        let detail = if format == Format::Csv {
                            csv_file_lines(&e.to_string())
                        } else {
                            e.to_string()
                        };
                        let message = format!("cannot read {}: {detail}", path.display());
                        if let Ok(mut f) = failure.lock() {
                            f.get_or_insert(detail);
                        }
                        Err(DataFusionError::Execution(message))
                    }
                };
                let failed = item.is_err();
                if tx.blocking_send(item).is_err() || failed {
                    return;
                }
            }
        });
        let stream = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_lines_are_one_based() {
        assert_eq!(
            csv_file_lines("bad value for column 0 at line 3. Row"),
            "bad value for column 0 at line 4. Row"
        );
        assert_eq!(
            csv_file_lines("incorrect number of fields for line 3"),
            "incorrect number of fields for line 3"
        );
    }
}
