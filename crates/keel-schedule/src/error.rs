//! What can go wrong with schedules, in keel's error vocabulary.

use keel_types::{ErrorKind, KeelError};

#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A name, cron expression or command the user must fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] keel_store::StoreError),
}

impl KeelError for ScheduleError {
    fn kind(&self) -> ErrorKind {
        match self {
            ScheduleError::Invalid(_) => ErrorKind::InvalidArgument,
            ScheduleError::Store(e) => e.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ScheduleError::Invalid(_) => "schedule.invalid",
            ScheduleError::Store(e) => e.code(),
        }
    }
}
