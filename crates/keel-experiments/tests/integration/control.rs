//! Control groups over a real store and real log files: a no-action control group holds a
//! sticky share of units back with no variant, logs their decisions with the control marker
//! and the propensity of being held back, counts their rewards toward the control group only,
//! survives a restart; the report names the control and gives the three lifts; bad control
//! specs are refused with a message that says what to write.

use std::path::Path;
use std::sync::Arc;

use keel_experiments::lift::{Lift, MeanEstimate};
use keel_experiments::stats::Sums;
use keel_experiments::{DeploymentError, Deployments, Durability, RewardIn};
use keel_store::Store;
use serde_json::json;

async fn open(dir: &Path) -> Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    Deployments::open(store, dir.join("experiments"), Durability::Os)
        .await
        .expect("open")
}

fn no_action_spec(policy: serde_json::Value) -> serde_json::Value {
    json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": policy,
        "control": {"policy": "none", "share": 0.1},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 5
    })
}

fn reward(id: &str, r: f64) -> RewardIn {
    RewardIn {
        decision_id: id.to_string(),
        reward: r,
    }
}

/// Counts one rewarded decision.
fn add(s: &mut Sums, r: f64) {
    s.exposures += 1;
    s.rewards += 1;
    s.conversions += u64::from(r > 0.0);
    s.reward_sum += r;
    s.reward_sq_sum += r * r;
}

/// Binomial(n, 0.1) within five standard deviations of its mean.
fn about_a_tenth(held: usize, n: usize) {
    let (mean, sd) = (n as f64 * 0.1, (n as f64 * 0.1 * 0.9).sqrt());
    assert!(
        (held as f64 - mean).abs() < 5.0 * sd,
        "{held} of {n} held back, expected {mean} ± {}",
        5.0 * sd
    );
}

#[tokio::test]
async fn a_no_action_control_group_is_sticky_with_its_share_and_exact_propensities() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let spec = no_action_spec(json!({"type": "fixed_weights", "weights": [1, 1]}));
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    let engine = exps.get("promo").expect("running");
    let n = 5000;
    let mut held = 0;
    for i in 0..n {
        let unit = format!("u{i}");
        let d = exps.decide("promo", Some(&unit), None).await.expect("decide");
        if d.no_action {
            held += 1;
            assert!(d.control, "no action is the control group: {d:?}");
            assert_eq!(d.chosen(), None);
            assert!((d.propensity - 0.1).abs() < 1e-12, "held back with the share: {d:?}");
            let body = serde_json::to_value(&d).expect("json");
            assert_eq!((&body["variant"], &body["no_action"]), (&json!(null), &json!(true)));
        } else {
            assert!(!d.control && (d.variant == "a" || d.variant == "b"), "{d:?}");
            assert!((d.propensity - 0.9 * 0.5).abs() < 1e-12, "{d:?}");
        }
        // Sticky: the same unit, the same answer, even when only b is eligible for it (no
        // action is always possible).
        let again = exps.decide("promo", Some(&unit), None).await.expect("decide");
        assert_eq!((&again.variant, again.no_action), (&d.variant, d.no_action));
        if i % 10 == 0 {
            let (only_b, _) = engine
                .decide_among(Some(&unit), None, Some(&["b".to_string()][..]))
                .await
                .expect("decide");
            assert_eq!(only_b.no_action, d.no_action, "{only_b:?}");
            if !only_b.no_action {
                assert_eq!((only_b.variant.as_str(), only_b.propensity), ("b", 0.9));
            }
        }
    }
    about_a_tenth(held, n);
    exps.close();
}

#[tokio::test]
async fn without_a_unit_the_share_holds_under_a_fixed_seed() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let spec = no_action_spec(json!({"type": "thompson_beta"}));
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    let n = 4000;
    let mut held = 0;
    for _ in 0..n {
        held += usize::from(exps.decide("promo", None, None).await.expect("decide").no_action);
    }
    about_a_tenth(held, n);
    exps.close();
}

