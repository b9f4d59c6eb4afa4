use keel_store::StoreError;

/// Errors of the experimentation system; each has a stable public [`code`](ExperimentError::code)
/// and an [`ErrorKind`](keel_serving::ErrorKind) the transports map to a status.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The deployment definition is not valid; every problem is listed.
    #[error("invalid deployment: {}", .0.join("; "))]
    InvalidSpec(Vec<String>),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "deployment '{0}' does not exist or is not running; list deployments with GET /v1/deployments or `keel deployment ls`"
    )]
    UnknownDeployment(String),
    #[error("unknown decision id '{0}'; send the decision_id returned by decide")]
    UnknownDecision(String),
    #[error(
        "the attribution window of decision '{id}' closed at {closed_at}; rewards after the window are not counted (the window is {window_seconds} s, set by reward.window_seconds)"
    )]
    WindowClosed {
        id: String,
        closed_at: String,
        window_seconds: u64,
    },
    #[error(
        "decision '{id}' already has reward {existing}; a different reward ({new}) is refused (send the same event again to retry safely)"
    )]
    ConflictingReward { id: String, existing: f64, new: f64 },
    #[error("the decision log could not be written: {0}")]
    Log(String),
    #[error(transparent)]
    Policy(#[from] keel_bandit::BanditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serving(#[from] keel_serving::ServingError),
}

impl ExperimentError {
    pub fn code(&self) -> &'static str {
        match self {
            ExperimentError::InvalidSpec(_) => "invalid_deployment",
            ExperimentError::InvalidRequest(_) => "invalid_request",
            ExperimentError::UnknownDeployment(_) => "unknown_deployment",
            ExperimentError::UnknownDecision(_) => "unknown_decision",
            ExperimentError::WindowClosed { .. } => "window_closed",
            ExperimentError::ConflictingReward { .. } => "conflicting_reward",
            ExperimentError::Log(_) => "decision_log",
            ExperimentError::Policy(_) => "invalid_request",
            ExperimentError::Store(e) => e.code(),
            ExperimentError::Serving(e) => e.code(),
        }
    }

    pub fn kind(&self) -> keel_serving::ErrorKind {
        use keel_serving::ErrorKind as K;
        match self {
            ExperimentError::InvalidSpec(_) | ExperimentError::InvalidRequest(_) | ExperimentError::Policy(_) => {
                K::InvalidArgument
            }
            ExperimentError::UnknownDeployment(_) | ExperimentError::UnknownDecision(_) => K::NotFound,
            ExperimentError::WindowClosed { .. } | ExperimentError::ConflictingReward { .. } => K::Conflict,
            ExperimentError::Log(_) => K::Unavailable,
            ExperimentError::Store(e) => e.kind(),
            ExperimentError::Serving(e) => e.kind(),
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, ExperimentError>;
