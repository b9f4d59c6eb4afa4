//! Scores of a binary classifier: AUC (Mann-Whitney U with ties counting one half) and log loss.

/// Probabilities are clipped to [EPS, 1 - EPS] for the log loss (scikit-learn's former default).
pub const EPS: f64 = 1e-15;

/// Probability that a random positive scores above a random negative (ties count one half):
/// the Mann-Whitney U statistic over `P * N`, from the ascending scores of each class.
/// `None` when either class is empty.
pub fn auc_sorted(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let (mut below, mut i) = (0usize, 0usize);
    let mut u = 0.0f64;
    while i < pos.len() {
        let v = pos[i];
        let mut j = i;
        while j < pos.len() && pos[j] == v {
            j += 1;
        }
        while below < neg.len() && neg[below] < v {
            below += 1;
        }
        let mut equal = below;
        while equal < neg.len() && neg[equal] == v {
            equal += 1;
        }
        u += (j - i) as f64 * (below as f64 + 0.5 * (equal - below) as f64);
        i = j;
    }
    Some(u / (pos.len() as f64 * neg.len() as f64))
}

/// AUC of `(score, positive)` pairs: splits the classes, sorts each and calls `auc_sorted`.
/// `None` when either class is empty.
pub fn auc(pairs: impl IntoIterator<Item = (f64, bool)>) -> Option<f64> {
    let (mut pos, mut neg) = (Vec::new(), Vec::new());
    for (score, positive) in pairs {
        if positive { pos.push(score) } else { neg.push(score) }
    }
    crate::sort_f64(&mut pos);
    crate::sort_f64(&mut neg);
    auc_sorted(&pos, &neg)
}

/// Mean binary cross-entropy of `(probability, outcome)` pairs, outcomes in [0, 1] and
/// probabilities clipped to [EPS, 1 - EPS]; `None` when there are no pairs.
pub fn log_loss(pairs: impl IntoIterator<Item = (f64, f64)>) -> Option<f64> {
    let (mut sum, mut n) = (0.0f64, 0usize);
    for (p, y) in pairs {
        let p = p.clamp(EPS, 1.0 - EPS);
        sum += -(y * p.ln() + (1.0 - y) * (1.0 - p).ln());
        n += 1;
    }
    (n > 0).then(|| sum / n as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_by_hand() {
        // positives 0.8, 0.4; negatives 0.5, 0.1, 0.4: (3 + 1 + 0.5) / 6
        let a = auc([(0.8, true), (0.4, true), (0.5, false), (0.1, false), (0.4, false)]).expect("two classes");
        assert!((a - 0.75).abs() < 1e-12, "{a}");
        assert_eq!(auc([(1.0, false), (2.0, true)]), Some(1.0));
        assert_eq!(auc([(1.0, true), (2.0, false)]), Some(0.0));
        assert_eq!(auc([(3.0, true), (3.0, false), (3.0, true)]), Some(0.5));
        assert_eq!(auc([(1.0, true)]), None);
    }

    #[test]
    fn log_loss_by_hand() {
        let got = log_loss([(0.8, 1.0), (0.4, 0.0)]).expect("some");
        let want = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        assert!((got - want).abs() < 1e-12);
        assert_eq!(log_loss([]), None);
        // a certain, wrong prediction is clipped, not infinite
        assert!((log_loss([(0.0, 1.0)]).expect("some") - -(EPS.ln())).abs() < 1e-9);
    }
}
