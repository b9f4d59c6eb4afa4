//! Logged bandit feedback: what the logging (behavior) policy did and what it earned.

use crate::error::{OpeError, Result};

/// Logged bandit feedback, one entry per round.
///
/// Round `i` records the action the logging policy chose (`actions[i]`), the reward it
/// observed (`rewards[i]`) and the probability with which the logging policy chose that
/// action (`propensities[i]`, the propensity score). Optional fields hold the slot of a
/// recommendation list the action was shown in (`positions`, 0-based), a context vector
/// and a timestamp (any monotone integer clock; the OBD reader stores microseconds since
/// the Unix epoch).
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedBandit {
    /// Number of actions the policies choose from; every action is `< n_actions`.
    pub n_actions: usize,
    /// Action chosen by the logging policy in each round.
    pub actions: Vec<usize>,
    /// Observed reward in each round.
    pub rewards: Vec<f64>,
    /// The logging policy's probability of the logged action, in (0, 1].
    pub propensities: Vec<f64>,
    /// 0-based position (slot) of the logged action, when the interface shows a list.
    pub positions: Option<Vec<usize>>,
    /// Context (features) of each round.
    pub contexts: Option<Vec<Vec<f64>>>,
    /// Timestamp of each round.
    pub timestamps: Option<Vec<i64>>,
    /// The actions each round was restricted to (an empty set: every action), when the logger
    /// decided among an eligible set; the logged propensity is then over that set, and the
    /// candidate's distribution must be too (see [`ActionDist::restrict_to_eligible`](crate::ActionDist::restrict_to_eligible)).
    pub eligible: Option<Vec<Vec<usize>>>,
    /// Every action's own features (one row per action, every row as wide), for candidates
    /// that learn over context x action features.
    pub action_features: Option<Vec<Vec<f64>>>,
}

impl LoggedBandit {
    /// A log without positions, contexts or timestamps, validated.
    pub fn new(n_actions: usize, actions: Vec<usize>, rewards: Vec<f64>, propensities: Vec<f64>) -> Result<Self> {
        let log = LoggedBandit {
            n_actions,
            actions,
            rewards,
            propensities,
            positions: None,
            contexts: None,
            timestamps: None,
            eligible: None,
            action_features: None,
        };
        log.validate()?;
        Ok(log)
    }

    /// Number of rounds.
    pub fn n_rounds(&self) -> usize {
        self.actions.len()
    }

    /// Length of the recommendation list seen in the log: `max(position) + 1`, or 1 without positions.
    pub fn len_list(&self) -> usize {
        self.positions
            .as_ref()
            .and_then(|p| p.iter().max().map(|m| m + 1))
            .unwrap_or(1)
    }

    /// Whether action `a` was eligible in round `i` (always, without eligible sets).
    pub fn is_eligible(&self, i: usize, a: usize) -> bool {
        match &self.eligible {
            Some(sets) => sets[i].is_empty() || sets[i].contains(&a),
            None => true,
        }
    }

    /// Position of round `i` (0 when the log has no positions, as obp does).
    pub(crate) fn position(&self, i: usize) -> usize {
        self.positions.as_ref().map_or(0, |p| p[i])
    }

    /// Mean observed reward: the on-policy value of the logging policy.
    pub fn mean_reward(&self) -> f64 {
        if self.rewards.is_empty() {
            return 0.0;
        }
        self.rewards.iter().sum::<f64>() / self.rewards.len() as f64
    }

