//! The one error type of keel-batch.

use keel_types::ErrorKind;

/// Why a batch job could not run. Nothing is written when it fails.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// The job as asked cannot run (a missing or non-numeric column, a bad run id...).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Data(Box<keel_data::DataError>),
    #[error(transparent)]
    Lake(Box<keel_lake::LakeError>),
    #[error(transparent)]
    Registry(#[from] keel_registry::RegistryError),
    #[error(transparent)]
    Runtime(#[from] keel_runtime::RuntimeError),
    #[error(transparent)]
    Deployment(Box<keel_experiments::DeploymentError>),
    /// The job was cancelled between two chunks; what it committed stays.
    #[error("the job was cancelled after {rows} rows; the {written} rows written before stay")]
    Cancelled { rows: u64, written: u64 },
    /// Another job is already deciding for the deployment (two at once could decide a unit of
    /// the same run twice).
    #[error("{0}")]
    Busy(String),
    #[error("no job {0:?}: list jobs with GET /v1/jobs (jobs are kept in memory until the server restarts)")]
    UnknownJob(String),
    /// The engine scoring the rows elsewhere (a Ballista cluster) failed or was unreachable.
    #[error("{0}")]
    Engine(String),
    #[error("internal error in the batch job: {0}")]
    Internal(String),
}

impl From<keel_experiments::DeploymentError> for BatchError {
    fn from(e: keel_experiments::DeploymentError) -> Self {
        BatchError::Deployment(Box::new(e))
    }
}

impl From<keel_data::DataError> for BatchError {
    fn from(e: keel_data::DataError) -> Self {
        BatchError::Data(Box::new(e))
    }
}

impl From<keel_lake::LakeError> for BatchError {
    fn from(e: keel_lake::LakeError) -> Self {
        BatchError::Lake(Box::new(e))
    }
}

impl BatchError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BatchError::Invalid(_) => ErrorKind::InvalidArgument,
            BatchError::Data(e) => e.kind(),
            BatchError::Lake(e) => e.kind(),
            BatchError::Registry(e) => e.kind(),
            BatchError::Runtime(e) => e.kind(),
            BatchError::Deployment(e) => e.kind(),
            BatchError::Cancelled { .. } => ErrorKind::Conflict,
            BatchError::UnknownJob(_) => ErrorKind::NotFound,
            BatchError::Busy(_) => ErrorKind::Conflict,
            BatchError::Engine(_) => ErrorKind::Unavailable,
            BatchError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            BatchError::Invalid(_) => "invalid",
            BatchError::Data(e) => e.code(),
            BatchError::Lake(e) => e.code(),
            BatchError::Registry(e) => e.code(),
            BatchError::Runtime(e) => e.code(),
            BatchError::Deployment(e) => e.code(),
            BatchError::Cancelled { .. } => "cancelled",
            BatchError::UnknownJob(_) => "unknown_job",
            BatchError::Busy(_) => "job_running",
            BatchError::Engine(_) => "engine_failed",
            BatchError::Internal(_) => "internal",
        }
    }
}

impl keel_types::KeelError for BatchError {
    fn kind(&self) -> ErrorKind {
        BatchError::kind(self)
    }

    fn code(&self) -> &'static str {
        BatchError::code(self)
    }
}
