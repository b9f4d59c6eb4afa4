//! The catalog side of tables: listing, search, catalog edits, and compaction.

use keel_catalog::{CanWrite, Listed, TablePass, Write};
use keel_lake::CompactReport;
use keel_store::{ColumnEdit, TableEntry};
use serde::Serialize;
use serde_json::json;

use crate::{Caller, DataError, Result, Workspace};

/// A table matched by [`Workspace::search`], with where the text was found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    pub table: String,
    pub owner_team: Option<String>,
    pub description: Option<String>,
    /// `name`, `description`, `tag T`, `column C`.
    pub matched: Vec<String>,
}

/// An edit of a table's catalog entry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Describe {
    pub table: String,
    /// A new description (empty: remove it).
    pub description: Option<String>,
    pub tags: Vec<String>,
    pub untags: Vec<String>,
    /// The column `column_description`, `pii` and `not_pii` apply to.
    pub column: Option<String>,
    pub column_description: Option<String>,
    /// Flag the column as personal data of this kind.
    pub pii: Option<String>,
    /// Clear the column's PII flag (a manual decision detection never overrides).
    pub not_pii: bool,
}

impl Workspace {
    /// The tables `caller` may read, optionally only those tagged `tag`.
    pub async fn list(&self, caller: &Caller, tag: Option<&str>) -> Result<Vec<Listed>> {
        let mut listed = self
            .catalog
            .visible_tables(caller.actor(), &self.lake.tables().await?)
            .await?;
        if let Some(tag) = tag {
            listed.retain(|l| l.entry.as_ref().is_some_and(|e| e.tags.iter().any(|t| t == tag)));
        }
        Ok(listed)
    }

    /// The readable tables whose name, description, tags or columns contain `text`
    /// (case-insensitive).
    pub async fn search(&self, caller: &Caller, text: &str) -> Result<Vec<SearchHit>> {
        let needle = text.to_lowercase();
        let has = |s: &str| s.to_lowercase().contains(&needle);
        let mut hits = Vec::new();
        for listed in self.list(caller, None).await? {
            let mut why = Vec::new();
            if has(&listed.name) {
                why.push("name".to_string());
            }
            if let Some(e) = &listed.entry {
                if e.description.as_deref().is_some_and(has) {
                    why.push("description".into());
                }
                for t in e.tags.iter().filter(|t| has(t)) {
                    why.push(format!("tag {t}"));
                }
                for c in &e.columns {
                    if has(&c.name) || c.description.as_deref().is_some_and(has) {
                        why.push(format!("column {}", c.name));
                    }
                }
            }
            if !why.is_empty() {
                hits.push(SearchHit {
                    owner_team: listed.entry.as_ref().map(|e| e.owner_team.clone()),
                    description: listed.entry.as_ref().and_then(|e| e.description.clone()),
                    table: listed.name,
                    matched: why,
                });
            }
        }
        Ok(hits)
    }

    /// Catalogues a table that is in the lake but not in the catalog, with `owner` as its owner
    /// team: the prediction, decision and feedback logs that serving writes, or a table written
    /// before the catalog. Only then can its owners describe it and share it with other teams.
    /// Workspace admins only (an uncatalogued table has no owner to ask); audited as `adopt`.
    pub async fn adopt(&self, caller: &Caller, table: &str, owner: &str) -> Result<TableEntry> {
        keel_lake::validate_table_name(table)?;
        let store = self.catalog.store();
        if let Some(entry) = store.table_entry(table).await? {
            return Err(DataError::Invalid(format!(
                "table {table:?} is already in the catalog, owned by team {:?}: share it with `keel access grant {table} TEAM read`",
                entry.owner_team
            )));
        }
        // An unknown table is the lake's not-found error, before any check is audited.
        let newest = self.lake.latest_version(table).await?;
        let details = json!({ "owner": owner, "version": newest });
        let pass = self
            .catalog
            .check_create(
                &caller.actor,
                table,
                Some(owner),
                true,
                "adopt",
                caller.via,
                details.clone(),
            )
            .await?;
        self.record_commit(&pass, newest, true, details).await?;
        store
            .table_entry(table)
            .await?
            .ok_or_else(|| DataError::Invalid(format!("table {table:?} was adopted but its catalog entry is missing")))
    }

    /// Edits a catalogued table's description, tags or one column (needs write; audited as
    /// `write_catalog`). Returns the new entry and what changed.
    pub async fn describe(&self, caller: &Caller, edit: &Describe) -> Result<(Option<TableEntry>, Vec<&'static str>)> {
        let details = json!({
            "description": edit.description, "tags": edit.tags, "untags": edit.untags,
            "column": edit.column, "pii": edit.pii, "not_pii": edit.not_pii,
        });
        let pass = self
            .check::<Write>(caller, &edit.table, "write_catalog", details)
            .await?;
        self.edit_entry(&pass, edit).await
    }

    /// Applies `edit` to the pass's table entry.
    pub async fn edit_entry(
        &self,
        pass: &TablePass<impl CanWrite>,
        edit: &Describe,
    ) -> Result<(Option<TableEntry>, Vec<&'static str>)> {
        let (table, by) = (pass.table(), pass.actor().name.as_str());
        if pass.entry().is_none() {
            return Err(DataError::Invalid(format!(
                "table {table:?} is not catalogued yet: write to it once (keel data ingest) before describing it"
            )));
        }
        let store = self.catalog.store();
        let mut changed = Vec::new();
        if let Some(d) = &edit.description {
            store
                .set_table_description(table, Some(d.as_str()).filter(|d| !d.is_empty()), by)
                .await?;
            changed.push("description");
        }
        if !edit.tags.is_empty() || !edit.untags.is_empty() {
            let clean = |tags: &[String]| -> Vec<String> { tags.iter().map(|t| t.trim().to_lowercase()).collect() };
            store
                .tag_table(table, &clean(&edit.tags), &clean(&edit.untags), by)
                .await?;
            changed.push("tags");
        }
        if let Some(column) = &edit.column {
            let column_edit = ColumnEdit {
                description: edit.column_description.clone(),
                pii: if edit.not_pii {
                    Some((false, None))
                } else {
                    edit.pii.clone().map(|k| (true, Some(k)))
                },
            };
            if column_edit == ColumnEdit::default() {
                return Err(DataError::Invalid(format!(
                    "--column {column} needs --column-description, --pii KIND or --not-pii"
                )));
            }
            store.edit_column(table, column, &column_edit, by).await?;
            changed.push("column");
        }
        if changed.is_empty() {
            return Err(DataError::Invalid(
                "nothing to change: pass --description, --tag, --untag or --column with an edit".into(),
            ));
        }
        Ok((store.table_entry(table).await?, changed))
    }

    /// Compacts a table's small files into files of about `target_bytes` and removes data files
    /// older than `keep_hours` no version needs (needs write; audited as `compact`).
    pub async fn compact(
        &self,
        caller: &Caller,
        table: &str,
        target_bytes: Option<u64>,
        keep_hours: Option<u64>,
    ) -> Result<CompactReport> {
        let pass = self.check::<Write>(caller, table, "compact", json!({})).await?;
        self.compact_table(&pass, target_bytes, keep_hours).await
    }

    /// Compacts the pass's table (see [`Workspace::compact`]).
    pub async fn compact_table(
        &self,
        pass: &TablePass<impl CanWrite>,
        target_bytes: Option<u64>,
        keep_hours: Option<u64>,
    ) -> Result<CompactReport> {
        Ok(self.lake.compact(pass.table(), target_bytes, keep_hours).await?)
    }
}
