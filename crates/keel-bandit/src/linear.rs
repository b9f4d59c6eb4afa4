//! Per-action ridge regression with an incrementally maintained inverse (Sherman-Morrison).
//!
//! Matrices are flat row-major `Vec<f64>`s so the state serialises as plain numbers; `dim` is the
//! number of features plus one (the intercept, always `x[0] = 1`).

use serde::{Deserialize, Serialize};

use crate::error::{BanditError, Result};

/// One ridge regression (lambda = 1) per action: `A_a = I + sum x x'`, `b_a = sum r x`,
/// `theta_a = A_a^-1 b_a`. `A_a^-1` is updated in O(dim^2) by Sherman-Morrison.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct LinearModel {
    /// Features plus the intercept.
    pub(crate) dim: usize,
    /// `A_a^-1` of every action, `actions * dim * dim` entries, row-major.
    pub(crate) a_inv: Vec<f64>,
    /// `b_a` of every action, `actions * dim` entries.
    pub(crate) b: Vec<f64>,
    /// `theta_a = A_a^-1 b_a` of every action, `actions * dim` entries.
    pub(crate) theta: Vec<f64>,
    /// `A_a` of every action, kept only by discounting policies (`half_life`), whose update is not
    /// rank-one: `A_a^-1` is then recomputed from it by Cholesky.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) a: Option<Vec<f64>>,
}

impl LinearModel {
    /// A fresh model; `discounted` keeps `A_a` too (see [`update`](Self::update)).
    pub(crate) fn new(actions: usize, features: usize, discounted: bool) -> LinearModel {
        let dim = features + 1;
        let a_inv = identities(actions, dim, 1.0);
        LinearModel {
            dim,
            a: discounted.then(|| a_inv.clone()),
            a_inv,
            b: vec![0.0; actions * dim],
            theta: vec![0.0; actions * dim],
        }
    }

    /// Checks sizes and values of a deserialized model.
    pub(crate) fn check(&self, actions: usize, features: usize) -> Result<()> {
        let dim = features + 1;
        if self.dim != dim
            || self.a_inv.len() != actions * dim * dim
            || self.b.len() != actions * dim
            || self.theta.len() != actions * dim
        {
            return Err(BanditError::Numerical(format!(
                "linear model sizes do not match {actions} actions and {features} features"
            )));
        }
        if self.a.as_ref().is_some_and(|a| a.len() != actions * dim * dim) {
            return Err(BanditError::Numerical(format!(
                "linear model's A matrices do not match {actions} actions and {features} features"
            )));
        }
        if self
            .a_inv
            .iter()
            .chain(&self.b)
            .chain(&self.theta)
            .chain(self.a.iter().flatten())
            .any(|v| !v.is_finite())
        {
            return Err(BanditError::Numerical(
                "linear model holds a non-finite value".to_string(),
            ));
        }
        Ok(())
    }

    fn inv(&self, action: usize) -> &[f64] {
        let n = self.dim * self.dim;
        &self.a_inv[action * n..(action + 1) * n]
    }

    fn theta(&self, action: usize) -> &[f64] {
        &self.theta[action * self.dim..(action + 1) * self.dim]
    }

    /// Predicted reward `theta_a · x`.
    pub(crate) fn mean(&self, action: usize, x: &[f64]) -> f64 {
        dot(self.theta(action), x)
    }

    /// Predicted reward and the quadratic form `x' A_a^-1 x` (>= 0).
    pub(crate) fn mean_and_quad(&self, action: usize, x: &[f64]) -> (f64, f64) {
        let inv = self.inv(action);
        let quad: f64 = inv
            .chunks_exact(self.dim)
            .zip(x)
            .map(|(row, xi)| xi * dot(row, x))
            .sum();
        (self.mean(action, x), quad.max(0.0))
    }

