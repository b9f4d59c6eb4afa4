//! The statistics only the assessment needs: distinct counts, mutual information with
//! Miller-Madow correction, hashing. Sorting, quantiles, moments and AUC are keel-stats'.

/// Number of distinct values of a sorted slice.
pub(crate) fn distinct_sorted(sorted: &[f64]) -> usize {
    if sorted.is_empty() {
        return 0;
    }
    1 + sorted.windows(2).filter(|w| w[0] != w[1]).count()
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
    fn distinct_of_sorted() {
        assert_eq!(distinct_sorted(&[1.0, 1.0, 2.0, 3.0, 3.0]), 3);
        assert_eq!(distinct_sorted(&[]), 0);
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
