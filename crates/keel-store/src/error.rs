//! The crate's error type and its stable public codes.

/// Result alias used by every fallible operation of the store.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything that can go wrong in the metadata store.
///
/// Each variant has a stable public code (see [`StoreError::code`]); callers
/// map codes to transport statuses, never variant names.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The requested model, version or alias does not exist.
    #[error("{what}")]
    NotFound { what: String },

    /// The write clashes with existing data (duplicate content, a lost race).
    #[error("{what}")]
    Conflict { what: String },

    /// The input is unusable (an empty name, a negative limit).
    #[error("{0}")]
    Invalid(String),

    /// The store url is not one the store understands.
    #[error("{0}")]
    InvalidUrl(String),

    /// The database could not be reached when opening the store.
    #[error(
        "cannot open the metadata store at {url}: {source}; check that the database is running and the url is right"
    )]
    Unavailable {
        /// The url with any password removed.
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// Applying the schema migrations failed.
    #[error(
        "cannot migrate the metadata store schema: {0}; check that the database is writable and was not migrated by a newer keel"
    )]
    Migration(#[from] sqlx::migrate::MigrateError),

    /// An unexpected database error.
    #[error("metadata store database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// What kind of failure this is, for the transports' status mapping.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            StoreError::NotFound { .. } => K::NotFound,
            StoreError::Conflict { .. } => K::Conflict,
            StoreError::Invalid(_) => K::InvalidArgument,
            StoreError::Unavailable { .. } => K::Unavailable,
            StoreError::InvalidUrl(_) | StoreError::Migration(_) | StoreError::Database(_) => K::Internal,
        }
    }

    /// Stable, public, machine-readable code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound { .. } => "not_found",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Invalid(_) => "invalid",
            StoreError::InvalidUrl(_) => "invalid_url",
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Migration(_) => "migration",
            StoreError::Database(_) => "database",
        }
    }

    pub(crate) fn not_found(what: impl Into<String>) -> Self {
        StoreError::NotFound { what: what.into() }
    }

    pub(crate) fn conflict(what: impl Into<String>) -> Self {
        StoreError::Conflict { what: what.into() }
    }
}

/// True when `error` is a unique-constraint violation whose constraint name or
/// message mentions `needle` (PostgreSQL names the constraint, SQLite lists the
/// columns in the message).
pub(crate) fn is_unique_violation_on(error: &sqlx::Error, needle: &str) -> bool {
    match error.as_database_error() {
        Some(db) if db.is_unique_violation() => {
            db.constraint().is_some_and(|c| c.contains(needle)) || db.message().contains(needle)
        }
        _ => false,
    }
}

/// Rejects empty (or all-whitespace) names and actors.
pub(crate) fn require_non_empty(field: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(StoreError::Invalid(format!(
            "{field} must not be empty; pass a non-empty {field}"
        )));
    }
    Ok(())
}

impl keel_types::KeelError for StoreError {
    fn kind(&self) -> keel_types::ErrorKind {
        StoreError::kind(self)
    }

    fn code(&self) -> &'static str {
        StoreError::code(self)
    }
}
