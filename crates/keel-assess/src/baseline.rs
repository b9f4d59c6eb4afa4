//! A quick cross-validated baseline: L2-regularised logistic regression fitted by Newton's method
//! (iteratively reweighted least squares), written out here.
//!
//! Design: numeric features standardised with the sample's mean and standard deviation (missing
//! values set to the mean, plus a 0/1 "missing" column when the sample has any); categorical
//! features one-hot encoded on their [`TOP_CATEGORIES`] most frequent values (missing counts as a value)
//! seen at least [`MIN_CATEGORY_ROWS`] times (the rest is the reference level). Rows are a deterministic
//! hash-based sample of at most `max_rows` labelled rows; folds are assigned by a hash of the row
//! number. The penalty `lambda * |w|^2 / 2` (intercept not penalised) is on the summed log
//! likelihood, so it weighs less as rows grow.

use rayon::prelude::*;
use serde::Serialize;

use crate::profile::Values;

/// One-hot columns per categorical feature at most.
pub const TOP_CATEGORIES: usize = 10;
/// A category needs this many sample rows to get its own column.
pub const MIN_CATEGORY_ROWS: u64 = 5;
/// L2 penalty weight.
pub const LAMBDA: f64 = 1.0;
const MAX_ITERATIONS: usize = 30;
const TOLERANCE: f64 = 1e-7;

/// The rows of the baseline: table row numbers, labels and folds.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sample {
    pub rows: Vec<usize>,
    pub y: Vec<f64>,
    pub fold: Vec<u8>,
}

/// The design columns one table column contributes.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub column: String,
    pub columns: Vec<Vec<f64>>,
}

/// Cross-validated scores of the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct Baseline {
    pub model: &'static str,
    pub folds: usize,
    /// Labelled rows used (after sampling).
    pub rows: u64,
    /// Labelled rows in the table.
    pub rows_labelled: u64,
    /// Table columns used as features.
    pub columns_used: Vec<String>,
    /// Feature columns left out, with the reason.
    pub excluded: Vec<String>,
    /// Design dimensions (after one-hot encoding), intercept excluded.
    pub dimensions: usize,
    pub lambda: f64,
    pub auc_mean: f64,
    pub auc_sd: f64,
    pub log_loss_mean: f64,
    pub log_loss_sd: f64,
    /// Log loss of predicting the training folds' positive rate for everyone.
    pub prior_log_loss_mean: f64,
    /// 1 - log_loss / prior_log_loss: the share of the prior's log loss the model removes.
    pub log_loss_gain: f64,
    pub fold_auc: Vec<f64>,
    pub fold_log_loss: Vec<f64>,
}

/// The design columns of one feature at the sample rows (`None` if it contributes nothing).
pub(crate) fn extract(name: &str, values: &Values, sample: &Sample) -> Option<Block> {
    let columns = match values {
        Values::Numeric(v) => {
            let picked: Vec<f64> = sample.rows.iter().map(|r| v[*r]).collect();
            let present: Vec<f64> = picked.iter().copied().filter(|x| x.is_finite()).collect();
            if present.len() < 2 {
                return None;
            }
            let (mean, std) = keel_stats::mean_std_sample(&present);
            let mut out = Vec::new();
            if std > 0.0 {
                out.push(
                    picked
                        .iter()
                        .map(|x| if x.is_finite() { (x - mean) / std } else { 0.0 })
                        .collect(),
                );
            }
            if present.len() < picked.len() {
                out.push(picked.iter().map(|x| if x.is_finite() { 0.0 } else { 1.0 }).collect());
            }
            out
        }
        Values::Categorical(c) => {
            let picked: Vec<u32> = sample.rows.iter().map(|r| c.codes[*r]).collect();
            let mut counts: std::collections::HashMap<u32, u64> = std::collections::HashMap::new();
            for code in &picked {
                *counts.entry(*code).or_default() += 1;
            }
            let mut levels: Vec<(u32, u64)> = counts
                .into_iter()
                .filter(|(_, n)| *n >= MIN_CATEGORY_ROWS && (*n as usize) < picked.len())
                .collect();
            levels.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            levels.truncate(TOP_CATEGORIES);
            // With every level kept, drop one as the reference (the columns would sum to one).
            let covered: u64 = levels.iter().map(|l| l.1).sum();
            if covered as usize == picked.len() {
                levels.pop();
            }
            levels
                .iter()
                .map(|(level, _)| picked.iter().map(|c| f64::from(u8::from(c == level))).collect())
                .collect()
        }
        Values::Time(_) | Values::Unsupported { .. } => return None,
    };
    (!columns.is_empty()).then(|| Block {
        column: name.to_string(),
        columns,
    })
}