#[tokio::test]
async fn no_action_decisions_are_logged_counted_for_the_control_group_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let spec = no_action_spec(json!({"type": "fixed_weights", "weights": [1, 3]}));
    exps.apply("promo", &spec, "ana", None).await.expect("apply");
    // Rewards: 1 in 10 of the held back units convert; 1 in 5 of variant a's, 1 in 4 of b's.
    let (mut held, mut treated) = (Sums::default(), Sums::default());
    let mut per_variant = [Sums::default(), Sums::default()];
    for i in 0..3000u64 {
        let d = exps
            .decide("promo", Some(&format!("u{i}")), None)
            .await
            .expect("decide");
        let r = match (d.no_action, d.variant.as_str()) {
            (true, _) => f64::from(i % 10 == 0),
            (false, "a") => f64::from(i % 5 == 0),
            (false, _) => f64::from(i % 4 == 0),
        };
        let counted = exps
            .feedback("promo", &[reward(&d.decision_id, r)])
            .await
            .expect("feedback");
        assert!(counted[0].as_ref().expect("counted").counted);
        if d.no_action {
            add(&mut held, r);
        } else {
            add(&mut per_variant[usize::from(d.variant == "b")], r);
            add(&mut treated, r);
        }
    }
    let report = exps.report("promo").expect("report");
    // The policy learns only from what it chose: the held back rewards are not updates.
    assert_eq!(report.policy_version, treated.rewards);
    let control = report.control.clone().expect("control");
    assert_eq!(
        (
            control.kind.as_str(),
            control.variant.as_deref(),
            control.share,
            control.description.as_str()
        ),
        ("none", None, 0.1, "no action")
    );
    let group = report.control_group.clone().expect("control group");
    assert_eq!((group.exposures, group.rewards), (held.exposures, held.rewards));
    assert!((group.rate - held.mean()).abs() < 1e-12);
    assert_eq!(report.treated_group.rewards, treated.rewards);
    let sum: u64 = report.variants.iter().map(|v| v.exposures).sum();
    assert_eq!(sum + held.exposures, 3000, "every decision counted once");

    // The lifts, against the same arithmetic done on the counts kept here.
    let t = MeanEstimate::of(&treated).expect("t");
    let expected = Lift::between(
        "control group: no action".into(),
        t,
        MeanEstimate::of(&held).expect("held"),
    );
    assert_eq!(report.lifts.over_control.as_ref(), Some(&expected));
    let uniform = MeanEstimate::average(&[MeanEstimate::of(&per_variant[0]), MeanEstimate::of(&per_variant[1])]);
    let over_uniform = report.lifts.over_uniform.clone().expect("uniform");
    assert_eq!(
        over_uniform,
        Lift::between(
            "uniform: the average of the 2 variants' rates".into(),
            t,
            uniform.expect("u")
        )
    );
    // By hand: uniform is the plain average of the two rates (b gets 3 times a's traffic).
    let by_hand = (per_variant[0].mean() + per_variant[1].mean()) / 2.0;
    assert!((over_uniform.baseline_rate - by_hand).abs() < 1e-12);
    assert!((over_uniform.difference.0 - (treated.mean() - by_hand)).abs() < 1e-12);
    let best = report.lifts.over_best_variant.clone().expect("best");
    assert_eq!(best.baseline, "variant b (the best single variant by rate)");
    assert_eq!(best.baseline_rewards, per_variant[1].rewards);
    let (rel, lo, hi) = best.relative.expect("relative");
    assert!((rel - (treated.mean() / per_variant[1].mean() - 1.0)).abs() < 1e-12);
    assert!(lo < rel && rel < hi);

    // The log: held back decisions carry the control marker and the share, and no variant.
    let log = std::fs::read_to_string(dir.path().join("experiments/promo/events.jsonl")).expect("log");
    let decisions: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| l.find('{').map(|at| &l[at..]))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["t"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 3000);
    let held_logged: Vec<_> = decisions.iter().filter(|e| e.get("v").is_none()).collect();
    assert_eq!(held_logged.len() as u64, held.exposures);
    assert!(
        held_logged
            .iter()
            .all(|e| e["hold"] == json!(true) && e["p"] == json!(0.1))
    );

    // A restart (from the snapshot taken at close, then from the log alone) rebuilds the same.
    exps.close();
    drop(exps);
    let again = open(dir.path()).await;
    assert_eq!(again.report("promo").expect("report"), report);
    again.close();
    drop(again);
    for snap in std::fs::read_dir(dir.path().join("experiments/promo/snapshots")).expect("snapshots") {
        std::fs::remove_file(snap.expect("entry").path()).expect("rm");
    }
    let replayed = open(dir.path()).await;
    assert_eq!(replayed.report("promo").expect("report"), report);
    replayed.close();
}

