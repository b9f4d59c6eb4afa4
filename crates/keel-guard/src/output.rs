//! Output guardrails: catch a wildly wrong answer before it goes out.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::{Result, invalid};

/// What a model's scores must look like.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputGuardSpec {
    /// Smallest acceptable score (e.g. 0 for a probability).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest acceptable score (e.g. 1 for a probability).
    #[serde(default)]
    pub max: Option<f64>,
    /// The distribution has collapsed when the standard deviation of the last `collapse_window`
    /// scores falls below this (a model answering the same value to everyone).
    #[serde(default)]
    pub collapse_std_below: Option<f64>,
    #[serde(default = "default_collapse_window")]
    pub collapse_window: usize,
}

fn default_collapse_window() -> usize {
    200
}

impl OutputGuardSpec {
    pub fn validate(&self) -> Result<()> {
        if let (Some(lo), Some(hi)) = (self.min, self.max)
            && lo >= hi
        {
            return Err(invalid("output guardrail", format!("min {lo} must be below max {hi}")));
        }
        if self.collapse_std_below.is_some_and(|s| !(s.is_finite() && s >= 0.0)) {
            return Err(invalid("output guardrail", "collapse_std_below must be a number >= 0"));
        }
        if !(10..=100_000).contains(&self.collapse_window) {
            return Err(invalid(
                "output guardrail",
                format!("collapse_window must be 10..=100000, got {}", self.collapse_window),
            ));
        }
        Ok(())
    }
}

/// Why an answer was held back.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Violation {
    /// A NaN or infinite score.
    NotFinite,
    /// A score outside `[min, max]`.
    OutOfBounds {
        value: f64,
        min: Option<f64>,
        max: Option<f64>,
    },
    /// The recent scores barely vary.
    Collapsed { std: f64, window: usize },
}

impl Violation {
    pub fn kind(&self) -> &'static str {
        match self {
            Violation::NotFinite => "not_finite",
            Violation::OutOfBounds { .. } => "out_of_bounds",
            Violation::Collapsed { .. } => "collapsed",
        }
    }
}

/// The guard of one model variant: remembers its recent scores.
#[derive(Debug)]
pub struct OutputGuard {
    spec: OutputGuardSpec,
    recent: VecDeque<f64>,
    sum: f64,
    sum_sq: f64,
}

impl OutputGuard {
    pub fn new(spec: OutputGuardSpec) -> OutputGuard {
        OutputGuard {
            recent: VecDeque::with_capacity(spec.collapse_window),
            spec,
            sum: 0.0,
            sum_sq: 0.0,
        }
    }

    /// Checks one answer: every value in `values` must be finite and within bounds; `rows` (one
    /// score per row, e.g. the positive class probability) join the recent window watched for a
    /// collapse when the answer is otherwise good.
    pub fn check(&mut self, values: &[f64], rows: &[f64]) -> Option<Violation> {
        if values.iter().chain(rows).any(|s| !s.is_finite()) {
            return Some(Violation::NotFinite);
        }
        for &s in values {
            if self.spec.min.is_some_and(|lo| s < lo) || self.spec.max.is_some_and(|hi| s > hi) {
                return Some(Violation::OutOfBounds {
                    value: s,
                    min: self.spec.min,
                    max: self.spec.max,
                });
            }
        }
        let threshold = self.spec.collapse_std_below?;
        for &s in rows {
            if self.recent.len() == self.spec.collapse_window
                && let Some(old) = self.recent.pop_front()
            {
                self.sum -= old;
                self.sum_sq -= old * old;
            }
            self.recent.push_back(s);
            self.sum += s;
            self.sum_sq += s * s;
        }
        if self.recent.len() < self.spec.collapse_window {
            return None;
        }
        let n = self.recent.len() as f64;
        let mean = self.sum / n;
        let std = (self.sum_sq / n - mean * mean).max(0.0).sqrt();
        (std < threshold).then_some(Violation::Collapsed {
            std,
            window: self.spec.collapse_window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> OutputGuardSpec {
        OutputGuardSpec {
            min: Some(0.0),
            max: Some(1.0),
            collapse_std_below: Some(0.01),
            collapse_window: 10,
        }
    }

    #[test]
    fn nan_and_bounds() {
        let mut g = OutputGuard::new(spec());
        assert_eq!(g.check(&[f64::NAN], &[f64::NAN]), Some(Violation::NotFinite));
        assert_eq!(
            g.check(&[0.2, f64::INFINITY], &[0.2, f64::INFINITY]),
            Some(Violation::NotFinite)
        );
        assert_eq!(g.check(&[1.5], &[1.5]).map(|v| v.kind()), Some("out_of_bounds"));
        assert_eq!(g.check(&[-0.1], &[-0.1]).map(|v| v.kind()), Some("out_of_bounds"));
        assert_eq!(g.check(&[0.3, 0.7], &[0.3, 0.7]), None);
    }

    #[test]
    fn a_collapsed_distribution_is_caught_and_a_varied_one_is_not() {
        let mut g = OutputGuard::new(spec());
        for i in 0..50 {
            assert_eq!(g.check(&[(i % 10) as f64 / 10.0], &[(i % 10) as f64 / 10.0]), None);
        }
        let mut caught = None;
        for _ in 0..10 {
            caught = g.check(&[0.42], &[0.42]);
        }
        match caught {
            Some(Violation::Collapsed { std, window }) => assert!(std < 1e-6 && window == 10),
            other => panic!("expected a collapse, got {other:?}"),
        }
        // Without a collapse rule nothing is remembered.
        let mut g = OutputGuard::new(OutputGuardSpec {
            collapse_std_below: None,
            ..spec()
        });
        for _ in 0..100 {
            assert_eq!(g.check(&[0.5], &[0.5]), None);
        }
    }

    #[test]
    fn specs_are_checked() {
        assert!(spec().validate().is_ok());
        assert!(
            OutputGuardSpec {
                min: Some(1.0),
                max: Some(0.0),
                ..spec()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutputGuardSpec {
                collapse_window: 1,
                ..spec()
            }
            .validate()
            .is_err()
        );
        assert!(
            OutputGuardSpec {
                collapse_std_below: Some(-1.0),
                ..spec()
            }
            .validate()
            .is_err()
        );
    }
}
