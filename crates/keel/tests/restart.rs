//! Kill the server with SIGKILL in the middle of decide/feedback traffic, restart it, and
//! check that every acknowledged decision and reward survived.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn start(home: &Path, http: u16, grpc: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home)
        .args([
            "serve",
            "--http-addr",
            &format!("127.0.0.1:{http}"),
            "--grpc-addr",
            &format!("127.0.0.1:{grpc}"),
        ])
        .env("KEEL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start keel serve")
}

/// `keel --home HOME ARGS...`, quietly.
fn keel_in(home: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home)
        .args(args)
        .env("KEEL_LOG", "warn")
        .output()
        .expect("keel")
}

/// As [`keel_in`], which must succeed.
fn keel_ok(home: &Path, args: &[&str]) -> std::process::Output {
    let out = keel_in(home, args);
    assert!(
        out.status.success(),
        "keel {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A server that is stopped when the test ends, even when an assertion fails first.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str) {
    wait_for(client, base, "/v2/health/ready").await;
}

async fn wait_for(client: &reqwest::Client, base: &str, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(format!("{base}{path}")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "server not ready within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_decision_or_reward() {
    let home = tempfile::tempdir().expect("tmp");
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "thompson_beta"},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 5
    });
    let spec_path = home.path().join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write spec");
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(home.path())
        .args(["deployment", "apply", "promo", "-f"])
        .arg(&spec_path)
        .env("KEEL_AUTHOR", "tester")
        .output()
        .expect("apply");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let (http, grpc) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    let mut server = start(home.path(), http, grpc);
    wait_ready(&client, &base).await;

    // Eight clients: decide, then reward every other decision; remember what was acknowledged.
    let mut workers = Vec::new();
    for w in 0..8 {
        let (client, base) = (client.clone(), base.clone());
        workers.push(tokio::spawn(async move {
            let mut decided = Vec::new();
            let mut rewarded = Vec::new();
            for i in 0.. {
                let Ok(r) = client
                    .post(format!("{base}/v1/deployments/promo/decide"))
                    .json(&json!({"unit_id": format!("w{w}-{i}")}))
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(d) = r.json::<serde_json::Value>().await else {
                    break;
                };
                let id = d["decision_id"].as_str().expect("decision id").to_string();
                decided.push(id.clone());
                if i % 2 == 0 {
                    let reward = if i % 4 == 0 { 1.0 } else { 0.0 };
                    let Ok(r) = client
                        .post(format!("{base}/v1/deployments/promo/feedback"))
                        .json(&json!({"decision_id": id, "reward": reward}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if r.status().is_success() {
                        rewarded.push((id, reward));
                    } else {
                        break;
                    }
                }
            }
            (decided, rewarded)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill().expect("SIGKILL");
    server.wait().expect("reap");
    let mut decided = Vec::new();
    let mut rewarded = Vec::new();
    for w in workers {
        let (d, r) = w.await.expect("worker");
        decided.extend(d);
        rewarded.extend(r);
    }
    assert!(
        rewarded.len() > 50,
        "too little traffic before the kill: {}",
        rewarded.len()
    );

    let mut server = start(home.path(), http, grpc);
    wait_ready(&client, &base).await;
    let report: serde_json::Value = client
        .get(format!("{base}/v1/deployments/promo/report"))
        .send()
        .await
        .expect("report")
        .json()
        .await
        .expect("json");
    let rewards: u64 = report["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["rewards"].as_u64().expect("n"))
        .sum();
    let exposures: u64 = report["variants"]
        .as_array()
        .expect("variants")
        .iter()
        .map(|v| v["exposures"].as_u64().expect("n"))
        .sum();
    assert!(
        rewards >= rewarded.len() as u64,
        "rewards {rewards} < acknowledged {}",
        rewarded.len()
    );
    assert!(
        exposures >= decided.len() as u64,
        "decisions {exposures} < acknowledged {}",
        decided.len()
    );
    // Each acknowledged reward is known: sending it again is a counted=false duplicate.
    let batch: Vec<serde_json::Value> = rewarded
        .iter()
        .map(|(id, r)| json!({"decision_id": id, "reward": r}))
        .collect();
    let again: serde_json::Value = client
        .post(format!("{base}/v1/deployments/promo/feedback/batch"))
        .json(&json!({"events": batch}))
        .send()
        .await
        .expect("batch")
        .json()
        .await
        .expect("json");
    assert_eq!(again["failed"], 0, "{again}");
    assert_eq!(
        again["counted"], 0,
        "every acknowledged reward was already recorded: {again}"
    );
    // Each acknowledged decision is known: an unrewarded one still takes its reward.
    let unrewarded: Vec<&String> = decided
        .iter()
        .filter(|d| !rewarded.iter().any(|(r, _)| r == *d))
        .take(20)
        .collect();
    for id in unrewarded {
        let r = client
            .post(format!("{base}/v1/deployments/promo/feedback"))
            .json(&json!({"decision_id": id, "reward": 0.0}))
            .send()
            .await
            .expect("feedback");
        assert!(
            r.status().is_success(),
            "decision {id} was acknowledged but is unknown after restart"
        );
    }
    server.kill().expect("stop");
    server.wait().expect("reap");
}

/// The `/v1/data` REST routes: a bearer token is required, a table without a grant is a 403
/// that reads the same as a missing one, and a grant opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_routes_need_a_token_and_a_grant() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let cli = |user: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("--home")
            .arg(h)
            .args(["--json", "--user", user])
            .args(args)
            .env("KEEL_LOG", "warn")
            .output()
            .expect("keel");
        assert!(
            out.status.success(),
            "keel {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("json")
    };
    let csv = h.join("orders.csv");
    std::fs::write(&csv, "id,amount\n1,5.0\n2,7.5\n3,1.25\n").expect("csv");
    cli("admin", &["access", "team", "create", "sales"]);
    cli(
        "admin",
        &[
            "data",
            "ingest",
            csv.to_str().expect("p"),
            "--table",
            "orders",
            "--owner",
            "sales",
        ],
    );
    cli("admin", &["access", "team", "create", "finance"]);
    cli("admin", &["access", "team", "add", "finance", "fin"]);
    let token = cli("fin", &["access", "token", "create"])["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let (http, grpc) = (free_port(), free_port());
    let mut server = start(h, http, grpc);
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    // No model is served: live, not ready.
    wait_for(&client, &base, "/v2/health/live").await;

    let get = |path: &str, token: Option<&str>| {
        let mut req = client.get(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    let r = get("/v1/data/tables", None).await.expect("send");
    assert_eq!(r.status(), 401);
    let r = get("/v1/data/tables", Some("keel_not_a_token")).await.expect("send");
    assert_eq!(r.status(), 401);
    let r: serde_json::Value = get("/v1/data/tables", Some(&token))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["tables"], json!([]), "fin may list nothing yet");
    let denied = get("/v1/data/tables/orders/rows", Some(&token)).await.expect("send");
    let missing = get("/v1/data/tables/nope/rows", Some(&token)).await.expect("send");
    assert_eq!((denied.status().as_u16(), missing.status().as_u16()), (403, 403));
    let (d, m): (serde_json::Value, serde_json::Value) =
        (denied.json().await.expect("json"), missing.json().await.expect("json"));
    assert_eq!(d["code"], "forbidden");
    assert_eq!(
        d["error"].as_str().expect("e").replace("orders", "T"),
        m["error"].as_str().expect("e").replace("nope", "T")
    );
    let sql = client
        .post(format!("{base}/v1/data/sql"))
        .bearer_auth(&token)
        .json(&json!({"sql": "SELECT sum(amount) AS total FROM orders"}))
        .send()
        .await
        .expect("send");
    assert_eq!(sql.status(), 403);

    cli("admin", &["access", "grant", "orders", "finance", "read"]);
    let r: serde_json::Value = get("/v1/data/tables/orders/rows?limit=2", Some(&token))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["rows"].as_array().map(Vec::len), Some(2));
    let sql: serde_json::Value = client
        .post(format!("{base}/v1/data/sql"))
        .bearer_auth(&token)
        .json(&json!({"sql": "SELECT sum(amount) AS total FROM orders"}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(sql["rows"][0]["total"], 13.75);
    let bad = client
        .post(format!("{base}/v1/data/sql"))
        .bearer_auth(&token)
        .body("not json")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    let card: serde_json::Value = get("/v1/data/tables/orders", Some(&token))
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(card["catalog"]["owner_team"], "sales");
    server.kill().expect("kill");
    let _ = server.wait();

    let audit = cli("admin", &["access", "audit", "--actor", "fin"]);
    let via_api: Vec<(&str, bool)> = audit
        .as_array()
        .expect("audit")
        .iter()
        .filter(|e| e["via"] == "api")
        .map(|e| (e["resource"].as_str().expect("r"), e["allowed"].as_bool().expect("b")))
        .collect();
    assert!(
        via_api.contains(&("table/orders", false)) && via_api.contains(&("table/orders", true)),
        "{via_api:?}"
    );
}

/// `keel monitor drift`: a deployment serving a model logs its inputs to the lake; its last
/// window is compared with a reference table, and a reference with columns the model does not
/// have is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_drift_compares_logged_inputs_with_a_reference_table() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let keel = |args: &[&str]| keel_in(h, args);
    let ok = |args: &[&str]| keel_ok(h, args);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
    ok(&[
        "model",
        "push",
        "bc-lr",
        fixtures.join("bc-lr.onnx").to_str().expect("p"),
    ]);
    let spec = h.join("spec.json");
    std::fs::write(
        &spec,
        json!({"variants": [{"name": "lr", "model": "bc-lr"}], "policy": {"type": "fixed_weights", "weights": [1]}})
            .to_string(),
    )
    .expect("spec");
    ok(&["deployment", "apply", "scoring", "-f", spec.to_str().expect("p")]);
    // The reference: 300 rows around the fixture row; the current traffic: the same row with
    // feature 0 shifted far away.
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json")).expect("expected"))
            .expect("json");
    let row: Vec<f64> = expected["models"]["bc-lr"]["rows"][0]
        .as_array()
        .expect("row")
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .collect();
    let mut csv = (0..30).map(|j| format!("input_{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for i in 0..300 {
        let jitter = 1.0 + (i % 17) as f64 / 100.0;
        csv += &row
            .iter()
            .map(|x| format!("{}", x * jitter))
            .collect::<Vec<_>>()
            .join(",");
        csv += &format!(",{}\n", i % 2);
    }
    let reference = h.join("train.csv");
    std::fs::write(&reference, csv).expect("csv");
    ok(&["data", "ingest", reference.to_str().expect("p"), "--table", "bc_train"]);

    let (http, grpc) = (free_port(), free_port());
    let mut server = start(h, http, grpc);
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    for i in 0..120 {
        // Every feature jitters as in the reference; feature 0 also moves far away.
        let jitter = 1.0 + (i % 17) as f64 / 100.0;
        let mut shifted: Vec<f64> = row.iter().map(|x| x * jitter).collect();
        shifted[0] = row[0] * 3.0 + i as f64 / 10.0;
        let body = json!({"unit_id": format!("u{i}"), "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": shifted}]});
        let r = client
            .post(format!("{base}/v1/deployments/scoring/decide"))
            .json(&body)
            .send()
            .await
            .expect("decide");
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }
    // A graceful stop flushes the prediction log.
    let _ = Command::new("kill").args(["-INT", &server.id().to_string()]).status();
    let _ = server.wait();

    let out = keel(&["monitor", "drift", "scoring", "--reference", "bc_train"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("reference columns the model does not have: [\"label\"]"),
        "{err}"
    );
    let out = ok(&[
        "--json",
        "monitor",
        "drift",
        "scoring",
        "--reference",
        "bc_train",
        "--ignore",
        "label",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let features = &report["features"];
    assert_eq!(features["current_rows"], 120);
    assert_eq!(features["reference_rows"], 300);
    let drifted: Vec<&str> = features["drifted_columns"]
        .as_array()
        .expect("drifted")
        .iter()
        .map(|c| c.as_str().expect("s"))
        .collect();
    assert!(drifted.contains(&"input_0"), "{features:#}");
    assert!(
        !drifted.contains(&"input_5"),
        "unchanged features do not drift: {drifted:?}"
    );
    // An empty window is a clear error.
    let out = keel(&[
        "monitor",
        "drift",
        "scoring",
        "--reference",
        "bc_train",
        "--ignore",
        "label",
        "--window-seconds",
        "0",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the window is empty"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Live monitoring inside `keel serve`: a deployment with a `monitor` reads its reference
/// table from the lake, counts data quality on every row, evaluates drift over a sliding
/// window, takes labels for a live AUC, and a drift alert rolls the deployment back. A
/// reference whose columns the model does not have is refused at apply time, or reported by
/// the monitor, with the columns named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_monitor_counts_quality_detects_drift_and_rolls_back() {
    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let keel = |args: &[&str]| keel_in(h, args);
    let ok = |args: &[&str]| keel_ok(h, args);
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
    ok(&[
        "model",
        "push",
        "bc-lr",
        fixtures.join("bc-lr.onnx").to_str().expect("p"),
    ]);
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json")).expect("expected"))
            .expect("json");
    let row: Vec<f64> = expected["models"]["bc-lr"]["rows"][0]
        .as_array()
        .expect("row")
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .collect();
    let jittered = |i: usize| -> Vec<f64> {
        let jitter = 1.0 + (i % 17) as f64 / 100.0;
        row.iter().map(|x| x * jitter).collect()
    };
    let mut csv = (0..30).map(|j| format!("input_{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for i in 0..340 {
        csv += &jittered(i).iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
        csv += &format!(",{}\n", i % 2);
    }
    let reference = h.join("train.csv");
    std::fs::write(&reference, csv).expect("csv");
    ok(&["data", "ingest", reference.to_str().expect("p"), "--table", "bc_train"]);

    let write_spec = |name: &str, spec: serde_json::Value| {
        let path = h.join(format!("{name}.json"));
        std::fs::write(&path, spec.to_string()).expect("spec");
        path
    };
    let plain =
        json!({"variants": [{"name": "lr", "model": "bc-lr"}], "policy": {"type": "fixed_weights", "weights": [1]}});
    let mut monitored = plain.clone();
    monitored["monitor"] = json!({
        "reference": "bc_train", "ignore": ["label"], "window_seconds": 2, "step_seconds": 1,
        "min_rows": 40, "min_labels": 20,
    });
    monitored["alerts"] = json!([{
        "name": "input-drift", "condition": {"type": "drift", "above": 0.99, "column": "input_0"}, "rollback": true,
    }]);
    // A reference table that does not exist is refused at apply time.
    let mut missing = monitored.clone();
    missing["monitor"]["reference"] = json!("no_such_table");
    let path = write_spec("missing", missing);
    let out = keel(&["deployment", "apply", "scoring", "-f", path.to_str().expect("p")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no_such_table"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Revision 1 unmonitored, revision 2 monitored (the alert rolls back to 1).
    let path = write_spec("plain", plain.clone());
    ok(&["deployment", "apply", "scoring", "-f", path.to_str().expect("p")]);
    let path = write_spec("monitored", monitored.clone());
    ok(&["deployment", "apply", "scoring", "-f", path.to_str().expect("p")]);
    // A deployment watching a reference column the model does not take.
    let mut wrong = plain.clone();
    wrong["monitor"] = json!({"reference": "bc_train", "columns": ["label", "input_1"]});
    let path = write_spec("wrong", wrong);
    ok(&["deployment", "apply", "wrong-columns", "-f", path.to_str().expect("p")]);

    let (http, grpc) = (free_port(), free_port());
    let _server = Stopped(start(h, http, grpc));
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let health = |name: &'static str| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let r = client
                .get(format!("{base}/v1/deployments/{name}/health"))
                .send()
                .await
                .expect("health");
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.expect("json")
        }
    };
    let wait = |name: &'static str, what: &'static str, check: fn(&serde_json::Value) -> bool| async move {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let h = health(name).await;
            if check(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "{what} not seen within 30 s: {h:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let h_wrong = wait("wrong-columns", "a failed monitor", |h| {
        h["monitor"]["state"] == "failed"
    })
    .await;
    let err = h_wrong["monitor"]["error"].as_str().expect("error");
    assert!(
        err.contains("[\"label\"] are not inputs of model bc-lr:1") && err.contains("input_0"),
        "{err}"
    );
    wait("scoring", "a ready monitor", |h| h["monitor"]["state"] == "ready").await;

    let decide = |inputs: Vec<f64>, unit: String| {
        let (client, base) = (client.clone(), base.clone());
        async move {
            let body = json!({"unit_id": unit, "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": inputs}]});
            let r = client
                .post(format!("{base}/v1/deployments/scoring/decide"))
                .json(&body)
                .send()
                .await
                .expect("decide");
            assert_eq!(r.status(), 200);
            r.json::<serde_json::Value>().await.expect("json")
        }
    };
    // In distribution: no drift; labels feed the live AUC.
    let mut labels = Vec::new();
    for i in 0..80 {
        let out = decide(jittered(i), format!("a{i}")).await;
        let id = out["prediction_id"].as_str().expect("prediction id").to_owned();
        labels.push(json!({"prediction_id": id, "label": (i % 3 == 0) as i32}));
    }
    // A request that does not fit the model is a schema violation.
    let r = client
        .post(format!("{base}/v1/deployments/scoring/decide"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}))
        .send()
        .await
        .expect("decide");
    assert_eq!(r.status(), 400);
    labels.push(json!({"prediction_id": "not-a-prediction", "label": 1}));
    let r = client
        .post(format!("{base}/v1/labels"))
        .json(&labels)
        .send()
        .await
        .expect("labels");
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = r.json().await.expect("json");
    assert_eq!(answer["live_monitor_matched"], 80, "{answer}");
    let calm = wait("scoring", "an evaluated window", |h| {
        h["monitor"]["last_window"]["window_rows_seen"].as_u64().unwrap_or(0) >= 40
    })
    .await;
    let m = &calm["monitor"];
    assert_eq!(m["last_window"]["features"]["columns"].as_array().expect("c").len(), 30);
    assert_eq!(m["last_window"]["features"]["drifted_columns"], json!([]), "{m:#}");
    assert_eq!(m["schema_violations"], 1);
    assert_eq!(m["labelled"], 80);
    let auc = m["auc"].as_f64().expect("auc");
    assert!((0.0..=1.0).contains(&auc));
    assert_eq!(m["quality"]["input_0"]["out_of_range"], 0);
    assert_eq!(calm["revision"], 2);

    // Feature 0 moves far out of the reference's range: counted, drifts, the alert fires and
    // rolls the deployment back to revision 1.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    for i in 0..80 {
        let mut x = jittered(i);
        x[0] = row[0] * 3.0 + i as f64 / 10.0;
        decide(x, format!("b{i}")).await;
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let rolled = wait("scoring", "the rollback", |h| h["revision"] == 3).await;
    assert!(
        rolled.get("monitor").is_none(),
        "revision 3 is revision 1's spec: unmonitored"
    );
    let out = ok(&["--json", "changes"]);
    let changes: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let rollback = changes
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["kind"] == "deployment.rollback")
        .unwrap_or_else(|| panic!("no rollback in {changes:#}"));
    assert_eq!(rollback["actor"], "keel-alert/input-drift");
    let metrics2 = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for m in [&metrics, &metrics2] {
        assert!(m.contains("keel_data_quality_total{"), "data quality counters");
    }
    assert!(
        metrics2
            .lines()
            .any(|l| l.starts_with("keel_drift_detected{") && l.contains("column=\"input_0\"") && l.ends_with(" 1")),
        "input_0 drifted: {metrics2}"
    );
    assert!(
        metrics2.lines().any(|l| l.starts_with("keel_data_quality_total{")
            && l.contains("column=\"input_0\"")
            && l.contains("kind=\"out_of_range\"")
            && !l.ends_with(" 0")),
        "out-of-range values counted: {metrics2}"
    );
}

/// An OTLP/gRPC collector on loopback, built from the OpenTelemetry protocol's own
/// definitions: it keeps every span it receives.
#[derive(Clone, Default)]
struct Collector(std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>);

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest>,
    ) -> Result<
        tonic::Response<opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse>,
        tonic::Status,
    > {
        let mut spans = self.0.lock().expect("lock");
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse { partial_success: None },
        ))
    }
}

/// With an OTLP endpoint, `keel serve` exports a trace per request: the server span continues
/// the caller's W3C `traceparent`, and the inference and model-run spans hang below it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_traced_over_otlp_continuing_the_callers_trace() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;

    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let otlp = listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let home = tempfile::tempdir().expect("tmp");
    let h = home.path();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/models");
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(h)
        .args(["model", "push", "bc-lr"])
        .arg(fixtures.join("bc-lr.onnx"))
        .output()
        .expect("push");
    assert!(out.status.success());
    // A bad endpoint is refused with the fix named.
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .arg("--home")
        .arg(h)
        .args(["--otlp-endpoint", "localhost:4317", "model", "ls"])
        .output()
        .expect("keel");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an http:// or https:// URL"));

    let (http, grpc) = (free_port(), free_port());
    let _server = Stopped(
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("--home")
            .arg(h)
            .args([
                "serve",
                "--http-addr",
                &format!("127.0.0.1:{http}"),
                "--grpc-addr",
                &format!("127.0.0.1:{grpc}"),
            ])
            .env("KEEL_LOG", "warn")
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{otlp}"))
            .env("OTEL_BSP_SCHEDULE_DELAY", "100")
            .env("OTEL_SERVICE_NAME", "keel-under-test")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start keel serve"),
    );
    let base = format!("http://127.0.0.1:{http}");
    let client = reqwest::Client::new();
    wait_ready(&client, &base).await;
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json")).expect("expected"))
            .expect("json");
    let row = expected["models"]["bc-lr"]["rows"][0].clone();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = client
        .post(format!("{base}/v2/models/bc-lr/infer"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": row}]}))
        .send()
        .await
        .expect("infer");
    assert_eq!(r.status(), 200);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<_> = collector
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if spans.iter().any(|s| s.name == "onnx.run") {
            break spans;
        }
        assert!(Instant::now() < deadline, "no trace exported within 30 s: {spans:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |name: &str| {
        spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
            panic!(
                "no span {name} in {:?}",
                spans.iter().map(|s| &s.name).collect::<Vec<_>>()
            )
        })
    };
    let server_span = find("POST /v2/models/{name}/infer");
    assert_eq!(
        hex(&server_span.parent_span_id),
        caller_span,
        "continues the caller's trace"
    );
    let infer = find("infer");
    assert_eq!(infer.parent_span_id, server_span.span_id);
    let run = find("onnx.run");
    assert_eq!(run.parent_span_id, infer.span_id);
    let attribute = |s: &opentelemetry_proto::tonic::trace::v1::Span, key: &str| {
        s.attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.clone())
            .and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    assert_eq!(attribute(infer, "model"), Some(Value::StringValue("bc-lr".into())));
    assert_eq!(
        attribute(server_span, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
}
