//! The small statistics the assessment needs, written out: sorting, exact quantiles, moments,
//! rank AUC with ties, mutual information with Miller-Madow correction, hashing.

/// Sorts values ascending in `f64::total_cmp` order (NaN must be removed first, or sorts last).
/// Large inputs use an LSD radix sort on order-preserving u64 keys (4 passes of 16 bits);
/// the same method as keel-monitor.
pub(crate) fn sort_values(values: &mut [f64]) {
    const RADIX_FROM: usize = 1 << 14;
    if values.len() < RADIX_FROM {
        values.sort_unstable_by(f64::total_cmp);
        return;
    }
    let mut keys: Vec<u64> = values.iter().map(|v| order_key(*v)).collect();
    radix_sort_u64(&mut keys);
    for (v, k) in values.iter_mut().zip(keys) {
        *v = from_order_key(k);
    }
}

/// LSD radix sort of u64 keys, 16 bits per pass; a pass whose digit is the same for every key is skipped.
pub(crate) fn radix_sort_u64(keys: &mut Vec<u64>) {
    if keys.len() < 1 << 12 {
        keys.sort_unstable();
        return;
    }
    let mut buf = vec![0u64; keys.len()];
    let mut counts = vec![0usize; 1 << 16];
    for shift in [0u32, 16, 32, 48] {
        counts.fill(0);
        for k in keys.iter() {
            counts[((k >> shift) & 0xFFFF) as usize] += 1;
        }
        if counts.contains(&keys.len()) {
            continue;
        }
        let mut offset = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = offset;
            offset += n;
        }
        for k in keys.iter() {
            let digit = ((k >> shift) & 0xFFFF) as usize;
            buf[counts[digit]] = *k;
            counts[digit] += 1;
        }
        std::mem::swap(keys, &mut buf);
    }
}

/// Maps f64 to u64 so that unsigned order equals `f64::total_cmp` order.
pub(crate) fn order_key(v: f64) -> u64 {
    let bits = v.to_bits();
    if bits >> 63 == 1 { !bits } else { bits | (1 << 63) }
}

fn from_order_key(k: u64) -> f64 {
    f64::from_bits(if k >> 63 == 1 { k & !(1 << 63) } else { !k })
}

/// Quantile `q` of sorted values with linear interpolation between order statistics
/// (numpy's default `linear` method, pandas' `quantile`).
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Mean and sample standard deviation (ddof = 1, as pandas) by two passes; std is 0 for one value.
pub(crate) fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (mean, (ss / (n - 1.0)).sqrt())
}

/// Number of distinct values of a sorted slice.
pub(crate) fn distinct_sorted(sorted: &[f64]) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    1 + sorted.windows(2).filter(|w| w[0] != w[1]).count()
}

/// Probability that a random positive scores above a random negative (ties count one half):
/// the Mann-Whitney U statistic over `P * N`, from the sorted scores of each class.
/// `None` when either class is empty.
pub(crate) fn auc_sorted(pos: &[f64], neg: &[f64]) -> Option<f64> {
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

/// AUC of `scores` against 0/1 `labels` (sorts copies; for tests and small inputs).
pub(crate) fn auc(scores: &[f64], labels: &[u8]) -> Option<f64> {
    let mut pos: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, y)| **y == 1)
        .map(|(s, _)| *s)
        .collect();
    let mut neg: Vec<f64> = scores
        .iter()
        .zip(labels)
        .filter(|(_, y)| **y == 0)
        .map(|(s, _)| *s)
        .collect();
    sort_values(&mut pos);
    sort_values(&mut neg);
    auc_sorted(&pos, &neg)
}

/// Entropy in nats of a binary variable with `pos` ones out of `n`.
pub(crate) fn binary_entropy(pos: u64, n: u64) -> f64 {
    if n == 0 || pos == 0 || pos == n {
        return 0.0;
    }
    let p = pos as f64 / n as f64;
    -(p * p.ln() + (1.0 - p) * (1.0 - p).ln())
}

