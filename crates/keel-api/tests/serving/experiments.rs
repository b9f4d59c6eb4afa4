//! The experimentation API over REST and gRPC on a real server.

use keel_api::experiments_proto::experiments_client::ExperimentsClient;
use keel_api::experiments_proto::{
    DecideRequest, FeatureValue, FeedbackBatchRequest, FeedbackRequest, ReportRequest, feature_value,
};
use serde_json::json;

use crate::support::TestServer;

fn spec() -> serde_json::Value {
    json!({
        "variants": [{"name": "promo_a"}, {"name": "promo_b"}],
        "policy": {"type": "lin_ucb", "alpha": 0.5, "floor": 0.1},
        "context": [{"type": "numeric", "name": "spend"}, {"type": "categorical", "name": "device", "levels": ["ios", "web"]}],
        "control": {"variant": "promo_a", "share": 0.2},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 600},
        "seed": 1
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_decide_feedback_report_over_rest() {
    let server = TestServer::start(&[]).await;
    let (put_status, put) = server
        .put_json("/v1/deployments/promo", &json!({"spec": spec(), "reason": "launch"}))
        .await;
    assert_eq!(put_status, 200, "{put}");
    assert_eq!(put["revision"], 1);

    let ctx = json!({"spend": 42.0, "device": "ios"});
    let (status, d) = server
        .post_json(
            "/v1/deployments/promo/decide",
            &json!({"unit_id": "c1", "context": ctx}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert!(d["decision_id"].as_str().expect("id").len() == 36);
    assert!(["promo_a", "promo_b"].contains(&d["variant"].as_str().expect("variant")));
    let p = d["propensity"].as_f64().expect("p");
    assert!(p > 0.0 && p <= 1.0);
    // Restricted to one eligible variant: that one, with propensity 1; an unknown one is a 400.
    let (status, only) = server
        .post_json(
            "/v1/deployments/promo/decide",
            &json!({"unit_id": "c2", "context": ctx, "eligible": ["promo_b"]}),
        )
        .await;
    assert_eq!(status, 200, "{only}");
    assert_eq!(
        (only["variant"].clone(), only["propensity"].clone()),
        (json!("promo_b"), json!(1.0))
    );
    let (status, bad) = server
        .post_json(
            "/v1/deployments/promo/decide",
            &json!({"unit_id": "c2", "context": ctx, "eligible": ["promo_z"]}),
        )
        .await;
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["error"].as_str().expect("error").contains("promo_a, promo_b"),
        "{bad}"
    );
    let (status, f) = server
        .post_json(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": d["decision_id"], "reward": 1.0}),
        )
        .await;
    assert_eq!((status, f["counted"].clone()), (200, json!(true)));
    let (status, f) = server
        .post_json(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": d["decision_id"], "reward": 1.0}),
        )
        .await;
    assert_eq!((status, f["counted"].clone()), (200, json!(false)), "idempotent");

    // Bad input: clear 4xx, nothing changes.
    let cases = vec![
        (
            "/v1/deployments/nope/decide",
            json!({"context": ctx}),
            404,
            "deployment 'nope' does not exist",
        ),
        (
            "/v1/deployments/promo/decide",
            json!({"context": {"spend": 1.0}}),
            400,
            "missing feature 'device'",
        ),
        (
            "/v1/deployments/promo/decide",
            json!({"context": {"spend": "a lot", "device": "ios"}}),
            400,
            "must be a finite number",
        ),
        (
            "/v1/deployments/promo/decide",
            json!({"context": ctx, "colour": 1}),
            400,
            "unknown field",
        ),
        (
            "/v1/deployments/promo/feedback",
            json!({"decision_id": d["decision_id"], "reward": 0.0}),
            409,
            "already has reward 1",
        ),
        (
            "/v1/deployments/promo/feedback",
            json!({"decision_id": "x", "reward": 1.0}),
            400,
            "is not a decision id",
        ),
        (
            "/v1/deployments/promo/feedback",
            json!({"decision_id": d["decision_id"], "reward": 7.0}),
            400,
            "outside the declared range",
        ),
    ];
    for (path, body, status, needle) in cases {
        let (got, response) = server.post_json(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {response}");
        assert!(
            response["error"].as_str().expect("error").contains(needle),
            "{response}"
        );
    }
    let (status, response) = server
        .post_raw("/v1/deployments/promo/feedback", b"{not json".to_vec())
        .await;
    assert_eq!(status, 400, "{response}");
    let (bad_spec_status, bad_spec) = server
        .put_json(
            "/v1/deployments/promo",
            &json!({"spec": {"variants": [], "policy": {"type": "ucb1"}}}),
        )
        .await;
    assert_eq!(bad_spec_status, 400, "{bad_spec}");

    // Batch feedback answers per item.
    let mut ids = Vec::new();
    for i in 0..20 {
        let (_, d) = server
            .post_json(
                "/v1/deployments/promo/decide",
                &json!({"unit_id": format!("u{i}"), "context": ctx}),
            )
            .await;
        ids.push(d["decision_id"].as_str().expect("id").to_string());
    }
    let mut events: Vec<serde_json::Value> = ids.iter().map(|id| json!({"decision_id": id, "reward": 0.0})).collect();
    events.push(json!({"decision_id": "bogus", "reward": 1.0}));
    let (status, batch) = server
        .post_json("/v1/deployments/promo/feedback/batch", &json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        (batch["counted"].clone(), batch["failed"].clone()),
        (json!(20), json!(1))
    );
    assert_eq!(batch["results"][20]["code"], "invalid_request");

    let (status, report) = server.get("/v1/deployments/promo/report").await;
    assert_eq!(status, 200);
    assert_eq!(report["policy"], "lin_ucb");
    assert_eq!(report["policy_version"], 21);
    let exposures: u64 = report["variants"]
        .as_array()
        .expect("v")
        .iter()
        .map(|v| v["exposures"].as_u64().expect("n"))
        .sum();
    let control = report["control_group"]["exposures"].as_u64().expect("control");
    assert_eq!(exposures + control, 22);
    let (status, list) = server.get("/v1/deployments").await;
    assert_eq!((status, list[0]["name"].clone()), (200, json!("promo")));
}

/// Several metrics over REST: feedback carries the decision metric and other metrics at
/// different times, single and batched; conflicts are 409s; the report shows every metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_metrics_over_rest() {
    let server = TestServer::start(&[]).await;
    let spec = json!({
        "variants": [{"name": "free_dessert", "cost": 4.5}, {"name": "voucher", "cost": 1.0}],
        "policy": {"type": "epsilon_greedy", "epsilon": 0.2},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "default": 0, "window_seconds": 600},
        "metrics": [
            {"name": "conversion", "kind": "binary"},
            {"name": "unsubscribe", "kind": "binary", "guardrail": {"better": "lower", "max_loss": 0.01}}
        ]
    });
    let (put_status, put) = server
        .put_json("/v1/deployments/promo", &json!({"spec": spec, "reason": "launch"}))
        .await;
    assert_eq!(put_status, 200, "{put}");
    let mut ids = Vec::new();
    for i in 0..10 {
        let (status, d) = server
            .post_json("/v1/deployments/promo/decide", &json!({"unit_id": format!("u{i}")}))
            .await;
        assert_eq!(status, 200, "{d}");
        ids.push(d["decision_id"].as_str().expect("id").to_string());
    }
    let (status, f) = server
        .post_json(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": ids[0], "metrics": {"conversion": 1, "unsubscribe": 0}}),
        )
        .await;
    assert_eq!((status, f["counted"].clone()), (200, json!(true)), "{f}");
    // Later, the revenue (the decision metric, by its name or as "reward").
    let (status, f) = server
        .post_json(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": ids[0], "metrics": {"revenue": 31.5}}),
        )
        .await;
    assert_eq!((status, f["counted"].clone()), (200, json!(true)), "{f}");
    let (status, f) = server
        .post_json(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": ids[0], "reward": 31.5, "metrics": {"conversion": 1}}),
        )
        .await;
    assert_eq!((status, f["counted"].clone()), (200, json!(false)), "a duplicate: {f}");
    for (body, status, code, needle) in [
        (
            json!({"decision_id": ids[0], "metrics": {"unsubscribe": 1}}),
            409,
            "conflicting_metric",
            "already has unsubscribe = 0",
        ),
        (
            json!({"decision_id": ids[1], "metrics": {"clicks": 1}}),
            400,
            "invalid_request",
            "its metrics: revenue, conversion, unsubscribe",
        ),
        (
            json!({"decision_id": ids[1], "metrics": {"conversion": 2}}),
            400,
            "invalid_request",
            "is binary",
        ),
        (json!({"decision_id": ids[1]}), 400, "invalid_request", "neither"),
    ] {
        let (got, response) = server.post_json("/v1/deployments/promo/feedback", &body).await;
        assert_eq!(
            (got, response["code"].as_str()),
            (status, Some(code)),
            "{body}: {response}"
        );
        assert!(
            response["error"].as_str().expect("error").contains(needle),
            "{response}"
        );
    }
    let events: Vec<serde_json::Value> = ids[1..]
        .iter()
        .enumerate()
        .map(|(i, id)| json!({"decision_id": id, "metrics": {"unsubscribe": i % 2, "conversion": 0}}))
        .chain([json!({"decision_id": ids[0], "metrics": {"conversion": 0}})])
        .collect();
    let (status, batch) = server
        .post_json("/v1/deployments/promo/feedback/batch", &json!({"events": events}))
        .await;
    assert_eq!(status, 200, "{batch}");
    assert_eq!(
        (batch["counted"].clone(), batch["failed"].clone()),
        (json!(9), json!(1)),
        "{batch}"
    );
    assert_eq!(batch["results"][9]["code"], "conflicting_metric");

    let (status, report) = server.get("/v1/deployments/promo/report").await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["reward_name"], "revenue");
    let metrics = report["metrics"].as_array().expect("metrics");
    let n = |m: &serde_json::Value| -> u64 {
        m["variants"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|v| v["n"].as_u64().expect("n"))
            .sum()
    };
    assert_eq!((metrics[0]["name"].clone(), n(&metrics[0])), (json!("conversion"), 10));
    assert_eq!((metrics[1]["name"].clone(), n(&metrics[1])), (json!("unsubscribe"), 10));
    assert!(
        metrics[1]["variants"][0]["guardrail"]["verdict"].is_string(),
        "{report}"
    );
    let costs: Vec<f64> = report["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["cost"].as_f64().expect("cost"))
        .collect();
    assert_eq!(costs, [4.5, 1.0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decide_and_feedback_over_grpc() {
    let server = TestServer::start(&[]).await;
    let (status, body) = server.put_json("/v1/deployments/promo", &json!({"spec": spec()})).await;
    assert_eq!(status, 200, "{body}");
    let mut client = ExperimentsClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let context: std::collections::HashMap<String, FeatureValue> = [
        (
            "spend".to_string(),
            FeatureValue {
                value: Some(feature_value::Value::Number(10.0)),
            },
        ),
        (
            "device".to_string(),
            FeatureValue {
                value: Some(feature_value::Value::Category("web".into())),
            },
        ),
    ]
    .into_iter()
    .collect();
    let d = client
        .decide(DecideRequest {
            deployment: "promo".into(),
            unit_id: "c9".into(),
            context: context.clone(),
            inputs: None,
            eligible: vec![],
        })
        .await
        .expect("decide")
        .into_inner();
    assert!(!d.decision_id.is_empty() && d.propensity > 0.0);
    let only = client
        .decide(DecideRequest {
            deployment: "promo".into(),
            unit_id: "c10".into(),
            context,
            inputs: None,
            eligible: vec!["promo_a".into()],
        })
        .await
        .expect("decide among one")
        .into_inner();
    assert_eq!((only.variant.as_str(), only.propensity), ("promo_a", 1.0));
    let f = client
        .feedback(FeedbackRequest {
            deployment: "promo".into(),
            decision_id: d.decision_id.clone(),
            reward: Some(1.0),
            ..Default::default()
        })
        .await
        .expect("feedback")
        .into_inner();
    assert!(f.counted);
    let batch = client
        .feedback_batch(FeedbackBatchRequest {
            deployment: "promo".into(),
            events: vec![FeedbackRequest {
                deployment: String::new(),
                decision_id: d.decision_id.clone(),
                reward: Some(1.0),
                ..Default::default()
            }],
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!((batch.counted, batch.failed), (0, 0), "duplicate counts once");
    let err = client
        .decide(DecideRequest {
            deployment: "promo".into(),
            unit_id: String::new(),
            context: Default::default(),
            inputs: None,
            eligible: vec![],
        })
        .await
        .expect_err("context missing");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    let err = client
        .feedback(FeedbackRequest {
            deployment: "nope".into(),
            decision_id: d.decision_id,
            reward: Some(1.0),
            ..Default::default()
        })
        .await
        .expect_err("unknown deployment");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let report = client
        .report(ReportRequest {
            deployment: "promo".into(),
        })
        .await
        .expect("report")
        .into_inner();
    let report: serde_json::Value = serde_json::from_str(&report.report_json).expect("json");
    assert_eq!(report["policy_version"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_variants_return_predictions_and_shadows_are_logged_only() {
    let server = TestServer::start(&["bc-lr", "bc-rf"]).await;
    // A second version of bc-lr (the forest) to A/B two versions of one model.
    crate::support::push(&server.registry, "bc-lr", &crate::support::fixture("bc-rf")).await;
    let spec = json!({
        "variants": [
            {"name": "lr-v1", "model": "bc-lr:1"},
            {"name": "lr-v2", "model": "bc-lr:2"},
            {"name": "forest-shadow", "model": "bc-rf", "shadow": true}
        ],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 600}
    });
    let (put_status, put) = server.put_json("/v1/deployments/models", &json!({"spec": spec})).await;
    assert_eq!(put_status, 200, "{put}");
    let inputs = crate::support::bc_request(1)["inputs"].clone();
    let mut seen = std::collections::BTreeSet::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (status, d) = server
            .post_json(
                "/v1/deployments/models/decide",
                &json!({"unit_id": format!("u{i}"), "inputs": inputs}),
            )
            .await;
        assert_eq!(status, 200, "{d}");
        let variant = d["variant"].as_str().expect("variant").to_string();
        assert_ne!(variant, "forest-shadow", "a shadow is never returned");
        let probs = d["prediction"]["probabilities"]["data"].as_array().expect("prediction");
        assert_eq!(probs.len(), 2);
        seen.insert(variant);
        ids.push(d["decision_id"].as_str().expect("id").to_string());
    }
    assert_eq!(seen.len(), 2, "both versions served: {seen:?}");
    // Model deployments need inputs, and bad inputs leave no decision behind.
    let (status, e) = server
        .post_json("/v1/deployments/models/decide", &json!({"unit_id": "x"}))
        .await;
    assert_eq!(status, 400);
    assert!(e["error"].as_str().expect("e").contains("send 'inputs'"), "{e}");
    let bad = json!([{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]);
    let (status, _) = server
        .post_json("/v1/deployments/models/decide", &json!({"inputs": bad}))
        .await;
    assert_eq!(status, 400);
    let (_, report) = server.get("/v1/deployments/models/report").await;
    let exposures: u64 = report["variants"]
        .as_array()
        .expect("v")
        .iter()
        .map(|v| v["exposures"].as_u64().expect("n"))
        .sum();
    assert_eq!(exposures, 20, "refused requests made no decision");
    // Shadow answers land in the decision log, once per decision.
    let log = server.home().join("experiments/models/events.jsonl");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let shadows = text
            .lines()
            .filter(|l| l.contains("\"t\":\"output\"") && l.contains("\"shadow\":true"))
            .count();
        if shadows == 20 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{shadows} shadow answers logged, want 20"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A deployment naming a model that does not exist is refused and not recorded.
    let bad_spec = json!({"variants": [{"name": "x", "model": "missing-model"}], "policy": {"type": "fixed_weights", "weights": [1]}});
    let (r_status, r) = server
        .put_json("/v1/deployments/broken", &json!({"spec": bad_spec}))
        .await;
    assert_eq!(r_status, 404, "{r}");
    let (status, body) = server.get("/v1/deployments/broken").await;
    assert_eq!(status, 404, "{body}");
}

/// Output guardrails hold a wildly wrong answer back and the fallback variant answers; the
/// alert rule watching them fires once, notifies a real webhook, and rolls the deployment back
/// to its previous revision, which the change log attributes to the rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guardrail_fallback_alert_webhook_and_automatic_rollback() {
    use std::sync::{Arc, Mutex};

    let server = TestServer::start(&["bc-lr"]).await;
    let received: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let hook = {
        let received = received.clone();
        axum::routing::post(move |body: axum::Json<serde_json::Value>| {
            let received = received.clone();
            async move {
                received.lock().expect("lock").push(body.0);
                axum::http::StatusCode::OK
            }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let hook_url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, axum::Router::new().route("/hook", hook)).await });

    let plain = json!({
        "variants": [{"name": "lr", "model": "bc-lr"}, {"name": "safe"}],
        "policy": {"type": "fixed_weights", "weights": [1, 0]},
    });
    let mut guarded = plain.clone();
    // No probability may exceed 0.5: every answer of the classifier breaks it.
    guarded["output_guardrails"] = json!({"output": "probabilities", "min": 0, "max": 0.5, "fallback": "safe"});
    guarded["slo"] = json!({"latency_ms": 2000, "objective": 0.99, "window_seconds": 60});
    guarded["alerts"] = json!([{
        "name": "wrong-outputs",
        "condition": {"type": "guardrail", "at_least": 1},
        "notify": [{"url": hook_url, "format": "json", "timeout_seconds": 2}],
        "rollback": true
    }]);
    for spec in [&plain, &guarded] {
        let (put_status, put) = server.put_json("/v1/deployments/guarded", &json!({"spec": spec})).await;
        assert_eq!(put_status, 200, "{put}");
    }
    // An invalid guardrail (unknown fallback) is refused with the reason.
    let mut bad = guarded.clone();
    bad["output_guardrails"]["fallback"] = json!("nope");
    let (put_status, put) = server.put_json("/v1/deployments/guarded", &json!({"spec": bad})).await;
    assert_eq!(put_status, 400, "{put}");
    assert!(
        put["error"]
            .as_str()
            .is_some_and(|e| e.contains("fallback 'nope' is not a variant")),
        "{put}"
    );

    let inputs = crate::support::bc_request(1)["inputs"].clone();
    let (status, d) = server
        .post_json(
            "/v1/deployments/guarded/decide",
            &json!({"unit_id": "u1", "inputs": inputs}),
        )
        .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["variant"], "safe", "the fallback answered: {d}");
    assert_eq!(d["fallback"]["from"], "lr");
    assert_eq!(d["fallback"]["violation"]["kind"], "out_of_bounds");
    assert!(
        d.get("prediction").is_none(),
        "a plain-action fallback carries no prediction: {d}"
    );
    let (_, health) = server.get("/v1/deployments/guarded/health").await;
    assert_eq!(health["guardrail_trips"]["lr/out_of_bounds"], 1, "{health}");
    assert_eq!(health["slo"]["requests"], 1, "{health}");

    // Within a few evaluation ticks the alert fires: webhook, rollback to revision 1's spec.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (_, current) = server.get("/v1/deployments/guarded").await;
        let got = received.lock().expect("lock").clone();
        if current["revision"] == 3 && !got.is_empty() {
            assert_eq!(current["spec"], plain, "rolled back to revision 1's definition");
            assert_eq!(
                (got[0]["rule"].as_str(), got[0]["status"].as_str()),
                (Some("wrong-outputs"), Some("firing"))
            );
            assert_eq!(got[0]["rollback"], true);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rollback: {current} / {got:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The rollback is recorded in the change log just after the swap the loop above saw.
    let (rollback, changes) = loop {
        let changes = server
            .registry
            .store()
            .list_changes(20, Some("deployment/guarded"))
            .await
            .expect("changes");
        if let Some(c) = changes.iter().find(|c| c.kind == "deployment.rollback") {
            break (c.clone(), changes);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rollback not recorded in the change log"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(rollback.actor, "keel-alert/wrong-outputs");
    assert_eq!(
        (
            rollback.details["from_revision"].as_i64(),
            rollback.details["to_revision"].as_i64()
        ),
        (Some(2), Some(1))
    );
    assert!(changes.iter().any(|c| c.kind == "alert.firing"));
    // After the rollback the model answers again.
    let (_, d) = server
        .post_json(
            "/v1/deployments/guarded/decide",
            &json!({"unit_id": "u2", "inputs": inputs}),
        )
        .await;
    assert_eq!(d["variant"], "lr", "{d}");
}

/// gRPC feedback carries other metrics too, like REST: counted once per (decision, metric), a
/// different value refused as a conflict, and an item without metrics whose reward is left out
/// counts as a reward of 0 (what proto3 sends for 0 from clients built before `optional`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_metrics_over_grpc() {
    let server = TestServer::start(&[]).await;
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]},
        "reward": {"name": "revenue", "kind": "continuous", "min": 0, "max": 500, "window_seconds": 600},
        "metrics": [{"name": "conversion", "kind": "binary"}, {"name": "unsubscribe", "kind": "binary"}]
    });
    let (put_status, put) = server.put_json("/v1/deployments/promo", &json!({ "spec": spec })).await;
    assert_eq!(put_status, 200, "{put}");
    let mut client = ExperimentsClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let mut ids = Vec::new();
    for i in 0..4 {
        let d = client
            .decide(DecideRequest {
                deployment: "promo".into(),
                unit_id: format!("u{i}"),
                ..Default::default()
            })
            .await
            .expect("decide")
            .into_inner();
        ids.push(d.decision_id);
    }
    let item = |id: &str, reward: Option<f64>, metrics: &[(&str, f64)]| FeedbackRequest {
        deployment: "promo".into(),
        decision_id: id.to_owned(),
        reward,
        metrics: metrics.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    };
    let f = client
        .feedback(item(&ids[0], None, &[("conversion", 1.0), ("unsubscribe", 0.0)]))
        .await
        .expect("metrics")
        .into_inner();
    assert!(f.counted);
    let f = client
        .feedback(item(&ids[0], Some(31.5), &[("conversion", 1.0)]))
        .await
        .expect("revenue later")
        .into_inner();
    assert!(f.counted, "the revenue is new, the conversion a duplicate");
    let err = client
        .feedback(item(&ids[0], None, &[("unsubscribe", 1.0)]))
        .await
        .expect_err("conflict");
    assert_eq!(err.code(), tonic::Code::AlreadyExists, "{err}");
    assert!(err.message().contains("unsubscribe"), "{err}");
    let err = client
        .feedback(item(&ids[1], None, &[("clicks", 1.0)]))
        .await
        .expect_err("undeclared");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    // Without metrics and without a reward: a reward of 0.
    let f = client
        .feedback(item(&ids[1], None, &[]))
        .await
        .expect("zero")
        .into_inner();
    assert!(f.counted);
    let batch = client
        .feedback_batch(FeedbackBatchRequest {
            deployment: "promo".into(),
            events: vec![
                item(&ids[2], None, &[("conversion", 0.0)]),
                item(&ids[3], Some(12.0), &[("conversion", 1.0)]),
                item(&ids[0], None, &[("conversion", 0.0)]),
            ],
        })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!((batch.counted, batch.failed), (2, 1), "{batch:?}");
    assert_eq!(batch.results[2].code, "conflicting_metric", "{batch:?}");

    let (_, report) = server.get("/v1/deployments/promo/report").await;
    let conversions: Vec<(u64, f64)> = report["metrics"]
        .as_array()
        .expect("metrics")
        .iter()
        .filter(|m| m["name"] == "conversion")
        .flat_map(|m| m["variants"].as_array().expect("rows").clone())
        .map(|v| (v["n"].as_u64().expect("n"), v["mean"].as_f64().expect("mean")))
        .collect();
    let n: u64 = conversions.iter().map(|(n, _)| n).sum();
    let sum: f64 = conversions.iter().map(|(n, m)| *n as f64 * m).sum();
    assert_eq!((n, sum.round()), (3, 2.0), "{report}");
    let rewards = report["treated_group"]["rewards"].as_u64().expect("rewards");
    assert_eq!(rewards, 3, "31.5, the 0 and 12: {report}");
}
