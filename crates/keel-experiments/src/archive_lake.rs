//! The archive of closed log segments in a lake (the `lake` feature): the Delta table
//! [`TABLE`](crate::archive::TABLE), partitioned by deployment, one row per record.

use std::sync::Arc;

use keel_lake::Lake;
use keel_lake::arrow::array::{Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use keel_lake::arrow::compute::cast;
use keel_lake::arrow::datatypes::{DataType, Field, Schema};
use tokio::sync::OnceCell;

use crate::archive::{ArchiveFuture, ArchiveRow, ArchiveStore, TABLE};

/// Archived records in a lake, opened on first use (a command that never reads an archived
/// record never opens it).
pub struct LakeArchive {
    location: String,
    lake: OnceCell<Lake>,
}

impl LakeArchive {
    /// The archive in `lake`.
    pub fn new(lake: Lake) -> LakeArchive {
        LakeArchive {
            location: lake.location(),
            lake: OnceCell::new_with(Some(lake)),
        }
    }

    /// The archive in the lake at `location` (a folder, or an `s3://` URL), opened when first
    /// needed.
    pub fn at(location: impl Into<String>) -> LakeArchive {
        LakeArchive {
            location: location.into(),
            lake: OnceCell::new(),
        }
    }

    async fn lake(&self) -> Result<&Lake, String> {
        self.lake
            .get_or_try_init(|| async { Lake::open_location(&self.location).await })
            .await
            .map_err(|e| format!("cannot open the lake at {}: {e}", self.location))
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("deployment", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("decision_id", DataType::Utf8, true),
        Field::new("record", DataType::Utf8, false),
    ]))
}

fn u64_at(column: &dyn Array, i: usize) -> Option<u64> {
    if let Some(a) = column.as_any().downcast_ref::<Int64Array>() {
        return u64::try_from(a.value(i)).ok();
    }
    column.as_any().downcast_ref::<UInt64Array>().map(|a| a.value(i))
}

impl ArchiveStore for LakeArchive {
    fn append<'a>(&'a self, deployment: &'a str, rows: Vec<ArchiveRow>) -> ArchiveFuture<'a, u64> {
        Box::pin(async move {
            let lake = self.lake().await?;
            let n = rows.len();
            let batch = RecordBatch::try_new(
                schema(),
                vec![
                    Arc::new(StringArray::from(vec![deployment; n])),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.seq as i64))),
                    Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ts_ms))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.kind))),
                    Arc::new(StringArray::from_iter(rows.iter().map(|r| r.decision_id.as_deref()))),
                    Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.record.as_str()))),
                ],
            )
            .map_err(|e| e.to_string())?;
            let version = lake
                .append(TABLE, vec![batch], &["deployment"])
                .await
                .map_err(|e| e.to_string())?;
            lake.sync_table(TABLE).await.map_err(|e| e.to_string())?;
            Ok(version)
        })
    }

    fn count<'a>(&'a self, deployment: &'a str, first: u64, last: u64) -> ArchiveFuture<'a, u64> {
        Box::pin(async move {
            let lake = self.lake().await?;
            if !lake.exists(TABLE).await.map_err(|e| e.to_string())? {
                return Ok(0);
            }
            let query = format!(
                "SELECT COUNT(*) AS n FROM {TABLE} WHERE deployment = {} AND seq BETWEEN {first} AND {last}",
                quoted(deployment)
            );
            let batches = lake
                .sql_on(&query, &[TABLE.to_string()])
                .await
                .map_err(|e| e.to_string())?;
            let counted = batches
                .iter()
                .find(|b| b.num_rows() > 0)
                .and_then(|b| u64_at(b.column(0).as_ref(), 0));
            counted.ok_or_else(|| "counting the archive's rows gave no number".to_string())
        })
    }

    fn read<'a>(&'a self, deployment: &'a str, first: u64, last: u64) -> ArchiveFuture<'a, Vec<(u64, String)>> {
        Box::pin(async move {
            let lake = self.lake().await?;
            let query = format!(
                "SELECT seq, record FROM {TABLE} WHERE deployment = {} AND seq BETWEEN {first} AND {last} ORDER BY seq",
                quoted(deployment)
            );
            let batches = lake
                .sql_on(&query, &[TABLE.to_string()])
                .await
                .map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for batch in batches {
                // DataFusion may read text as a string view: cast to plain strings.
                let records = cast(batch.column(1), &DataType::Utf8).map_err(|e| e.to_string())?;
                let records = records
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or("the record column of the archive is not text")?;
                for i in 0..batch.num_rows() {
                    let seq =
                        u64_at(batch.column(0).as_ref(), i).ok_or("the seq column of the archive is not a number")?;
                    out.push((seq, records.value(i).to_string()));
                }
            }
            Ok(out)
        })
    }
}
