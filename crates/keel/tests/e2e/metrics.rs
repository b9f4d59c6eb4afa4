//! Several metrics end to end on `keel serve`: feedback carries revenue (the decision metric)
//! and other metrics at different times over REST, a `kill -9` and a restart keep every figure,
//! and `keel experiment report` prints each metric with its guardrail verdicts.

use serde_json::json;

use crate::support::Keel;

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
