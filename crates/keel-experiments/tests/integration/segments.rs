//! The report by segment over a real store and real log files: decisions with a categorical
//! and a numeric context feature are decided and rewarded, then the breakdown read back from
//! the decision log (the offline reader) equals counts kept by the test, each segment's lift
//! over the control group has its Bonferroni-adjusted interval (at 1 - 0.05/m, by hand), and
//! unknown features are refused with what the deployment has. Segments and CUPED compare any
//! declared metric, or the decision metric net of the variants' costs, as well.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keel_experiments::offline::ope::OpeOutcome;
use keel_experiments::offline::segments::{of_running, segments};
use keel_experiments::stats::Sums;
use keel_experiments::{DeploymentSpec, Deployments, Durability, FeedbackIn, RewardIn};
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
    let s = of_running(&exps, "promo", "device", None).expect("segments");
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
    let q = segments(&logdir, &spec, "spend", &OpeOutcome::Reward).expect("spend");
    assert_eq!(q.kind, "numeric quartiles");
    assert_eq!(
        q.segments.len(),
        4,
        "{:?}",
        q.segments.iter().map(|g| &g.value).collect::<Vec<_>>()
    );
    assert_eq!(q.segments.iter().map(|g| g.rewards).sum::<u64>(), 1500);
    assert!(q.segments[0].value.starts_with('<') && q.segments[3].value.starts_with(">="));

    let e = segments(&logdir, &spec, "country", &OpeOutcome::Reward).expect_err("unknown feature");
    assert!(
        e.to_string().contains("device") && e.to_string().contains("spend"),
        "{e}"
    );
    exps.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuped_adjusts_a_fixed_weight_test_by_a_pre_period_covariate() {
    use keel_experiments::offline::cuped::{cuped, of_running};
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let raw = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "context": [{"name": "spend_before", "type": "numeric"}],
        "reward": {"kind": "continuous", "min": 0, "max": 1000, "window_seconds": 3600},
        "seed": 9
    });
    exps.apply("ab", &raw, "ana", None).await.expect("apply");
    // Revenue follows last month's spend closely; b adds 2 on average.
    let mut kept: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for i in 0..2000u64 {
        let x = 20.0 + (i * 37 % 100) as f64;
        let ctx = json!({"spend_before": x});
        let d = exps
            .decide("ab", Some(&format!("u{i}")), ctx.as_object())
            .await
            .expect("decide");
        let b = usize::from(d.variant == "b");
        let noise = ((i * 7919) % 13) as f64 - 6.0;
        let y = 0.8 * x + noise + 2.0 * b as f64;
        let fb = RewardIn {
            decision_id: d.decision_id.clone(),
            reward: y,
        };
        exps.feedback("ab", &[fb]).await.expect("feedback");
        kept[b].push((x, y));
    }
    let c = of_running(&exps, "ab", "spend_before", None).expect("cuped");
    // theta by the test's own arithmetic
    let all: Vec<(f64, f64)> = kept.iter().flatten().copied().collect();
    let n = all.len() as f64;
    let (mx, my) = (
        all.iter().map(|p| p.0).sum::<f64>() / n,
        all.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let sxy: f64 = all.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = all.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    let theta = sxy / sxx;
    assert!((c.theta - theta).abs() < 1e-9, "{} {theta}", c.theta);
    let adj_mean = |v: &[(f64, f64)]| v.iter().map(|(x, y)| y - theta * (x - mx)).sum::<f64>() / v.len() as f64;
    let cmp = &c.comparisons[0];
    assert_eq!((c.baseline.as_str(), cmp.variant.as_str(), c.rewards), ("a", "b", 2000));
    assert!((cmp.adjusted_difference.0 - (adj_mean(&kept[1]) - adj_mean(&kept[0]))).abs() < 1e-9);
    // The covariate explains most of the variance: the adjusted interval is far narrower, and
    // the effect of 2 is inside it.
    assert!(cmp.variance_reduction > 0.9, "{}", cmp.variance_reduction);
    assert!(
        cmp.variance_reduction <= c.correlation.powi(2) + 0.01,
        "{} {}",
        cmp.variance_reduction,
        c.correlation
    );
    let (_, lo, hi) = cmp.adjusted_difference;
    assert!(lo < 2.0 && 2.0 < hi && lo > 0.0, "{lo} {hi}");
    let (_, rlo, rhi) = cmp.difference;
    assert!(
        rhi - rlo > 3.0 * (hi - lo),
        "raw [{rlo}, {rhi}] vs adjusted [{lo}, {hi}]"
    );
    assert!(cmp.adjusted_difference_cs.is_some());

    let spec = DeploymentSpec::from_json(&raw).expect("spec");
    let logdir = dir.path().join("experiments").join("ab");
    let e = cuped(&logdir, &spec, "country", &OpeOutcome::Reward).expect_err("unknown covariate");
    assert!(e.to_string().contains("spend_before"), "{e}");
    let mut bandit = raw.clone();
    bandit["policy"] = json!({"type": "thompson_gaussian"});
    let e = cuped(
        &logdir,
        &DeploymentSpec::from_json(&bandit).expect("spec"),
        "spend_before",
        &OpeOutcome::Reward,
    )
    .expect_err("bandit");
    assert!(e.to_string().contains("fixed-weight"), "{e}");
    exps.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_and_cuped_compare_any_declared_metric_or_the_net_value() {
    use keel_experiments::offline::cuped;
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let raw = json!({
        "variants": [{"name": "a", "cost": 0.5}, {"name": "b", "cost": 0.1}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "context": [{"name": "region", "type": "categorical", "levels": ["north", "south"]},
                    {"name": "spend", "type": "numeric"}],
        "reward": {"kind": "continuous", "min": 0, "max": 1, "window_seconds": 3600},
        "metrics": [{"name": "revenue", "kind": "continuous", "min": 0, "max": 1000}],
        "seed": 5
    });
    exps.apply("promo", &raw, "ana", None).await.expect("apply");
    // (region, variant) -> revenue values, and conversion net of the variant's cost
    let mut revenue: BTreeMap<(&str, usize), Sums> = BTreeMap::new();
    let mut net: BTreeMap<(&str, usize), Sums> = BTreeMap::new();
    let mut pairs: Vec<(f64, f64)> = Vec::new();
    for i in 0..1200u64 {
        let region = ["north", "south"][(i % 2) as usize];
        let spend = 10.0 + (i * 37 % 90) as f64;
        let ctx = json!({"region": region, "spend": spend});
        let d = exps
            .decide("promo", Some(&format!("u{i}")), ctx.as_object())
            .await
            .expect("decide");
        let b = usize::from(d.variant == "b");
        let converted = f64::from(i % 4 == 0);
        // Revenue arrives for one decision in three, later than the conversion.
        let mut items = vec![FeedbackIn {
            decision_id: d.decision_id.clone(),
            reward: Some(converted),
            metrics: BTreeMap::new(),
        }];
        if i % 3 == 0 {
            let value = 0.5 * spend + 3.0 * b as f64 + ((i * 7919) % 5) as f64;
            items.push(FeedbackIn {
                decision_id: d.decision_id.clone(),
                reward: None,
                metrics: BTreeMap::from([("revenue".to_string(), value)]),
            });
            add(revenue.entry((region, b)).or_default(), value);
            pairs.push((spend, value));
        }
        for out in exps.feedback_items("promo", &items).await.expect("feedback") {
            out.expect("counted");
        }
        add(net.entry((region, b)).or_default(), converted - [0.5, 0.1][b]);
    }

    // By region, on revenue: only the decisions that got a revenue value, summarised as means
    // (a normal interval, not a rate's).
    let s = of_running(&exps, "promo", "region", Some("revenue")).expect("segments on revenue");
    assert_eq!((s.outcome.as_str(), s.rewards), ("revenue", 400));
    for g in &s.segments {
        for (b, v) in g.variants.iter().enumerate() {
            let want = &revenue[&(g.value.as_str(), b)];
            assert_eq!(v.rewards, want.rewards, "{} {}", g.value, v.name);
            assert!(
                (v.rate - want.mean()).abs() < 1e-9,
                "{} {} {}",
                g.value,
                v.rate,
                want.mean()
            );
            assert!(
                v.rate_ci.0 < v.rate && v.rate < v.rate_ci.1 && v.rate_ci.1 > 1.0,
                "{:?}",
                v.rate_ci
            );
        }
    }
    // Net of costs: every rewarded decision, its conversion minus its variant's cost.
    let spec = DeploymentSpec::from_json(&raw).expect("spec");
    let logdir = dir.path().join("experiments").join("promo");
    let n = segments(&logdir, &spec, "region", &OpeOutcome::Net).expect("net");
    assert!(n.outcome.contains("minus the variant's cost"), "{}", n.outcome);
    assert_eq!(n.rewards, 1200);
    for g in &n.segments {
        for (b, v) in g.variants.iter().enumerate() {
            let want = &net[&(g.value.as_str(), b)];
            assert_eq!(v.rewards, want.rewards);
            assert!((v.rate - want.mean()).abs() < 1e-9, "{} {}", v.rate, want.mean());
        }
    }

    // CUPED on revenue, by last month's spend: theta by the test's own arithmetic.
    let c = cuped::of_running(&exps, "promo", "spend", Some("revenue")).expect("cuped on revenue");
    assert_eq!((c.outcome.as_str(), c.rewards), ("revenue", 400));
    let k = pairs.len() as f64;
    let (mx, my) = (
        pairs.iter().map(|p| p.0).sum::<f64>() / k,
        pairs.iter().map(|p| p.1).sum::<f64>() / k,
    );
    let sxy: f64 = pairs.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = pairs.iter().map(|(x, _)| (x - mx) * (x - mx)).sum();
    assert!((c.theta - sxy / sxx).abs() < 1e-9, "{} {}", c.theta, sxy / sxx);
    assert!(c.comparisons[0].variance_reduction > 0.5, "{:?}", c.comparisons);

    // An outcome the deployment does not declare is refused with the ones it has.
    let e = of_running(&exps, "promo", "region", Some("refunds")).expect_err("unknown outcome");
    assert!(
        e.to_string().contains("revenue") && e.to_string().contains("net"),
        "{e}"
    );
    exps.close();
}
