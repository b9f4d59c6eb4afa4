//! Sticky assignment: stable across releases (pinned values) and uniform.

use keel_bandit::sticky_unit;

#[test]
fn the_hash_is_xxh3_64_as_specified() {
    // Published XXH3_64bits test vector: the empty input with seed 0.
    assert_eq!(xxhash_rust::xxh3::xxh3_64(b""), 0x2D06_8005_38D3_94C2);
    // The documented construction, spelled out.
    let mut bytes = 5u64.to_le_bytes().to_vec();
    bytes.extend_from_slice(b"promocustomer-42");
    let h = xxhash_rust::xxh3::xxh3_64(&bytes);
    assert_eq!(
        sticky_unit("promo", "customer-42"),
        (h >> 11) as f64 / (1u64 << 53) as f64
    );
}

#[test]
fn assignments_never_change() {
    let pinned = [
        ("promo", "customer-42", 0.19361585614999022),
        ("promo", "customer-43", 0.32957281675847105),
        ("", "", 0.7792240817648507),
        ("ab", "c", 0.806402508907701),
        ("a", "bc", 0.6409874196630032),
    ];
    for (experiment, unit, expected) in pinned {
        assert_eq!(sticky_unit(experiment, unit), expected, "({experiment:?}, {unit:?})");
    }
}

#[test]
fn assignments_are_roughly_uniform() {
    let n = 100_000;
    let mut bins = [0usize; 10];
    for i in 0..n {
        let u = sticky_unit("email-promo-2026", &format!("customer-{i}"));
        assert!((0.0..1.0).contains(&u));
        bins[(u * 10.0) as usize] += 1;
    }
    let expected = n as f64 / 10.0;
    let chi2: f64 = bins.iter().map(|b| (*b as f64 - expected).powi(2) / expected).sum();
    // 9 degrees of freedom: P(chi2 > 27.9) = 0.001.
    assert!(chi2 < 27.9, "chi2 {chi2} bins {bins:?}");
    // Different experiments assign the same unit independently.
    let same = (0..n).filter(|i| {
        let unit = format!("customer-{i}");
        (sticky_unit("a", &unit) < 0.5) == (sticky_unit("b", &unit) < 0.5)
    });
    let share = same.count() as f64 / n as f64;
    assert!((share - 0.5).abs() < 0.01, "{share}");
}
