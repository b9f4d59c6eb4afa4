//! The one error type of keel-catalog.

use keel_store::StoreError;

/// Result alias used across keel-catalog.
pub type Result<T, E = CatalogError> = std::result::Result<T, E>;

/// What can go wrong when checking or changing the catalog. Messages say what to do.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The actor may not do this. The message is the same whether or not the table exists, so a
    /// denial never tells someone without access that a table is there.
    #[error(
        "{actor} may not {action} table {table:?}: it does not exist or {actor} holds no {needed} grant on it; ask the table's owner team for a grant (keel access grant; a log table serving wrote is first catalogued by a workspace admin: keel data adopt)"
    )]
    Denied {
        actor: String,
        action: String,
        table: String,
        needed: String,
    },
    /// An access-management action the actor may not take.
    #[error("{actor} may not {what}: {why}")]
    Forbidden { actor: String, what: String, why: String },
    /// The API request carried no usable credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The request itself is wrong (an unknown team, a bad permission, ...).
    #[error("{0}")]
    Invalid(String),
    /// The metadata store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CatalogError {
    /// What kind of failure this is, for the transports' status mapping.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            CatalogError::Denied { .. } | CatalogError::Forbidden { .. } => K::PermissionDenied,
            CatalogError::Unauthenticated(_) => K::Unauthenticated,
            CatalogError::Invalid(_) => K::InvalidArgument,
            CatalogError::Store(e) => e.kind(),
        }
    }

    /// A stable public code for API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            CatalogError::Denied { .. } => "forbidden",
            CatalogError::Forbidden { .. } => "forbidden",
            CatalogError::Unauthenticated(_) => "unauthenticated",
            CatalogError::Invalid(_) => "invalid",
            CatalogError::Store(e) => e.code(),
        }
    }
}

impl keel_types::KeelError for CatalogError {
    fn kind(&self) -> keel_types::ErrorKind {
        CatalogError::kind(self)
    }

    fn code(&self) -> &'static str {
        CatalogError::code(self)
    }
}
