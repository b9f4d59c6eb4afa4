//! Per-action Bayesian logistic regression by online Laplace approximation (Chapelle & Li 2011,
//! with a full covariance instead of their diagonal one).
//!
//! Each action's weights have a Gaussian posterior `N(m_a, S_a)`, starting from the prior
//! `N(0, prior_variance I)`. An observation `(x, y)`, `y` in `[0, 1]`, replaces it by the Laplace
//! approximation of `N(m, S) * sigmoid(w.x)^y (1 - sigmoid(w.x))^(1-y)`: the new mean is the exact
//! mode, and the new precision is the old one plus the likelihood's curvature at the mode. The
//! mode lies on the line `m + c S x`, so finding it is a one-dimensional problem in
//! `eta = w.x`: `eta = m.x + (y - sigmoid(eta)) x'Sx`, solved by safeguarded Newton. Then
//! `m <- m + (y - sigmoid(eta)) S x` and `S <- S - l (Sx)(Sx)' / (1 + l x'Sx)` with
//! `l = sigmoid(eta)(1 - sigmoid(eta))` (Sherman-Morrison): O(dim^2) per update, like the ridge
//! models. Matrices are flat row-major `Vec<f64>`s; `dim` counts the intercept.

use serde::{Deserialize, Serialize};

use crate::error::{BanditError, Result};
use crate::linear::{dot, forget, identities, spd_inverse};

/// One Bayesian logistic regression per action.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct LogisticModel {
    /// Features plus the intercept.
    pub(crate) dim: usize,
    /// Posterior covariance `S_a` of every action, `actions * dim * dim` entries, row-major.
    pub(crate) cov: Vec<f64>,
    /// Posterior mean `m_a` of every action, `actions * dim` entries.
    pub(crate) mean: Vec<f64>,
    /// Posterior precision `S_a^-1`, kept only by discounting policies (`half_life`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) precision: Option<Vec<f64>>,
}

impl LogisticModel {
    pub(crate) fn new(actions: usize, features: usize, prior_variance: f64, discounted: bool) -> LogisticModel {
        let dim = features + 1;
        LogisticModel {
            dim,
            cov: identities(actions, dim, prior_variance),
            mean: vec![0.0; actions * dim],
            precision: discounted.then(|| identities(actions, dim, 1.0 / prior_variance)),
        }
    }

    /// Checks sizes and values of a deserialized model.
    pub(crate) fn check(&self, actions: usize, features: usize) -> Result<()> {
        let dim = features + 1;
        if self.dim != dim
            || self.cov.len() != actions * dim * dim
            || self.mean.len() != actions * dim
            || self.precision.as_ref().is_some_and(|p| p.len() != actions * dim * dim)
        {
            return Err(BanditError::Numerical(format!(
                "logistic model sizes do not match {actions} actions and {features} features"
            )));
        }
        if self
            .cov
            .iter()
            .chain(&self.mean)
            .chain(self.precision.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(BanditError::Numerical(
                "logistic model holds a non-finite value".to_string(),
            ));
        }
        Ok(())
    }

    fn cov_of(&self, action: usize) -> &[f64] {
        let n = self.dim * self.dim;
        &self.cov[action * n..(action + 1) * n]
    }

    /// Posterior mean of the log-odds `m_a.x` and its variance `x' S_a x` (>= 0).
    pub(crate) fn score(&self, action: usize, x: &[f64]) -> (f64, f64) {
        let mean = dot(&self.mean[action * self.dim..(action + 1) * self.dim], x);
        let quad: f64 = self
            .cov_of(action)
            .chunks_exact(self.dim)
            .zip(x)
            .map(|(row, xi)| xi * dot(row, x))
            .sum();
        (mean, quad.max(0.0))
    }

    /// Adds the observation `(x, y)` to `action`. With a discount `gamma < 1` every action first
    /// forgets towards the prior (precision `gamma P + (1 - gamma) P_0`, mean so that
    /// `P m` shrinks by `gamma`), which costs O(actions * dim^3). Unchanged on error.
    pub(crate) fn update(&mut self, action: usize, x: &[f64], y: f64, gamma: f64, prior_variance: f64) -> Result<()> {
        if gamma < 1.0 {
            // Forgetting changes every action before the observation can fail: on a copy.
            let mut next = self.clone();
            next.forget(gamma, prior_variance)?;
            next.observe(action, x, y)?;
            *self = next;
            return Ok(());
        }
        // Every check comes before the first change, so no copy of the model is needed.
        self.observe(action, x, y)
    }

