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
}

impl LinearModel {
    pub(crate) fn new(actions: usize, features: usize) -> LinearModel {
        let dim = features + 1;
        let mut a_inv = vec![0.0; actions * dim * dim];
        for a in 0..actions {
            for i in 0..dim {
                a_inv[a * dim * dim + i * dim + i] = 1.0;
            }
        }
        LinearModel {
            dim,
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
        if self
            .a_inv
            .iter()
            .chain(&self.b)
            .chain(&self.theta)
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

    /// Adds the observation `(x, r)` to action `action`: O(dim^2). The state is unchanged on error.
    pub(crate) fn update(&mut self, action: usize, x: &[f64], reward: f64) -> Result<()> {
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

#[inline]
pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
