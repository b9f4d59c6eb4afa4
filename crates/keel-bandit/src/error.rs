//! The error type of the crate and its stable public codes.

/// Errors of the decision policies; each has a stable public [`code`](BanditError::code).
///
/// Every variant is a problem with the caller's input (configuration, context, action or
/// reward) except [`BanditError::Numerical`], which reports a state the math cannot continue from.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BanditError {
    /// The policy configuration is not valid for the given number of actions and features;
    /// every problem is listed.
    #[error("invalid policy config: {}", .0.join("; "))]
    InvalidConfig(Vec<String>),
    /// A contextual policy was called without a context.
    #[error("the {policy} policy needs a context of {expected} feature values; send the context with the request")]
    MissingContext {
        /// Name of the policy (`lin_ucb`, ...).
        policy: &'static str,
        /// Number of features the policy was created with.
        expected: usize,
    },
    /// The context has the wrong number of values.
    #[error("context has {got} values but the policy was created with {expected} features; send one value per feature")]
    ContextLength {
        /// Number of features the policy was created with.
        expected: usize,
        /// Number of values that were sent.
        got: usize,
    },
    /// A context value is NaN, infinite or too large.
    #[error("context value {index} is {value}; send finite values within ±{max:e} (scale large features)")]
    InvalidContextValue {
        /// 0-based index of the offending feature.
        index: usize,
        /// The offending value.
        value: f64,
        /// Largest accepted absolute value.
        max: f64,
    },
    /// An update named an action the policy does not have.
    #[error("action {action} is out of range; the policy has {actions} actions (0..{actions})")]
    ActionOutOfRange {
        /// The offending action.
        action: usize,
        /// Number of actions of the policy.
        actions: usize,
    },
    /// A reward is NaN, infinite or outside the range the policy accepts.
    #[error("reward {reward} is not accepted by the {policy} policy; send a finite reward in [{min}, {max}]")]
    InvalidReward {
        /// Name of the policy.
        policy: &'static str,
        /// The offending reward.
        reward: f64,
        /// Smallest accepted reward.
        min: f64,
        /// Largest accepted reward.
        max: f64,
    },
    /// The eligible set given to a decision does not fit the policy's actions.
    #[error("invalid eligible set: {0}")]
    InvalidEligible(String),
    /// The policy state cannot be used (a corrupted or hand-edited state, or overflow).
    #[error("numerical problem in the policy state: {0}; reset the policy or restore a saved state")]
    Numerical(String),
}

impl BanditError {
    /// What kind of failure this is: the caller's input, except a numerical state the policy
    /// cannot continue from, which is keel's.
    pub fn kind(&self) -> keel_types::ErrorKind {
        use keel_types::ErrorKind as K;
        match self {
            BanditError::InvalidConfig(_)
            | BanditError::MissingContext { .. }
            | BanditError::ContextLength { .. }
            | BanditError::InvalidContextValue { .. }
            | BanditError::ActionOutOfRange { .. }
            | BanditError::InvalidReward { .. }
            | BanditError::InvalidEligible(_) => K::InvalidArgument,
            BanditError::Numerical(_) => K::Internal,
        }
    }

    /// The stable public code of the error, for API bodies and logs.
    pub fn code(&self) -> &'static str {
        match self {
            BanditError::InvalidConfig(_) => "invalid_policy_config",
            BanditError::MissingContext { .. } => "missing_context",
            BanditError::ContextLength { .. } => "context_length",
            BanditError::InvalidContextValue { .. } => "invalid_context_value",
            BanditError::ActionOutOfRange { .. } => "action_out_of_range",
            BanditError::InvalidReward { .. } => "invalid_reward",
            BanditError::InvalidEligible(_) => "invalid_eligible",
            BanditError::Numerical(_) => "policy_numerical",
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, BanditError>;

impl keel_types::KeelError for BanditError {
    fn kind(&self) -> keel_types::ErrorKind {
        BanditError::kind(self)
    }

    fn code(&self) -> &'static str {
        BanditError::code(self)
    }
}
