//! Eligibility: a decision restricted to some variants chooses only among them, with the
//! policy's distribution renormalised over them (so logged propensities stay exact), a single
//! eligible variant has propensity 1, the control group holds a unit back only when the
//! control variant is eligible, the eligible set is in the log, and bad sets are refused.

use std::path::Path;
use std::sync::Arc;

use keel_experiments::{Deployments, Durability};
use keel_store::Store;
use keel_types::ErrorKind;
use serde_json::json;

async fn open(dir: &Path) -> Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Deployments::open(store, dir.join("experiments"), Durability::Os)
        .await
        .expect("open")
}

fn names(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn decisions_stay_inside_the_eligible_set_with_exact_propensities() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1, 2]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    });
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    let engine = exps.get("promo").expect("running");
    let mut chosen = std::collections::BTreeMap::new();
    for i in 0..400 {
        let unit = format!("u{i}");
        let (d, _) = engine
            .decide_among(Some(&unit), None, Some(&names(&["a", "c"])))
            .await
            .expect("decide");
        let expected = if d.variant == "a" { 1.0 / 3.0 } else { 2.0 / 3.0 };
        assert!(d.variant == "a" || d.variant == "c", "{d:?}");
        assert!((d.propensity - expected).abs() < 1e-12, "{d:?}");
        *chosen.entry(d.variant).or_insert(0) += 1;
    }
    assert!(chosen["c"] > chosen["a"], "c has twice a's weight: {chosen:?}");
    let (only, _) = engine
        .decide_among(Some("u1"), None, Some(&names(&["b"])))
        .await
        .expect("decide");
    assert_eq!((only.variant.as_str(), only.propensity), ("b", 1.0));

    for (bad, says) in [
        (names(&[]), "'eligible' is empty"),
        (names(&["a", "zzz"]), "its variants: a, b, c"),
    ] {
        let e = engine
            .decide_among(Some("u1"), None, Some(&bad))
            .await
            .expect_err("refused");
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
    exps.close();
    let log = std::fs::read_to_string(dir.path().join("experiments/promo/events.jsonl")).expect("log");
    assert!(log.contains(r#""el":[0,2]"#), "the eligible set is logged");
    assert!(log.contains(r#""el":[1]"#));
}

#[tokio::test]
async fn the_control_group_holds_back_only_units_the_control_variant_is_eligible_for() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "thompson_beta"},
        "control": {"variant": "a", "share": 0.5},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    });
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    let engine = exps.get("promo").expect("running");
    let mut held = 0;
    for i in 0..300 {
        let unit = format!("u{i}");
        let (d, _) = engine
            .decide_among(Some(&unit), None, Some(&names(&["b", "c"])))
            .await
            .expect("decide");
        assert_ne!(d.variant, "a");
        held += usize::from(d.control);
        let (with_a, _) = engine
            .decide_among(Some(&unit), None, Some(&names(&["a", "b"])))
            .await
            .expect("decide");
        if with_a.control {
            assert_eq!(with_a.variant, "a");
        }
    }
    assert_eq!(held, 0, "no unit is held back to a variant it may not get");
    exps.close();
}

#[tokio::test]
async fn a_uniform_control_group_rotates_the_variants_with_exact_propensities() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}, {"name": "d"}],
        "policy": {"type": "fixed_weights", "weights": [1, 0, 0, 0]},
        "control": {"policy": "uniform", "share": 0.2},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600}
    });
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    let mut held = std::collections::BTreeMap::new();
    for i in 0..2000 {
        let unit = format!("u{i}");
        let d = exps.decide("promo", Some(&unit), None).await.expect("decide");
        // The policy always picks a; the holdout rotates over all four.
        let expected = match (d.control, d.variant.as_str()) {
            (false, "a") | (true, "a") => 0.2 / 4.0 + 0.8,
            (true, _) => 0.2 / 4.0,
            (false, v) => panic!("the policy never picks {v}"),
        };
        assert!((d.propensity - expected).abs() < 1e-12, "{d:?}");
        if d.control {
            *held.entry(d.variant.clone()).or_insert(0) += 1;
        }
        // Sticky: the same unit gets the same answer.
        let again = exps.decide("promo", Some(&unit), None).await.expect("decide");
        assert_eq!((again.variant, again.control), (d.variant, d.control));
    }
    let total: i32 = held.values().sum();
    assert!((300..500).contains(&total), "about a fifth held back: {held:?}");
    assert_eq!(held.len(), 4, "every variant appears in the holdout: {held:?}");
    let report = exps.report("promo").expect("report");
    let control = report.control.expect("control");
    assert_eq!(
        (control.kind.as_str(), control.description.as_str()),
        ("uniform", "uniform random over the variants")
    );
    let e = exps
        .apply(
            "bad",
            &json!({
                "variants": [{"name": "a"}],
                "policy": {"type": "thompson_beta"},
                "control": {"policy": "uniform", "variant": "a", "share": 0.1}
            }),
            "ana",
            None,
        )
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("has both"), "{e}");
    exps.close();
}
