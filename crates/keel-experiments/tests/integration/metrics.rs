//! Several metrics on real files: feedback carries the decision metric and other declared
//! metrics at different times, each (decision, metric) counts once, the report shows every
//! metric per variant with guardrail verdicts, the policy learns the decision metric minus the
//! variant's cost, and the counters survive snapshots and replay.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keel_experiments::{DeploymentError, Deployments, FeedbackIn, LogOptions, UnitContext};
use keel_store::Store;
use serde_json::{Value, json};

async fn open(dir: &Path) -> Arc<Deployments> {
    let store = Store::open(&format!("sqlite://{}", dir.join("keel.db").display()))
        .await
        .expect("store");
    let options = LogOptions {
        segment_bytes: 16 * 1024,
        snapshot_every_records: u64::MAX,
        snapshot_every: std::time::Duration::from_secs(3600),
        ..LogOptions::default()
    };
    Deployments::open(store, dir.join("experiments"), options)
        .await
        .expect("open")
}

/// The restaurant chain's promotional e-mails: judged on revenue (the decision metric, minus
/// each promotion's cost), with conversions, items and unsubscribes beside it.
fn spec() -> Value {
    json!({
        "variants": [{"name": "free_dessert", "cost": 4.5}, {"name": "voucher", "cost": 1.0}, {"name": "nothing_special"}],
        "policy": {"type": "epsilon_greedy", "epsilon": 0.3},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "default": 0, "window_seconds": 3600},
        "metrics": [
            {"name": "conversion", "kind": "binary"},
            {"name": "items", "kind": "count", "max": 50},
            {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.01}}
        ],
        "seed": 5
    })
}

fn item(id: &str, reward: Option<f64>, metrics: &[(&str, f64)]) -> FeedbackIn {
    FeedbackIn {
        decision_id: id.to_string(),
        reward,
        metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
    }
}

/// What one variant's decisions were sent: items, unsubscribes and revenues.
type Sent = (Vec<f64>, Vec<f64>, Vec<f64>);

async fn one(exps: &Deployments, f: FeedbackIn) -> Result<bool, DeploymentError> {
    let mut r = exps.feedback_items("promo", &[f]).await.expect("feedback");
    r.pop().expect("one answer").map(|o| o.counted)
}

/// Decides for `n` units from `from`; returns (decision id, variant).
async fn decide(exps: &Deployments, from: usize, n: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for i in from..from + n {
        let unit = format!("u{i}");
        let d = exps.decide("promo", Some(unit.as_str()), None).await.expect("decide");
        out.push((d.decision_id, d.variant));
    }
    out
}

fn report(exps: &Deployments) -> Value {
    let mut r = serde_json::to_value(exps.report("promo").expect("report")).expect("json");
    r.as_object_mut().map(|o| o.remove("generated_at"));
    r
}

