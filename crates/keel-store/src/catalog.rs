//! The data catalog: lake tables with an owner team, description, tags, column notes and PII
//! flags, schema history and lineage edges. Every change is attributed and in the change log.
//!
//! The store keeps what the catalog *says*; who may read or change it is decided above, in
//! keel-catalog.

use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, require_non_empty};
use crate::records::{CatalogColumn, LineageEdge, SchemaVersion, TableEntry};
use crate::rows::{json_from_text, json_to_text, now_ms, time_from_ms};
use crate::store::{Store, in_write_tx, on_pool};

macro_rules! select_tables {
    () => {
        "SELECT name, owner_team, description, created_at, created_by, updated_at FROM lake_tables"
    };
}

/// A column as a writer observed it, with what PII detection concluded.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedColumn {
    pub name: String,
    pub data_type: String,
    /// `Some(kind)` when detection found personal data (`"email"`, `"phone"`, ...).
    pub detected_pii: Option<String>,
}

/// A hand edit of one column's catalog entry; `None` leaves a field unchanged.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnEdit {
    pub description: Option<String>,
    /// `Some((true, kind))` flags the column as PII, `Some((false, _))` clears the flag; a manual
    /// decision is never overwritten by later detection.
    pub pii: Option<(bool, Option<String>)>,
}

#[derive(Debug, sqlx::FromRow)]
struct TableRow {
    name: String,
    owner_team: String,
    description: Option<String>,
    created_at: i64,
    created_by: String,
    updated_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct ColumnRow {
    column_name: String,
    data_type: String,
    description: Option<String>,
    pii: bool,
    pii_kind: Option<String>,
    pii_source: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
struct SchemaRow {
    table_name: String,
    version: i64,
    schema: String,
    recorded_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
struct EdgeRow {
    source: String,
    target: String,
    relation: String,
    created_at: i64,
    created_by: String,
}

impl TryFrom<EdgeRow> for LineageEdge {
    type Error = StoreError;
    fn try_from(r: EdgeRow) -> Result<Self> {
        Ok(LineageEdge {
            source: r.source,
            target: r.target,
            relation: r.relation,
            created_at: time_from_ms(r.created_at)?,
            created_by: r.created_by,
        })
    }
}

impl Store {
    /// Adds `name` to the catalog, owned by `owner_team`, unless it is there already (then
    /// nothing changes). Returns whether it was created.
    pub async fn register_table(
        &self,
        name: &str,
        owner_team: &str,
        description: Option<&str>,
        by: &str,
    ) -> Result<bool> {
        require_non_empty("table name", name)?;
        require_non_empty("owner team", owner_team)?;
        require_non_empty("actor", by)?;
        in_write_tx!(self, |tx| {
            let exists: Option<String> = sqlx::query_scalar("SELECT name FROM lake_tables WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_some() {
                return Ok(false);
            }
            let team: Option<String> = sqlx::query_scalar("SELECT name FROM teams WHERE name = $1")
                .bind(owner_team)
                .fetch_optional(&mut *tx)
                .await?;
            if team.is_none() {
                return Err(StoreError::not_found(format!(
                    "team {owner_team:?} does not exist; create it with `keel access team create {owner_team}`"
                )));
            }
            let at_ms = now_ms();
            sqlx::query(
                "INSERT INTO lake_tables (name, owner_team, description, created_at, created_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $4)",
            )
            .bind(name)
            .bind(owner_team)
            .bind(description)
            .bind(at_ms)
            .bind(by)
            .execute(&mut *tx)
            .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.create",
                    subject: format!("table/{name}"),
                    details: json!({ "table": name, "owner_team": owner_team }),
                }
            );
            tx.commit().await?;
            Ok(true)
        })
    }

    /// One table's catalog entry with its tags and columns, or `None` when it is not catalogued.
    pub async fn table_entry(&self, name: &str) -> Result<Option<TableEntry>> {
        let row: Option<TableRow> = on_pool!(self, |pool| sqlx::query_as(concat!(
            select_tables!(),
            " WHERE name = $1"
        ))
        .bind(name)
        .fetch_optional(pool)
        .await?);
        match row {
            Some(row) => Ok(Some(self.complete_entry(row).await?)),
            None => Ok(None),
        }
    }

    /// Every catalogued table, by name.
    pub async fn list_table_entries(&self) -> Result<Vec<TableEntry>> {
        let rows: Vec<TableRow> = on_pool!(self, |pool| sqlx::query_as(concat!(select_tables!(), " ORDER BY name"))
            .fetch_all(pool)
            .await?);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(self.complete_entry(row).await?);
        }
        Ok(out)
    }

