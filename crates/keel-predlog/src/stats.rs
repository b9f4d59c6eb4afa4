//! The statistics of a performance report: calibration here, AUC and log loss from keel-stats
//! (adapted to (score, outcome) pairs). Pure functions over (score, outcome) pairs; outcomes are in [0, 1] (an outcome of 0.5 or more counts as positive
//! for the AUC).

use serde::Serialize;

/// Probabilities are clipped to [EPS, 1 - EPS] for the log loss (keel-stats' constant).
pub use keel_stats::EPS;

/// Area under the ROC curve of `(score, outcome)` pairs (an outcome of 0.5 or more is positive;
/// ties count one half); `None` when the outcomes are all positive or all negative.
/// A thin adapter over `keel_stats::auc` for callers holding pairs.
pub fn auc(pairs: &[(f64, f64)]) -> Option<f64> {
    keel_stats::auc(pairs.iter().map(|&(s, y)| (s, y >= 0.5)))
}

/// Mean binary cross-entropy of `(score, outcome)` pairs; an adapter over `keel_stats::log_loss`.
pub fn log_loss(pairs: &[(f64, f64)]) -> Option<f64> {
    keel_stats::log_loss(pairs.iter().copied())
}

/// One reliability bin: scores in [lo, hi).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    pub lo: f64,
    pub hi: f64,
    pub count: u64,
    pub mean_score: f64,
    pub positive_rate: f64,
}

/// Reliability bins (`bins` equal-width bins over [0, 1]; empty bins are left out) and the
/// expected calibration error: the count-weighted mean of |positive rate - mean score|.
pub fn calibration(pairs: &[(f64, f64)], bins: usize) -> (Vec<Bin>, Option<f64>) {
    let bins = bins.max(1);
    let mut acc = vec![(0u64, 0.0f64, 0.0f64); bins];
    for &(s, y) in pairs {
        let b = ((s.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        acc[b].0 += 1;
        acc[b].1 += s;
        acc[b].2 += y;
    }
    let total = pairs.len() as f64;
    let mut ece = 0.0;
    let mut out = Vec::new();
    for (i, (n, s, y)) in acc.into_iter().enumerate() {
        if n == 0 {
            continue;
        }
        let (mean_score, positive_rate) = (s / n as f64, y / n as f64);
        ece += n as f64 / total * (positive_rate - mean_score).abs();
        out.push(Bin {
            lo: i as f64 / bins as f64,
            hi: (i + 1) as f64 / bins as f64,
            count: n,
            mean_score,
            positive_rate,
        });
    }
    (out, (!pairs.is_empty()).then_some(ece))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // positives 0.8, 0.4; negatives 0.6, 0.2: pairs (0.8>0.6, 0.8>0.2, 0.4<0.6, 0.4>0.2) = 3/4
        let pairs = [(0.8, 1.0), (0.4, 1.0), (0.6, 0.0), (0.2, 0.0)];
        assert_eq!(auc(&pairs), Some(0.75));
        // a tie between a positive and a negative counts one half
        assert_eq!(auc(&[(0.5, 1.0), (0.5, 0.0)]), Some(0.5));
        assert_eq!(auc(&[(0.5, 1.0), (0.7, 1.0)]), None);
    }

    #[test]
    fn log_loss_by_hand() {
        let got = log_loss(&[(0.8, 1.0), (0.4, 0.0)]).expect("some");
        let want = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert!((got - want).abs() < 1e-12);
    }

    #[test]
    fn calibration_by_hand() {
        // bin [0.2,0.3): scores 0.2, 0.2, outcomes 0, 1 -> rate 0.5, |0.5-0.2| = 0.3, weight 2/4
        // bin [0.8,0.9): scores 0.8, 0.8, outcomes 1, 1 -> rate 1.0, |1-0.8| = 0.2, weight 2/4
        let pairs = [(0.2, 0.0), (0.2, 1.0), (0.8, 1.0), (0.8, 1.0)];
        let (bins, ece) = calibration(&pairs, 10);
        assert_eq!(bins.len(), 2);
        assert_eq!(bins[0].count, 2);
        assert!((bins[0].positive_rate - 0.5).abs() < 1e-12);
        assert!((ece.expect("some") - 0.25).abs() < 1e-12);
    }
}
