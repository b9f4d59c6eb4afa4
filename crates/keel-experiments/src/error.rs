use keel_store::StoreError;

/// Errors of the experimentation system; each has a stable public [`code`](DeploymentError::code)
/// and an [`ErrorKind`](keel_types::ErrorKind) the transports map to a status.
#[derive(Debug, thiserror::Error)]
pub enum DeploymentError {
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
    #[error(
        "decision '{id}' already has {metric} = {existing}; a different value ({new}) is refused (send the same event again to retry safely)"
    )]
    ConflictingMetric {
        id: String,
        metric: String,
        existing: f64,
        new: f64,
    },
    #[error("the decision log could not be written: {0}")]
    Log(String),
    /// A deployment's log is damaged before its end: it does not start, and nothing is changed.
    #[error(
        "the decision log {path} is damaged at byte {offset} ({reason}) and valid records follow; nothing was changed and deployment '{name}' does not serve. Inspect it with `keel deployment verify {name}`, then move the damaged part aside with `keel deployment repair {name} --from-offset {offset}` (the bytes from there on are kept in a sibling file, and the records in them are no longer applied)"
    )]
    LogDamaged {
        path: String,
        offset: u64,
        reason: String,
        name: String,
    },
    /// The decision log is held by another keel process (a running server on the same home).
    #[error("{} is open in another keel process; one server per keel home (stop the other one)", path.display())]
    LogHeld { path: std::path::PathBuf },
    /// A deployment that could not start (or whose log failed) answers this until fixed.
    #[error("deployment '{name}' is not serving: {reason}")]
    NotServing { name: String, reason: String },
    /// A model variant's reference does not resolve in the registry.
    #[error("variant {variant}: model {reference}: {source}")]
    ModelReference {
        variant: String,
        reference: String,
        #[source]
        source: keel_registry::RegistryError,
    },
    #[error(transparent)]
    Policy(#[from] keel_bandit::BanditError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Serving(#[from] keel_serving::ServingError),
}

impl DeploymentError {
    /// The stable public code of this error (snake_case), sent in error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            DeploymentError::InvalidSpec(_) => "invalid_deployment",
            DeploymentError::InvalidRequest(_) => "invalid_request",
            DeploymentError::UnknownDeployment(_) => "unknown_deployment",
            DeploymentError::UnknownDecision(_) => "unknown_decision",
            DeploymentError::WindowClosed { .. } => "window_closed",
            DeploymentError::ConflictingReward { .. } => "conflicting_reward",
            DeploymentError::ConflictingMetric { .. } => "conflicting_metric",
            DeploymentError::Log(_) => "decision_log",
            DeploymentError::LogDamaged { .. } => "decision_log_damaged",
            DeploymentError::NotServing { .. } => "deployment_not_serving",
            DeploymentError::LogHeld { .. } => "decision_log_held",
            DeploymentError::ModelReference { source, .. } => source.code(),
            DeploymentError::Policy(_) => "invalid_request",
            DeploymentError::Store(e) => e.code(),
            DeploymentError::Serving(e) => e.code(),
        }
    }

    /// What kind of failure this is; the transports map it to a status.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            DeploymentError::InvalidSpec(_) | DeploymentError::InvalidRequest(_) | DeploymentError::Policy(_) => {
                K::InvalidArgument
            }
            DeploymentError::UnknownDeployment(_) | DeploymentError::UnknownDecision(_) => K::NotFound,
            DeploymentError::WindowClosed { .. }
            | DeploymentError::ConflictingReward { .. }
            | DeploymentError::ConflictingMetric { .. } => K::Conflict,
            DeploymentError::Log(_)
            | DeploymentError::LogDamaged { .. }
            | DeploymentError::NotServing { .. }
            | DeploymentError::LogHeld { .. } => K::Unavailable,
            DeploymentError::ModelReference { source, .. } => source.kind(),
            DeploymentError::Store(e) => e.kind(),
            DeploymentError::Serving(e) => e.kind(),
        }
    }
}

impl keel_types::KeelError for DeploymentError {
    fn kind(&self) -> keel_types::ErrorKind {
        DeploymentError::kind(self)
    }

    fn code(&self) -> &'static str {
        DeploymentError::code(self)
    }
}

/// The error of a poisoned lock on a deployment's state.
pub(crate) fn lock_err() -> DeploymentError {
    DeploymentError::Log("internal lock poisoned; restart keel".into())
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DeploymentError>;
