//! The shared math against naive implementations: sorting against a comparison sort, quantiles
//! against sort-and-index, AUC against the O(n^2) pair count, moments against textbook formulas.

use keel_stats::{
    auc, auc_sorted, log_loss, mean_std_population, mean_std_sample, order_key, percentile_sorted, quantile_sorted,
    radix_sort_u64, sort_f64,
};
use proptest::prelude::*;

/// Any f64 except NaN, with many repeats and signed zeros so ties and the sign bit are exercised.
fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        (-20i32..20).prop_map(f64::from),
        Just(-0.0),
        Just(0.0),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        any::<f64>().prop_filter("not NaN", |v| !v.is_nan()),
    ]
}

fn bits(v: &[f64]) -> Vec<u64> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Pairs won by positives (ties one half) over all positive-negative pairs.
fn naive_auc(pairs: &[(f64, bool)]) -> Option<f64> {
    let (mut wins, mut total) = (0.0, 0.0);
    for (p, _) in pairs.iter().filter(|(_, y)| *y) {
        for (n, _) in pairs.iter().filter(|(_, y)| !*y) {
            total += 1.0;
            wins += if p > n {
                1.0
            } else if p == n {
                0.5
            } else {
                0.0
            };
        }
    }
    (total > 0.0).then(|| wins / total)
}

proptest! {
    #[test]
    fn sort_f64_equals_total_cmp_sort(mut v in prop::collection::vec(value(), 0..200)) {
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_f64(&mut v);
        prop_assert_eq!(bits(&v), bits(&expected));
    }

    #[test]
    fn order_key_is_monotone(a in value(), b in value()) {
        prop_assert_eq!(order_key(a).cmp(&order_key(b)), a.total_cmp(&b));
    }

    #[test]
    fn quantile_is_the_order_statistic_or_between_neighbours(
        v in prop::collection::vec(-1e6f64..1e6, 1..100),
        q in 0.0f64..=1.0,
    ) {
        let mut sorted = v.clone();
        sorted.sort_by(f64::total_cmp);
        let got = quantile_sorted(&sorted, q);
        // naive: position q * (n - 1), interpolate between the two neighbouring order statistics
        let pos = q * (sorted.len() - 1) as f64;
        let (lo, hi) = (sorted[pos.floor() as usize], sorted[pos.ceil() as usize]);
        let naive = lo + (hi - lo) * (pos - pos.floor());
        prop_assert!((got - naive).abs() <= 1e-9 * (1.0 + naive.abs()), "{got} vs {naive}");
        prop_assert!(lo <= got && got <= hi);
        if pos.fract() == 0.0 {
            prop_assert_eq!(got, sorted[pos as usize]);
        }
        let p = percentile_sorted(&sorted, q * 100.0);
        prop_assert!((p - got).abs() <= 1e-9 * (1.0 + got.abs()), "{p} vs {got}");
    }

    #[test]
    fn auc_equals_pair_count(pairs in prop::collection::vec(((-5i32..5).prop_map(f64::from), any::<bool>()), 0..60)) {
        let got = auc(pairs.iter().copied());
        let naive = naive_auc(&pairs);
        match (got, naive) {
            (Some(g), Some(n)) => prop_assert!((g - n).abs() < 1e-12, "{g} vs {n}"),
            (g, n) => prop_assert_eq!(g, n),
        }
        // and from pre-sorted classes
        let mut pos: Vec<f64> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
        let mut neg: Vec<f64> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
        pos.sort_by(f64::total_cmp);
        neg.sort_by(f64::total_cmp);
        prop_assert_eq!(auc_sorted(&pos, &neg), got);
    }

    #[test]
    fn log_loss_is_the_mean_of_clipped_terms(pairs in prop::collection::vec((0.0f64..=1.0, 0.0f64..=1.0), 1..50)) {
        let got = log_loss(pairs.iter().copied()).expect("non-empty");
        let naive: f64 = pairs
            .iter()
            .map(|(p, y)| {
                let p = p.clamp(1e-15, 1.0 - 1e-15);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            })
            .sum::<f64>()
            / pairs.len() as f64;
        prop_assert!((got - naive).abs() < 1e-9, "{got} vs {naive}");
        prop_assert!(got >= 0.0 && got.is_finite());
    }

    #[test]
    fn moments_match_textbook(v in prop::collection::vec(-1e3f64..1e3, 2..300)) {
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let ss: f64 = v.iter().map(|x| (x - mean).powi(2)).sum();
        let (m, s) = mean_std_sample(&v);
        prop_assert!((m - mean).abs() < 1e-9);
        prop_assert!((s - (ss / (n - 1.0)).sqrt()).abs() < 1e-9);
        let (m, s) = mean_std_population(&v);
        prop_assert!((m - mean).abs() < 1e-9);
        prop_assert!((s - (ss / n).sqrt()).abs() < 1e-9);
    }
}

proptest! {
    // 20,000 values per case in a debug build: a few cases are enough to cover the radix passes
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn radix_path_equals_total_cmp_sort(seed in any::<u64>(), spread in 1u64..1_000_000) {
        // 20,000 values: above the radix threshold of both sorts
        let mut x = seed | 1;
        let mut v: Vec<f64> = (0..20_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % spread) as f64 - (spread / 2) as f64
            })
            .collect();
        let mut keys: Vec<u64> = v.iter().map(|f| f.to_bits() ^ seed).collect();
        let mut expected = v.clone();
        expected.sort_by(f64::total_cmp);
        sort_f64(&mut v);
        prop_assert_eq!(bits(&v), bits(&expected));
        let mut expected_keys = keys.clone();
        expected_keys.sort_unstable();
        radix_sort_u64(&mut keys);
        prop_assert_eq!(keys, expected_keys);
    }
}
