//! What a deployment's reward guardrail or canary did on its own, for the change log.

/// A change a running deployment made by itself (a reward guardrail paused a variant, a canary
/// moved or rolled back); the manager records each in the change log, attributed to keel.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// The reward guardrail paused a variant whose mean reward is significantly worse.
    Paused {
        variant: String,
        why: String,
        revision: i64,
    },
    /// The canary variant was paused (rolled back) by the reward guardrail.
    CanaryRolledBack {
        variant: String,
        why: String,
        revision: i64,
    },
    /// The canary moved to its next traffic share.
    CanaryStepped { variant: String, share: f64, revision: i64 },
}

impl Notice {
    /// The change-log kind (stable: readers of the change log match on it).
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::Paused { .. } => "experiment.pause",
            Notice::CanaryRolledBack { .. } => "canary.rollback",
            Notice::CanaryStepped { .. } => "canary.step",
        }
    }

    /// The change-log details (the same JSON as before notices were typed).
    pub fn details(&self) -> serde_json::Value {
        match self {
            Notice::Paused { variant, why, revision } | Notice::CanaryRolledBack { variant, why, revision } => {
                serde_json::json!({"variant": variant, "why": why, "revision": revision})
            }
            Notice::CanaryStepped {
                variant,
                share,
                revision,
            } => serde_json::json!({"variant": variant, "share": share, "revision": revision}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_details_keep_the_change_log_format() {
        let paused = Notice::Paused {
            variant: "b".into(),
            why: "worse".into(),
            revision: 2,
        };
        assert_eq!(paused.kind(), "experiment.pause");
        assert_eq!(
            paused.details(),
            serde_json::json!({"variant": "b", "why": "worse", "revision": 2})
        );
        let step = Notice::CanaryStepped {
            variant: "c".into(),
            share: 0.25,
            revision: 3,
        };
        assert_eq!(step.kind(), "canary.step");
        assert_eq!(step.details()["share"], serde_json::json!(0.25));
        let rollback = Notice::CanaryRolledBack {
            variant: "c".into(),
            why: "worse".into(),
            revision: 3,
        };
        assert_eq!(rollback.kind(), "canary.rollback");
    }
}
