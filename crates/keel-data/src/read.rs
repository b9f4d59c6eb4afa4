//! Reading tables: SQL with a check per table, versions, rows, files, cards and lineage.

use chrono::{DateTime, Utc};
use keel_catalog::{CanRead, Read, TablePass};
use keel_lake::arrow::array::RecordBatch;
use keel_lake::{TableFiles, VersionInfo, VersionOrTimestamp};
use keel_store::{Grant, LineageEdge, SchemaVersion, TableEntry};
use serde::Serialize;
use serde_json::json;

use crate::{Caller, Result, Workspace};

/// One version of a table, as cards and `keel data versions --json` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Version {
    pub version: u64,
    /// Commit time (RFC 3339).
    #[serde(serialize_with = "rfc3339")]
    pub timestamp: Option<DateTime<Utc>>,
    pub operation: Option<String>,
    pub rows_added: Option<u64>,
}

impl From<VersionInfo> for Version {
    fn from(v: VersionInfo) -> Version {
        Version {
            version: v.version,
            timestamp: v.timestamp,
            operation: v.operation,
            rows_added: v.rows_added,
        }
    }
}

fn rfc3339<S: serde::Serializer>(t: &Option<DateTime<Utc>>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&t.to_rfc3339()),
        None => s.serialize_none(),
    }
}

/// The lineage edges into and out of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lineage {
    pub upstream: Vec<LineageEdge>,
    pub downstream: Vec<LineageEdge>,
}

/// Everything known about one table: catalog entry, versions (newest first), schema history,
/// grants and lineage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableCard {
    pub table: String,
    /// `None` for a lake table not catalogued yet.
    pub catalog: Option<TableEntry>,
    pub versions: Vec<Version>,
    pub schema_history: Vec<SchemaVersion>,
    pub grants: Vec<Grant>,
    pub lineage: Lineage,
}

impl Workspace {
    /// Runs one SQL statement after a read check (audited as `query`) on every table it names;
    /// the first table the caller may not read refuses the whole statement, naming that table.
    pub async fn sql(&self, caller: &Caller, query: &str) -> Result<Vec<RecordBatch>> {
        let tables = self.lake.referenced_tables(query)?;
        let mut passes = Vec::with_capacity(tables.len());
        for table in &tables {
            passes.push(
                self.check::<Read>(caller, table, "query", json!({ "sql": query }))
                    .await?,
            );
        }
        self.sql_on(query, &passes).await
    }

    /// Runs `query` over exactly the tables of `passes`.
    pub async fn sql_on(&self, query: &str, passes: &[TablePass<impl CanRead>]) -> Result<Vec<RecordBatch>> {
        let tables: Vec<String> = passes.iter().map(|p| p.table().to_owned()).collect();
        Ok(self.lake.sql_on(query, &tables).await?)
    }

    /// The versions of a table, newest first (audited as `read_history`).
    pub async fn history(&self, caller: &Caller, table: &str) -> Result<Vec<Version>> {
        let pass = self.check::<Read>(caller, table, "read_history", json!({})).await?;
        self.versions(&pass).await
    }

    /// The versions of the pass's table, newest first.
    pub async fn versions(&self, pass: &TablePass<impl CanRead>) -> Result<Vec<Version>> {
        Ok(self
            .lake
            .history(pass.table())
            .await?
            .into_iter()
            .map(Version::from)
            .collect())
    }

    /// The first `limit` rows of a table at `at` (default: latest), audited as `read`.
    pub async fn head(
        &self,
        caller: &Caller,
        table: &str,
        at: Option<VersionOrTimestamp>,
        limit: usize,
    ) -> Result<Vec<RecordBatch>> {
        let (version, time) = match at {
            Some(VersionOrTimestamp::Version(v)) => (Some(v), None),
            Some(VersionOrTimestamp::Timestamp(t)) => (None, Some(t)),
            None => (None, None),
        };
        let details = json!({ "version": version, "at": time, "limit": limit });
        let pass = self.check::<Read>(caller, table, "read", details).await?;
        self.rows(&pass, at, limit).await
    }

    /// The first `limit` rows of the pass's table at `at`.
    pub async fn rows(
        &self,
        pass: &TablePass<impl CanRead>,
        at: Option<VersionOrTimestamp>,
        limit: usize,
    ) -> Result<Vec<RecordBatch>> {
        Ok(self.lake.head(pass.table(), at, limit).await?)
    }

    /// All rows of the pass's table at `at`.
    pub async fn scan(
        &self,
        pass: &TablePass<impl CanRead>,
        at: Option<VersionOrTimestamp>,
    ) -> Result<Vec<RecordBatch>> {
        Ok(self.lake.scan(pass.table(), at).await?)
    }

    /// Streams the pass's table (only `columns`, all when empty) at `at` (latest when `None`).
    pub async fn scan_stream(
        &self,
        pass: &TablePass<impl CanRead>,
        at: Option<VersionOrTimestamp>,
        columns: &[String],
    ) -> Result<keel_lake::datafusion::execution::SendableRecordBatchStream> {
        Ok(self.lake.scan_stream(pass.table(), at, columns).await?)
    }

    /// The Parquet files of the pass's table at `version` (latest when `None`) as local files.
    pub async fn files(&self, pass: &TablePass<impl CanRead>, version: Option<u64>) -> Result<TableFiles> {
        Ok(self
            .lake
            .files(pass.table(), version.map(VersionOrTimestamp::Version))
            .await?)
    }

    /// A table's card, audited as `read_catalog`.
    pub async fn show(&self, caller: &Caller, table: &str) -> Result<TableCard> {
        let pass = self.check::<Read>(caller, table, "read_catalog", json!({})).await?;
        self.card(pass).await
    }

    /// The card of the pass's table.
    pub async fn card(&self, pass: TablePass<impl CanRead>) -> Result<TableCard> {
        let table = pass.table().to_owned();
        let store = self.catalog.store();
        let versions = self.versions(&pass).await?;
        let schema_history = store.schema_history(&table).await?;
        let grants = store.grants_on(&table).await?;
        let (upstream, downstream) = store.lineage(&format!("table/{table}")).await?;
        Ok(TableCard {
            table,
            catalog: pass.into_entry(),
            versions,
            schema_history,
            grants,
            lineage: Lineage { upstream, downstream },
        })
    }

    /// The lineage of a node. The lineage of a table (`table/NAME[@vN]`) is part of the table:
    /// it needs a read grant like its rows (audited as `read_lineage`).
    pub async fn lineage(&self, caller: &Caller, node: &str) -> Result<Lineage> {
        if let Some(table) = node.strip_prefix("table/") {
            let table = table.split('@').next().unwrap_or(table);
            self.check::<Read>(caller, table, "read_lineage", json!({})).await?;
        }
        let (upstream, downstream) = self.catalog.store().lineage(node).await?;
        Ok(Lineage { upstream, downstream })
    }
}
