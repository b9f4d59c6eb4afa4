//! The one error type of offline analysis.

use std::path::PathBuf;

use keel_types::ErrorKind;

/// Everything that can go wrong in an offline analysis of a deployment.
#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    /// Reading the deployment's decision log or spec failed.
    #[error(transparent)]
    Deployment(Box<crate::DeploymentError>),
    /// The decision log holds no decision that received a reward.
    #[error("{} has no rewarded decisions yet", path.display())]
    NoRewardedDecisions { path: PathBuf },
    /// An argument is out of its range.
    #[error("{name} {reason}")]
    InvalidArgument { name: &'static str, reason: String },
    /// Too few rounds remain to evaluate after the warm-up.
    #[error("the log has {rounds} rounds: too few to evaluate after a warm-up of {warm_up}")]
    TooFewRounds { rounds: usize, warm_up: usize },
    /// A contextual candidate on a log without contexts.
    #[error("a contextual candidate needs contexts in the log")]
    NoContexts,
    /// A candidate that shares one model across actions, on a log whose actions carry no features.
    #[error(
        "a candidate with \"shared\": true learns over the variants' features, and this deployment's variants have none; declare \"action_features\" and give every variant its \"features\""
    )]
    NoActionFeatures,
    /// The candidate policy cannot be built or updated.
    #[error(transparent)]
    Policy(Box<keel_bandit::BanditError>),
    /// The off-policy estimators rejected the log.
    #[error(transparent)]
    Ope(Box<keel_ope::OpeError>),
    /// The drift tests failed.
    #[error(transparent)]
    Drift(Box<keel_monitor::MonitorError>),
    /// A lake operation failed.
    #[cfg(feature = "lake")]
    #[error(transparent)]
    Lake(Box<keel_lake::LakeError>),
    /// A model could not be resolved or loaded.
    #[error(transparent)]
    Registry(Box<keel_registry::RegistryError>),
    /// A model could not be loaded for scoring.
    #[error(transparent)]
    Serving(Box<keel_serving::ServingError>),
    /// The deployment logged no predictions to any lake table.
    #[error(
        "deployment {deployment} has no logged predictions: its variants must be models served by `keel serve` with prediction logging on"
    )]
    NoLoggedPredictions { deployment: String },
    /// The reference table's columns and the logged inputs differ.
    #[error(
        "the reference and the logged inputs do not line up: {detail}the model logs inputs [{}]; \
         reference {reference} has [{}]; choose columns with --columns or leave some out with --ignore",
        inputs.join(", "),
        reference_columns.join(", ")
    )]
    ColumnsDoNotLineUp {
        detail: String,
        inputs: Vec<String>,
        reference: String,
        reference_columns: Vec<String>,
    },
    /// Nothing was logged in the window.
    #[error(
        "no predictions logged for deployment {deployment} in the last {window_seconds} s: the window is empty, nothing to compare"
    )]
    EmptyWindow { deployment: String, window_seconds: u64 },
    /// A compared reference column is missing or not numeric.
    #[error("reference {reference}: a compared column is not numeric: {message}")]
    NotNumeric { reference: String, message: String },
    /// A blocking computation could not finish (it panicked or was cancelled).
    #[error("the {0} task failed")]
    Task(&'static str),
    /// A table the analysis reads was refused to the caller, or could not be read.
    #[cfg(feature = "lake")]
    #[error(transparent)]
    Data(Box<keel_data::DataError>),
    /// Reading a prediction log or its labels failed.
    #[error(transparent)]
    Predlog(Box<keel_predlog::PredlogError>),
}

impl OfflineError {
    /// The kind of the error, for the API and CLI layers to map.
    pub fn kind(&self) -> ErrorKind {
        match self {
            OfflineError::Deployment(e) => e.kind(),
            OfflineError::Registry(e) => e.kind(),
            OfflineError::Serving(e) => e.kind(),
            OfflineError::Task(_) => ErrorKind::Internal,
            OfflineError::Policy(e) => e.kind(),
            OfflineError::InvalidArgument { .. } => ErrorKind::InvalidArgument,
            OfflineError::NoLoggedPredictions { .. } => ErrorKind::NotFound,
            #[cfg(feature = "lake")]
            OfflineError::Lake(e) => e.kind(),
            #[cfg(feature = "lake")]
            OfflineError::Data(e) => e.kind(),
            OfflineError::Predlog(e) => e.kind(),
            OfflineError::NoRewardedDecisions { .. }
            | OfflineError::TooFewRounds { .. }
            | OfflineError::NoContexts
            | OfflineError::NoActionFeatures
            | OfflineError::Ope(_)
            | OfflineError::Drift(_)
            | OfflineError::ColumnsDoNotLineUp { .. }
            | OfflineError::EmptyWindow { .. }
            | OfflineError::NotNumeric { .. } => ErrorKind::Unprocessable,
        }
    }

    /// Stable public code of the error.
    pub fn code(&self) -> &'static str {
        match self {
            OfflineError::Deployment(_) => "offline.deployment",
            OfflineError::NoRewardedDecisions { .. } => "offline.no_rewarded_decisions",
            OfflineError::InvalidArgument { .. } => "offline.invalid_argument",
            OfflineError::TooFewRounds { .. } => "offline.too_few_rounds",
            OfflineError::NoContexts => "offline.no_contexts",
            OfflineError::NoActionFeatures => "offline.no_action_features",
            OfflineError::Policy(_) => "offline.policy",
            OfflineError::Ope(_) => "offline.ope",
            OfflineError::Drift(_) => "offline.drift",
            #[cfg(feature = "lake")]
            OfflineError::Lake(_) => "offline.lake",
            #[cfg(feature = "lake")]
            OfflineError::Data(e) => e.code(),
            OfflineError::Predlog(e) => e.code(),
            OfflineError::Registry(_) => "offline.registry",
            OfflineError::Serving(_) => "offline.serving",
            OfflineError::NoLoggedPredictions { .. } => "offline.no_logged_predictions",
            OfflineError::ColumnsDoNotLineUp { .. } => "offline.columns_do_not_line_up",
            OfflineError::EmptyWindow { .. } => "offline.empty_window",
            OfflineError::NotNumeric { .. } => "offline.not_numeric",
            OfflineError::Task(_) => "offline.task",
        }
    }
}

impl keel_types::KeelError for OfflineError {
    fn kind(&self) -> ErrorKind {
        OfflineError::kind(self)
    }

    fn code(&self) -> &'static str {
        OfflineError::code(self)
    }
}

/// Boxed conversions from the errors of the layers below (boxed: some are large).
macro_rules! boxed_from {
    ($($(#[$attr:meta])* $variant:ident($t:ty)),* $(,)?) => {$(
        $(#[$attr])*
        impl From<$t> for OfflineError {
            fn from(e: $t) -> Self {
                OfflineError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Deployment(crate::DeploymentError),
    Policy(keel_bandit::BanditError),
    Ope(keel_ope::OpeError),
    Drift(keel_monitor::MonitorError),
    #[cfg(feature = "lake")]
    Lake(keel_lake::LakeError),
    #[cfg(feature = "lake")]
    Data(keel_data::DataError),
    Predlog(keel_predlog::PredlogError),
    Registry(keel_registry::RegistryError),
    Serving(keel_serving::ServingError),
);

/// Result alias of offline analysis.
pub type Result<T, E = OfflineError> = std::result::Result<T, E>;
