//! Raw database rows and their conversion into public records.
//!
//! Rows hold exactly what the schema stores (milliseconds, JSON text) so one
//! `FromRow` derive serves both backends; conversion to records happens here.

use chrono::{DateTime, Utc};

use crate::error::{Result, StoreError};
use crate::records::{Alias, AliasEvent, ChangeEvent, DeploymentRevision, ModelVersion};

/// Current time in whole milliseconds, the precision the store keeps.
pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn time_from_ms(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| decode_error(format!("timestamp {ms} ms is out of range; the row is corrupt")))
}

pub(crate) fn json_from_text(column: &str, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| {
        decode_error(format!(
            "column {column} does not hold valid json ({e}); the row is corrupt"
        ))
    })
}

pub(crate) fn json_to_text(value: &serde_json::Value) -> String {
    // Serialising a `Value` cannot fail: its map keys are always strings.
    value.to_string()
}

fn decode_error(message: String) -> StoreError {
    StoreError::Database(sqlx::Error::Decode(message.into()))
}

/// The `model_versions` columns in [`ModelVersionRow`] order, as a literal so
/// queries can be built with `concat!` and stay `&'static str`.
macro_rules! model_version_columns {
    () => {
        "model, version, content_hash, artifact_key, size_bytes, format, created_at, \
         author, description, metrics, training_data, signature"
    };
}
pub(crate) use model_version_columns;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ModelVersionRow {
    model: String,
    version: i64,
    content_hash: String,
    artifact_key: String,
    size_bytes: i64,
    format: String,
    created_at: i64,
    author: String,
    description: Option<String>,
    metrics: String,
    training_data: Option<String>,
    signature: String,
}

impl TryFrom<ModelVersionRow> for ModelVersion {
    type Error = StoreError;

    fn try_from(row: ModelVersionRow) -> Result<Self> {
        Ok(ModelVersion {
            created_at: time_from_ms(row.created_at)?,
            metrics: json_from_text("metrics", &row.metrics)?,
            signature: json_from_text("signature", &row.signature)?,
            model: row.model,
            version: row.version,
            content_hash: row.content_hash,
            artifact_key: row.artifact_key,
            size_bytes: row.size_bytes,
            format: row.format,
            author: row.author,
            description: row.description,
            training_data: row.training_data,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ModelSummaryRow {
    pub(crate) name: String,
    pub(crate) latest_version: i64,
    pub(crate) version_count: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AliasRow {
    model: String,
    alias: String,
    pub(crate) version: i64,
    updated_at: i64,
    updated_by: String,
}

impl TryFrom<AliasRow> for Alias {
    type Error = StoreError;

    fn try_from(row: AliasRow) -> Result<Self> {
        Ok(Alias {
            updated_at: time_from_ms(row.updated_at)?,
            model: row.model,
            alias: row.alias,
            version: row.version,
            updated_by: row.updated_by,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AliasEventRow {
    model: String,
    alias: String,
    from_version: Option<i64>,
    to_version: Option<i64>,
    occurred_at: i64,
    actor: String,
    reason: Option<String>,
}

impl TryFrom<AliasEventRow> for AliasEvent {
    type Error = StoreError;

    fn try_from(row: AliasEventRow) -> Result<Self> {
        Ok(AliasEvent {
            at: time_from_ms(row.occurred_at)?,
            model: row.model,
            alias: row.alias,
            from_version: row.from_version,
            to_version: row.to_version,
            by: row.actor,
            reason: row.reason,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ChangeRow {
    id: i64,
    occurred_at: i64,
    actor: String,
    kind: String,
    subject: String,
    details: String,
}

impl TryFrom<ChangeRow> for ChangeEvent {
    type Error = StoreError;

    fn try_from(row: ChangeRow) -> Result<Self> {
        Ok(ChangeEvent {
            at: time_from_ms(row.occurred_at)?,
            details: json_from_text("details", &row.details)?,
            id: row.id,
            actor: row.actor,
            kind: row.kind,
            subject: row.subject,
        })
    }
}

/// Converts every row, failing on the first corrupt one.
pub(crate) fn convert_all<R, T>(rows: Vec<R>) -> Result<Vec<T>>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DeploymentRow {
    name: String,
    revision: i64,
    spec: String,
    created_at: i64,
    created_by: String,
    reason: Option<String>,
}

impl TryFrom<DeploymentRow> for DeploymentRevision {
    type Error = StoreError;

    fn try_from(row: DeploymentRow) -> Result<Self> {
        Ok(DeploymentRevision {
            created_at: time_from_ms(row.created_at)?,
            spec: json_from_text("spec", &row.spec)?,
            name: row.name,
            revision: row.revision,
            created_by: row.created_by,
            reason: row.reason,
        })
    }
}
