//! Prediction logs end to end: `keel serve` logs every request to the lake, labels are posted
//! over HTTP, `keel monitor performance` joins them; a failing log sink never fails serving.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models")
}

fn keel(home: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("KEEL_AUTHOR", "tester")
        .env_remove("KEEL_STORE_URL")
        .env_remove("KEEL_ARTIFACTS")
        .env_remove("KEEL_LAKE")
        .output()
        .expect("run keel")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

struct Server {
    child: Child,
    base: String,
    client: reqwest::Client,
}

impl Server {
    async fn start(home: &Path, extra: &[&str]) -> Server {
        let pushed = keel(
            home,
            &[
                "model",
                "push",
                "bc-lr",
                fixtures().join("bc-lr.onnx").to_str().expect("path"),
                "--alias",
                "production",
            ],
        );
        assert!(pushed.status.success(), "{}", String::from_utf8_lossy(&pushed.stderr));
        let (http, grpc) = (free_port(), free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("--home")
            .arg(home)
            .args([
                "serve",
                "--http-addr",
                &format!("127.0.0.1:{http}"),
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
            ])
            .args(extra)
            .env("KEEL_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start keel serve");
        let server = Server {
            child,
            base: format!("http://127.0.0.1:{http}"),
            client: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server
                .client
                .get(format!("{}/v2/health/ready", server.base))
                .send()
                .await
                && r.status().is_success()
            {
                return server;
            }
            assert!(Instant::now() < deadline, "server not ready within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.expect("JSON body"))
    }

    async fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// SIGTERM, then the exit status must be success (the log was flushed on the way out).
    fn stop(mut self) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(killed.success());
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "keel serve exited with {status}");
    }
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
    let home = tempfile::tempdir().expect("tmp");
    let server = Server::start(home.path(), &["--log-flush-ms", "100"]).await;
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

    let out = keel(
        home.path(),
        &["--json", "monitor", "performance", "bc-lr", "--bucket", "hour"],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
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
    let out = keel(
        home.path(),
        &[
            "data",
            "sql",
            "SELECT count(*) AS n FROM \"predictions_bc-lr\" WHERE input_29 IS NOT NULL AND out_label IS NOT NULL AND request_id = 'req-99'",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("| 3 "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_log_sink_is_counted_and_serving_answers() {
    let home = tempfile::tempdir().expect("tmp");
    // The model's prediction table cannot be created: its folder is a file.
    std::fs::create_dir_all(home.path().join("lake")).expect("mkdir");
    std::fs::write(home.path().join("lake").join("predictions_bc-lr"), b"in the way").expect("write");
    let server = Server::start(home.path(), &["--log-flush-ms", "20", "--log-queue", "2"]).await;
    for seed in 0..200 {
        let (status, body) = server.post("/v2/models/bc-lr/infer", &request(1, seed)).await;
        assert_eq!(status, 200, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.metric("keel_predlog_write_failures_total").await < 1.0 {
        assert!(Instant::now() < deadline, "no write failure counted");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // every request was either queued or dropped as the queue was full: none was lost silently
    let logged = server.metric("keel_predlog_logged_total{kind=\"prediction\"}").await;
    let full = server.metric("keel_predlog_dropped_total{reason=\"queue_full\"}").await;
    assert_eq!(logged + full, 200.0);
    assert!(full > 0.0, "a writer stuck retrying must fill a queue of 2");
    server.stop();
}

/// Rewards that arrive as feedback and default rewards applied when a window closes both land
/// in the `feedback` table: the table holds every reward the policy learned from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_rewards_are_logged_as_feedback() {
    let home = tempfile::tempdir().expect("tmp");
    let spec = home.path().join("promo.json");
    std::fs::write(
        &spec,
        json!({
            "variants": [{"name": "a"}, {"name": "b"}],
            "policy": {"type": "fixed_weights", "weights": [1, 1]},
            "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 1},
        })
        .to_string(),
    )
    .expect("spec");
    let out = keel(
        home.path(),
        &["deployment", "apply", "promo", "-f", spec.to_str().expect("p")],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = Server::start(home.path(), &["--log-flush-ms", "100"]).await;
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
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    server.stop();
    let out = keel(
        home.path(),
        &[
            "--json",
            "data",
            "sql",
            "SELECT count(*) AS n, sum(reward) AS total FROM feedback WHERE deployment = 'promo'",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let row = rows.as_array().and_then(|r| r.first()).cloned().unwrap_or(rows.clone());
    assert_eq!(
        (row["n"].as_i64(), row["total"].as_f64()),
        (Some(3), Some(1.0)),
        "{rows}"
    );
    // Retention from the CLI: today's rows are younger than 30 days, nothing goes.
    let out = keel(home.path(), &["--json", "monitor", "retention", "--days", "30"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let removed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let feedback = removed
        .as_array()
        .expect("tables")
        .iter()
        .find(|r| r["table"] == "feedback")
        .unwrap_or_else(|| panic!("feedback is a log table: {removed}"));
    assert_eq!(feedback["rows"].as_u64().unwrap_or(0), 0, "{removed}");
}
