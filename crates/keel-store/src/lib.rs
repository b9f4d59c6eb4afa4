//! Metadata persistence for keel: model versions, aliases with their history,
//! and the append-only change log, behind one [`Store`] that runs on embedded
//! SQLite (the default) or PostgreSQL (chosen by a `postgres://` url), with
//! versioned migrations applied on open.
//!
//! The crate owns the schema and the transactional rules (version numbers
//! assigned atomically per model, one content hash per model, every change
//! attributed and logged). It must never depend on HTTP or any transport, on
//! the inference runtime, or on the object store: artifact bytes live
//! elsewhere and only their keys and hashes are recorded here. Validation of
//! names and payloads beyond "not empty" belongs to the registry above it.

mod aliases;
mod changes;
mod deployments;
mod error;
mod location;
mod models;
mod records;
mod rows;
mod store;

pub use error::{Result, StoreError};
pub use records::{Alias, AliasEvent, ChangeEvent, DeploymentRevision, ModelSummary, ModelVersion, NewModelVersion};
pub use store::{Backend, Store};
