//! Variants that carry features, through the real engine: a policy that shares one model
//! across variants learns over context x variant features; a revision that adds or removes a
//! variant keeps what was learned (a new variant starts from what similar ones taught), and a
//! restart, with or without a snapshot, rebuilds the same state from the log.

use std::path::Path;
use std::sync::Arc;

use keel_experiments::{Deployments, Durability, RewardIn};
use keel_store::Store;
use keel_types::ErrorKind;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

async fn open(dir: &Path) -> Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Deployments::open(store, dir.join("experiments"), Durability::Os)
        .await
        .expect("open")
}

fn variant(name: &str, audience: &str, value: f64) -> Value {
    json!({"name": name, "features": {"audience": audience, "value": value}})
}

fn spec(variants: Vec<Value>) -> Value {
    json!({
        "variants": variants,
        "policy": {"type": "logistic_thompson", "v": 0.5, "floor": 0.01, "shared": true},
        "context": [{"type": "categorical", "name": "age", "levels": ["young", "old"]}],
        "action_features": [
            {"type": "categorical", "name": "audience", "levels": ["young", "old"]},
            {"type": "numeric", "name": "value"}
        ],
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 3
    })
}

fn ctx(age: &str) -> serde_json::Map<String, Value> {
    json!({"age": age}).as_object().cloned().expect("object")
}

/// A variant converts well when its audience is the customer's age group.
fn converts(variant: &str, age: &str) -> f64 {
    let audience = if variant.starts_with('y') { "young" } else { "old" };
    if audience == age { 0.6 } else { 0.03 }
}

async fn run(exps: &Deployments, rounds: usize, seed: u64) {
    let engine = exps.get("promo").expect("running");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..rounds {
        let age = if rng.random::<bool>() { "young" } else { "old" };
        let (d, _) = engine
            .decide(Some(&format!("u{seed}-{i}")), Some(&ctx(age)))
            .await
            .expect("decide");
        let r = f64::from(u8::from(rng.random::<f64>() < converts(&d.variant, age)));
        let reward = RewardIn {
            decision_id: d.decision_id,
            reward: r,
        };
        let (results, _) = engine.feedback(&[reward]).await.expect("feedback");
        assert!(results[0].is_ok(), "{results:?}");
    }
}

fn share(dist: &[(String, f64)], name: &str) -> f64 {
    dist.iter().find(|(n, _)| n == name).map_or(0.0, |(_, p)| *p)
}

#[tokio::test]
async fn a_new_variant_starts_from_what_similar_ones_taught_and_survives_restarts() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply(
        "promo",
        &spec(vec![variant("y1", "young", 0.5), variant("o1", "old", 0.5)]),
        "ana",
        None,
    )
    .await
    .expect("apply");
    run(&exps, 600, 1).await;
    let (_, learned) = exps
        .get("promo")
        .expect("running")
        .distribution(Some(&ctx("old")), None)
        .expect("dist");
    assert_eq!(learned, 600, "one update per reward");

    // Revision 2 adds a second promotion for the young: the state is kept, and the shared
    // model already knows it suits the young and not the old.
    let rev2 = spec(vec![
        variant("y1", "young", 0.5),
        variant("o1", "old", 0.5),
        variant("y2", "young", 0.6),
    ]);
    exps.apply("promo", &rev2, "ana", Some("a new promotion"))
        .await
        .expect("apply rev 2");
    let engine = exps.get("promo").expect("running");
    let (old, version) = engine.distribution(Some(&ctx("old")), None).expect("dist");
    assert_eq!(version, 600, "the learned state (and the policy version) carries on");
    assert!(
        share(&old, "y2") < 0.1,
        "the new young promotion is not sent to the old: {old:?}"
    );
    assert!(share(&old, "o1") > 0.8, "{old:?}");
    let (young, _) = engine.distribution(Some(&ctx("young")), None).expect("dist");
    assert!(share(&young, "o1") < 0.1, "{young:?}");
    // Among the eligible ones only: o1 is not, so the young promotions share everything.
    let (among, _) = engine
        .distribution(Some(&ctx("old")), Some(&["y1".to_string(), "y2".to_string()]))
        .expect("dist");
    assert!(
        (share(&among, "y1") + share(&among, "y2") - 1.0).abs() < 1e-12,
        "{among:?}"
    );
    assert_eq!(share(&among, "o1"), 0.0);
    run(&exps, 200, 2).await;

    // Revision 3 removes y1: still the same learning.
    let rev3 = spec(vec![variant("o1", "old", 0.5), variant("y2", "young", 0.6)]);
    exps.apply("promo", &rev3, "ana", Some("y1 is over"))
        .await
        .expect("apply rev 3");
    let before = exps
        .get("promo")
        .expect("running")
        .distribution(Some(&ctx("young")), None)
        .expect("dist");
    assert_eq!(before.1, 800);
    assert!(share(&before.0, "y2") > 0.8, "{before:?}");
    exps.close();

    // A restart replays the log (from the snapshot taken at close) to the same state...
    let exps = open(dir.path()).await;
    let after = exps
        .get("promo")
        .expect("running")
        .distribution(Some(&ctx("young")), None)
        .expect("dist");
    assert_eq!(after, before, "restart from the snapshot");
    exps.close();
    // ...and so does a replay of the whole log, each revision under its own spec.
    std::fs::remove_dir_all(dir.path().join("experiments/promo/snapshots")).expect("no snapshots");
    let exps = open(dir.path()).await;
    let replayed = exps
        .get("promo")
        .expect("running")
        .distribution(Some(&ctx("young")), None)
        .expect("dist");
    assert_eq!(replayed, before, "a full replay");
    exps.close();
}

#[tokio::test]
async fn bad_variant_features_are_refused_with_every_problem() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let mut bad = spec(vec![
        json!({"name": "a", "features": {"audience": "young"}}),
        json!({"name": "b", "features": {"audience": 3, "value": 1.0}}),
        json!({"name": "c"}),
        json!({"name": "d", "features": {"audience": "old", "value": "high"}}),
        json!({"name": "e", "features": {"audience": "old", "value": 1, "colour": "red"}}),
    ]);
    let err = exps.apply("promo", &bad, "ana", None).await.expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let text = err.to_string();
    for needle in [
        "variant 'a' is missing feature 'value'",
        "variant 'b' feature 'audience' must be a string",
        "variant 'c' has no \"features\"",
        "variant 'd' feature 'value' must be a finite number",
        "variant 'e' has unknown feature 'colour'",
    ] {
        assert!(text.contains(needle), "missing '{needle}' in: {text}");
    }
    bad["action_features"] = json!([]);
    bad["variants"] = json!([{"name": "a", "features": {"x": 1}}, {"name": "b"}]);
    let text = exps
        .apply("promo", &bad, "ana", None)
        .await
        .expect_err("refused")
        .to_string();
    assert!(text.contains("declares no \"action_features\""), "{text}");
    assert!(
        text.contains("\"shared\": true learns over the variants' features"),
        "{text}"
    );
    assert!(exps.get("promo").is_err(), "nothing was started");
    exps.close();
}
