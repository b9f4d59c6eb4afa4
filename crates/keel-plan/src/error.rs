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
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
}

impl KeelError for PlanError {
    fn kind(&self) -> ErrorKind {
        match self {
            PlanError::File { .. } | PlanError::Invalid(_) => ErrorKind::InvalidArgument,
            PlanError::Refused(_) => ErrorKind::Conflict,
            PlanError::Store(e) => e.kind(),
            PlanError::Registry(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PlanError::File { .. } => "plan.bad_file",
            PlanError::Invalid(_) => "plan.invalid",
            PlanError::Refused(_) => "plan.refused",
            PlanError::Store(e) => e.code(),
            PlanError::Registry(e) => e.code(),
        }
    }
}
