//! What can go wrong with a folder of declared state.

use keel_types::{ErrorKind, KeelError};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A file that cannot be read or does not say what it must.
    #[error("{file}: {problem}")]
    File { file: String, problem: String },
    /// Declared objects that would not apply; nothing was changed.
    #[error("nothing was applied; fix these first:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// `export` into a folder that already holds declared files.
    #[error("{0}")]
    Refused(String),
    /// The person may not do this (approve their own change).
    #[error("{0}")]
    Forbidden(String),
    /// A held change's target moved since it was requested.
    #[error("{0}")]
    Stale(String),
    /// An approved change failed to apply; it is still waiting.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
    /// A deployment spec that does not apply, or a deployment that cannot take it.
    #[error(transparent)]
    Deployment(#[from] keel_experiments::DeploymentError),
    /// The catalog refused a grant (the person may not administer the table, or it is not
    /// catalogued).
    #[error(transparent)]
    Catalog(#[from] keel_catalog::CatalogError),
}

impl KeelError for PlanError {
    fn kind(&self) -> ErrorKind {
        match self {
            PlanError::File { .. } | PlanError::Invalid(_) => ErrorKind::InvalidArgument,
            PlanError::Refused(_) | PlanError::Stale(_) | PlanError::Failed(_) => ErrorKind::Conflict,
            PlanError::Forbidden(_) => ErrorKind::PermissionDenied,
            PlanError::Store(e) => e.kind(),
            PlanError::Registry(e) => e.kind(),
            PlanError::Deployment(e) => e.kind(),
            PlanError::Catalog(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PlanError::File { .. } => "plan.bad_file",
            PlanError::Invalid(_) => "plan.invalid",
            PlanError::Refused(_) => "plan.refused",
            PlanError::Forbidden(_) => "change.forbidden",
            PlanError::Stale(_) => "change.stale",
            PlanError::Failed(_) => "change.failed",
            PlanError::Store(e) => e.code(),
            PlanError::Registry(e) => e.code(),
            PlanError::Deployment(e) => e.code(),
            PlanError::Catalog(e) => e.code(),
        }
    }
}
