//! The one error type of keel-data.

use keel_catalog::CatalogError;
use keel_lake::LakeError;
use keel_store::StoreError;
use keel_types::ErrorKind;

/// Result alias used across keel-data.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// What can go wrong in a data operation. Catalog, lake and store errors keep their own kind
/// and code, so the CLI and `/v1/data` report them alike.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A check or catalog change failed (denied, unknown token, unknown team, ...).
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// A lake operation failed (unknown table, SQL that does not plan, unreadable file, ...).
    #[error(transparent)]
    Lake(Box<LakeError>),
    /// An ingest failed before its commit: nothing was written.
    #[error("ingest into {table} failed; the table is unchanged: {source}")]
    Ingest { table: String, source: Box<LakeError> },
    /// The metadata store failed or refused.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request itself is wrong (a limit too high, an edit that changes nothing, ...).
    #[error("{0}")]
    Invalid(String),
}

impl From<LakeError> for DataError {
    fn from(e: LakeError) -> Self {
        DataError::Lake(Box::new(e))
    }
}

impl DataError {
    /// What kind of failure this is, for the transports' status mapping.
    pub fn kind(&self) -> ErrorKind {
        match self {
            DataError::Catalog(e) => e.kind(),
            DataError::Lake(e) | DataError::Ingest { source: e, .. } => e.kind(),
            DataError::Store(e) => e.kind(),
            DataError::Invalid(_) => ErrorKind::InvalidArgument,
        }
    }

    /// A stable public code for API bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DataError::Catalog(e) => e.code(),
            DataError::Lake(e) | DataError::Ingest { source: e, .. } => e.code(),
            DataError::Store(e) => e.code(),
            DataError::Invalid(_) => "invalid_request",
        }
    }
}

impl keel_types::KeelError for DataError {
    fn kind(&self) -> ErrorKind {
        DataError::kind(self)
    }

    fn code(&self) -> &'static str {
        DataError::code(self)
    }
}