/// Fitted coefficients: intercept first.
pub(crate) fn fit(x: &[&[f64]], y: &[f64], train: &[bool], lambda: f64) -> Vec<f64> {
    let d = x.len() + 1;
    let n_train = train.iter().filter(|t| **t).count() as f64;
    let pos: f64 = y.iter().zip(train).filter(|(_, t)| **t).map(|(y, _)| *y).sum();
    let prior = ((pos + 0.5) / (n_train + 1.0)).clamp(1e-6, 1.0 - 1e-6);
    let mut beta = vec![0.0; d];
    beta[0] = (prior / (1.0 - prior)).ln();
    let mut objective = penalised_loglik(x, y, train, &beta, lambda);
    for _ in 0..MAX_ITERATIONS {
        let eta = linear(x, &beta);
        let mut w = vec![0.0; y.len()];
        let mut r = vec![0.0; y.len()];
        for i in 0..y.len() {
            if train[i] {
                let p = sigmoid(eta[i]);
                w[i] = (p * (1.0 - p)).max(1e-12);
                r[i] = y[i] - p;
            }
        }
        let mut grad = vec![0.0; d];
        grad[0] = r.iter().sum();
        for j in 1..d {
            grad[j] = dot(x[j - 1], &r) - lambda * beta[j];
        }
        // Hessian of the negative objective: X' W X + lambda I (intercept unpenalised).
        let rows: Vec<Vec<f64>> = (0..d)
            .into_par_iter()
            .map(|j| {
                let wx: Vec<f64> = if j == 0 {
                    w.clone()
                } else {
                    x[j - 1].iter().zip(&w).map(|(a, b)| a * b).collect()
                };
                (0..d)
                    .map(|k| {
                        if k < j {
                            0.0
                        } else if k == 0 {
                            wx.iter().sum()
                        } else {
                            dot(&wx, x[k - 1]) + if k == j { lambda } else { 0.0 }
                        }
                    })
                    .collect()
            })
            .collect();
        let mut h = vec![0.0; d * d];
        for j in 0..d {
            for k in j..d {
                h[j * d + k] = rows[j][k];
                h[k * d + j] = rows[j][k];
            }
        }
        let Some(step) = cholesky_solve(&mut h, &grad, d) else {
            break;
        };
        // Newton step with halving until the objective does not decrease.
        let mut t = 1.0;
        let mut moved = false;
        for _ in 0..20 {
            let candidate: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + t * s).collect();
            let value = penalised_loglik(x, y, train, &candidate, lambda);
            if value >= objective - 1e-12 {
                beta = candidate;
                objective = value;
                moved = true;
                break;
            }
            t *= 0.5;
        }
        let size = step.iter().fold(0.0f64, |m, s| m.max((t * s).abs()));
        if !moved || size < TOLERANCE {
            break;
        }
    }
    beta
}

/// Probability of the positive class for every row.
pub(crate) fn predict(x: &[&[f64]], beta: &[f64]) -> Vec<f64> {
    linear(x, beta).into_iter().map(sigmoid).collect()
}

