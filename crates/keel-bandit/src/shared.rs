//! One model shared by every action over context x action features (Vowpal Wabbit's ADF with
//! `-q`): the joint features `z = x ⊗ [1, a]`, their layout and the scoring of every action
//! from one contraction of the covariance with the context.
//!
//! Layout: `z[i * (m + 1) + k] = x[i] * ã[k]` with `x[0] = 1` (the intercept) and
//! `ã = [1, a_1 .. a_m]`, so `z[0] = 1` and the model's first `m + 1` weights are the actions'
//! own effects, the rest the context's effects and their interactions with the actions.

use crate::MAX_ABS_FEATURE;
use crate::error::{BanditError, Result};
use crate::linear::dot;

/// Largest number of features an action may carry.
pub const MAX_ACTION_FEATURES: usize = 256;

/// Dimension of the joint features for `features` context features and `width` action features.
pub(crate) fn dim(features: usize, width: usize) -> usize {
    (features + 1) * (width + 1)
}

/// Checks every action's features (as many rows as actions, one width, finite and bounded
/// values) and returns their width.
pub(crate) fn check_action_features(rows: &[Vec<f64>], actions: usize) -> Result<usize> {
    let invalid = |what: String| Err(BanditError::InvalidConfig(vec![what]));
    if rows.len() != actions {
        return invalid(format!(
            "{} actions' features for {actions} actions; give every action its features",
            rows.len()
        ));
    }
    let width = rows.first().map_or(0, Vec::len);
    if width > MAX_ACTION_FEATURES {
        return invalid(format!(
            "actions carry {width} features, more than the maximum of {MAX_ACTION_FEATURES}"
        ));
    }
    for (a, row) in rows.iter().enumerate() {
        if row.len() != width {
            return invalid(format!(
                "action {a} has {} features and action 0 has {width}; give every action the same features",
                row.len()
            ));
        }
        if let Some(v) = row.iter().find(|v| !v.is_finite() || v.abs() > MAX_ABS_FEATURE) {
            return invalid(format!(
                "action {a} has the feature value {v}; give finite values within ±{MAX_ABS_FEATURE:e}"
            ));
        }
    }
    Ok(width)
}

/// The joint features `x ⊗ [1, a]` of a context (intercept first) and an action's features.
pub(crate) fn joint(x: &[f64], a: &[f64]) -> Vec<f64> {
    let mut z = Vec::with_capacity(x.len() * (a.len() + 1));
    for xi in x {
        z.push(*xi);
        z.extend(a.iter().map(|ak| xi * ak));
    }
    z
}

/// Entries of the contraction summed side by side, each in its own register.
const LANES: usize = 8;