#[tokio::test]
async fn metrics_arrive_at_different_times_and_count_once() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    exps.apply("promo", &spec(), "ana", None).await.expect("apply");
    let decided = decide(&exps, 0, 60).await;
    let mut expected: BTreeMap<String, Sent> = BTreeMap::new();
    for (i, (id, variant)) in decided.iter().enumerate() {
        let e = expected.entry(variant.clone()).or_default();
        // First the click-through's metrics, then (for some) the revenue, at another time.
        let items = (i % 4) as f64;
        let unsub = f64::from(i % 10 == 0);
        assert!(
            one(&exps, item(id, None, &[("items", items), ("unsubscribe", unsub)]))
                .await
                .expect("metrics")
        );
        e.0.push(items);
        e.1.push(unsub);
        if i % 3 == 0 {
            let revenue = 10.0 + i as f64;
            // The decision metric may come under its name among the metrics.
            assert!(
                one(&exps, item(id, None, &[("revenue", revenue)]))
                    .await
                    .expect("revenue")
            );
            e.2.push(revenue);
            // The same again counts once; with a new metric beside it, the new one counts.
            assert!(!one(&exps, item(id, Some(revenue), &[])).await.expect("duplicate"));
            assert!(
                one(&exps, item(id, Some(revenue), &[("conversion", 1.0)]))
                    .await
                    .expect("conversion")
            );
            assert!(
                !one(&exps, item(id, None, &[("conversion", 1.0), ("items", items)]))
                    .await
                    .expect("dup")
            );
        }
    }
    let (id, _) = &decided[0];
    let err = one(&exps, item(id, None, &[("items", 7.0)]))
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), "conflicting_metric");
    assert!(err.to_string().contains("already has items = 0"), "{err}");
    let err = one(&exps, item(id, Some(99.0), &[])).await.expect_err("conflict");
    assert_eq!(err.code(), "conflicting_reward");
    // Nothing of a refused item is recorded: a new metric beside a conflicting one is not.
    let (id1, _) = &decided[1];
    let err = one(&exps, item(id1, None, &[("conversion", 1.0), ("items", 2.0)]))
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), "conflicting_metric");
    for (bad, needle) in [
        (
            item(id, None, &[("clicks", 1.0)]),
            "its metrics: revenue, conversion, items, unsubscribe",
        ),
        (item(id, None, &[("conversion", 0.5)]), "is binary"),
        (item(id, None, &[("items", 2.5)]), "whole number"),
        (item(id, None, &[("items", 51.0)]), "outside the declared range [0, 50]"),
        (item(id, None, &[]), "neither"),
        (item(id, Some(1.0), &[("revenue", 2.0)]), "twice"),
        (item("not-a-uuid", None, &[("items", 1.0)]), "not a decision id"),
        (
            item(&uuid::Uuid::now_v7().to_string(), None, &[("items", 1.0)]),
            "unknown decision",
        ),
    ] {
        let err = one(&exps, bad).await.expect_err(needle);
        assert!(err.to_string().contains(needle), "{needle}: {err}");
    }
    // Decision 1's conversion was never received: the refused item left nothing behind.
    assert!(
        one(&exps, item(id1, None, &[("conversion", 0.0)]))
            .await
            .expect("conversion")
    );

    let r = report(&exps);
    assert_eq!(r["reward_name"], "revenue");
    let metrics = r["metrics"].as_array().expect("metrics");
    assert_eq!(
        metrics
            .iter()
            .map(|m| m["name"].as_str().expect("name"))
            .collect::<Vec<_>>(),
        ["conversion", "items", "unsubscribe"]
    );
    let variant_row = |m: &Value, name: &str| -> Value {
        m["variants"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .expect("row")
    };
    for (variant, (items, unsubs, revenues)) in &expected {
        let row = variant_row(&metrics[1], variant);
        assert_eq!(row["n"], items.len());
        let mean = items.iter().sum::<f64>() / items.len() as f64;
        assert!((row["mean"].as_f64().expect("mean") - mean).abs() < 1e-12, "{row}");
        let row = variant_row(&metrics[2], variant);
        assert_eq!(row["n"], unsubs.len());
        assert!(row["guardrail"]["verdict"].is_string(), "{row}");
        let v = r["variants"]
            .as_array()
            .expect("variants")
            .iter()
            .find(|v| v["name"] == *variant)
            .expect("v");
        assert_eq!(v["rewards"], revenues.len());
        let cost = match variant.as_str() {
            "free_dessert" => 4.5,
            "voucher" => 1.0,
            _ => 0.0,
        };
        assert_eq!(v["cost"], cost);
        if !revenues.is_empty() {
            let mean = revenues.iter().sum::<f64>() / revenues.len() as f64;
            assert!(
                (v["net_value"].as_f64().expect("net") - (mean - cost)).abs() < 1e-9,
                "{v}"
            );
        }
    }
    // Few values: no verdict can be reached yet, and the report says which baseline it uses.
    assert!(
        metrics[2]["baseline"]
            .as_str()
            .expect("baseline")
            .contains("lowest mean of 'unsubscribe'")
    );
}

