//! Metadata persistence for keel: model versions, aliases with their history,
//! deployments, the data catalog (tables, columns, PII flags, schema history,
//! lineage), access (principals, teams, grants, tokens, audit log), the
//! append-only change log, approvals (policies and changes held for a second
//! person) and webhooks (subscriptions and a delivery outbox), behind one [`Store`] that runs on embedded
//! SQLite (the default) or PostgreSQL (chosen by a `postgres://` url), with
//! versioned migrations applied on open.
//!
//! The crate owns the schema and the transactional rules (version numbers
//! assigned atomically per model, one content hash per model, every change
//! attributed and logged). It must never depend on HTTP or any transport, on
//! the inference runtime, or on the object store: artifact bytes live
//! elsewhere and only their keys and hashes are recorded here. Validation of
//! names and payloads beyond "not empty" belongs to the registry above it.

mod access;
mod aliases;
mod catalog;
mod changes;
mod deployments;
mod error;
mod location;
mod models;
mod pending;
mod records;
mod rows;
mod schedules;
mod store;
mod tokens;
mod webhooks;

pub use access::{NewAuditEvent, PERMISSIONS, TEAM_ROLES};
pub use catalog::{ColumnEdit, ObservedColumn};
pub use error::{Result, StoreError};
pub use pending::{ApprovalOutcome, NewPendingChange, PendingChange};
pub use records::{
    Alias, AliasEvent, AuditEvent, CatalogColumn, ChangeEvent, DeploymentRevision, Grant, LineageEdge, ModelSummary,
    ModelVersion, NewModelVersion, Principal, SchemaVersion, TableEntry, Team, TeamMember,
};
pub use schedules::{Firing, NewSchedule, RunOutcome, ScheduleRecord, ScheduleRun};
pub use store::{Backend, Store};
pub use tokens::{NewToken, Revoked, TokenRecord, TokenRevocations};
pub use webhooks::{Attempt, AttemptRecord, Delivery, DueDelivery, WebhookRecord, redact_url};
