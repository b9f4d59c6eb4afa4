//! `"policy": {"type": "contextual"}`, keel's learner for teams that do not tune, through a real
//! deployment: it is recorded as the concrete learner it stands for, decides and learns over
//! its context, and comes back the same after a restart.

use std::path::Path;
use std::sync::Arc;

use keel_bandit::PolicyConfig;
use keel_experiments::{Deployments, LogOptions, RewardIn, UnitContext};
use keel_store::Store;
use serde_json::{Value, json};

async fn open(dir: &Path) -> Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Deployments::open(store, dir.join("experiments"), LogOptions::default())
        .await
        .expect("open")
}

fn spec() -> Value {
    json!({
        "variants": [{"name": "voucher"}, {"name": "dessert"}, {"name": "points"}],
        "policy": {"type": "contextual"},
        "context": [{"type": "numeric", "name": "recency"}, {"type": "categorical", "name": "tier", "levels": ["bronze", "gold"]}],
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 5
    })
}

/// Gold customers convert on dessert, the others on the voucher (deterministic rewards).
async fn traffic(exps: &Deployments, from: usize, n: usize) -> usize {
    let units: Vec<String> = (from..from + n).map(|i| format!("u{i}")).collect();
    let contexts: Vec<serde_json::Map<String, Value>> = (from..from + n)
        .map(|i| {
            let mut m = serde_json::Map::new();
            m.insert("recency".into(), json!((i % 30) as f64));
            m.insert(
                "tier".into(),
                json!(if i.is_multiple_of(2) { "gold" } else { "bronze" }),
            );
            m
        })
        .collect();
    let rows: Vec<UnitContext<'_>> = units
        .iter()
        .zip(&contexts)
        .map(|(u, c)| UnitContext {
            unit: u,
            context: Some(c),
        })
        .collect();
    let out = exps.decide_many("promo", &rows, None).await.expect("decide");
    let mut right = 0;
    let mut rewards = Vec::new();
    for (i, d) in out.iter().enumerate() {
        let d = d.as_ref().expect("decided");
        let gold = (from + i).is_multiple_of(2);
        let variant = d.variant.as_str();
        let converted = (gold && variant == "dessert") || (!gold && variant == "voucher");
        right += usize::from(converted);
        assert!(d.propensity > 0.0 && d.propensity <= 1.0, "propensity {}", d.propensity);
        rewards.push(RewardIn {
            decision_id: d.decision_id.clone(),
            reward: if converted { 1.0 } else { 0.0 },
        });
    }
    for r in exps.feedback("promo", &rewards).await.expect("feedback") {
        assert!(r.expect("counted").counted);
    }
    right
}

#[tokio::test]
async fn the_default_contextual_policy_runs_a_deployment() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    let recorded = exps.store().get_deployment("promo").await.expect("revision");
    let concrete = serde_json::to_value(PolicyConfig::recommended_contextual()).expect("json");
    assert_eq!(
        recorded.spec["policy"], concrete,
        "the revision names the learner, not 'contextual'"
    );
    let early = traffic(&exps, 0, 300).await;
    let late = traffic(&exps, 300, 1_000).await;
    // Random choice is right a third of the time; the learned policy most of the time.
    assert!(
        late as f64 / 1_000.0 > 0.8,
        "right {late} of 1000 after learning (first 300: {early})"
    );
    let report = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    assert_eq!(report["policy"], PolicyConfig::recommended_contextual().name());
    assert_eq!(report["policy_version"], 1_300);
    exps.close();
    let exps = open(dir.path()).await;
    let again = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    assert_eq!(
        again["policy_version"], 1_300,
        "the learned state is back after a restart"
    );
    let after = traffic(&exps, 1_300, 300).await;
    assert!(after as f64 / 300.0 > 0.8, "right {after} of 300 after the restart");
    exps.close();
}

/// A revision that changes only a learner's exploration settings (here LinUCB's floor) decides
/// with the new settings at once and keeps what was learned; a restart agrees.
#[tokio::test]
async fn a_revision_of_a_learners_settings_applies_at_once_and_keeps_the_learning() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let with_floor = |floor: f64| {
        let mut s = spec();
        s["policy"] = json!({"type": "lin_ucb", "alpha": 0.5, "floor": floor});
        s
    };
    exps.apply("promo", &with_floor(0.01), "ana", None)
        .await
        .expect("apply");
    traffic(&exps, 0, 600).await;
    let propensities = |exps: Arc<Deployments>| async move {
        let units: Vec<String> = (0..50).map(|i| format!("p{i}")).collect();
        let mut context = serde_json::Map::new();
        context.insert("recency".into(), json!(3.0));
        context.insert("tier".into(), json!("gold"));
        let rows: Vec<UnitContext<'_>> = units
            .iter()
            .map(|u| UnitContext {
                unit: u,
                context: Some(&context),
            })
            .collect();
        exps.decide_many("promo", &rows, None)
            .await
            .expect("decide")
            .into_iter()
            .map(|d| d.expect("decided").propensity)
            .collect::<Vec<f64>>()
    };
    let before = propensities(exps.clone()).await;
    assert!(
        before.iter().any(|p| *p > 0.9),
        "learned and greedy under floor 0.01: {before:?}"
    );
    exps.apply("promo", &with_floor(0.3), "ana", None)
        .await
        .expect("revise");
    let report = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    assert_eq!(report["policy_version"], 600, "the learning is kept: {report}");
    let after = propensities(exps.clone()).await;
    assert!(
        after.iter().all(|p| (0.1 - 1e-9..=0.8 + 1e-9).contains(p)),
        "floor 0.3 (an exploration mass split over 3 variants) bounds every propensity to [0.1, 0.8]: {after:?}"
    );
    exps.close();
    let exps = open(dir.path()).await;
    let restarted = propensities(exps.clone()).await;
    assert!(
        restarted.iter().all(|p| (0.1 - 1e-9..=0.8 + 1e-9).contains(p)),
        "after a restart too: {restarted:?}"
    );
    exps.close();
}