#[tokio::test]
async fn the_report_names_every_kind_of_control() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    for (name, control, kind, variant, description) in [
        (
            "named",
            json!({"variant": "a", "share": 0.2}),
            "variant",
            Some("a"),
            "variant a",
        ),
        (
            "named2",
            json!({"policy": {"variant": "b"}, "share": 0.2}),
            "variant",
            Some("b"),
            "variant b",
        ),
        (
            "uniform",
            json!({"policy": "uniform", "share": 0.3}),
            "uniform",
            None,
            "uniform random over the variants",
        ),
        (
            "none",
            json!({"policy": "none", "share": 0.05}),
            "none",
            None,
            "no action",
        ),
    ] {
        let spec = json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "fixed_weights", "weights": [1, 1]},
            "control": control,
        });
        exps.apply(name, &spec, "ana", None).await.expect("apply");
        let mut held = std::collections::BTreeSet::new();
        for i in 0..400 {
            let d = exps.decide(name, Some(&format!("u{i}")), None).await.expect("decide");
            if d.control {
                held.insert(d.chosen().map(str::to_string));
            }
        }
        let expect_held: std::collections::BTreeSet<Option<String>> = match (kind, variant) {
            ("variant", Some(v)) => [Some(v.to_string())].into(),
            ("uniform", _) => [Some("a".into()), Some("b".into())].into(),
            _ => [None].into(),
        };
        assert_eq!(held, expect_held, "{name}");
        let c = exps.report(name).expect("report").control.expect("control");
        assert_eq!(
            (c.kind.as_str(), c.variant.as_deref(), c.description.as_str()),
            (kind, variant, description)
        );
        assert_eq!(c.share, control_share(name));
    }
    exps.close();
}

fn control_share(name: &str) -> f64 {
    match name {
        "named" | "named2" => 0.2,
        "uniform" => 0.3,
        _ => 0.05,
    }
}

#[tokio::test]
async fn bad_control_specs_are_refused_with_what_to_write() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    for (control, says) in [
        (json!({"policy": "none", "variant": "a", "share": 0.1}), "has both"),
        (json!({"share": 0.1}), "\"none\" (no action)"),
        (
            json!({"policy": "none", "share": 1.0}),
            "control.share 1 must be in [0, 1)",
        ),
        (json!({"policy": "none", "share": -0.1}), "must be in [0, 1)"),
        (
            json!({"policy": {"variant": "zz"}, "share": 0.1}),
            "control variant 'zz' is not a variant (its variants: a, b)",
        ),
        (json!({"policy": "nothing", "share": 0.1}), "unknown variant `nothing`"),
        (json!({"policy": "none"}), "missing field `share`"),
        (
            json!({"policy": "none", "share": 0.1, "colour": 1}),
            "unknown field `colour`",
        ),
    ] {
        let spec = json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "ucb1"},
            "control": control,
        });
        let e = exps.apply("bad", &spec, "ana", None).await.expect_err("refused");
        assert!(matches!(e, DeploymentError::InvalidSpec(_)), "{e:?}");
        assert_eq!(e.kind(), keel_types::ErrorKind::InvalidArgument, "{e}");
        assert!(e.to_string().contains(says), "'{says}' not in: {e}");
    }
    assert!(exps.get("bad").is_err(), "nothing was deployed");
    exps.close();
}
