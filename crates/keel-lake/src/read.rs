//! Reading tables: schema, history, files, scans, SQL, and rendering rows.

use crate::types::{TableFiles, VersionInfo, VersionOrTimestamp};
use crate::{Lake, LakeError, Result, Root, s3};
use chrono::{TimeZone, Utc};
use deltalake::arrow::array::RecordBatch;
use deltalake::arrow::datatypes::Schema;
use deltalake::datafusion::execution::context::SQLOptions;
use deltalake::datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use url::Url;

impl Lake {
    /// The Arrow schema of a table at its latest version.
    pub async fn schema(&self, table: &str) -> Result<Arc<Schema>> {
        let delta = self.load(table, None).await?;
        Ok(delta.snapshot()?.snapshot().arrow_schema())
    }

    /// The table's latest version, from its log's last checkpoint and the commits after it
    /// (not the whole history: [`Lake::history`] reads every commit).
    pub async fn latest_version(&self, table: &str) -> Result<u64> {
        let delta = self.load(table, None).await?;
        Ok(delta.version().unwrap_or(0))
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

    /// Streams a table's rows at its latest version or at `at`, only `columns` (all when empty),
    /// in the batches DataFusion reads them: memory holds a few batches, not the table.
    pub async fn scan_stream(
        &self,
        table: &str,
        at: Option<VersionOrTimestamp>,
        columns: &[String],
    ) -> Result<deltalake::datafusion::execution::SendableRecordBatchStream> {
        let ctx = SessionContext::new();
        self.register(&ctx, table, table, at).await?;
        let select = if columns.is_empty() {
            "*".to_owned()
        } else {
            columns
                .iter()
                .map(|c| format!("\"{}\"", c.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Ok(ctx
            .sql(&format!("SELECT {select} FROM \"{table}\""))
            .await?
            .execute_stream()
            .await?)
    }

    pub(crate) async fn register(
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
            let (base, _) = crate::split_version(name)?;
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
pub(crate) fn versions_referenced(query: &str, table: &str) -> BTreeSet<u64> {
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