#[tokio::test]
async fn the_policy_learns_the_decision_metric_minus_the_cost() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let mut s = spec();
    s["policy"] = json!({"type": "epsilon_greedy", "epsilon": 0.0});
    s["variants"] = json!([{"name": "free_dessert", "cost": 9.0}, {"name": "voucher", "cost": 0.0}]);
    exps.apply("promo", &s, "ana", None).await.expect("apply");
    // Untried variants first: free_dessert earns 10 (net 1), voucher 5 (net 5).
    let first = decide(&exps, 0, 1).await;
    assert_eq!(first[0].1, "free_dessert");
    one(&exps, item(&first[0].0, Some(10.0), &[])).await.expect("reward");
    let second = decide(&exps, 1, 1).await;
    assert_eq!(second[0].1, "voucher");
    one(&exps, item(&second[0].0, Some(5.0), &[])).await.expect("reward");
    // Greedy on what it learned: the voucher's 5 beats the dessert's 10 - 9.
    let next = decide(&exps, 2, 5).await;
    assert!(next.iter().all(|(_, v)| v == "voucher"), "{next:?}");
    let r = report(&exps);
    let dessert = &r["variants"][0];
    assert_eq!(
        (dessert["rate"].as_f64(), dessert["net_value"].as_f64()),
        (Some(10.0), Some(1.0))
    );

    // Without costs the same rewards make the dessert the choice.
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    s["variants"] = json!([{"name": "free_dessert"}, {"name": "voucher"}]);
    exps.apply("promo", &s, "ana", None).await.expect("apply");
    let first = decide(&exps, 0, 1).await;
    one(&exps, item(&first[0].0, Some(10.0), &[])).await.expect("reward");
    let second = decide(&exps, 1, 1).await;
    one(&exps, item(&second[0].0, Some(5.0), &[])).await.expect("reward");
    let next = decide(&exps, 2, 5).await;
    assert!(next.iter().all(|(_, v)| v == "free_dessert"), "{next:?}");
    assert!(report(&exps)["variants"][0].get("net_value").is_none());
}

/// Enough traffic for a verdict: 10% unsubscribe after the dessert, 2% after the voucher (the
/// lowest: the baseline), 5% after nothing special; 1% is tolerated.
async fn traffic(exps: &Deployments, from: usize, n: usize) -> Vec<(String, String)> {
    let units: Vec<String> = (from..from + n).map(|i| format!("u{i}")).collect();
    let rows: Vec<UnitContext<'_>> = units.iter().map(|u| UnitContext { unit: u, context: None }).collect();
    let decided: Vec<(String, String)> = exps
        .decide_many("promo", &rows, None)
        .await
        .expect("decide")
        .into_iter()
        .map(|d| {
            let d = d.expect("decided");
            (d.decision_id, d.variant)
        })
        .collect();
    let items: Vec<FeedbackIn> = decided
        .iter()
        .enumerate()
        .map(|(k, (id, variant))| {
            let i = from + k;
            let unsub = match variant.as_str() {
                "free_dessert" => i % 100 < 10,
                "voucher" => i % 100 < 2,
                _ => i % 100 < 5,
            };
            let mut metrics = vec![("unsubscribe", f64::from(unsub)), ("items", (i % 3) as f64)];
            if i.is_multiple_of(2) {
                metrics.push(("conversion", f64::from(i.is_multiple_of(7))));
            }
            item(id, i.is_multiple_of(5).then_some((i % 40) as f64), &metrics)
        })
        .collect();
    for r in exps.feedback_items("promo", &items).await.expect("feedback") {
        assert!(r.expect("counted").counted);
    }
    decided
}