    /// Checks that the log is well formed: at least one round, equal lengths, actions below
    /// `n_actions`, propensities in (0, 1], finite rewards and contexts of one dimension.
    ///
    /// Errors name the field and the 1-based row.
    pub fn validate(&self) -> Result<()> {
        let n = self.actions.len();
        if n == 0 {
            return Err(OpeError::EmptyLog);
        }
        if self.n_actions == 0 {
            return Err(OpeError::InvalidParameter {
                name: "n_actions",
                reason: "must be at least 1".into(),
            });
        }
        let check_len = |field: &'static str, got: usize| {
            if got == n {
                Ok(())
            } else {
                Err(OpeError::LengthMismatch {
                    field,
                    expected: n,
                    got,
                })
            }
        };
        check_len("rewards", self.rewards.len())?;
        check_len("propensities", self.propensities.len())?;
        if let Some(p) = &self.positions {
            check_len("positions", p.len())?;
        }
        if let Some(c) = &self.contexts {
            check_len("contexts", c.len())?;
        }
        if let Some(t) = &self.timestamps {
            check_len("timestamps", t.len())?;
        }
        if let Some(rows) = &self.action_features {
            let width = rows.first().map_or(0, Vec::len);
            if rows.len() != self.n_actions
                || rows
                    .iter()
                    .any(|r| r.len() != width || r.iter().any(|v| !v.is_finite()))
            {
                return Err(OpeError::InvalidParameter {
                    name: "action_features",
                    reason: format!(
                        "{} rows for {} actions; give one row of finite numbers per action, every row as wide",
                        rows.len(),
                        self.n_actions
                    ),
                });
            }
        }
        if let Some(sets) = &self.eligible {
            check_len("eligible", sets.len())?;
            for (i, set) in sets.iter().enumerate() {
                if let Some(a) = set.iter().find(|a| **a >= self.n_actions) {
                    return Err(OpeError::InvalidRow {
                        row: i + 1,
                        field: "eligible",
                        reason: format!(
                            "action {a} is out of range; actions must be below n_actions = {}",
                            self.n_actions
                        ),
                    });
                }
                if !set.is_empty() && !set.contains(&self.actions[i]) {
                    return Err(OpeError::InvalidRow {
                        row: i + 1,
                        field: "eligible",
                        reason: format!(
                            "the logged action {} is not in the eligible set {set:?}; log the set the logger chose from",
                            self.actions[i]
                        ),
                    });
                }
            }
        }
        for i in 0..n {
            check_action(i + 1, self.actions[i], self.n_actions)?;
            check_reward(i + 1, self.rewards[i])?;
            check_propensity(i + 1, self.propensities[i])?;
        }
        if let Some(contexts) = &self.contexts {
            let dim = contexts[0].len();
            for (i, c) in contexts.iter().enumerate() {
                if c.len() != dim {
                    return Err(OpeError::InvalidRow {
                        row: i + 1,
                        field: "contexts",
                        reason: format!(
                            "has {} features but row 1 has {dim}; give every row the same features",
                            c.len()
                        ),
                    });
                }
                if let Some(j) = c.iter().position(|v| !v.is_finite()) {
                    return Err(OpeError::InvalidRow {
                        row: i + 1,
                        field: "contexts",
                        reason: format!("feature {j} is not a finite number"),
                    });
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn check_action(row: usize, action: usize, n_actions: usize) -> Result<()> {
    if action < n_actions {
        Ok(())
    } else {
        Err(OpeError::InvalidRow {
            row,
            field: "action",
            reason: format!("{action} is out of range; actions must be below n_actions = {n_actions}"),
        })
    }
}

pub(crate) fn check_reward(row: usize, reward: f64) -> Result<()> {
    if reward.is_finite() {
        Ok(())
    } else {
        Err(OpeError::InvalidRow {
            row,
            field: "reward",
            reason: format!("{reward} is not a finite number"),
        })
    }
}

pub(crate) fn check_propensity(row: usize, p: f64) -> Result<()> {
    if p > 0.0 && p <= 1.0 {
        Ok(())
    } else {
        Err(OpeError::InvalidRow {
            row,
            field: "propensity",
            reason: format!("{p} is outside (0, 1]; log the logging policy's probability of the chosen action"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> LoggedBandit {
        LoggedBandit {
            n_actions: 3,
            actions: vec![0, 1, 2],
            rewards: vec![1.0, 0.0, 1.0],
            propensities: vec![0.5, 0.25, 0.25],
            positions: None,
            contexts: None,
            timestamps: None,
            eligible: None,
            action_features: None,
        }
    }

    #[test]
    fn valid_log_passes() {
        base().validate().unwrap();
        assert_eq!(base().len_list(), 1);
        assert!((base().mean_reward() - 2.0 / 3.0).abs() < 1e-15);
    }

    #[test]
    fn errors_name_row_and_field() {
        let mut log = base();
        log.propensities[1] = 0.0;
        let err = log.validate().unwrap_err();
        assert_eq!(err.code(), "ope.invalid_log");
        assert!(err.to_string().contains("row 2: propensity"), "{err}");

        let mut log = base();
        log.actions[2] = 3;
        assert!(log.validate().unwrap_err().to_string().contains("row 3: action"));

        let mut log = base();
        log.rewards[0] = f64::NAN;
        assert!(log.validate().unwrap_err().to_string().contains("row 1: reward"));

        let mut log = base();
        log.propensities[0] = 1.5;
        assert!(log.validate().is_err());

        let mut log = base();
        log.eligible = Some(vec![vec![], vec![0, 2], vec![2]]);
        assert!(log.validate().unwrap_err().to_string().contains("row 2: eligible"));
        log.eligible = Some(vec![vec![], vec![1, 3], vec![2]]);
        assert!(
            log.validate()
                .unwrap_err()
                .to_string()
                .contains("action 3 is out of range")
        );
        log.eligible = Some(vec![vec![], vec![1, 2], vec![2]]);
        log.validate().unwrap();
        assert!(log.is_eligible(0, 1) && log.is_eligible(1, 2) && !log.is_eligible(2, 0));

        let mut log = base();
        log.contexts = Some(vec![vec![1.0], vec![1.0, 2.0], vec![0.0]]);
        assert!(log.validate().unwrap_err().to_string().contains("row 2: contexts"));
    }

    #[test]
    fn length_and_empty_checks() {
        let mut log = base();
        log.rewards.pop();
        assert!(matches!(
            log.validate(),
            Err(OpeError::LengthMismatch {
                field: "rewards",
                expected: 3,
                got: 2
            })
        ));
        let mut log = base();
        log.positions = Some(vec![0, 1]);
        assert!(matches!(
            log.validate(),
            Err(OpeError::LengthMismatch { field: "positions", .. })
        ));
        assert!(matches!(
            LoggedBandit::new(2, vec![], vec![], vec![]),
            Err(OpeError::EmptyLog)
        ));
    }
}