    /// Discounts every action's posterior towards the prior (see [`update`](Self::update)).
    fn forget(&mut self, gamma: f64, prior_variance: f64) -> Result<()> {
        let dim = self.dim;
        let n = dim * dim;
        let Some(precision) = self.precision.as_mut() else {
            return Err(BanditError::Numerical(
                "discounted logistic model without its precision".into(),
            ));
        };
        // b = P m per action, then both forget, then m = P^-1 b.
        let mut b: Vec<f64> = (0..self.mean.len() / dim)
            .flat_map(|k| {
                let p = &precision[k * n..(k + 1) * n];
                let m = &self.mean[k * dim..(k + 1) * dim];
                p.chunks_exact(dim).map(|row| dot(row, m)).collect::<Vec<_>>()
            })
            .collect();
        forget(precision, &mut b, dim, gamma, 1.0 / prior_variance);
        for k in 0..b.len() / dim {
            let inv = spd_inverse(&precision[k * n..(k + 1) * n], dim)?;
            for (mi, row) in self.mean[k * dim..(k + 1) * dim].iter_mut().zip(inv.chunks_exact(dim)) {
                *mi = dot(row, &b[k * dim..(k + 1) * dim]);
            }
            self.cov[k * n..(k + 1) * n].copy_from_slice(&inv);
        }
        Ok(())
    }