/// Every eligible action's mean `w.z_a` and quadratic form `z_a' S z_a` (>= 0) under the
/// weights `w` and the symmetric matrix `s` (`D x D`, row-major) of one shared model, for the
/// context `x` (intercept first) and the actions' features `actions`; the actions `ok` refuses
/// get `(0, 0)`.
///
/// With `ã = [1, a]`, `w.z_a = ã.v` where `v[k] = sum_i x_i w[i m1 + k]`, and
/// `z_a' S z_a = ã' M ã` where `M[k][l] = sum_{i,j} x_i x_j S[i m1 + k][j m1 + l]`: the
/// context is contracted once, over its non-zero entries (one-hot categories are mostly 0),
/// and only for the entries `M[k][l]` some eligible action needs (`ã_k` and `ã_l` both
/// non-zero: one-hot action features need few of them), [`LANES`] entries at a time so that
/// their sums stay in registers; then each action costs `nnz(ã)^2`. Every sum runs in the
/// order of the dense contraction (`scores_dense`, kept in the tests), so the results are
/// the same bit for bit.
pub(crate) fn scores(
    w: &[f64],
    s: &[f64],
    x: &[f64],
    actions: &[Vec<f64>],
    ok: impl Fn(usize) -> bool,
) -> Vec<(f64, f64)> {
    let m1 = actions.first().map_or(0, Vec::len) + 1;
    let d = x.len() * m1;
    let nz: Vec<(usize, f64)> = x.iter().copied().enumerate().filter(|(_, v)| *v != 0.0).collect();
    let mut v = vec![0.0; m1];
    for &(i, xi) in &nz {
        for (vk, wk) in v.iter_mut().zip(&w[i * m1..(i + 1) * m1]) {
            *vk += xi * wk;
        }
    }
    // The entries (k, l) of M that the eligible actions need (index 0 of ã, the leading 1,
    // always non-zero).
    let mut needed = vec![false; m1 * m1];
    for (_, f) in actions.iter().enumerate().filter(|(a, _)| ok(*a)) {
        let support = || {
            let rest = f.iter().enumerate().filter(|(_, v)| **v != 0.0);
            std::iter::once(0).chain(rest.map(|(k, _)| k + 1))
        };
        for k in support() {
            for l in support() {
                needed[k * m1 + l] = true;
            }
        }
    }
    let pairs: Vec<usize> = (0..m1 * m1).filter(|p| needed[*p]).collect();
    // One step per (i, j), i-major: where block (i, j) of S starts, and x_i x_j.
    let steps: Vec<(usize, f64)> = nz
        .iter()
        .flat_map(|&(i, xi)| nz.iter().map(move |&(j, xj)| (i * m1 * d + j * m1, xi * xj)))
        .collect();
    // The entries no action needs stay 0.
    let mut m = vec![0.0; m1 * m1];
    for chunk in pairs.chunks(LANES) {
        // Entry (k, l) sits at k d + l within each block; a short chunk repeats its last entry.
        let mut at = [0; LANES];
        for (t, slot) in at.iter_mut().enumerate() {
            let p = chunk[t.min(chunk.len() - 1)];
            *slot = (p / m1) * d + p % m1;
        }
        let mut acc = [0.0; LANES];
        for &(base, c) in &steps {
            let block = &s[base..];
            for (sum, o) in acc.iter_mut().zip(&at) {
                *sum += c * block[*o];
            }
        }
        for (p, sum) in chunk.iter().zip(acc) {
            m[*p] = sum;
        }
    }
    actions
        .iter()
        .enumerate()
        .map(|(a, f)| {
            if !ok(a) {
                return (0.0, 0.0);
            }
            let mean = v[0] + dot(f, &v[1..]);
            // t = ã' M, then quad = t_0 + a . t[1..], over the non-zero entries of a (the zero
            // ones add only zeros), in the dense formula's order.
            let support = || {
                f.iter()
                    .enumerate()
                    .filter(|(_, v)| **v != 0.0)
                    .map(|(k, ak)| (k + 1, *ak))
            };
            let t = |l: usize| support().fold(m[l], |t, (k, ak)| t + ak * m[k * m1 + l]);
            let rest: f64 = support().map(|(l, al)| al * t(l)).sum();
            (mean, (t(0) + rest).max(0.0))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contraction_equals_the_quadratic_form_of_the_joint_features() {
        // A random symmetric S and w; x with zeros (one-hot) and an intercept.
        let x = [1.0, 0.0, 2.5, -1.0, 0.0];
        let actions = vec![vec![0.5, 1.0, 0.0], vec![-2.0, 0.0, 1.0], vec![0.0, 0.0, 0.0]];
        let d = dim(x.len() - 1, 3);
        let mut seed = 7u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let w: Vec<f64> = (0..d).map(|_| next()).collect();
        let mut s = vec![0.0; d * d];
        for i in 0..d {
            for j in 0..=i {
                let v = next();
                s[i * d + j] = v;
                s[j * d + i] = v;
            }
            s[i * d + i] += d as f64;
        }
        let got = scores(&w, &s, &x, &actions, |_| true);
        for (a, (mean, quad)) in actions.iter().zip(got) {
            let z = joint(&x, a);
            assert_eq!(z.len(), d);
            let want_mean = dot(&w, &z);
            let want_quad: f64 = (0..d).map(|i| z[i] * dot(&s[i * d..(i + 1) * d], &z)).sum();
            assert!((mean - want_mean).abs() < 1e-12, "{mean} vs {want_mean}");
            assert!((quad - want_quad).abs() < 1e-9, "{quad} vs {want_quad}");
        }
    }

    /// The dense contraction of every `M[k][l]` and every action (keel 0.1's formula): the
    /// reference the sparse one must equal bit for bit.
    fn scores_dense(w: &[f64], s: &[f64], x: &[f64], actions: &[Vec<f64>]) -> Vec<(f64, f64)> {
        let m1 = actions.first().map_or(0, Vec::len) + 1;
        let d = x.len() * m1;
        let nz: Vec<(usize, f64)> = x.iter().copied().enumerate().filter(|(_, v)| *v != 0.0).collect();
        let mut v = vec![0.0; m1];
        for &(i, xi) in &nz {
            for (vk, wk) in v.iter_mut().zip(&w[i * m1..(i + 1) * m1]) {
                *vk += xi * wk;
            }
        }
        let mut m = vec![0.0; m1 * m1];
        for &(i, xi) in &nz {
            for k in 0..m1 {
                let row = &s[(i * m1 + k) * d..(i * m1 + k + 1) * d];
                let mk = &mut m[k * m1..(k + 1) * m1];
                for &(j, xj) in &nz {
                    let c = xi * xj;
                    for (cell, sv) in mk.iter_mut().zip(&row[j * m1..(j + 1) * m1]) {
                        *cell += c * sv;
                    }
                }
            }
        }
        let mut t = vec![0.0; m1];
        actions
            .iter()
            .map(|a| {
                let mean = v[0] + dot(a, &v[1..]);
                t.copy_from_slice(&m[..m1]);
                for (ak, row) in a.iter().zip(m[m1..].chunks_exact(m1)) {
                    for (tl, ml) in t.iter_mut().zip(row) {
                        *tl += ak * ml;
                    }
                }
                let quad = t[0] + dot(a, &t[1..]);
                (mean, quad.max(0.0))
            })
            .collect()
    }

    #[test]
    fn the_sparse_contraction_equals_the_dense_one_bit_for_bit() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(17);
        for case in 0..300 {
            let d = rng.random_range(0..12usize);
            let m = rng.random_range(0..10usize);
            let k = rng.random_range(1..8usize);
            // Sparse and dense values alike: zeros, ones (one-hot), and any number.
            let mut value = |zeros: f64| {
                let u: f64 = rng.random();
                if u < zeros {
                    0.0
                } else if u < zeros + 0.2 {
                    1.0
                } else {
                    rng.random_range(-3.0..3.0)
                }
            };
            let x: Vec<f64> = std::iter::once(1.0).chain((0..d).map(|_| value(0.4))).collect();
            let zeros = if case % 3 == 0 { 0.0 } else { 0.6 };
            let actions: Vec<Vec<f64>> = (0..k).map(|_| (0..m).map(|_| value(zeros)).collect()).collect();
            let n = dim(d, m);
            let w: Vec<f64> = (0..n).map(|_| rng.random_range(-1.0..1.0)).collect();
            // A covariance like the models' after Sherman-Morrison updates: symmetric up to
            // rounding (the two triangles may differ in the last bits).
            let mut s = vec![0.0; n * n];
            for i in 0..n {
                for j in 0..=i {
                    let v = rng.random_range(-0.5..0.5);
                    s[i * n + j] = v;
                    s[j * n + i] = v * (1.0 + 1e-15 * rng.random_range(-1.0..1.0));
                }
                s[i * n + i] += n as f64;
            }
            let eligible: Vec<bool> = (0..k).map(|_| rng.random::<f64>() < 0.7).collect();
            let got = scores(&w, &s, &x, &actions, |a| eligible[a]);
            let want = scores_dense(&w, &s, &x, &actions);
            for (a, (g, w)) in got.iter().zip(&want).enumerate() {
                if eligible[a] {
                    assert_eq!(
                        (g.0.to_bits(), g.1.to_bits()),
                        (w.0.to_bits(), w.1.to_bits()),
                        "case {case} action {a}: {g:?} vs {w:?}"
                    );
                } else {
                    assert_eq!(*g, (0.0, 0.0), "case {case}: an ineligible action is not scored");
                }
            }
        }
    }

    #[test]
    fn bad_action_features_are_refused_with_the_reason() {
        let err = |rows: Vec<Vec<f64>>, k| check_action_features(&rows, k).unwrap_err().to_string();
        assert!(err(vec![vec![1.0]], 2).contains("1 actions' features for 2 actions"));
        assert!(err(vec![vec![1.0], vec![1.0, 2.0]], 2).contains("same features"));
        assert!(err(vec![vec![f64::NAN]], 1).contains("finite"));
        assert_eq!(check_action_features(&[vec![1.0, 0.0], vec![0.0, 1.0]], 2), Ok(2));
    }
}
