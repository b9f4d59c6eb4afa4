//! Per-round tensors over actions and positions: the evaluation policy's action
//! distribution and a reward model's estimated rewards (`q_hat`).

use crate::error::{OpeError, Result};
use crate::log::LoggedBandit;

/// Tolerance on `sum_a pi_e(a | x_i, position) = 1`, numpy's `allclose` defaults as obp uses them.
const SUM_TOL: f64 = 1e-8 + 1e-5;

/// A dense `(n_rounds, n_actions, len_list)` tensor of `f64` in row-major order, the layout
/// of obp's `action_dist` and `estimated_rewards_by_reg_model` (a numpy C-order array).
///
/// As an action distribution, entry `(i, a, k)` is the evaluation policy's probability of
/// choosing action `a` for position `k` in round `i`. As `q_hat`, it is the estimated expected
/// reward of action `a` at position `k` given the context of round `i`. Without a position
/// axis, `len_list` is 1.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionDist {
    n_rounds: usize,
    n_actions: usize,
    len_list: usize,
    values: Vec<f64>,
}

impl ActionDist {
    /// Builds a tensor from its row-major values; every value must be finite.
    pub fn new(n_rounds: usize, n_actions: usize, len_list: usize, values: Vec<f64>) -> Result<Self> {
        let expected = n_rounds
            .checked_mul(n_actions)
            .and_then(|x| x.checked_mul(len_list))
            .ok_or_else(|| OpeError::InvalidParameter {
                name: "shape",
                reason: format!("({n_rounds}, {n_actions}, {len_list}) overflows"),
            })?;
        if n_actions == 0 || len_list == 0 {
            return Err(OpeError::InvalidParameter {
                name: "shape",
                reason: "n_actions and len_list must be at least 1".into(),
            });
        }
        if values.len() != expected {
            return Err(OpeError::ShapeMismatch {
                what: "tensor",
                expected: format!("({n_rounds}, {n_actions}, {len_list}) = {expected} values"),
                got: format!("{} values", values.len()),
            });
        }
        let width = n_actions * len_list;
        if let Some(idx) = values.iter().position(|v| !v.is_finite()) {
            return Err(OpeError::InvalidTensor {
                what: "tensor",
                round: idx / width + 1,
                reason: format!(
                    "value for action {} position {} is not a finite number",
                    (idx % width) / len_list,
                    idx % len_list
                ),
            });
        }
        Ok(ActionDist {
            n_rounds,
            n_actions,
            len_list,
            values,
        })
    }