    /// Adds the observation `(x, r)` to action `action`. Without discounting (`gamma == 1`) this
    /// is O(dim^2) by Sherman-Morrison. With a discount `gamma < 1` every action first forgets:
    /// `A_a <- gamma A_a + (1 - gamma) I`, `b_a <- gamma b_a` (the posterior raised to `gamma` times
    /// the prior to `1 - gamma`, so an action's uncertainty grows back towards the prior while it
    /// is not observed), then the observation is added and every `A_a^-1` is recomputed by
    /// Cholesky: O(actions * dim^3). The state is unchanged on error.
    pub(crate) fn update(&mut self, action: usize, x: &[f64], reward: f64, gamma: f64) -> Result<()> {
        if gamma < 1.0 {
            return self.update_discounted(action, x, reward, gamma);
        }
        let dim = self.dim;
        let n = dim * dim;
        let inv = &mut self.a_inv[action * n..(action + 1) * n];
        let u: Vec<f64> = inv.chunks_exact(dim).map(|row| dot(row, x)).collect();
        let denom = 1.0 + dot(x, &u);
        if !denom.is_finite() || denom < 1.0 - 1e-9 || u.iter().any(|v| !v.is_finite()) {
            return Err(BanditError::Numerical(format!("Sherman-Morrison denominator {denom}")));
        }
        // A^-1 <- A^-1 - u u' / (1 + x' A^-1 x); symmetric by construction.
        for (i, row) in inv.chunks_exact_mut(dim).enumerate() {
            let ui = u[i] / denom;
            for (cell, uj) in row.iter_mut().zip(&u) {
                *cell -= ui * uj;
            }
        }
        let b = &mut self.b[action * dim..(action + 1) * dim];
        for (bi, xi) in b.iter_mut().zip(x) {
            *bi += reward * xi;
        }
        let theta = &mut self.theta[action * dim..(action + 1) * dim];
        for (t, row) in theta.iter_mut().zip(inv.chunks_exact(dim)) {
            *t = dot(row, b);
        }
        Ok(())
    }
}

impl LinearModel {
    fn update_discounted(&mut self, action: usize, x: &[f64], reward: f64, gamma: f64) -> Result<()> {
        let dim = self.dim;
        let n = dim * dim;
        let mut a = match &self.a {
            Some(a) => a.clone(),
            None => {
                return Err(BanditError::Numerical(
                    "discounted linear model without its A matrices".into(),
                ));
            }
        };
        let mut b = self.b.clone();
        forget(&mut a, &mut b, dim, gamma, 1.0);
        let a_act = &mut a[action * n..(action + 1) * n];
        for (row, xi) in a_act.chunks_exact_mut(dim).zip(x) {
            for (cell, xj) in row.iter_mut().zip(x) {
                *cell += xi * xj;
            }
        }
        for (bi, xi) in b[action * dim..(action + 1) * dim].iter_mut().zip(x) {
            *bi += reward * xi;
        }
        let mut a_inv = vec![0.0; a.len()];
        let mut theta = vec![0.0; b.len()];
        for k in 0..a.len() / n {
            let inv = spd_inverse(&a[k * n..(k + 1) * n], dim)?;
            for (t, row) in theta[k * dim..(k + 1) * dim].iter_mut().zip(inv.chunks_exact(dim)) {
                *t = dot(row, &b[k * dim..(k + 1) * dim]);
            }
            a_inv[k * n..(k + 1) * n].copy_from_slice(&inv);
        }
        self.a = Some(a);
        self.a_inv = a_inv;
        self.b = b;
        self.theta = theta;
        Ok(())
    }
}

/// `actions` identity matrices of size `dim`, scaled by `scale`, flat.
pub(crate) fn identities(actions: usize, dim: usize, scale: f64) -> Vec<f64> {
    let mut m = vec![0.0; actions * dim * dim];
    for a in 0..actions {
        for i in 0..dim {
            m[a * dim * dim + i * dim + i] = scale;
        }
    }
    m
}

/// Discounts every action's precision towards the prior precision `prior` (times I) and its
/// linear term: `P <- gamma P + (1 - gamma) prior I`, `b <- gamma b`.
pub(crate) fn forget(p: &mut [f64], b: &mut [f64], dim: usize, gamma: f64, prior: f64) {
    for (k, m) in p.chunks_exact_mut(dim * dim).enumerate() {
        for (i, row) in m.chunks_exact_mut(dim).enumerate() {
            for (j, cell) in row.iter_mut().enumerate() {
                *cell = gamma * *cell + if i == j { (1.0 - gamma) * prior } else { 0.0 };
            }
        }
        for v in &mut b[k * dim..(k + 1) * dim] {
            *v *= gamma;
        }
    }
}