    async fn complete_entry(&self, row: TableRow) -> Result<TableEntry> {
        let tags: Vec<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT tag FROM table_tags WHERE table_name = $1 ORDER BY tag"
        )
        .bind(&row.name)
        .fetch_all(pool)
        .await?);
        let columns: Vec<ColumnRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT column_name, data_type, description, pii, pii_kind, pii_source FROM table_columns \
             WHERE table_name = $1"
        )
        .bind(&row.name)
        .fetch_all(pool)
        .await?);
        // Keep the order of the latest recorded schema; columns no longer in it go last.
        let order: Vec<String> = match self.schema_history(&row.name).await?.pop() {
            Some(s) => s
                .schema
                .as_array()
                .map(|cols| {
                    cols.iter()
                        .filter_map(|c| c.get("name").and_then(|n| n.as_str()).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let mut columns: Vec<CatalogColumn> = columns
            .into_iter()
            .map(|c| CatalogColumn {
                name: c.column_name,
                data_type: c.data_type,
                description: c.description,
                pii: c.pii,
                pii_kind: c.pii_kind,
                pii_source: c.pii_source,
            })
            .collect();
        columns.sort_by_key(|c| order.iter().position(|n| *n == c.name).unwrap_or(usize::MAX));
        Ok(TableEntry {
            created_at: time_from_ms(row.created_at)?,
            updated_at: time_from_ms(row.updated_at)?,
            name: row.name,
            owner_team: row.owner_team,
            description: row.description,
            created_by: row.created_by,
            tags,
            columns,
        })
    }

    /// Records what a write observed: the columns (new ones added, types updated, detected PII
    /// applied unless a person decided otherwise) and, when it differs from the last recorded
    /// one, the schema of `version`.
    pub async fn record_table_write(
        &self,
        table: &str,
        version: i64,
        columns: &[ObservedColumn],
        by: &str,
    ) -> Result<()> {
        let schema = serde_json::Value::Array(
            columns
                .iter()
                .map(|c| json!({ "name": c.name, "type": c.data_type }))
                .collect(),
        );
        let last = self.schema_history(table).await?.pop();
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            for c in columns {
                let existing: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT pii_source FROM table_columns WHERE table_name = $1 AND column_name = $2")
                        .bind(table)
                        .bind(&c.name)
                        .fetch_optional(&mut *tx)
                        .await?;
                let (pii, kind, source) = match &c.detected_pii {
                    Some(kind) => (true, Some(kind.as_str()), Some("detected")),
                    None => (false, None, None),
                };
                match existing {
                    None => {
                        sqlx::query(
                            "INSERT INTO table_columns (table_name, column_name, data_type, pii, pii_kind, pii_source) \
                             VALUES ($1, $2, $3, $4, $5, $6)",
                        )
                        .bind(table)
                        .bind(&c.name)
                        .bind(&c.data_type)
                        .bind(pii)
                        .bind(kind)
                        .bind(source)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Some((Some(s),)) if s == "manual" => {
                        sqlx::query(
                            "UPDATE table_columns SET data_type = $3 WHERE table_name = $1 AND column_name = $2",
                        )
                        .bind(table)
                        .bind(&c.name)
                        .bind(&c.data_type)
                        .execute(&mut *tx)
                        .await?;
                    }
                    Some(_) => {
                        // Detection only ever adds a flag: a later batch without matches does not
                        // clear what an earlier one found.
                        sqlx::query(
                            "UPDATE table_columns SET data_type = $3, \
                             pii = CASE WHEN $4 THEN $4 ELSE pii END, \
                             pii_kind = CASE WHEN $4 THEN $5 ELSE pii_kind END, \
                             pii_source = CASE WHEN $4 THEN $6 ELSE pii_source END \
                             WHERE table_name = $1 AND column_name = $2",
                        )
                        .bind(table)
                        .bind(&c.name)
                        .bind(&c.data_type)
                        .bind(pii)
                        .bind(kind)
                        .bind(source)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
            }
            if last.as_ref().is_none_or(|l| l.schema != schema) {
                sqlx::query(
                    "INSERT INTO table_schemas (table_name, version, schema, recorded_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (table_name, version) DO NOTHING",
                )
                .bind(table)
                .bind(version)
                .bind(json_to_text(&schema))
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            }
            sqlx::query("UPDATE lake_tables SET updated_at = $2 WHERE name = $1")
                .bind(table)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.write",
                    subject: format!("table/{table}/{version}"),
                    details: json!({ "table": table, "version": version }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// The recorded schemas of a table, oldest first (one per version where it changed).
    pub async fn schema_history(&self, table: &str) -> Result<Vec<SchemaVersion>> {
        let rows: Vec<SchemaRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT table_name, version, schema, recorded_at FROM table_schemas WHERE table_name = $1 \
             ORDER BY version"
        )
        .bind(table)
        .fetch_all(pool)
        .await?);
        rows.into_iter()
            .map(|r| {
                Ok(SchemaVersion {
                    schema: json_from_text("schema", &r.schema)?,
                    recorded_at: time_from_ms(r.recorded_at)?,
                    table: r.table_name,
                    version: r.version,
                })
            })
            .collect()
    }

    /// Sets or clears a table's description.
    pub async fn set_table_description(&self, table: &str, description: Option<&str>, by: &str) -> Result<()> {
        self.require_table(table).await?;
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            sqlx::query("UPDATE lake_tables SET description = $2, updated_at = $3 WHERE name = $1")
                .bind(table)
                .bind(description)
                .bind(at_ms)
                .execute(&mut *tx)
                .await?;
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.describe",
                    subject: format!("table/{table}"),
                    details: json!({ "description": description }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Adds and removes tags (lowercase words) on a table.
    pub async fn tag_table(&self, table: &str, add: &[String], remove: &[String], by: &str) -> Result<()> {
        for tag in add {
            require_non_empty("tag", tag)?;
        }
        self.require_table(table).await?;
        in_write_tx!(self, |tx| {
            let at_ms = now_ms();
            for tag in add {
                sqlx::query(
                    "INSERT INTO table_tags (table_name, tag) VALUES ($1, $2) ON CONFLICT (table_name, tag) DO NOTHING",
                )
                .bind(table)
                .bind(tag)
                .execute(&mut *tx)
                .await?;
            }
            for tag in remove {
                sqlx::query("DELETE FROM table_tags WHERE table_name = $1 AND tag = $2")
                    .bind(table)
                    .bind(tag)
                    .execute(&mut *tx)
                    .await?;
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.tag",
                    subject: format!("table/{table}"),
                    details: json!({ "added": add, "removed": remove }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    /// Edits one column's description or PII flag by hand.
    pub async fn edit_column(&self, table: &str, column: &str, edit: &ColumnEdit, by: &str) -> Result<()> {
        self.require_table(table).await?;
        in_write_tx!(self, |tx| {
            let exists: Option<String> =
                sqlx::query_scalar("SELECT column_name FROM table_columns WHERE table_name = $1 AND column_name = $2")
                    .bind(table)
                    .bind(column)
                    .fetch_optional(&mut *tx)
                    .await?;
            if exists.is_none() {
                return Err(StoreError::not_found(format!(
                    "table {table:?} has no column {column:?}; see `keel data show {table}`"
                )));
            }
            let at_ms = now_ms();
            if let Some(description) = &edit.description {
                sqlx::query("UPDATE table_columns SET description = $3 WHERE table_name = $1 AND column_name = $2")
                    .bind(table)
                    .bind(column)
                    .bind(Some(description.as_str()).filter(|d| !d.is_empty()))
                    .execute(&mut *tx)
                    .await?;
            }
            if let Some((flag, kind)) = &edit.pii {
                sqlx::query(
                    "UPDATE table_columns SET pii = $3, pii_kind = $4, pii_source = 'manual' \
                     WHERE table_name = $1 AND column_name = $2",
                )
                .bind(table)
                .bind(column)
                .bind(*flag)
                .bind(if *flag { kind.as_deref() } else { None })
                .execute(&mut *tx)
                .await?;
            }
            append_change!(
                &mut *tx,
                NewChange {
                    at_ms,
                    actor: by,
                    kind: "table.column",
                    subject: format!("table/{table}/column/{column}"),
                    details: json!({
                        "description": edit.description,
                        "pii": edit.pii.as_ref().map(|(f, _)| *f),
                        "pii_kind": edit.pii.as_ref().and_then(|(_, k)| k.clone()),
                    }),
                }
            );
            tx.commit().await?;
            Ok(())
        })
    }

    async fn require_table(&self, table: &str) -> Result<()> {
        let exists: Option<String> = on_pool!(self, |pool| sqlx::query_scalar(
            "SELECT name FROM lake_tables WHERE name = $1"
        )
        .bind(table)
        .fetch_optional(pool)
        .await?);
        match exists {
            Some(_) => Ok(()),
            None => Err(StoreError::not_found(format!("table {table:?} is not in the catalog"))),
        }
    }

    /// Records a lineage edge `source -> target` (idempotent).
    pub async fn add_lineage(&self, source: &str, target: &str, relation: &str, by: &str) -> Result<()> {
        require_non_empty("lineage source", source)?;
        require_non_empty("lineage target", target)?;
        on_pool!(self, |pool| sqlx::query(
            "INSERT INTO lineage_edges (source, target, relation, created_at, created_by) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (source, target, relation) DO NOTHING"
        )
        .bind(source)
        .bind(target)
        .bind(relation)
        .bind(now_ms())
        .bind(by)
        .execute(pool)
        .await
        .map(|_| ())?);
        Ok(())
    }

    /// Edges into and out of nodes whose name is `node` or starts with `node` followed by `/`
    /// or `@` (so `table/x` also finds `table/x@v3`): `(upstream, downstream)`.
    pub async fn lineage(&self, node: &str) -> Result<(Vec<LineageEdge>, Vec<LineageEdge>)> {
        let rows: Vec<EdgeRow> = on_pool!(self, |pool| sqlx::query_as(
            "SELECT source, target, relation, created_at, created_by FROM lineage_edges ORDER BY id"
        )
        .fetch_all(pool)
        .await?);
        let matches = |n: &str| {
            n == node
                || n.strip_prefix(node)
                    .is_some_and(|rest| rest.starts_with('@') || rest.starts_with('/'))
        };
        let mut up = Vec::new();
        let mut down = Vec::new();
        for row in rows {
            if matches(&row.target) {
                up.push(LineageEdge::try_from(row)?);
            } else if matches(&row.source) {
                down.push(LineageEdge::try_from(row)?);
            }
        }
        Ok((up, down))
    }
}