fn linear(x: &[&[f64]], beta: &[f64]) -> Vec<f64> {
    let n = x.first().map_or(0, |c| c.len());
    let mut eta = vec![beta[0]; n];
    for (col, b) in x.iter().zip(&beta[1..]) {
        for (e, v) in eta.iter_mut().zip(col.iter()) {
            *e += b * v;
        }
    }
    eta
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// log(1 + e^z) without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

fn penalised_loglik(x: &[&[f64]], y: &[f64], train: &[bool], beta: &[f64], lambda: f64) -> f64 {
    let eta = linear(x, beta);
    let ll: f64 = eta
        .iter()
        .zip(y)
        .zip(train)
        .filter(|(_, t)| **t)
        .map(|((e, y), _)| y * e - softplus(*e))
        .sum();
    ll - 0.5 * lambda * beta[1..].iter().map(|b| b * b).sum::<f64>()
}

/// Solves `h s = g` for a symmetric positive definite `h` (row-major `d x d`, overwritten).
fn cholesky_solve(h: &mut [f64], g: &[f64], d: usize) -> Option<Vec<f64>> {
    for j in 0..d {
        let mut sum = h[j * d + j];
        for k in 0..j {
            sum -= h[j * d + k] * h[j * d + k];
        }
        if sum <= 1e-300 || !sum.is_finite() {
            return None;
        }
        let diag = sum.sqrt();
        h[j * d + j] = diag;
        for i in j + 1..d {
            let mut s = h[i * d + j];
            for k in 0..j {
                s -= h[i * d + k] * h[j * d + k];
            }
            h[i * d + j] = s / diag;
        }
    }
    // L z = g, then L' s = z.
    let mut z = vec![0.0; d];
    for i in 0..d {
        let mut s = g[i];
        for k in 0..i {
            s -= h[i * d + k] * z[k];
        }
        z[i] = s / h[i * d + i];
    }
    let mut s = vec![0.0; d];
    for i in (0..d).rev() {
        let mut v = z[i];
        for k in i + 1..d {
            v -= h[k * d + i] * s[k];
        }
        s[i] = v / h[i * d + i];
    }
    Some(s)
}

/// Log loss of probabilities `p` (clipped to [EPS, 1 - EPS]) on 0/1 labels; 0 for no labels.
pub(crate) fn log_loss(p: &[f64], y: &[f64]) -> f64 {
    keel_stats::log_loss(p.iter().copied().zip(y.iter().copied())).unwrap_or(0.0)
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let (m, s) = keel_stats::mean_std_sample(v);
    (m, if s.is_nan() { 0.0 } else { s })
}

/// K-fold cross-validation of the baseline on the sample.
pub(crate) fn cross_validate(blocks: &[Block], sample: &Sample, k: usize, rows_labelled: u64) -> Baseline {
    let x: Vec<&[f64]> = blocks
        .iter()
        .flat_map(|b| b.columns.iter().map(|c| c.as_slice()))
        .collect();
    let mut fold_auc = Vec::new();
    let mut fold_ll = Vec::new();
    let mut fold_prior = Vec::new();
    for f in 0..k {
        let train: Vec<bool> = sample.fold.iter().map(|g| *g as usize != f).collect();
        let test: Vec<usize> = (0..sample.y.len()).filter(|i| !train[*i]).collect();
        let n_train = train.iter().filter(|t| **t).count();
        if test.is_empty() || n_train == 0 {
            continue;
        }
        let beta = fit(&x, &sample.y, &train, LAMBDA);
        let p = predict(&x, &beta);
        let (pt, yt): (Vec<f64>, Vec<f64>) = test.iter().map(|i| (p[*i], sample.y[*i])).unzip();
        if let Some(a) = keel_stats::auc(pt.iter().zip(&yt).map(|(p, y)| (*p, *y > 0.5))) {
            fold_auc.push(a);
        }
        fold_ll.push(log_loss(&pt, &yt));
        let prior = sample
            .y
            .iter()
            .zip(&train)
            .filter(|(_, t)| **t)
            .map(|(y, _)| *y)
            .sum::<f64>()
            / n_train as f64;
        fold_prior.push(log_loss(&vec![prior; yt.len()], &yt));
    }
    let (auc_mean, auc_sd) = mean_sd(&fold_auc);
    let (log_loss_mean, log_loss_sd) = mean_sd(&fold_ll);
    let (prior_log_loss_mean, _) = mean_sd(&fold_prior);
    Baseline {
        model: "logistic regression (L2, Newton/IRLS), standardised numerics + one-hot top categories",
        folds: k,
        rows: sample.y.len() as u64,
        rows_labelled,
        columns_used: blocks.iter().map(|b| b.column.clone()).collect(),
        excluded: Vec::new(),
        dimensions: x.len(),
        lambda: LAMBDA,
        auc_mean,
        auc_sd,
        log_loss_mean,
        log_loss_sd,
        prior_log_loss_mean,
        log_loss_gain: if prior_log_loss_mean > 0.0 {
            1.0 - log_loss_mean / prior_log_loss_mean
        } else {
            0.0
        },
        fold_auc,
        fold_log_loss: fold_ll,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;

    fn all(n: usize) -> Vec<bool> {
        vec![true; n]
    }

    #[test]
    fn recovers_known_coefficients() {
        // y ~ Bernoulli(sigmoid(-0.5 + 1.5 x1 - 1.0 x2)) on 20,000 deterministic pseudo-random rows.
        let n = 20_000u64;
        let u = |i: u64, s: u64| (stats::mix64(i ^ s) >> 11) as f64 / (1u64 << 53) as f64;
        let x1: Vec<f64> = (0..n).map(|i| u(i, 1) * 4.0 - 2.0).collect();
        let x2: Vec<f64> = (0..n).map(|i| u(i, 2) * 4.0 - 2.0).collect();
        let y: Vec<f64> = (0..n as usize)
            .map(|i| f64::from(u8::from(u(i as u64, 3) < sigmoid(-0.5 + 1.5 * x1[i] - x2[i]))))
            .collect();
        let beta = fit(&[&x1, &x2], &y, &all(n as usize), 1e-6);
        assert!((beta[0] + 0.5).abs() < 0.1, "{beta:?}");
        assert!((beta[1] - 1.5).abs() < 0.1, "{beta:?}");
        assert!((beta[2] + 1.0).abs() < 0.1, "{beta:?}");
    }

    #[test]
    fn separable_data_stays_finite_and_ranks_perfectly() {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i) / 100.0 - 1.0).collect();
        let y: Vec<f64> = x.iter().map(|v| f64::from(u8::from(*v > 0.0))).collect();
        let beta = fit(&[&x], &y, &all(200), LAMBDA);
        assert!(beta.iter().all(|b| b.is_finite()), "{beta:?}");
        assert!(beta[1] > 1.0, "{beta:?}");
        let p = predict(&[&x], &beta);
        assert_eq!(
            keel_stats::auc(p.iter().zip(&y).map(|(p, y)| (*p, *y == 1.0))),
            Some(1.0)
        );
        assert!(log_loss(&p, &y) < 0.3);
    }

    #[test]
    fn noise_gives_a_coin_flip_and_no_gain_over_the_prior() {
        let n = 5000usize;
        let x: Vec<f64> = (0..n)
            .map(|i| (stats::mix64(i as u64) % 1000) as f64 / 500.0 - 1.0)
            .collect();
        let y: Vec<f64> = (0..n)
            .map(|i| f64::from(u8::from(stats::mix64(i as u64 ^ 99).is_multiple_of(4))))
            .collect();
        let sample = Sample {
            rows: (0..n).collect(),
            fold: (0..n).map(|i| (stats::mix64(i as u64 ^ 7) % 5) as u8).collect(),
            y,
        };
        let block = Block {
            column: "x".into(),
            columns: vec![x],
        };
        let b = cross_validate(&[block], &sample, 5, n as u64);
        assert_eq!(b.fold_auc.len(), 5);
        assert!((b.auc_mean - 0.5).abs() < 0.05, "{}", b.auc_mean);
        assert!(b.log_loss_gain < 0.01, "{}", b.log_loss_gain);
        assert!(b.log_loss_mean >= b.prior_log_loss_mean - 0.01);
    }

    #[test]
    fn cholesky_by_hand() {
        // [[4, 2], [2, 3]] s = [2, 1] -> s = [0.5, 0]
        let mut h = vec![4.0, 2.0, 2.0, 3.0];
        let s = cholesky_solve(&mut h, &[2.0, 1.0], 2).unwrap();
        assert!((s[0] - 0.5).abs() < 1e-12 && s[1].abs() < 1e-12, "{s:?}");
    }
}