/// Mutual information in nats between a discrete variable (its bins) and a binary target, from
/// counts per bin `(negatives, positives)`, minus the Miller-Madow bias `(B - 1) / (2 N)`
/// (B = non-empty bins), floored at 0.
pub(crate) fn mutual_information(table: &[(u64, u64)]) -> f64 {
    let n: u64 = table.iter().map(|(a, b)| a + b).sum();
    if n == 0 {
        return 0.0;
    }
    let nf = n as f64;
    let pos: u64 = table.iter().map(|(_, b)| b).sum();
    let py = [(n - pos) as f64 / nf, pos as f64 / nf];
    let mut mi = 0.0;
    let mut bins = 0usize;
    for (a, b) in table {
        let nb = (a + b) as f64;
        if nb == 0.0 {
            continue;
        }
        bins += 1;
        for (c, p_y) in [(*a, py[0]), (*b, py[1])] {
            if c > 0 {
                let pxy = c as f64 / nf;
                mi += pxy * (pxy / ((nb / nf) * p_y)).ln();
            }
        }
    }
    (mi - bins.saturating_sub(1) as f64 / (2.0 * nf)).max(0.0)
}

/// SplitMix64: a fast, well-mixed 64-bit hash of one integer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a string (FNV-1a then mixed), the same on every run and platform.
pub(crate) fn hash_str(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    mix64(h ^ s.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_match_numpy_linear() {
        let v = [1.0, 2.0, 3.0, 4.0, 10.0];
        // numpy.quantile([1,2,3,4,10], [0.01, 0.25, 0.5, 0.75, 0.99]) = 1.04, 2, 3, 4, 9.76
        assert!((quantile_sorted(&v, 0.01) - 1.04).abs() < 1e-12);
        assert_eq!(quantile_sorted(&v, 0.25), 2.0);
        assert_eq!(quantile_sorted(&v, 0.5), 3.0);
        assert_eq!(quantile_sorted(&v, 0.75), 4.0);
        assert!((quantile_sorted(&v, 0.99) - 9.76).abs() < 1e-12);
        let (m, s) = mean_std(&v);
        assert_eq!(m, 4.0);
        // sample std: sqrt((9+4+1+0+36)/4) = sqrt(12.5)
        assert!((s - 12.5f64.sqrt()).abs() < 1e-12);
    }

    #[test]
    fn radix_sort_orders_like_total_cmp() {
        let mut v: Vec<f64> = (0..50_000).map(|i| ((mix64(i) % 2001) as f64 - 1000.0) / 7.0).collect();
        v.push(f64::NEG_INFINITY);
        v.push(-0.0);
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_values(&mut v);
        assert_eq!(v, expected);
        assert_eq!(distinct_sorted(&[1.0, 1.0, 2.0, 3.0, 3.0]), 3);
    }

    #[test]
    fn auc_by_hand() {
        // positives 0.8, 0.4; negatives 0.5, 0.1, 0.4.
        // pairs: (0.8 > all 3) = 3; (0.4 > 0.1) = 1, (0.4 = 0.4) = 0.5, (0.4 < 0.5) = 0 -> 4.5 / 6
        let a = auc(&[0.8, 0.4, 0.5, 0.1, 0.4], &[1, 1, 0, 0, 0]).unwrap();
        assert!((a - 0.75).abs() < 1e-12, "{a}");
        assert_eq!(auc(&[1.0, 2.0], &[0, 1]), Some(1.0));
        assert_eq!(auc(&[1.0, 2.0], &[1, 0]), Some(0.0));
        assert_eq!(auc(&[3.0, 3.0, 3.0], &[1, 0, 1]), Some(0.5));
        assert_eq!(auc(&[1.0], &[1]), None);
    }

    #[test]
    fn mutual_information_by_hand() {
        // X determines Y, balanced: MI = ln 2 minus bias (2-1)/(2*100).
        let mi = mutual_information(&[(50, 0), (0, 50)]);
        assert!((mi - (2f64.ln() - 1.0 / 200.0)).abs() < 1e-12, "{mi}");
        // Independent: raw MI 0, corrected floored at 0.
        assert_eq!(mutual_information(&[(25, 25), (25, 25)]), 0.0);
        // A hand-computed case: bins (30 neg, 10 pos), (10 neg, 50 pos), N = 100.
        // p(y=1) = 0.6. MI = sum p(x,y) ln(p(x,y) / (p(x) p(y))).
        let raw = 0.3 * (0.3 / (0.4 * 0.4f64)).ln()
            + 0.1 * (0.1 / (0.4 * 0.6f64)).ln()
            + 0.1 * (0.1 / (0.6 * 0.4f64)).ln()
            + 0.5 * (0.5 / (0.6 * 0.6f64)).ln();
        let mi = mutual_information(&[(30, 10), (10, 50)]);
        assert!((mi - (raw - 0.005)).abs() < 1e-12, "{mi} vs {raw}");
        assert!((binary_entropy(50, 100) - 2f64.ln()).abs() < 1e-12);
    }
}
