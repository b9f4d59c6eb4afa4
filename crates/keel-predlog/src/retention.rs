//! Retention: rows older than N days are deleted from the log tables, and their files removed.

use chrono::{DateTime, Utc};
use keel_lake::Lake;

use crate::Result;
use crate::record::{DECISIONS_TABLE, FEEDBACK_TABLE, LABELS_TABLE, PREDICTIONS_PREFIX};

/// What retention removed from one table.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Removed {
    pub table: String,
    pub rows: Option<u64>,
    pub files: usize,
}

/// Whether a lake table is one of the prediction log's (retention applies to these).
pub fn is_log_table(table: &str) -> bool {
    table.starts_with(PREDICTIONS_PREFIX)
        || table == DECISIONS_TABLE
        || table == FEEDBACK_TABLE
        || table == LABELS_TABLE
}

/// Deletes rows whose `date` is more than `days` days before `now` (UTC) from every log table
/// (predictions, decisions, feedback, labels), then vacuums the files no longer referenced.
/// The whole date partition goes at once, so this is a metadata operation plus file deletes.
pub async fn apply(lake: &Lake, days: u32, now: DateTime<Utc>) -> Result<Vec<Removed>> {
    let cutoff = (now - chrono::Duration::days(i64::from(days))).date_naive();
    let predicate = format!("date < '{}'", cutoff.format("%Y-%m-%d"));
    let mut out = Vec::new();
    for table in lake.tables().await? {
        if !is_log_table(&table) {
            continue;
        }
        let (rows, files) = lake.delete_where(&table, &predicate).await?;
        if rows.unwrap_or(0) > 0 || files > 0 {
            tracing::info!(table, rows, files, %cutoff, "retention removed old log rows");
        }
        out.push(Removed { table, rows, files });
    }
    Ok(out)
}