    /// Builds a tensor without a position axis from one row of `n_actions` values per round.
    pub fn from_rows(rows: &[Vec<f64>]) -> Result<Self> {
        let n_actions = rows.first().map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows.len() * n_actions);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n_actions {
                return Err(OpeError::ShapeMismatch {
                    what: "tensor",
                    expected: format!("{n_actions} actions in every round"),
                    got: format!("{} in round {}", row.len(), i + 1),
                });
            }
            values.extend_from_slice(row);
        }
        ActionDist::new(rows.len(), n_actions, 1, values)
    }

    /// Builds a tensor with a position axis, indexed `rows[round][action][position]`.
    pub fn from_positional(rows: &[Vec<Vec<f64>>]) -> Result<Self> {
        let n_actions = rows.first().map_or(0, Vec::len);
        let len_list = rows.first().and_then(|r| r.first()).map_or(0, Vec::len);
        let mut values = Vec::with_capacity(rows.len() * n_actions * len_list);
        for (i, row) in rows.iter().enumerate() {
            if row.len() != n_actions || row.iter().any(|a| a.len() != len_list) {
                return Err(OpeError::ShapeMismatch {
                    what: "tensor",
                    expected: format!("{n_actions} actions x {len_list} positions in every round"),
                    got: format!("a different shape in round {}", i + 1),
                });
            }
            for a in row {
                values.extend_from_slice(a);
            }
        }
        ActionDist::new(rows.len(), n_actions, len_list, values)
    }

    /// The same distribution in every round (e.g. a context-free policy), as obp's `np.tile`.
    pub fn tiled(n_rounds: usize, per_round: &[Vec<f64>]) -> Result<Self> {
        let one = ActionDist::from_positional(&[per_round.to_vec()])?;
        let mut values = Vec::with_capacity(n_rounds * one.values.len());
        for _ in 0..n_rounds {
            values.extend_from_slice(&one.values);
        }
        ActionDist::new(n_rounds, one.n_actions, one.len_list, values)
    }

    /// Number of rounds.
    pub fn n_rounds(&self) -> usize {
        self.n_rounds
    }

    /// Number of actions.
    pub fn n_actions(&self) -> usize {
        self.n_actions
    }

    /// Length of the position axis (1 without positions).
    pub fn len_list(&self) -> usize {
        self.len_list
    }

    /// Shape `(n_rounds, n_actions, len_list)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.n_rounds, self.n_actions, self.len_list)
    }

    /// The row-major values.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Entry for round `round`, action `action`, position `position`.
    ///
    /// # Panics
    /// When an index is out of range; estimators check shapes first.
    pub fn get(&self, round: usize, action: usize, position: usize) -> f64 {
        assert!(round < self.n_rounds && action < self.n_actions && position < self.len_list);
        self.values[(round * self.n_actions + action) * self.len_list + position]
    }

    /// Restricts each round's distribution to the actions eligible in that round of `log`, as
    /// keel's decide does: the others get 0 and the rest is renormalised (uniform over the
    /// eligible actions when the policy gave them nothing). Without eligible sets, unchanged.
    pub fn restrict_to_eligible(&mut self, log: &LoggedBandit) -> Result<()> {
        self.check_fits("action_dist", log)?;
        if log.eligible.is_none() {
            return Ok(());
        }
        for i in 0..self.n_rounds {
            for k in 0..self.len_list {
                let idx = |a: usize| (i * self.n_actions + a) * self.len_list + k;
                let mut total = 0.0;
                for a in 0..self.n_actions {
                    if log.is_eligible(i, a) {
                        total += self.values[idx(a)];
                    } else {
                        self.values[idx(a)] = 0.0;
                    }
                }
                let count = (0..self.n_actions).filter(|a| log.is_eligible(i, *a)).count().max(1) as f64;
                for a in (0..self.n_actions).filter(|a| log.is_eligible(i, *a)) {
                    self.values[idx(a)] = if total > 0.0 {
                        self.values[idx(a)] / total
                    } else {
                        1.0 / count
                    };
                }
            }
        }
        Ok(())
    }

    /// Checks that the distribution gives no probability to an action outside a round's
    /// eligible set (the logger could not have taken it, so no row can tell its reward).
    pub(crate) fn check_eligible(&self, log: &LoggedBandit) -> Result<()> {
        if log.eligible.is_none() {
            return Ok(());
        }
        for i in 0..self.n_rounds {
            for a in (0..self.n_actions).filter(|a| !log.is_eligible(i, *a)) {
                for k in 0..self.len_list {
                    if self.get(i, a, k) > 0.0 {
                        return Err(OpeError::InvalidTensor {
                            what: "action_dist",
                            round: i + 1,
                            reason: format!(
                                "gives probability {} to action {a}, which was not eligible; restrict the candidate to the eligible set",
                                self.get(i, a, k)
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that this tensor fits `log`: same rounds and actions, and a position axis
    /// covering every logged position (obp's `check_ope_inputs`).
    pub(crate) fn check_fits(&self, what: &'static str, log: &LoggedBandit) -> Result<()> {
        if self.n_rounds != log.n_rounds() || self.n_actions != log.n_actions {
            return Err(OpeError::ShapeMismatch {
                what,
                expected: format!("({}, {}, len_list)", log.n_rounds(), log.n_actions),
                got: format!("({}, {}, {})", self.n_rounds, self.n_actions, self.len_list),
            });
        }
        match &log.positions {
            Some(positions) => {
                if let Some((i, p)) = positions.iter().enumerate().find(|(_, p)| **p >= self.len_list) {
                    return Err(OpeError::InvalidTensor {
                        what,
                        round: i + 1,
                        reason: format!(
                            "logged position {p} is beyond the position axis of length {}; give one entry per position",
                            self.len_list
                        ),
                    });
                }
            }
            None if self.len_list > 1 => {
                return Err(OpeError::ShapeMismatch {
                    what,
                    expected: "len_list = 1 for a log without positions".into(),
                    got: format!(
                        "len_list = {}; log the positions or drop the position axis",
                        self.len_list
                    ),
                });
            }
            None => {}
        }
        Ok(())
    }

    /// Checks that this tensor is a probability distribution over actions for each round and
    /// position: entries in [0, 1] summing to 1.
    pub(crate) fn check_probabilities(&self) -> Result<()> {
        for i in 0..self.n_rounds {
            for k in 0..self.len_list {
                let mut sum = 0.0;
                for a in 0..self.n_actions {
                    let p = self.get(i, a, k);
                    if !(0.0..=1.0).contains(&p) {
                        return Err(OpeError::InvalidTensor {
                            what: "action_dist",
                            round: i + 1,
                            reason: format!("probability {p} of action {a} at position {k} is outside [0, 1]"),
                        });
                    }
                    sum += p;
                }
                if (sum - 1.0).abs() > SUM_TOL {
                    return Err(OpeError::InvalidTensor {
                        what: "action_dist",
                        round: i + 1,
                        reason: format!("probabilities at position {k} sum to {sum}, not 1; normalize the policy"),
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_numpy_c_order() {
        let d = ActionDist::from_positional(&[vec![vec![0.1, 0.2], vec![0.9, 0.8]]]).unwrap();
        assert_eq!(d.shape(), (1, 2, 2));
        assert_eq!(d.values(), &[0.1, 0.2, 0.9, 0.8]);
        assert_eq!(d.get(0, 1, 0), 0.9);
        d.check_probabilities().unwrap();
    }

    #[test]
    fn rejects_bad_shapes_and_values() {
        assert!(ActionDist::new(2, 2, 1, vec![0.5; 3]).is_err());
        assert!(ActionDist::from_rows(&[vec![0.5, 0.5], vec![1.0]]).is_err());
        let err = ActionDist::new(2, 2, 1, vec![0.5, 0.5, f64::NAN, 0.5]).unwrap_err();
        assert!(err.to_string().contains("round 2"), "{err}");
        let d = ActionDist::from_rows(&[vec![0.5, 0.6]]).unwrap();
        assert!(d.check_probabilities().is_err());
        let d = ActionDist::from_rows(&[vec![1.5, -0.5]]).unwrap();
        assert!(d.check_probabilities().is_err());
    }

    #[test]
    fn restricting_to_eligible_sets_renormalises() {
        let mut log = LoggedBandit::new(3, vec![0, 2], vec![1.0, 0.0], vec![0.5, 1.0]).unwrap();
        log.eligible = Some(vec![vec![0, 1], vec![2]]);
        let mut d = ActionDist::from_rows(&[vec![0.125, 0.375, 0.5], vec![0.5, 0.5, 0.0]]).unwrap();
        assert!(d.check_eligible(&log).is_err());
        d.restrict_to_eligible(&log).unwrap();
        assert_eq!(d.values(), &[0.25, 0.75, 0.0, 0.0, 0.0, 1.0]);
        d.check_eligible(&log).unwrap();
        d.check_probabilities().unwrap();
    }

    #[test]
    fn tiled_repeats() {
        let d = ActionDist::tiled(3, &[vec![0.25], vec![0.75]]).unwrap();
        assert_eq!(d.shape(), (3, 2, 1));
        assert_eq!(d.get(2, 1, 0), 0.75);
    }
}
