//! Rows to read: a lake table (checked and audited like every read) or a local Parquet or CSV
//! file (the command line only), as a stream of record batches with bounded memory.

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::BoxStream;
use keel_data::{Caller, Workspace};
use keel_lake::VersionOrTimestamp;
use keel_lake::arrow::array::RecordBatch;
use keel_lake::arrow::datatypes::SchemaRef;

use crate::{BatchError, split_table};

/// Rows the file reader parses at a time.
const FILE_BATCH_ROWS: usize = 65_536;

/// An opened source: its schema, its batches and what to call it in reports.
pub(crate) struct Source {
    pub(crate) schema: SchemaRef,
    pub(crate) batches: BoxStream<'static, Result<RecordBatch, BatchError>>,
    pub(crate) name: String,
}

/// Whether `from` names a local file rather than a lake table.
pub fn is_file(from: &str) -> bool {
    let lower = from.to_ascii_lowercase();
    lower.ends_with(".csv") || lower.ends_with(".parquet") || lower.ends_with(".pq") || from.contains('/')
}

/// Opens `from` (a table, `table@vN`, or a `.parquet`/`.csv` file when `files` is allowed),
/// reading only `columns` of a table; the schema is known before any row is read.
pub(crate) async fn open(
    ws: &Workspace,
    caller: &Caller,
    from: &str,
    columns: &[String],
    files: bool,
    action: &str,
    details: serde_json::Value,
) -> Result<Source, BatchError> {
    if is_file(from) {
        if !files {
            return Err(BatchError::Invalid(format!(
                "{from:?} is a file path; a server job reads lake tables only (ingest the file with `keel data ingest FILE --table NAME` first)"
            )));
        }
        return open_file(Path::new(from));
    }
    let (table, at) = split_table(from)?;
    let pass = ws.check::<keel_data::Read>(caller, &table, action, details).await?;
    let version = match at {
        Some(v) => v,
        None => ws.versions(&pass).await?.iter().map(|v| v.version).max().unwrap_or(0),
    };
    let schema = ws.lake().schema(&table).await?;
    let present: Vec<String> = columns
        .iter()
        .filter(|c| schema.field_with_name(c).is_ok())
        .cloned()
        .collect();
    let stream = ws
        .scan_stream(&pass, Some(VersionOrTimestamp::Version(version)), &present)
        .await?;
    Ok(Source {
        schema,
        batches: stream
            .map(|b| b.map_err(|e| BatchError::Internal(format!("reading the input table failed: {e}"))))
            .boxed(),
        name: format!("{table}@v{version}"),
    })
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, keel_lake::arrow::error::ArrowError>> + Send>;

fn open_file(path: &Path) -> Result<Source, BatchError> {
    let bad = |e: &dyn std::fmt::Display| BatchError::Invalid(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| bad(&e))?;
    let lower = path.to_string_lossy().to_ascii_lowercase();
    let (schema, reader): (SchemaRef, Batches) = if lower.ends_with(".csv") {
        use std::io::{Seek, SeekFrom};
        let mut file = file;
        let format = keel_lake::arrow::csv::reader::Format::default().with_header(true);
        let (schema, _) = format.infer_schema(&mut file, Some(1000)).map_err(|e| bad(&e))?;
        file.seek(SeekFrom::Start(0)).map_err(|e| bad(&e))?;
        let schema = Arc::new(schema);
        let reader = keel_lake::arrow::csv::ReaderBuilder::new(schema.clone())
            .with_header(true)
            .with_batch_size(FILE_BATCH_ROWS)
            .build(std::io::BufReader::new(file))
            .map_err(|e| bad(&e))?;
        (schema, Box::new(reader))
    } else if lower.ends_with(".parquet") || lower.ends_with(".pq") {
        let builder = keel_lake::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(&e))?;
        let schema = builder.schema().clone();
        let reader = builder.with_batch_size(FILE_BATCH_ROWS).build().map_err(|e| bad(&e))?;
        (schema, Box::new(reader))
    } else {
        return Err(BatchError::Invalid(format!(
            "{}: name a .parquet or .csv file, or a lake table",
            path.display()
        )));
    };
    let name = path.display().to_string();
    let shown = name.clone();
    // Parsing runs on the blocking pool, one batch at a time; a parse error or a failed task
    // is the stream's last item, never a silent end.
    let batches = futures::stream::unfold(Some(reader), move |state| {
        let shown = shown.clone();
        async move {
            let mut reader = state?;
            let read = tokio::task::spawn_blocking(move || {
                let next = reader.next();
                (next, reader)
            })
            .await;
            match read {
                Ok((Some(Ok(batch)), reader)) => Some((Ok(batch), Some(reader))),
                Ok((Some(Err(e)), _)) => Some((Err(BatchError::Invalid(format!("cannot read {shown}: {e}"))), None)),
                Ok((None, _)) => None,
                Err(e) => Some((Err(BatchError::Internal(format!("reading {shown} failed: {e}"))), None)),
            }
        }
    })
    .boxed();
    Ok(Source { schema, batches, name })
}