    /// The Laplace step for one observation; checks everything before changing anything, so
    /// the model is unchanged on error.
    fn observe(&mut self, action: usize, x: &[f64], y: f64) -> Result<()> {
        let dim = self.dim;
        let n = dim * dim;
        let cov = &mut self.cov[action * n..(action + 1) * n];
        let sx: Vec<f64> = cov.chunks_exact(dim).map(|row| dot(row, x)).collect();
        let s = dot(x, &sx).max(0.0);
        let mean = &mut self.mean[action * dim..(action + 1) * dim];
        let eta0 = dot(mean, x);
        let eta = mode(eta0, s, y);
        let residual = y - sigmoid(eta);
        let curvature = sigmoid(eta) * (1.0 - sigmoid(eta));
        let denom = 1.0 + curvature * s;
        if !eta.is_finite() || !denom.is_finite() || sx.iter().any(|v| !v.is_finite()) {
            return Err(BanditError::Numerical(format!("logistic update: mode {eta}, x'Sx {s}")));
        }
        for (mi, si) in mean.iter_mut().zip(&sx) {
            *mi += residual * si;
        }
        for (i, row) in cov.chunks_exact_mut(dim).enumerate() {
            let ui = curvature * sx[i] / denom;
            for (cell, uj) in row.iter_mut().zip(&sx) {
                *cell -= ui * uj;
            }
        }
        if let Some(p) = self.precision.as_mut() {
            for (row, xi) in p[action * n..(action + 1) * n].chunks_exact_mut(dim).zip(x) {
                for (cell, xj) in row.iter_mut().zip(x) {
                    *cell += curvature * xi * xj;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn sigmoid(t: f64) -> f64 {
    if t >= 0.0 {
        1.0 / (1.0 + (-t).exp())
    } else {
        let e = t.exp();
        e / (1.0 + e)
    }
}

/// The root of `f(eta) = eta - eta0 - s (y - sigmoid(eta))`, increasing in `eta`, which lies in
/// `[eta0 - s, eta0 + s]` since `|y - sigmoid| < 1`: Newton steps kept inside a shrinking bracket.
pub(crate) fn mode(eta0: f64, s: f64, y: f64) -> f64 {
    let f = |eta: f64| eta - eta0 - s * (y - sigmoid(eta));
    let (mut lo, mut hi) = (eta0 - s, eta0 + s);
    let mut eta = eta0;
    for _ in 0..100 {
        let v = f(eta);
        if v.abs() <= 1e-12 * (1.0 + eta.abs()) {
            return eta;
        }
        if v > 0.0 {
            hi = eta;
        } else {
            lo = eta;
        }
        let g = sigmoid(eta);
        let step = eta - v / (1.0 + s * g * (1.0 - g));
        eta = if step > lo && step < hi { step } else { 0.5 * (lo + hi) };
        if hi - lo <= 1e-14 * (1.0 + eta.abs()) {
            return eta;
        }
    }
    eta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_solves_its_equation() {
        for (eta0, s, y) in [(0.0, 1.0, 1.0), (-3.0, 1e5, 1.0), (2.0, 0.0, 0.0), (1.0, 50.0, 0.3)] {
            let eta = mode(eta0, s, y);
            let f = eta - eta0 - s * (y - sigmoid(eta));
            assert!(f.abs() < 1e-8 * (1.0 + s), "eta0 {eta0} s {s} y {y}: f({eta}) = {f}");
        }
    }

    #[test]
    fn one_observation_matches_a_newton_solve_of_the_map() {
        // One action, intercept + one feature, prior N(0, I): the mode of the posterior after
        // (x = [1, 2], y = 1) minimises |w|^2/2 - log sigmoid(w.x); check the gradient is zero.
        let mut m = LogisticModel::new(1, 1, 1.0, false);
        let x = [1.0, 2.0];
        m.update(0, &x, 1.0, 1.0, 1.0).unwrap();
        let w = &m.mean;
        let p = sigmoid(dot(w, &x));
        for i in 0..2 {
            let grad = w[i] - (1.0 - p) * x[i];
            assert!(grad.abs() < 1e-10, "gradient {grad}");
        }
        // Precision I + p(1-p) x x'; its inverse is the covariance.
        let l = p * (1.0 - p);
        let prec = [1.0 + l, 2.0 * l, 2.0 * l, 1.0 + 4.0 * l];
        let det = prec[0] * prec[3] - prec[1] * prec[2];
        let inv = [prec[3] / det, -prec[1] / det, -prec[2] / det, prec[0] / det];
        for (a, b) in m.cov.iter().zip(inv) {
            assert!((a - b).abs() < 1e-12, "{a} vs {b}");
        }
    }

    #[test]
    fn discounting_halves_the_evidence_after_a_half_life() {
        // Precision-weighted mean P m and the precision's excess over the prior both halve after
        // `half_life` updates of another action.
        let gamma = (-std::f64::consts::LN_2 / 3.0).exp();
        let mut m = LogisticModel::new(2, 1, 2.0, true);
        m.update(0, &[1.0, 1.5], 1.0, gamma, 2.0).unwrap();
        let p0 = m.precision.as_ref().unwrap()[..4].to_vec();
        let pm = |m: &LogisticModel| -> Vec<f64> {
            let p = &m.precision.as_ref().unwrap()[..4];
            vec![p[0] * m.mean[0] + p[1] * m.mean[1], p[2] * m.mean[0] + p[3] * m.mean[1]]
        };
        let b0 = pm(&m);
        for _ in 0..3 {
            m.update(1, &[1.0, -2.0], 0.0, gamma, 2.0).unwrap();
        }
        for (now, then) in pm(&m).iter().zip(&b0) {
            assert!((now - 0.5 * then).abs() < 1e-10, "{now} vs half of {then}");
        }
        for (i, (now, then)) in m.precision.as_ref().unwrap()[..4].iter().zip(&p0).enumerate() {
            let prior = if i % 3 == 0 { 0.5 } else { 0.0 };
            assert!((now - (0.5 * then + 0.5 * prior)).abs() < 1e-12, "P[{i}] {now}");
        }
    }

    #[test]
    fn the_posterior_mean_approaches_the_true_weights() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut m = LogisticModel::new(1, 2, 1.0, false);
        let truth = [-1.0, 2.0, -0.5];
        for _ in 0..20_000 {
            let x = [1.0, rng.random_range(-1.0..1.0), rng.random_range(-2.0..2.0)];
            let y = if rng.random::<f64>() < sigmoid(dot(&truth, &x)) {
                1.0
            } else {
                0.0
            };
            m.update(0, &x, y, 1.0, 1.0).unwrap();
        }
        for (w, t) in m.mean.iter().zip(truth) {
            assert!((w - t).abs() < 0.1, "mean {:?} truth {truth:?}", m.mean);
        }
    }
}
