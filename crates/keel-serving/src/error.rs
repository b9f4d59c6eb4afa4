use keel_registry::RegistryError;
use keel_runtime::RuntimeError;

/// What kind of failure an error is; the transports map each kind to one HTTP status and one
/// gRPC code, in one place each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is wrong (syntax, names, types, shapes, values): HTTP 400.
    InvalidArgument,
    /// The model or version does not exist or is not loaded: HTTP 404.
    NotFound,
    /// The request body is larger than the configured limit: HTTP 413.
    PayloadTooLarge,
    /// The state does not allow it now (e.g. a conflicting change): HTTP 409.
    Conflict,
    /// The server cannot serve it now (runtime missing, shutting down): HTTP 503.
    Unavailable,
    /// A fault of keel's, not of the request: HTTP 500.
    Internal,
}

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
    #[error(
        "request body is {size} bytes, over the limit of {limit} bytes; send fewer rows per request or raise --max-body-bytes"
    )]
    PayloadTooLarge { size: usize, limit: usize },
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
            ServingError::PayloadTooLarge { .. } => "payload_too_large",
            ServingError::Registry(e) => e.code(),
            ServingError::Runtime(e) => e.code(),
            ServingError::Internal(_) => "internal",
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ServingError::BadRequest(_) | ServingError::InvalidInput(_) => ErrorKind::InvalidArgument,
            ServingError::ModelNotLoaded { .. } | ServingError::VersionNotLoaded { .. } => ErrorKind::NotFound,
            ServingError::PayloadTooLarge { .. } => ErrorKind::PayloadTooLarge,
            ServingError::Registry(e) => match e {
                RegistryError::Invalid(_) | RegistryError::InvalidArtifact { .. } => ErrorKind::InvalidArgument,
                RegistryError::Store(s) => match s {
                    keel_store::StoreError::NotFound { .. } => ErrorKind::NotFound,
                    keel_store::StoreError::Conflict { .. } => ErrorKind::Conflict,
                    keel_store::StoreError::Invalid(_) => ErrorKind::InvalidArgument,
                    keel_store::StoreError::Unavailable { .. } => ErrorKind::Unavailable,
                    keel_store::StoreError::InvalidUrl(_)
                    | keel_store::StoreError::Migration(_)
                    | keel_store::StoreError::Database(_) => ErrorKind::Internal,
                },
                RegistryError::Artifact(_) | RegistryError::Config(_) => ErrorKind::Internal,
            },
            ServingError::Runtime(e) => match e {
                RuntimeError::InvalidInput(_) => ErrorKind::InvalidArgument,
                RuntimeError::InvalidModel(_) => ErrorKind::InvalidArgument,
                RuntimeError::LibraryNotFound { .. } | RuntimeError::LibraryLoad { .. } => ErrorKind::Unavailable,
                RuntimeError::Inference(_) | RuntimeError::UnsupportedOutput { .. } => ErrorKind::Internal,
            },
            ServingError::Internal(_) => ErrorKind::Internal,
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ServingError>;
