//! Prediction logs end to end: `keel serve` logs every request to the lake, labels are posted
//! over HTTP, `keel monitor performance` joins them; a failing log sink never fails serving.

use std::time::Duration;

use serde_json::json;

use crate::support::{Keel, Server, eventually, repo_file};

/// `keel serve ARGS...` for `keel`'s workspace, ready, with bc-lr pushed (alias `production`).
async fn serve_bc_lr(keel: &Keel, args: &[&str]) -> Server {
    let model = repo_file("fixtures/models/bc-lr.onnx");
    keel.ok(&["model", "push", "bc-lr", &model, "--alias", "production"]);
    keel.serve(args).ready().await
}

/// `rows` breast-cancer rows (30 features) as a V2 request.
fn request(rows: usize, seed: usize) -> serde_json::Value {
    let data: Vec<f64> = (0..rows * 30)
        .map(|i| ((i * 7 + seed * 13) % 50) as f64 / 10.0)
        .collect();
    json!({"id": format!("req-{seed}"), "inputs": [{"name": "input", "shape": [rows, 30], "datatype": "FP32", "data": data}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predictions_are_logged_labelled_and_reported() {
    let keel = Keel::new();
    let server = serve_bc_lr(&keel, &["--log-flush-ms", "100"]).await;
    let mut ids = Vec::new();
    for seed in 0..20 {
        let (status, body) = server.post("/v2/models/bc-lr/infer", &request(1, seed)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["id"], format!("req-{seed}"));
        let id = body["parameters"]["prediction_id"]
            .as_str()
            .expect("prediction_id")
            .to_string();
        ids.push((id, 0));
    }
    let (status, body) = server.post("/v2/models/bc-lr/infer", &request(3, 99)).await;
    assert_eq!(status, 200, "{body}");
    let three = body["parameters"]["prediction_id"].as_str().expect("id").to_string();
    ids.extend((0..3).map(|r| (three.clone(), r)));
    assert_eq!(
        ids.iter()
            .map(|(i, _)| i)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        21,
        "one id per request"
    );

    // Labels: every row, alternating outcomes, plus one for a prediction that does not exist.
    let mut labels: Vec<serde_json::Value> = ids
        .iter()
        .enumerate()
        .map(|(i, (id, row))| json!({"prediction_id": id, "row": row, "label": i % 2}))
        .collect();
    labels.push(json!({"prediction_id": "no-such-prediction", "label": 1}));
    let (status, body) = server.post("/v1/labels", &json!(labels)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stored"], 24);
    // A malformed label refuses the whole request and names the item.
    let (status, body) = server
        .post("/v1/labels", &json!([{"prediction_id": ids[0].0, "label": "yes"}]))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_request");
    assert!(body["error"].as_str().expect("msg").contains("item 0"), "{body}");
    server.stop();

    let report = keel.json(&["monitor", "performance", "bc-lr", "--bucket", "hour"]);
    assert_eq!(report["score_column"], "out_probabilities_1");
    let v = &report["versions"][0];
    assert_eq!(
        (v["version"].as_i64(), v["predictions"].as_u64(), v["labelled"].as_u64()),
        (Some(1), Some(23), Some(23))
    );
    assert!(
        (v["positive_rate"].as_f64().expect("rate") - 11.0 / 23.0).abs() < 1e-9,
        "{v}"
    );
    assert!(v["log_loss"].as_f64().is_some() && v["ece"].as_f64().is_some(), "{v}");
    assert_eq!(report["unmatched_labels"], 1);
    assert_eq!(report["unmatched_examples"], json!(["no-such-prediction"]));

    // The columns are plain SQL columns.
    let out = keel.ok(&[
        "data",
        "sql",
        "SELECT count(*) AS n FROM \"predictions_bc-lr\" WHERE input_29 IS NOT NULL AND out_label IS NOT NULL AND request_id = 'req-99'",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("| 3 "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_log_sink_is_counted_and_serving_answers() {
    let keel = Keel::new();
    // The model's prediction table cannot be created: its folder is a file.
    std::fs::create_dir_all(keel.home().join("lake")).expect("mkdir");
    std::fs::write(keel.home().join("lake").join("predictions_bc-lr"), b"in the way").expect("write");
    let server = serve_bc_lr(&keel, &["--log-flush-ms", "20", "--log-queue", "2"]).await;
    for seed in 0..200 {
        let (status, body) = server.post("/v2/models/bc-lr/infer", &request(1, seed)).await;
        assert_eq!(status, 200, "{body}");
    }
    eventually(Duration::from_secs(30), Duration::from_millis(100), async || {
        if server.metric("keel_predlog_write_failures_total").await >= 1.0 {
            Ok(())
        } else {
            Err("no write failure counted".to_string())
        }
    })
    .await;
    // Every request was either queued or dropped as the queue was full, none lost silently, and
    // that is counted (within a poll) while the writer is still stuck retrying.
    let full = eventually(Duration::from_secs(30), Duration::from_millis(50), async || {
        let logged = server.metric("keel_predlog_logged_total{kind=\"prediction\"}").await;
        let full = server.metric("keel_predlog_dropped_total{reason=\"queue_full\"}").await;
        if logged + full == 200.0 {
            Ok(full)
        } else {
            Err(format!(
                "{logged} logged + {full} dropped as the queue was full, not 200"
            ))
        }
    })
    .await;
    assert!(full > 0.0, "a writer stuck retrying must fill a queue of 2");
    server.stop();
}

/// Rewards that arrive as feedback and default rewards applied when a window closes both land
/// in the `feedback` table: the table holds every reward the policy learned from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rewards_are_logged_as_feedback() {
    let keel = Keel::new();
    let spec = keel.file(
        "promo.json",
        json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "fixed_weights", "weights": [1, 1]},
            "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 1},
        })
        .to_string(),
    );
    keel.ok(&["deployment", "apply", "promo", "-f", &spec]);
    let server = serve_bc_lr(&keel, &["--log-flush-ms", "100"]).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let (status, body) = server
            .post("/v1/deployments/promo/decide", &json!({"unit_id": format!("u{i}")}))
            .await;
        assert_eq!(status, 200, "{body}");
        ids.push(body["decision_id"].as_str().expect("id").to_string());
    }
    let (status, body) = server
        .post(
            "/v1/deployments/promo/feedback",
            &json!({"decision_id": ids[0], "reward": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // The other two windows close (swept every second) with the default reward.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    server.stop();
    let rows = keel.json(&[
        "data",
        "sql",
        "SELECT count(*) AS n, sum(reward) AS total FROM feedback WHERE deployment = 'promo'",
    ]);
    let row = rows.as_array().and_then(|r| r.first()).cloned().unwrap_or(rows.clone());
    assert_eq!(
        (row["n"].as_i64(), row["total"].as_f64()),
        (Some(3), Some(1.0)),
        "{rows}"
    );
    // Retention from the CLI: today's rows are younger than 30 days, nothing goes.
    let removed = keel.json(&["monitor", "retention", "--days", "30"]);
    let feedback = removed
        .as_array()
        .expect("tables")
        .iter()
        .find(|r| r["table"] == "feedback")
        .unwrap_or_else(|| panic!("feedback is a log table: {removed}"));
    assert_eq!(feedback["rows"].as_u64().unwrap_or(0), 0, "{removed}");
}
