//! The one error type of keel-predlog.

/// Result alias used across keel-predlog.
pub type Result<T, E = PredlogError> = std::result::Result<T, E>;

/// What can go wrong writing or reading logs. Messages are lowercase and say what to do.
#[derive(Debug, thiserror::Error)]
pub enum PredlogError {
    /// A label, a query or an option is malformed; the message lists every problem.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// Prediction logging is not available (the binary was built without the lake).
    #[error("prediction logging is off: start keel serve with --log-predictions (a build with the lake feature)")]
    Disabled,
    /// No prediction table for this model.
    #[error("no logged predictions for model {model:?}: serve it with --log-predictions first")]
    NoPredictions { model: String },
    /// The sink (the lake) refused or failed a write.
    #[error("log sink failed: {0}")]
    Sink(String),
    /// A lake operation failed (the lake error's code and message; kept as text so the enum
    /// is the same with or without the `lake` feature).
    #[error("{message}")]
    Lake { code: &'static str, message: String },
}

#[cfg(feature = "lake")]
impl From<keel_lake::LakeError> for PredlogError {
    fn from(e: keel_lake::LakeError) -> Self {
        PredlogError::Lake {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl PredlogError {
    /// What kind of failure this is, for the transports' status mapping: a malformed label or
    /// query is the caller's, a model never logged is not found, and a log that is off or a
    /// lake that fails is the server's (unavailable).
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            PredlogError::Invalid(_) => K::InvalidArgument,
            PredlogError::NoPredictions { .. } => K::NotFound,
            PredlogError::Disabled | PredlogError::Sink(_) | PredlogError::Lake { .. } => K::Unavailable,
        }
    }

    /// A stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            PredlogError::Invalid(_) => "invalid_request",
            PredlogError::Disabled => "logging_disabled",
            PredlogError::NoPredictions { .. } => "no_predictions",
            PredlogError::Sink(_) => "log_sink_failed",
            PredlogError::Lake { code, .. } => code,
        }
    }

    /// Whether the caller's input is at fault (a 4xx) rather than the server (a 5xx).
    pub fn is_client_error(&self) -> bool {
        !self.kind().is_server_fault()
    }
}

impl keel_types::KeelError for PredlogError {
    fn kind(&self) -> keel_types::ErrorKind {
        PredlogError::kind(self)
    }

    fn code(&self) -> &'static str {
        PredlogError::code(self)
    }
}

#[cfg(test)]
mod tests {
    use keel_types::ErrorKind;

    use super::PredlogError;

    #[test]
    fn each_error_says_its_kind() {
        let cases = [
            (
                PredlogError::Invalid("row must be >= 0".into()),
                ErrorKind::InvalidArgument,
            ),
            (PredlogError::NoPredictions { model: "m".into() }, ErrorKind::NotFound),
            (PredlogError::Disabled, ErrorKind::Unavailable),
            (PredlogError::Sink("disk full".into()), ErrorKind::Unavailable),
            (
                PredlogError::Lake {
                    code: "storage",
                    message: "bucket unreachable".into(),
                },
                ErrorKind::Unavailable,
            ),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e}");
            assert_eq!(e.is_client_error(), !kind.is_server_fault(), "{e}");
        }
    }
}
