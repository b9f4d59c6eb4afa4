use keel_registry::RegistryError;
use keel_runtime::RuntimeError;

use keel_types::ErrorKind;

/// Errors of the serving operations. Each has a stable public [`code`](ServingError::code).
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error(
        "model '{name}' is not loaded; load it through the repository API (REST POST /v2/repository/models/{name}/load, gRPC RepositoryModelLoad), or see what exists with `keel model ls`"
    )]
    ModelNotLoaded { name: String },
    #[error(
        "version {version} of model '{name}' is not loaded (loaded: {loaded}); load it through the repository API with the parameter version = \"{version}\""
    )]
    VersionNotLoaded { name: String, version: String, loaded: i64 },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{0}")]
    Internal(String),
}

impl ServingError {
    /// Stable public code, also the `code` label of the error metrics.
    pub fn code(&self) -> &'static str {
        match self {
            ServingError::BadRequest(_) => "bad_request",
            ServingError::InvalidInput(_) => "invalid_input",
            ServingError::ModelNotLoaded { .. } => "model_not_found",
            ServingError::VersionNotLoaded { .. } => "version_not_found",
            ServingError::Registry(e) => e.code(),
            ServingError::Runtime(e) => e.code(),
            ServingError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ServingError::BadRequest(_) | ServingError::InvalidInput(_) => ErrorKind::InvalidArgument,
            ServingError::ModelNotLoaded { .. } | ServingError::VersionNotLoaded { .. } => ErrorKind::NotFound,
            ServingError::Registry(e) => e.kind(),
            ServingError::Runtime(e) => e.kind(),
            ServingError::Internal(_) => ErrorKind::Internal,
        }
    }
}

impl keel_types::KeelError for ServingError {
    fn kind(&self) -> ErrorKind {
        ServingError::kind(self)
    }

    fn code(&self) -> &'static str {
        ServingError::code(self)
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ServingError>;
