//! Model versions: pushing, reading and summarising.

use std::collections::BTreeMap;

use serde_json::json;

use crate::changes::{NewChange, append_change};
use crate::error::{Result, StoreError, is_unique_violation_on, require_non_empty};
use crate::records::{ModelSummary, ModelVersion, NewModelVersion};
use crate::rows::{
    ModelSummaryRow, ModelVersionRow, convert_all, json_to_text, model_version_columns, now_ms, time_from_ms,
};
use crate::store::{Store, in_write_tx, on_pool};

/// Creates the model row or bumps it. Either way the row stays locked until
/// the transaction ends, which serialises pushes to one model on PostgreSQL
/// (SQLite already serialises writers with `BEGIN IMMEDIATE`).
const UPSERT_MODEL: &str = "INSERT INTO models (name, created_at, updated_at) VALUES ($1, $2, $2) \
     ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at";

const VERSION_WITH_HASH: &str = "SELECT version FROM model_versions WHERE model = $1 AND content_hash = $2";

const NEXT_VERSION: &str = "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE model = $1";

const INSERT_VERSION: &str = concat!(
    "INSERT INTO model_versions (",
    model_version_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

const GET_VERSION: &str = concat!(
    "SELECT ",
    model_version_columns!(),
    " FROM model_versions WHERE model = $1 AND version = $2"
);

const LATEST_VERSION: &str = concat!(
    "SELECT ",
    model_version_columns!(),
    " FROM model_versions WHERE model = $1 ORDER BY version DESC LIMIT 1"
);

const LIST_VERSIONS: &str = concat!(
    "SELECT ",
    model_version_columns!(),
    " FROM model_versions WHERE model = $1 ORDER BY version"
);

const SUMMARIES: &str = "SELECT model AS name, MAX(version) AS latest_version, \
     COUNT(*) AS version_count, MIN(created_at) AS created_at, MAX(created_at) AS updated_at \
     FROM model_versions GROUP BY model";

const ALL_ALIASES: &str = "SELECT model, alias, version FROM aliases";

impl Store {
    /// Pushes a new version of `new.model`, numbered one past the newest, and
    /// logs a `model.push` change, all in one transaction.
    ///
    /// Fails with `Conflict` naming the existing version if the model already
    /// has a version with the same `content_hash`.
    pub async fn create_model_version(&self, new: NewModelVersion) -> Result<ModelVersion> {
        require_non_empty("model name", &new.model)?;
        require_non_empty("content hash", &new.content_hash)?;
        require_non_empty("author", &new.author)?;
        if let Some(pushed) = self.push_once(&new).await? {
            return Ok(pushed);
        }
        tracing::debug!(model = %new.model, "version number race on push; retrying once");
        self.push_once(&new).await?.ok_or_else(|| {
            StoreError::conflict(format!(
                "concurrent pushes to model '{}' kept taking the same version number; retry the push",
                new.model
            ))
        })
    }

    /// One push attempt; `Ok(None)` means another writer took the version
    /// number first (only possible if the model-row lock was bypassed).
    async fn push_once(&self, new: &NewModelVersion) -> Result<Option<ModelVersion>> {
        let metrics = if new.metrics.is_null() {
            json!({})
        } else {
            new.metrics.clone()
        };
        in_write_tx!(self, |tx| {
            sqlx::query(UPSERT_MODEL)
                .bind(&new.model)
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            // Read the clock only once the model is locked, so creation times
            // follow version numbers.
            let created_ms = now_ms();
            let existing: Option<i64> = sqlx::query_scalar(VERSION_WITH_HASH)
                .bind(&new.model)
                .bind(&new.content_hash)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(existing) = existing {
                return Err(duplicate_content(&new.model, Some(existing)));
            }
            let version: i64 = sqlx::query_scalar(NEXT_VERSION)
                .bind(&new.model)
                .fetch_one(&mut *tx)
                .await?;
            let inserted = sqlx::query(INSERT_VERSION)
                .bind(&new.model)
                .bind(version)
                .bind(&new.content_hash)
                .bind(&new.artifact_key)
                .bind(new.size_bytes)
                .bind(&new.format)
                .bind(created_ms)
                .bind(&new.author)
                .bind(&new.description)
                .bind(json_to_text(&metrics))
                .bind(&new.training_data)
                .bind(json_to_text(&new.signature))
                .execute(&mut *tx)
                .await;
            match inserted {
                Ok(_) => {}
                Err(e) if is_unique_violation_on(&e, "content_hash") => {
                    return Err(duplicate_content(&new.model, None));
                }
                Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {
                    return Ok(None);
                }
                Err(e) => return Err(e.into()),
            }
            let change = NewChange {
                at_ms: created_ms,
                actor: &new.author,
                kind: "model.push",
                subject: format!("model/{}/{}", new.model, version),
                details: json!({
                    "model": new.model,
                    "version": version,
                    "content_hash": new.content_hash,
                    "artifact_key": new.artifact_key,
                    "size_bytes": new.size_bytes,
                    "format": new.format,
                }),
            };
            append_change!(&mut *tx, change);
            tx.commit().await?;
            Ok(Some(ModelVersion {
                model: new.model.clone(),
                version,
                content_hash: new.content_hash.clone(),
                artifact_key: new.artifact_key.clone(),
                size_bytes: new.size_bytes,
                format: new.format.clone(),
                created_at: time_from_ms(created_ms)?,
                author: new.author.clone(),
                description: new.description.clone(),
                metrics,
                training_data: new.training_data.clone(),
                signature: new.signature.clone(),
            }))
        })
    }

    /// One version of a model.
    pub async fn get_model_version(&self, model: &str, version: i64) -> Result<ModelVersion> {
        let row: Option<ModelVersionRow> = on_pool!(self, |pool| {
            sqlx::query_as(GET_VERSION)
                .bind(model)
                .bind(version)
                .fetch_optional(pool)
                .await?
        });
        match row {
            Some(row) => row.try_into(),
            None => Err(StoreError::not_found(format!(
                "model '{model}' has no version {version}; list the model's versions to see which exist"
            ))),
        }
    }

    /// The newest version of a model.
    pub async fn latest_model_version(&self, model: &str) -> Result<ModelVersion> {
        let row: Option<ModelVersionRow> = on_pool!(self, |pool| {
            sqlx::query_as(LATEST_VERSION).bind(model).fetch_optional(pool).await?
        });
        row.ok_or_else(|| model_not_found(model))?.try_into()
    }

    /// Every version of a model, oldest first; `NotFound` if it has none.
    pub async fn list_model_versions(&self, model: &str) -> Result<Vec<ModelVersion>> {
        let rows: Vec<ModelVersionRow> = on_pool!(self, |pool| {
            sqlx::query_as(LIST_VERSIONS).bind(model).fetch_all(pool).await?
        });
        if rows.is_empty() {
            return Err(model_not_found(model));
        }
        convert_all(rows)
    }

    /// One summary per model with at least one version, sorted by name.
    pub async fn list_models(&self) -> Result<Vec<ModelSummary>> {
        let (rows, aliases): (Vec<ModelSummaryRow>, Vec<(String, String, i64)>) = on_pool!(self, |pool| {
            let rows = sqlx::query_as(SUMMARIES).fetch_all(pool).await?;
            let aliases = sqlx::query_as(ALL_ALIASES).fetch_all(pool).await?;
            (rows, aliases)
        });
        // Sort here rather than in SQL so both backends order names bytewise,
        // whatever the PostgreSQL collation.
        let mut by_model: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
        for (model, alias, version) in aliases {
            by_model.entry(model).or_default().push((alias, version));
        }
        let mut summaries = rows
            .into_iter()
            .map(|row| {
                let mut aliases = by_model.remove(&row.name).unwrap_or_default();
                aliases.sort();
                Ok(ModelSummary {
                    created_at: time_from_ms(row.created_at)?,
                    updated_at: time_from_ms(row.updated_at)?,
                    name: row.name,
                    latest_version: row.latest_version,
                    version_count: row.version_count,
                    aliases,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        summaries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(summaries)
    }
}

pub(crate) fn model_not_found(model: &str) -> StoreError {
    StoreError::not_found(format!(
        "model '{model}' has no versions; push a version first or check the name"
    ))
}

fn duplicate_content(model: &str, existing: Option<i64>) -> StoreError {
    match existing {
        Some(v) => StoreError::conflict(format!(
            "model '{model}' already has this content as version {v}; push a different file or alias version {v}"
        )),
        None => StoreError::conflict(format!(
            "model '{model}' already has this content; push a different file or alias the existing version"
        )),
    }
}