#[tokio::test]
async fn metric_counters_survive_snapshots_and_replay() {
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let mut s = spec();
    s["policy"] = json!({"type": "fixed_weights", "weights": [1, 1, 1]});
    exps.apply("promo", &s, "ana", None).await.expect("apply");
    let early = traffic(&exps, 0, 4500).await;
    let snap = exps.get("promo").expect("running").snapshot().await.expect("snapshot");
    assert!(snap.is_some());
    traffic(&exps, 4500, 1500).await;
    let before = report(&exps);
    drop(exps);

    let exps = open(dir.path()).await;
    let opened = exps.get("promo").expect("running").opened();
    assert!(opened.snapshot.is_some(), "{opened:?}");
    assert_eq!(report(&exps), before, "the snapshot and the tail give the same figures");
    // Which decision had which metric came through the snapshot: a retry is a duplicate, a
    // different value a conflict.
    let (id, _) = &early[1];
    assert!(!one(&exps, item(id, None, &[("items", 1.0)])).await.expect("duplicate"));
    let err = one(&exps, item(id, None, &[("items", 2.0)]))
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), "conflicting_metric");
    exps.close();

    let snaps = dir.path().join("experiments/promo/snapshots");
    std::fs::rename(&snaps, dir.path().join("aside")).expect("move");
    let exps = open(dir.path()).await;
    assert_eq!(exps.get("promo").expect("running").opened().snapshot, None);
    assert_eq!(report(&exps), before, "a full replay agrees");

    let unsub = &before["metrics"][2];
    let row = |name: &str| {
        unsub["variants"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|v| v["name"] == name)
            .cloned()
            .expect("row")
    };
    assert_eq!(row("voucher")["guardrail"]["verdict"], "baseline", "{unsub}");
    let dessert = row("free_dessert");
    assert_eq!(dessert["guardrail"]["verdict"], "breached", "{dessert}");
    let loss = dessert["guardrail"]["loss"].as_f64().expect("loss");
    assert!((0.06..0.10).contains(&loss), "{loss}");
    assert!(dessert["vs_baseline"]["difference_cs"].is_array(), "{dessert}");
    assert!(dessert["mean_cs"].is_array() && dessert["mean_ci"].is_array());
}

#[tokio::test]
async fn a_breached_guardrail_metric_pauses_the_variant_unless_it_only_reports() {
    for action in [None, Some("report")] {
        let dir = tempfile::tempdir().expect("dir");
        let exps = open(dir.path()).await;
        let mut s = spec();
        s["policy"] = json!({"type": "fixed_weights", "weights": [1, 1, 1]});
        if let Some(a) = action {
            s["metrics"][2]["guardrail"]["action"] = json!(a);
        }
        exps.apply("promo", &s, "ana", None).await.expect("apply");
        traffic(&exps, 0, 6000).await;
        let r = report(&exps);
        let paused = |r: &Value, name: &str| {
            r["variants"]
                .as_array()
                .expect("variants")
                .iter()
                .find(|v| v["name"] == name)
                .map(|v| v["paused"].as_bool().expect("paused"))
                .expect("row")
        };
        // 10% and 5% unsubscribes against the voucher's 2%, 1 point tolerated: both breach.
        let pauses = action.is_none();
        assert_eq!(paused(&r, "free_dessert"), pauses, "{action:?}: {}", r["variants"]);
        assert_eq!(paused(&r, "nothing_special"), pauses, "{action:?}: {}", r["variants"]);
        assert!(
            !paused(&r, "voucher"),
            "the baseline is never paused: {}",
            r["variants"]
        );
        let next = decide(&exps, 20_000, 300).await;
        assert_eq!(next.iter().all(|(_, v)| v == "voucher"), pauses, "{action:?}");
        let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
            .await
            .expect("store");
        let changes = store
            .list_changes(50, Some("deployment/promo/guardrail"))
            .await
            .expect("changes");
        let paused_changes: Vec<_> = changes.iter().filter(|c| c.kind == "experiment.pause").collect();
        if pauses {
            assert_eq!(paused_changes.len(), 2, "{changes:?}");
            let details: Vec<String> = paused_changes.iter().map(|c| c.details.to_string()).collect();
            assert!(
                details.iter().any(|d| d.contains("free_dessert"))
                    && details
                        .iter()
                        .all(|d| d.contains("guardrail metric 'unsubscribe' breached")),
                "{details:?}"
            );
        } else {
            assert!(paused_changes.is_empty(), "{changes:?}");
        }
        // The pause was logged: a restart (full replay) keeps it.
        exps.close();
        let exps = open(dir.path()).await;
        assert_eq!(paused(&report(&exps), "free_dessert"), pauses);
        exps.close();
    }
}

