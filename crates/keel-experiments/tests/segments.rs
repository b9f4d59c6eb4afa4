//! The report by segment over a real store and real log files: decisions with a categorical
//! and a numeric context feature are decided and rewarded, then the breakdown read back from
//! the decision log (the offline reader) equals counts kept by the test, each segment's lift
//! over the control group has its Bonferroni-adjusted interval (at 1 - 0.05/m, by hand), and
//! unknown features are refused with what the deployment has.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keel_experiments::offline::segments::{of_running, segments};
use keel_experiments::stats::Sums;
use keel_experiments::{DeploymentSpec, Deployments, Durability, RewardIn};
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

fn add(s: &mut Sums, r: f64) {
    s.exposures += 1;
    s.rewards += 1;
    s.conversions += u64::from(r > 0.0);
    s.reward_sum += r;
    s.reward_sq_sum += r * r;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_by_a_categorical_and_a_numeric_feature_from_the_log() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let raw = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "context": [{"name": "device", "type": "categorical", "levels": ["ios", "android", "web"]},
                    {"name": "spend", "type": "numeric"}],
        "control": {"policy": "uniform", "share": 0.2},
        "reward": {"kind": "binary", "min": 0, "max": 1, "window_seconds": 3600},
        "seed": 3
    });
    exps.apply("promo", &raw, "ana", None).await.expect("apply");
    let devices = ["ios", "android", "web"];
    // (device) -> (treated per variant, control)
    let mut want: BTreeMap<&str, ([Sums; 2], Sums)> = BTreeMap::new();
    for i in 0..1500u64 {
        let device = devices[(i % 3) as usize];
        let spend = (i % 40) as f64;
        let ctx = json!({"device": device, "spend": spend});
        let d = exps
            .decide("promo", Some(&format!("u{i}")), ctx.as_object())
            .await
            .expect("decide");
        // web converts more under the policy's variants than in the control group
        let r = f64::from(if device == "web" && !d.control {
            i % 3 == 2 && i % 5 < 2
        } else {
            i % 7 == 0
        });
        let fb = RewardIn {
            decision_id: d.decision_id.clone(),
            reward: r,
        };
        exps.feedback("promo", &[fb]).await.expect("feedback");
        let e = want.entry(device).or_default();
        if d.control {
            add(&mut e.1, r);
        } else {
            add(&mut e.0[usize::from(d.variant == "b")], r);
        }
    }
    let s = of_running(&exps, "promo", "device").expect("segments");
    assert_eq!(
        (s.kind.as_str(), s.rewards, s.missing, s.comparisons),
        ("categorical", 1500, 0, 3)
    );
    // Segments in the declared order of the levels.
    let values: Vec<&str> = s.segments.iter().map(|g| g.value.as_str()).collect();
    assert_eq!(values, devices);
    let level = 1.0 - 0.05 / 3.0;
    assert!((s.adjusted_level - level).abs() < 1e-15);
    assert!(s.note.contains("Bonferroni"), "{}", s.note);
    for g in &s.segments {
        let (variants, control) = &want[g.value.as_str()];
        for (v, w) in g.variants.iter().zip(variants) {
            assert_eq!(v.rewards, w.rewards, "{} {}", g.value, v.name);
            assert!((v.rate - w.mean()).abs() < 1e-12);
        }
        assert_eq!(g.control_rewards, Some(control.rewards));
        let treated = variants[0].rewards + variants[1].rewards;
        assert_eq!(g.treated_rewards, treated);
        let l = g.lift_over_control.as_ref().expect("lift");
        // Bonferroni at m = 3: z = Φ⁻¹(1 - 0.05/6) = 2.393980 (by hand, from a normal table).
        let half_95 = l.lift.difference.2 - l.lift.difference.0;
        let half_adj = l.difference_adjusted.2 - l.difference_adjusted.0;
        assert!(
            (half_adj / half_95 - 2.393980 / 1.959964).abs() < 1e-5,
            "{} {}",
            half_adj,
            half_95
        );
        assert_eq!(l.difference_adjusted.0, l.lift.difference.0);
    }
    // On web the policy-driven traffic converts at 2/5 against the control group's 1/7: the
    // adjusted interval still excludes zero there, and holds it where both convert at 1/7.
    let adjusted = |g: usize| {
        s.segments[g]
            .lift_over_control
            .as_ref()
            .expect("lift")
            .difference_adjusted
    };
    assert!(adjusted(2).1 > 0.0, "{:?}", adjusted(2));
    for g in [0, 1] {
        assert!(adjusted(g).1 < 0.0 && adjusted(g).2 > 0.0, "{:?}", adjusted(g));
    }

    // A numeric feature with 40 values: by quartile, each decision in one.
    let spec = DeploymentSpec::from_json(&raw).expect("spec");
    let logdir = dir.path().join("experiments").join("promo");
    let q = segments(&logdir, &spec, "spend").expect("spend");
    assert_eq!(q.kind, "numeric quartiles");
    assert_eq!(
        q.segments.len(),
        4,
        "{:?}",
        q.segments.iter().map(|g| &g.value).collect::<Vec<_>>()
    );
    assert_eq!(q.segments.iter().map(|g| g.rewards).sum::<u64>(), 1500);
    assert!(q.segments[0].value.starts_with('<') && q.segments[3].value.starts_with(">="));

    let e = segments(&logdir, &spec, "country").expect_err("unknown feature");
    assert!(
        e.to_string().contains("device") && e.to_string().contains("spend"),
        "{e}"
    );
    exps.close();
}
