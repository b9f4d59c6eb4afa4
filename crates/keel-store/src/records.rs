//! Public record types returned by and passed to the store.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An immutable, numbered version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub model: String,
    /// 1, 2, 3… per model, assigned by the store.
    pub version: i64,
    /// `"sha256:<hex>"` of the artifact bytes; unique per model.
    pub content_hash: String,
    /// Where the artifact lives in the object store.
    pub artifact_key: String,
    pub size_bytes: i64,
    /// Artifact format, e.g. `"onnx"`.
    pub format: String,
    /// When the version was pushed (millisecond precision).
    pub created_at: DateTime<Utc>,
    pub author: String,
    pub description: Option<String>,
    /// A JSON object of evaluation metrics; `{}` when none were given.
    pub metrics: serde_json::Value,
    pub training_data: Option<String>,
    /// The model's input/output signature; opaque to the store.
    pub signature: serde_json::Value,
}

/// A version to push: the store assigns `version` and `created_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewModelVersion {
    pub model: String,
    pub content_hash: String,
    pub artifact_key: String,
    pub size_bytes: i64,
    pub format: String,
    pub author: String,
    pub description: Option<String>,
    /// A JSON object; `null` is stored as `{}`.
    pub metrics: serde_json::Value,
    pub training_data: Option<String>,
    pub signature: serde_json::Value,
}

/// One line of `list_models`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub name: String,
    pub latest_version: i64,
    pub version_count: i64,
    /// When the first version was pushed.
    pub created_at: DateTime<Utc>,
    /// When the newest version was pushed.
    pub updated_at: DateTime<Utc>,
    /// `(alias, version)` pairs sorted by alias.
    pub aliases: Vec<(String, i64)>,
}

/// A movable name pointing at one version of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub model: String,
    pub alias: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub updated_by: String,
}

/// One move of an alias: set (`from_version` is `None` the first time), moved,
/// or deleted (`to_version` is `None`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasEvent {
    pub model: String,
    pub alias: String,
    pub from_version: Option<i64>,
    pub to_version: Option<i64>,
    pub at: DateTime<Utc>,
    pub by: String,
    pub reason: Option<String>,
}

/// One entry of the append-only change log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Increasing in insertion order.
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    /// What happened: `"model.push"`, `"alias.set"`, `"alias.delete"`.
    pub kind: String,
    /// What it happened to: `"model/<name>/<version>"` or
    /// `"model/<name>/alias/<alias>"`.
    pub subject: String,
    pub details: serde_json::Value,
}

/// One immutable revision of a deployment's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentRevision {
    pub name: String,
    /// 1, 2, 3… per deployment.
    pub revision: i64,
    /// The definition (variants, policy...); opaque to the store.
    pub spec: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub reason: Option<String>,
}

/// Someone who acts on the workspace (a person or a service).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Principal {
    pub name: String,
    /// Workspace admins may do anything, including on tables they hold no grant on.
    pub is_admin: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}

/// A member of a team and their role there (`member` or `admin`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMember {
    pub principal: String,
    pub role: String,
}

/// A team: owns tables and receives grants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub members: Vec<TeamMember>,
}

/// A team's permission (`read`, `write` or `admin`) on a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    pub table: String,
    pub team: String,
    pub permission: String,
    pub granted_at: DateTime<Utc>,
    pub granted_by: String,
}

/// One audit record: an attempted read or write of a table, or an access change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub resource: String,
    /// False when the attempt was denied.
    pub allowed: bool,
    /// `cli` or `api`.
    pub via: String,
    pub details: serde_json::Value,
}

/// One column of a catalogued table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogColumn {
    pub name: String,
    pub data_type: String,
    pub description: Option<String>,
    /// Holds personal data.
    pub pii: bool,
    /// `email`, `phone`, ... when known.
    pub pii_kind: Option<String>,
    /// `detected` or `manual`.
    pub pii_source: Option<String>,
}

/// A lake table's catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableEntry {
    pub name: String,
    pub owner_team: String,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
    pub tags: Vec<String>,
    pub columns: Vec<CatalogColumn>,
}

/// The schema a table had from `version` on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SchemaVersion {
    pub table: String,
    pub version: i64,
    /// `[{"name":..., "type":...}, ...]`
    pub schema: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A lineage edge between two named nodes (`table/x@v3`, `model/m/2`, `deployment/d`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineageEdge {
    pub source: String,
    pub target: String,
    /// `trained_on`, `serves`, `derived_from`, ...
    pub relation: String,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
}