#[tokio::test]
async fn ope_reads_the_decision_metric_its_net_value_or_another_metric() {
    use keel_experiments::offline::ope::{OpeOutcome, deployment_log_of};
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let mut s = spec();
    s["policy"] = json!({"type": "fixed_weights", "weights": [1, 1, 1]});
    s["metrics"][2]["guardrail"]["action"] = json!("report");
    exps.apply("promo", &s, "ana", None).await.expect("apply");
    let decided = traffic(&exps, 0, 600).await;
    let spec = keel_experiments::DeploymentSpec::from_json(&s).expect("spec");
    let log_dir = dir.path().join("experiments/promo");
    let cost = |variant: &str| match variant {
        "free_dessert" => 4.5,
        "voucher" => 1.0,
        _ => 0.0,
    };
    // What traffic sent: a reward of i % 40 for every fifth unit, a conversion for every even one.
    let rewarded: Vec<(f64, f64)> = decided
        .iter()
        .enumerate()
        .filter(|(i, _)| i.is_multiple_of(5))
        .map(|(i, (_, v))| ((i % 40) as f64, (i % 40) as f64 - cost(v)))
        .collect();
    let converted: Vec<f64> = (0..decided.len())
        .filter(|i| i.is_multiple_of(2))
        .map(|i| f64::from(i.is_multiple_of(7)))
        .collect();

    let reward = deployment_log_of(&log_dir, &spec, &OpeOutcome::Reward).expect("reward");
    assert_eq!(reward.rewards, rewarded.iter().map(|r| r.0).collect::<Vec<_>>());
    let net = deployment_log_of(&log_dir, &spec, &OpeOutcome::Net).expect("net");
    assert_eq!(net.rewards, rewarded.iter().map(|r| r.1).collect::<Vec<_>>());
    assert_eq!(net.actions, reward.actions);
    let outcome = OpeOutcome::parse("conversion", &spec).expect("a metric");
    assert_eq!(outcome, OpeOutcome::Metric("conversion".into()));
    let conversion = deployment_log_of(&log_dir, &spec, &outcome).expect("conversion");
    assert_eq!(conversion.rewards, converted);
    assert_eq!(
        OpeOutcome::parse("revenue", &spec).expect("decision metric"),
        OpeOutcome::Reward
    );
    let err = OpeOutcome::parse("clicks", &spec).expect_err("unknown").to_string();
    assert!(
        err.contains("'clicks' is not an outcome") && err.contains("unsubscribe"),
        "{err}"
    );
    exps.close();
}

/// A reader of the whole log while the writer keeps closing the active file into segments (16
/// KiB each here): every read holds at least every reward acknowledged before it started. (A
/// read that listed the segments before a roll and opened the active file after it used to
/// miss the rolled records without a word.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_log_read_during_segment_rolls_misses_nothing_acknowledged() {
    use keel_experiments::offline::ope::deployment_log;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().expect("dir");
    let exps = open(dir.path()).await;
    let mut s = spec();
    s["policy"] = json!({"type": "fixed_weights", "weights": [1, 1, 1]});
    exps.apply("promo", &s, "ana", None).await.expect("apply");
    let spec = keel_experiments::DeploymentSpec::from_json(&s).expect("spec");
    let log_dir = dir.path().join("experiments/promo");
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let writer = {
        let (exps, acknowledged) = (exps.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for round in 0..40 {
                let decided = decide(&exps, round * 50, 50).await;
                let items: Vec<FeedbackIn> = decided.iter().map(|(id, _)| item(id, Some(1.0), &[])).collect();
                exps.feedback_items("promo", &items).await.expect("feedback");
                acknowledged.fetch_add(items.len(), Ordering::SeqCst);
            }
        })
    };
    let mut reads = 0;
    while !writer.is_finished() {
        let before = acknowledged.load(Ordering::SeqCst);
        let (dir, spec) = (log_dir.clone(), spec.clone());
        let read = tokio::task::spawn_blocking(move || deployment_log(&dir, &spec))
            .await
            .expect("join");
        if let Ok(log) = read {
            assert!(
                log.rewards.len() >= before,
                "read {} rewards, {before} were acknowledged",
                log.rewards.len()
            );
            reads += 1;
        }
    }
    writer.await.expect("writer");
    assert!(reads > 0);
    let segments = std::fs::read_dir(log_dir.join("segments")).map_or(0, |d| d.count());
    assert!(segments > 5, "the log rolled {segments} times");
    exps.close();
}