/// Inverse of a symmetric positive definite matrix by Cholesky: O(dim^3).
pub(crate) fn spd_inverse(m: &[f64], dim: usize) -> Result<Vec<f64>> {
    // Lower factor L with m = L L'.
    let mut l = vec![0.0; dim * dim];
    for i in 0..dim {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l[i * dim + k] * l[j * dim + k]).sum();
            if i == j {
                let d = m[i * dim + i] - s;
                if !(d > 0.0 && d.is_finite()) {
                    return Err(BanditError::Numerical(format!(
                        "matrix not positive definite (pivot {d})"
                    )));
                }
                l[i * dim + i] = d.sqrt();
            } else {
                l[i * dim + j] = (m[i * dim + j] - s) / l[j * dim + j];
            }
        }
    }
    // L^-1 by forward substitution, then m^-1 = L^-T L^-1.
    let mut li = vec![0.0; dim * dim];
    for c in 0..dim {
        for i in c..dim {
            let s: f64 = (c..i).map(|k| l[i * dim + k] * li[k * dim + c]).sum();
            let rhs = if i == c { 1.0 } else { 0.0 };
            li[i * dim + c] = (rhs - s) / l[i * dim + i];
        }
    }
    let mut inv = vec![0.0; dim * dim];
    for i in 0..dim {
        for j in 0..=i {
            let s: f64 = (i..dim).map(|k| li[k * dim + i] * li[k * dim + j]).sum();
            inv[i * dim + j] = s;
            inv[j * dim + i] = s;
        }
    }
    Ok(inv)
}

#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discounting_forgets_at_the_stated_rate() {
        // half_life 4 updates: gamma = 2^(-1/4); one observation on action 0, then 4 on action 1.
        let gamma = (-std::f64::consts::LN_2 / 4.0).exp();
        let mut m = LinearModel::new(2, 1, true);
        let x = [1.0, 3.0];
        m.update(0, &x, 1.0, gamma).unwrap();
        let b0 = m.b[..2].to_vec();
        let a0 = m.a.as_ref().unwrap()[..4].to_vec();
        for _ in 0..4 {
            m.update(1, &[1.0, -1.0], 0.0, gamma).unwrap();
        }
        for (now, then) in m.b[..2].iter().zip(&b0) {
            assert!((now - 0.5 * then).abs() < 1e-12, "b {now} vs half of {then}");
        }
        // A moves half of the way back to the prior I.
        for (i, (now, then)) in m.a.as_ref().unwrap()[..4].iter().zip(&a0).enumerate() {
            let prior = if i % 3 == 0 { 1.0 } else { 0.0 };
            assert!((now - (0.5 * then + 0.5 * prior)).abs() < 1e-12, "A[{i}] {now}");
        }
        // The kept inverse and theta match A and b.
        let inv = spd_inverse(&m.a.as_ref().unwrap()[..4], 2).unwrap();
        for (a, b) in inv.iter().zip(&m.a_inv[..4]) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn without_discounting_the_cholesky_inverse_matches_sherman_morrison() {
        let mut plain = LinearModel::new(1, 2, false);
        let mut kept = LinearModel::new(1, 2, true);
        for (i, r) in [(0.5, 1.0), (-1.0, 0.0), (2.0, 1.0), (0.1, 0.3)].iter().enumerate() {
            let x = [1.0, r.0, i as f64];
            plain.update(0, &x, r.1, 1.0).unwrap();
            // gamma just below 1 exercises the Cholesky path with almost no forgetting.
            kept.update(0, &x, r.1, 1.0 - 1e-15).unwrap();
        }
        for (a, b) in plain.a_inv.iter().zip(&kept.a_inv) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
        for (a, b) in plain.theta.iter().zip(&kept.theta) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }
}
