//! The one error type of keel-cluster.

use keel_types::ErrorKind;

/// Why the cluster engine, a scheduler or an executor could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The engine address or a flag is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The cluster could not be reached or failed the job (its message says which).
    #[error("the Ballista cluster at {at}: {message}")]
    Cluster { at: String, message: String },
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
    #[error(transparent)]
    Runtime(#[from] keel_runtime::RuntimeError),
    #[error("internal error in the cluster engine: {0}")]
    Internal(String),
}

impl ClusterError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            ClusterError::Invalid(_) => ErrorKind::InvalidArgument,
            ClusterError::Cluster { .. } => ErrorKind::Unavailable,
            ClusterError::Store(e) => e.kind(),
            ClusterError::Registry(e) => e.kind(),
            ClusterError::Runtime(e) => e.kind(),
            ClusterError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::Invalid(_) => "invalid",
            ClusterError::Cluster { .. } => "cluster_failed",
            ClusterError::Store(e) => e.code(),
            ClusterError::Registry(e) => e.code(),
            ClusterError::Runtime(e) => e.code(),
            ClusterError::Internal(_) => "internal",
        }
    }
}

impl keel_types::KeelError for ClusterError {
    fn kind(&self) -> ErrorKind {
        ClusterError::kind(self)
    }

    fn code(&self) -> &'static str {
        ClusterError::code(self)
    }
}
