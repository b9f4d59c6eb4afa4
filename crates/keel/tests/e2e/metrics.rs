//! Several metrics end to end on `keel serve`: feedback carries revenue (the decision metric)
//! and other metrics at different times over REST, a `kill -9` and a restart keep every figure,
//! and `keel experiment report` prints each metric with its guardrail verdicts.

use serde_json::json;

use crate::support::{Keel, assert_refused, items};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_metrics_survive_a_kill_and_are_reported() {
    let keel = Keel::quiet();
    let mut server = keel.serve(&[]).ready().await;
    let spec = json!({
        "variants": [{"name": "free_dessert", "cost": 4.5}, {"name": "voucher", "cost": 1.0}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "default": 0, "window_seconds": 3600},
        "metrics": [
            {"name": "conversion", "kind": "binary"},
            {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.01}}
        ],
        "seed": 3
    });
    let r = server
        .client
        .put(server.url("/v1/deployments/promo"))
        .json(&json!({ "spec": spec }))
        .send()
        .await
        .expect("put");
    assert_eq!(r.status().as_u16(), 200);
    let mut decided = Vec::new();
    for i in 0..200 {
        let (status, d) = server
            .post(
                "/v1/deployments/promo/decide",
                &json!({ "unit_id": format!("cust-{i}") }),
            )
            .await;
        assert_eq!(status, 200, "{d}");
        decided.push(d["decision_id"].as_str().expect("id").to_string());
    }
    // The click's metrics first, the revenue of every fourth later.
    for (i, id) in decided.iter().enumerate() {
        let body = json!({"decision_id": id, "metrics": {"conversion": u8::from(i.is_multiple_of(4)), "unsubscribe": u8::from(i.is_multiple_of(50))}});
        let (status, f) = server.post("/v1/deployments/promo/feedback", &body).await;
        assert_eq!((status, &f["counted"]), (200, &json!(true)), "{f}");
    }
    for (i, id) in decided.iter().enumerate().filter(|(i, _)| i.is_multiple_of(4)) {
        let body = json!({"decision_id": id, "metrics": {"revenue": 20 + i % 7}});
        let (status, f) = server.post("/v1/deployments/promo/feedback", &body).await;
        assert_eq!((status, &f["counted"]), (200, &json!(true)), "{f}");
    }
    let (_, before) = server.get("/v1/deployments/promo/report").await;
    assert_eq!(before["metrics"][0]["name"], "conversion", "{before}");
    let n: u64 = before["metrics"][1]["variants"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|v| v["n"].as_u64().expect("n"))
        .sum();
    assert_eq!(n, 200);
    server.kill();

    let server = keel.serve(&[]).ready().await;
    let (_, after) = server.get("/v1/deployments/promo/report").await;
    assert_eq!(after["metrics"], before["metrics"], "the log gives back every metric");
    assert_eq!(after["variants"], before["variants"]);
    let (status, f) = server
        .post(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": decided[0], "metrics": {"unsubscribe": 0}}),
        )
        .await;
    assert_eq!((status, &f["code"]), (409, &json!("conflicting_metric")), "{f}");
    server.stop();

    let out = keel.ok(&["experiment", "report", "promo"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for says in [
        "revenue minus cost (what the policy maximises): free_dessert cost 4.5",
        "metric conversion (Binary)",
        "metric unsubscribe (Binary, guardrail: lower is better, max loss 0.01)",
        "GUARDRAIL (ANYTIME)",
    ] {
        assert!(text.contains(says), "'{says}' not in:\n{text}");
    }
}

/// The campaign's outcomes come back as files: `keel feedback ingest` takes other metrics
/// beside the reward (or without it), by unit and run, idempotent per decision and metric.
#[test]
fn metrics_arrive_in_bulk_beside_the_reward_and_only_once() {
    let keel = Keel::quiet();
    let spec = json!({
        "variants": [{"name": "free_dessert"}, {"name": "voucher"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "window_seconds": 3600},
        "metrics": [
            {"name": "conversion", "kind": "binary"},
            {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.01}}
        ],
        "seed": 5
    });
    let spec = keel.file("promo.json", spec.to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &spec]);
    let customers: String = std::iter::once("customer_id\n".to_owned())
        .chain((0..100).map(|i| format!("c{i}\n")))
        .collect();
    let customers = keel.file("customers.csv", customers);
    keel.ok(&["data", "ingest", &customers, "--table", "customers"]);
    let decided = keel.json(&[
        "batch",
        "decide",
        "promo",
        "--from",
        "customers",
        "--unit-column",
        "customer_id",
        "--into",
        "sends",
    ]);
    assert_eq!(decided["decided"], 100, "{decided}");
    let run = decided["run_id"].as_str().expect("run id").to_owned();

    // Every customer's click metrics; revenue only for the converted quarter (empty otherwise).
    let mut outcomes = String::from("customer_id,conv,unsubscribe,revenue\n");
    for i in 0..100 {
        let converted = i % 4 == 0;
        let revenue = if converted {
            format!("{}", 20 + i % 7)
        } else {
            String::new()
        };
        outcomes.push_str(&format!(
            "c{i},{},{},{revenue}\n",
            u8::from(converted),
            u8::from(i % 50 == 0)
        ));
    }
    let outcomes = keel.file("outcomes.csv", outcomes);
    let ingest = |extra: &[&'static str]| {
        let mut args = vec![
            "feedback",
            "ingest",
            "promo",
            "--from",
            &outcomes,
            "--unit-column",
            "customer_id",
            "--run-id",
            &run,
        ];
        args.extend_from_slice(extra);
        args
    };
    let tally = |r: &serde_json::Value| {
        ["rows", "counted", "duplicate", "late", "refused"]
            .map(|k| r[k].as_u64().unwrap_or_else(|| panic!("{k} in {r}")))
    };
    let metrics_only = ingest(&["--metric", "conversion=conv", "--metric", "unsubscribe"]);
    let first = keel.json(&metrics_only);
    assert_eq!(tally(&first), [100, 100, 0, 0, 0], "{first}");
    let revenue = keel.json(&ingest(&["--reward-column", "revenue"]));
    assert_eq!(tally(&revenue), [100, 25, 0, 0, 75], "{revenue}");
    assert_eq!(revenue["refusals"]["null_reward"]["rows"], 75, "{revenue}");
    // Again: nothing new, nothing refused.
    let again = keel.json(&metrics_only);
    assert_eq!(tally(&again), [100, 0, 100, 0, 0], "{again}");

    let report = keel.json(&["experiment", "report", "promo"]);
    let metric = |name: &str| -> (u64, f64) {
        let m = items(&report["metrics"])
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no metric {name} in {report}"));
        items(&m["variants"]).iter().fold((0, 0.0), |(n, sum), v| {
            let k = v["n"].as_u64().expect("n");
            (n + k, sum + k as f64 * v["mean"].as_f64().expect("mean"))
        })
    };
    let (n, conversions) = metric("conversion");
    assert_eq!((n, conversions.round()), (100, 25.0), "{report}");
    let (n, unsubscribes) = metric("unsubscribe");
    assert_eq!((n, unsubscribes.round()), (100, 2.0), "{report}");
    let rewards = report["treated_group"]["rewards"].as_u64().expect("rewards");
    assert_eq!(rewards, 25, "{report}");

    // A conflicting value is refused per row; the others still count.
    let conflict = keel.file("conflict.csv", "customer_id,conv\nc0,0\nc1,0\n");
    let conflicted = keel.json(&[
        "feedback",
        "ingest",
        "promo",
        "--from",
        &conflict,
        "--unit-column",
        "customer_id",
        "--run-id",
        &run,
        "--metric",
        "conversion=conv",
    ]);
    assert_eq!(tally(&conflicted), [2, 0, 1, 0, 1], "{conflicted}");
    assert_eq!(conflicted["refusals"]["conflicting_metric"]["rows"], 1, "{conflicted}");
    // Bad requests are refused before any row: an undeclared metric, a missing column.
    assert_refused(
        &keel.run(&ingest(&["--metric", "clicks"])),
        "declares no metric clicks: its metrics are [conversion, unsubscribe]",
    );
    assert_refused(
        &keel.run(&ingest(&["--metric", "conversion=nope"])),
        "no column \"nope\" for the metric",
    );
    let after = keel.json(&["experiment", "report", "promo"]);
    assert_eq!(after["metrics"], report["metrics"], "refused runs changed nothing");
}
