//! The experiment engine over a real metadata store and real log files.

use keel_experiments::{DeploymentError, Deployments, Durability, RewardIn};
use keel_store::Store;
use serde_json::json;

async fn open(dir: &std::path::Path) -> std::sync::Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Deployments::open(store, dir.join("experiments"), Durability::Fsync)
        .await
        .expect("experiments")
}

fn ab_spec() -> serde_json::Value {
    json!({
        "variants": [{"name": "promo_a"}, {"name": "promo_b"}, {"name": "promo_c"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1, 2]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 3
    })
}

fn reward(id: &str, r: f64) -> RewardIn {
    RewardIn {
        decision_id: id.to_string(),
        reward: r,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_assignment_propensities_and_report() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    let rev = exps
        .apply("promo", &ab_spec(), "ana", Some("launch"))
        .await
        .expect("apply");
    assert_eq!(rev.revision, 1);
    let first = exps.decide("promo", Some("cust-1"), None).await.expect("decide");
    for _ in 0..5 {
        let again = exps.decide("promo", Some("cust-1"), None).await.expect("decide");
        assert_eq!(again.variant, first.variant, "sticky by unit");
        assert_ne!(again.decision_id, first.decision_id);
    }
    let expected = if first.variant == "promo_c" { 0.5 } else { 0.25 };
    assert!((first.propensity - expected).abs() < 1e-12, "{first:?}");
    for i in 0..4000 {
        let d = exps
            .decide("promo", Some(&format!("u{i}")), None)
            .await
            .expect("decide");
        let r = if d.variant == "promo_b" && i % 10 == 0 {
            1.0
        } else {
            0.0
        };
        exps.feedback("promo", &[reward(&d.decision_id, r)])
            .await
            .expect("feedback")[0]
            .as_ref()
            .expect("ok");
    }
    let report = exps.report("promo").expect("report");
    let share_c = report.variants[2].share;
    assert!((share_c - 0.5).abs() < 0.03, "share of promo_c {share_c}");
    let srm = report.srm.expect("srm for fixed weights");
    assert!(!srm.mismatch, "{srm:?}");
    assert!(report.variants[1].rate > 0.05 && report.variants[0].rate == 0.0);
    assert!(report.variants[1].prob_best > 0.99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feedback_is_idempotent_and_checked() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    exps.apply("promo", &ab_spec(), "ana", None).await.expect("apply");
    let d = exps.decide("promo", None, None).await.expect("decide");
    let before = exps.report("promo").expect("report").policy_version;
    let r1 = exps
        .feedback("promo", &[reward(&d.decision_id, 1.0)])
        .await
        .expect("feedback");
    assert!(r1[0].as_ref().expect("ok").counted);
    let r2 = exps
        .feedback("promo", &[reward(&d.decision_id, 1.0)])
        .await
        .expect("feedback");
    assert!(!r2[0].as_ref().expect("ok").counted, "the same event twice counts once");
    let after = exps.report("promo").expect("report");
    assert_eq!(after.policy_version, before + 1);
    assert_eq!(after.variants.iter().map(|v| v.rewards).sum::<u64>(), 1);

    let results = exps
        .feedback(
            "promo",
            &[
                reward(&d.decision_id, 0.0),
                reward("not-a-uuid", 1.0),
                reward("0190a3b4-1111-7000-8000-000000000000", 1.0),
                reward(&d.decision_id, f64::NAN),
                reward(&d.decision_id, 2.0),
            ],
        )
        .await
        .expect("batch");
    let codes: Vec<&str> = results
        .iter()
        .map(|r| r.as_ref().expect_err("refused").code())
        .collect();
    assert_eq!(
        codes,
        vec![
            "conflicting_reward",
            "invalid_request",
            "window_closed",
            "invalid_request",
            "invalid_request"
        ]
    );
    assert!(
        results[4]
            .as_ref()
            .expect_err("range")
            .to_string()
            .contains("outside the declared range [0, 1]")
    );
    assert_eq!(
        exps.report("promo").expect("report").policy_version,
        before + 1,
        "refusals change nothing"
    );
    let unknown = uuid::Uuid::now_v7().to_string();
    let mut results = exps.feedback("promo", &[reward(&unknown, 1.0)]).await.expect("call");
    let err = results.remove(0).expect_err("unknown");
    assert_eq!(err.code(), "unknown_decision");
    assert!(matches!(
        exps.decide("nope", None, None).await,
        Err(DeploymentError::UnknownDeployment(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_a_restart_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "square_cb", "gamma": 50.0, "floor": 0.05},
        "context": [{"type": "numeric", "name": "x"}, {"type": "categorical", "name": "seg", "levels": ["s1", "s2"]}],
        "control": {"variant": "a", "share": 0.1},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 11
    });
    let mut pending = Vec::new();
    let report_before = {
        let exps = open(dir.path()).await;
        exps.apply("ctx", &spec, "ana", None).await.expect("apply");
        for i in 0..600 {
            let ctx = json!({"x": (i % 7) as f64, "seg": if i % 2 == 0 { "s1" } else { "s2" }});
            let d = exps
                .decide("ctx", Some(&format!("u{i}")), ctx.as_object())
                .await
                .expect("decide");
            assert!(d.propensity >= 0.05 / 3.0 * 0.9 - 1e-12, "floor {d:?}");
            if i % 3 == 0 {
                pending.push(d.decision_id);
            } else {
                let r = if d.variant == "b" { 1.0 } else { 0.0 };
                exps.feedback("ctx", &[reward(&d.decision_id, r)]).await.expect("fb")[0]
                    .as_ref()
                    .expect("ok");
            }
        }
        let report = exps.report("ctx").expect("report");
        exps.close();
        report
    };
    let exps = open(dir.path()).await;
    let report_after = exps.report("ctx").expect("report");
    assert_eq!(report_after.policy_version, report_before.policy_version);
    assert_eq!(report_after.variants, report_before.variants);
    assert_eq!(
        report_after.waiting_for_reward,
        pending.len(),
        "decisions without a reward are still waiting"
    );
    // Rewards for decisions made before the restart are accepted after it.
    let late = exps.feedback("ctx", &[reward(&pending[0], 1.0)]).await.expect("fb");
    assert!(late[0].as_ref().expect("ok").counted);
    assert_eq!(
        exps.report("ctx").expect("report").policy_version,
        report_before.policy_version + 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_close_with_the_default_reward() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    let mut spec = ab_spec();
    spec["reward"]["window_seconds"] = json!(1);
    exps.apply("w", &spec, "ana", None).await.expect("apply");
    let d = exps.decide("w", None, None).await.expect("decide");
    let d2 = exps.decide("w", None, None).await.expect("decide");
    exps.feedback("w", &[reward(&d2.decision_id, 1.0)]).await.expect("fb")[0]
        .as_ref()
        .expect("ok");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    exps.close_windows().await.expect("close");
    let report = exps.report("w").expect("report");
    assert_eq!(report.waiting_for_reward, 0);
    assert_eq!(
        report.variants.iter().map(|v| v.rewards).sum::<u64>(),
        2,
        "one real, one default"
    );
    let late = exps.feedback("w", &[reward(&d.decision_id, 1.0)]).await.expect("fb");
    assert_eq!(late[0].as_ref().expect_err("closed").code(), "window_closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_definitions_change_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    exps.apply("promo", &ab_spec(), "ana", None).await.expect("apply");
    let mut bad = ab_spec();
    bad["policy"] = json!({"type": "fixed_weights", "weights": [1, -1, 1]});
    let err = exps.apply("promo", &bad, "ana", None).await.expect_err("invalid");
    assert_eq!(err.code(), "invalid_deployment");
    assert_eq!(exps.store().get_deployment("promo").await.expect("get").revision, 1);
    assert_eq!(
        exps.apply("../x", &ab_spec(), "ana", None)
            .await
            .expect_err("name")
            .code(),
        "invalid_request"
    );
    let d = exps
        .decide("promo", None, Some(json!({"x": 1}).as_object().expect("obj")))
        .await;
    assert!(d.is_ok(), "a deployment without context features ignores none: {d:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_variant_is_paused_and_the_change_is_logged() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    let spec = json!({
        "variants": [{"name": "control"}, {"name": "bad"}, {"name": "fine"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1, 1]},
        "guardrails": {"min_rewards": 200, "alpha": 0.01, "baseline": "control"},
        "seed": 2
    });
    exps.apply("g", &spec, "ana", None).await.expect("apply");
    for i in 0..3000 {
        let d = exps.decide("g", Some(&format!("u{i}")), None).await.expect("decide");
        // control and fine convert at 30%, bad at 5%.
        let r = match d.variant.as_str() {
            "bad" => f64::from(u8::from(i % 20 == 0)),
            _ => f64::from(u8::from(i % 10 < 3)),
        };
        exps.feedback("g", &[reward(&d.decision_id, r)]).await.expect("fb")[0]
            .as_ref()
            .expect("ok");
    }
    let report = exps.report("g").expect("report");
    assert!(report.variants[1].paused, "{:?}", report.variants[1]);
    assert!(!report.variants[0].paused && !report.variants[2].paused);
    // After the pause no decision goes to the paused variant, and propensities renormalise.
    for i in 0..200 {
        let d = exps.decide("g", Some(&format!("late{i}")), None).await.expect("decide");
        assert_ne!(d.variant, "bad");
        assert!((d.propensity - 0.5).abs() < 1e-12, "{d:?}");
    }
    let changes = exps
        .store()
        .list_changes(10, Some("deployment/g/"))
        .await
        .expect("changes");
    assert!(
        changes
            .iter()
            .any(|c| c.kind == "experiment.pause" && c.actor == "keel-guardrail"),
        "{changes:?}"
    );
    // The pause survives a restart (it is in the log).
    exps.close();
    drop(exps);
    let exps = open(dir.path()).await;
    assert!(exps.report("g").expect("report").variants[1].paused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_ramps_while_healthy_and_rolls_back_when_not() {
    let dir = tempfile::tempdir().expect("tmp");
    let exps = open(dir.path()).await;
    let canary = |name: &str| {
        json!({
            "variants": [{"name": "stable"}, {"name": name}],
            "policy": {"type": "fixed_weights", "weights": [1, 1]},
            "canary": {"variant": name, "steps": [0.1, 0.5, 1.0], "min_rewards_per_step": 100},
            "guardrails": {"min_rewards": 150, "alpha": 0.01},
            "seed": 4
        })
    };
    exps.apply("healthy", &canary("v2"), "ana", None).await.expect("apply");
    exps.apply("broken", &canary("v2"), "ana", None).await.expect("apply");
    assert_eq!(exps.report("healthy").expect("r").canary_share, Some(0.1));
    for (name, bad) in [("healthy", false), ("broken", true)] {
        for i in 0..6000 {
            let d = exps.decide(name, None, None).await.expect("decide");
            let r = if d.variant == "v2" && bad {
                f64::from(u8::from(i % 50 == 0))
            } else {
                f64::from(u8::from(i % 5 == 0))
            };
            exps.feedback(name, &[reward(&d.decision_id, r)]).await.expect("fb")[0]
                .as_ref()
                .expect("ok");
        }
    }
    let healthy = exps.report("healthy").expect("report");
    assert_eq!(
        healthy.canary_share,
        Some(1.0),
        "the healthy canary reached full traffic"
    );
    let broken = exps.report("broken").expect("report");
    assert_eq!(broken.canary_share, Some(0.0), "the broken canary was rolled back");
    assert!(broken.variants[1].paused);
    let last = exps.decide("broken", None, None).await.expect("decide");
    assert_eq!((last.variant.as_str(), last.propensity), ("stable", 1.0));
    let changes = exps
        .store()
        .list_changes(50, Some("deployment/"))
        .await
        .expect("changes");
    assert!(changes.iter().any(|c| c.kind == "canary.rollback"), "{changes:?}");
    assert!(changes.iter().filter(|c| c.kind == "canary.step").count() >= 2);
}
