//! Kill the server with SIGKILL in the middle of decide/feedback traffic, restart it, and
//! check that every acknowledged decision and reward survived. Also the server's data routes,
//! drift monitoring (offline and live), and OTLP tracing.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Keel, Ports, Server, assert_refused, assert_says, eventually, items, repo_file, strings};

/// The first row of bc-lr's expected outputs (`fixtures/models/expected.json`): 30 features.
fn bc_lr_row() -> Value {
    let expected = std::fs::read_to_string(repo_file("fixtures/models/expected.json")).expect("expected");
    let expected: Value = serde_json::from_str(&expected).expect("json");
    expected["models"]["bc-lr"]["rows"][0].clone()
}

/// [`bc_lr_row`] as numbers.
fn bc_lr_features() -> Vec<f64> {
    items(&bc_lr_row()).iter().map(|v| v.as_f64().expect("f")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_no_acknowledged_decision_or_reward() {
    kill_9_scenario(Keel::quiet().env("KEEL_AUTHOR", "tester")).await;
}

/// Decide/feedback traffic from eight clients, SIGKILL, restart on the same addresses: every
/// acknowledged decision and reward is there. Run on the file log (above) and on PostgreSQL
/// (`replicas.rs`), whichever store `keel` is given.
pub async fn kill_9_scenario(keel: Keel) {
    let spec = json!({
        "variants": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
        "policy": {"type": "thompson_beta"},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 3600},
        "seed": 5
    });
    let spec_path = keel.file("spec.json", spec.to_string());
    keel.ok(&["deployment", "apply", "promo", "-f", &spec_path]);

    let mut server = keel.serve(&[]).ready().await;

    // Eight clients: decide, then reward every other decision; remember what was acknowledged.
    let acknowledged = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..8 {
        let acknowledged = acknowledged.clone();
        let (client, base) = (server.client.clone(), server.base.clone());
        workers.push(tokio::spawn(async move {
            let mut decided = Vec::new();
            let mut rewarded = Vec::new();
            // A reward sent when the server died: maybe recorded, never acknowledged.
            let mut in_flight = None;
            for i in 0.. {
                let Ok(r) = client
                    .post(format!("{base}/v1/deployments/promo/decide"))
                    .json(&json!({"unit_id": format!("w{w}-{i}")}))
                    .send()
                    .await
                else {
                    break;
                };
                let Ok(d) = r.json::<Value>().await else {
                    break;
                };
                let id = d["decision_id"].as_str().expect("decision id").to_string();
                decided.push(id.clone());
                if i % 2 == 0 {
                    let reward = if i % 4 == 0 { 1.0 } else { 0.0 };
                    in_flight = Some((id.clone(), reward));
                    let Ok(r) = client
                        .post(format!("{base}/v1/deployments/promo/feedback"))
                        .json(&json!({"decision_id": id, "reward": reward}))
                        .send()
                        .await
                    else {
                        break;
                    };
                    if r.status().is_success() {
                        in_flight = None;
                        rewarded.push((id, reward));
                        acknowledged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    } else {
                        break;
                    }
                }
            }
            (decided, rewarded, in_flight)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // On a loaded machine (or a PostgreSQL store, two commits per pair) traffic may be slow:
    // enough of it before the kill, whatever the time it takes.
    let started = std::time::Instant::now();
    while acknowledged.load(std::sync::atomic::Ordering::Relaxed) <= 60 && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.kill();
    let mut decided = Vec::new();
    let mut rewarded = Vec::new();
    let mut in_flight = Vec::new();
    for w in workers {
        let (d, r, f) = w.await.expect("worker");
        decided.extend(d);
        rewarded.extend(r);
        in_flight.extend(f);
    }
    assert!(
        rewarded.len() > 50,
        "too little traffic before the kill: {}",
        rewarded.len()
    );

    // The same addresses again.
    server = keel.serve_on(server.ports, &[], &[]).ready().await;
    let (_, report) = server.get("/v1/deployments/promo/report").await;
    let rewards: u64 = items(&report["variants"])
        .iter()
        .map(|v| v["rewards"].as_u64().expect("n"))
        .sum();
    let exposures: u64 = items(&report["variants"])
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
    let batch: Vec<Value> = rewarded
        .iter()
        .map(|(id, r)| json!({"decision_id": id, "reward": r}))
        .collect();
    let (_, again) = server
        .post("/v1/deployments/promo/feedback/batch", &json!({"events": batch}))
        .await;
    assert_eq!(again["failed"], 0, "{again}");
    assert_eq!(
        again["counted"], 0,
        "every acknowledged reward was already recorded: {again}"
    );
    // Each acknowledged decision is known: an unrewarded one still takes its reward. A reward
    // that was in flight at the kill may have been recorded without its answer, so that
    // decision is sent the same reward again (a duplicate is a success; another value would be
    // a conflict, rightly).
    let unrewarded: Vec<&String> = decided
        .iter()
        .filter(|d| !rewarded.iter().any(|(r, _)| r == *d))
        .take(20)
        .collect();
    for id in unrewarded {
        let reward = in_flight.iter().find(|(f, _)| f == id).map_or(0.0, |(_, r)| *r);
        let r = server
            .client
            .post(server.url("/v1/deployments/promo/feedback"))
            .json(&json!({"decision_id": id, "reward": reward}))
            .send()
            .await
            .expect("feedback");
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "decision {id} was acknowledged but is unknown after restart: {status} {body}"
        );
    }
    server.kill();
}

/// The `/v1/data` REST routes: a bearer token is required, a table without a grant is a 403
/// that reads the same as a missing one, and a grant opens it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_routes_need_a_token_and_a_grant() {
    let keel = Keel::quiet();
    // `keel --json --user USER ARGS...`, which must succeed.
    let cli = |user: &str, args: &[&str]| {
        let mut all = vec!["--user", user];
        all.extend_from_slice(args);
        keel.json(&all)
    };
    let csv = keel.file("orders.csv", "id,amount\n1,5.0\n2,7.5\n3,1.25\n");
    cli("admin", &["access", "team", "create", "sales"]);
    cli(
        "admin",
        &["data", "ingest", &csv, "--table", "orders", "--owner", "sales"],
    );
    cli("admin", &["access", "team", "create", "finance"]);
    cli("admin", &["access", "team", "add", "finance", "fin"]);
    let token = cli("fin", &["access", "token", "create", "--scope", "data:read"])["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let mut server = keel.serve(&[]);
    // No model is served: live, not ready.
    server.wait_for("/v2/health/live", Duration::from_secs(30)).await;

    // `GET path`, with `token` as the bearer token when there is one.
    let get = async |path: &str, token: Option<&str>| {
        let mut req = server.client.get(server.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send().await.expect("send")
    };
    // The JSON body of `GET path` as fin.
    let get_json = async |path: &str| -> Value { get(path, Some(&token)).await.json().await.expect("json") };
    // `POST /v1/data/sql` as fin, body to add.
    let sql = || server.client.post(server.url("/v1/data/sql")).bearer_auth(&token);
    let total = json!({"sql": "SELECT sum(amount) AS total FROM orders"});

    assert_eq!(get("/v1/data/tables", None).await.status(), 401);
    assert_eq!(get("/v1/data/tables", Some("keel_not_a_token")).await.status(), 401);
    let r = get_json("/v1/data/tables").await;
    assert_eq!(r["tables"], json!([]), "fin may list nothing yet");
    let denied = get("/v1/data/tables/orders/rows", Some(&token)).await;
    let missing = get("/v1/data/tables/nope/rows", Some(&token)).await;
    assert_eq!((denied.status().as_u16(), missing.status().as_u16()), (403, 403));
    let (d, m): (Value, Value) = (denied.json().await.expect("json"), missing.json().await.expect("json"));
    assert_eq!(d["code"], "forbidden");
    assert_eq!(
        d["error"].as_str().expect("e").replace("orders", "T"),
        m["error"].as_str().expect("e").replace("nope", "T")
    );
    let denied = sql().json(&total).send().await.expect("send");
    assert_eq!(denied.status(), 403);

    cli("admin", &["access", "grant", "orders", "finance", "read"]);
    let r = get_json("/v1/data/tables/orders/rows?limit=2").await;
    assert_eq!(r["rows"].as_array().map(Vec::len), Some(2));
    let sum: Value = sql()
        .json(&total)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(sum["rows"][0]["total"], 13.75);
    let bad = sql().body("not json").send().await.expect("send");
    assert_eq!(bad.status(), 400);
    let card = get_json("/v1/data/tables/orders").await;
    assert_eq!(card["catalog"]["owner_team"], "sales");
    server.kill();

    let audit = cli("admin", &["access", "audit", "--actor", "fin"]);
    let via_api: Vec<(&str, bool)> = items(&audit)
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
    let keel = Keel::quiet();
    keel.ok(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    let spec = keel.file(
        "spec.json",
        json!({"variants": [{"name": "lr", "model": "bc-lr"}], "policy": {"type": "fixed_weights", "weights": [1]}})
            .to_string(),
    );
    keel.ok(&["deployment", "apply", "scoring", "-f", &spec]);
    // The reference: 300 rows around the fixture row; the current traffic: the same row with
    // feature 0 shifted far away.
    let row = bc_lr_features();
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
    let reference = keel.file("train.csv", csv);
    keel.ok(&["data", "ingest", &reference, "--table", "bc_train"]);

    let server = keel.serve(&[]).ready().await;
    for i in 0..120 {
        // Every feature jitters as in the reference; feature 0 also moves far away.
        let jitter = 1.0 + (i % 17) as f64 / 100.0;
        let mut shifted: Vec<f64> = row.iter().map(|x| x * jitter).collect();
        shifted[0] = row[0] * 3.0 + i as f64 / 10.0;
        let body = json!({"unit_id": format!("u{i}"), "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": shifted}]});
        let (status, body) = server.post("/v1/deployments/scoring/decide", &body).await;
        assert_eq!(status, 200, "{body}");
    }
    // A graceful stop flushes the prediction log.
    server.interrupt();

    assert_refused(
        &keel.run(&["monitor", "drift", "scoring", "--reference", "bc_train"]),
        "reference columns the model does not have: [\"label\"]",
    );
    let drift = [
        "monitor",
        "drift",
        "scoring",
        "--reference",
        "bc_train",
        "--ignore",
        "label",
    ];
    let report = keel.json(&drift);
    let features = &report["features"];
    assert_eq!(features["current_rows"], 120);
    assert_eq!(features["reference_rows"], 300);
    let drifted = strings(&features["drifted_columns"], "");
    assert!(drifted.contains(&"input_0"), "{features:#}");
    assert!(
        !drifted.contains(&"input_5"),
        "unchanged features do not drift: {drifted:?}"
    );
    // The logged scores against the model's own scores on the reference.
    assert_eq!(report["predictions_baseline"], "reference", "{report:#}");
    let scores = &report["predictions"];
    assert_eq!(scores["columns"][0]["name"], "prediction", "{scores:#}");
    assert_eq!(
        (scores["reference_rows"].as_u64(), scores["current_rows"].as_u64()),
        (Some(300), Some(120))
    );
    // An empty window is a clear error.
    let out = keel.run(&[&drift[..], &["--window-seconds", "0"]].concat());
    assert_says(&out, "the window is empty");
}

/// Live monitoring inside `keel serve`: a deployment with a `monitor` reads its reference
/// table from the lake, counts data quality on every row, evaluates drift over a sliding
/// window, takes labels for a live AUC, and a drift alert rolls the deployment back. A
/// reference whose columns the model does not have is refused at apply time, or reported by
/// the monitor, with the columns named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_monitor_counts_quality_detects_drift_and_rolls_back() {
    /// The deployment `name`'s health, which must answer 200.
    async fn health(server: &Server, name: &str) -> Value {
        let (status, body) = server.get(&format!("/v1/deployments/{name}/health")).await;
        assert_eq!(status, 200);
        body
    }
    /// The deployment `name`'s health once `check` holds, failing the test (`what` not seen)
    /// after 30 s.
    async fn wait(server: &Server, name: &str, what: &str, check: fn(&Value) -> bool) -> Value {
        eventually(Duration::from_secs(30), Duration::from_millis(100), async || {
            let h = health(server, name).await;
            if check(&h) {
                Ok(h)
            } else {
                Err(format!("{what} not seen within 30 s: {h:#}"))
            }
        })
        .await
    }
    /// A decision of the `scoring` deployment for the features `inputs`, which must answer 200.
    async fn decide(server: &Server, inputs: Vec<f64>, unit: String) -> Value {
        let body = json!({"unit_id": unit, "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": inputs}]});
        let (status, body) = server.post("/v1/deployments/scoring/decide", &body).await;
        assert_eq!(status, 200);
        body
    }

    let keel = Keel::quiet();
    keel.ok(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    let row = bc_lr_features();
    let jittered = |i: usize| -> Vec<f64> {
        let jitter = 1.0 + (i % 17) as f64 / 100.0;
        row.iter().map(|x| x * jitter).collect()
    };
    let mut csv = (0..30).map(|j| format!("input_{j}")).collect::<Vec<_>>().join(",") + ",label\n";
    for i in 0..340 {
        csv += &jittered(i).iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
        csv += &format!(",{}\n", i % 2);
    }
    let reference = keel.file("train.csv", csv);
    keel.ok(&["data", "ingest", &reference, "--table", "bc_train"]);
    // A reference with a third of the model's inputs: it can be watched, not scored.
    let mut part = (0..10).map(|j| format!("input_{j}")).collect::<Vec<_>>().join(",") + "\n";
    for i in 0..50 {
        part += &jittered(i)[..10]
            .iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(",");
        part += "\n";
    }
    let part = keel.file("part.csv", part);
    keel.ok(&["data", "ingest", &part, "--table", "bc_part"]);

    let write_spec = |name: &str, spec: Value| keel.file(&format!("{name}.json"), spec.to_string());
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
    assert_refused(
        &keel.run(&["deployment", "apply", "scoring", "-f", &path]),
        "no_such_table",
    );
    // Revision 1 unmonitored, revision 2 monitored (the alert rolls back to 1).
    let path = write_spec("plain", plain.clone());
    keel.ok(&["deployment", "apply", "scoring", "-f", &path]);
    let path = write_spec("monitored", monitored.clone());
    keel.ok(&["deployment", "apply", "scoring", "-f", &path]);
    // A deployment watching a reference column the model does not take.
    let mut wrong = plain.clone();
    wrong["monitor"] = json!({"reference": "bc_train", "columns": ["label", "input_1"]});
    let path = write_spec("wrong", wrong);
    keel.ok(&["deployment", "apply", "wrong-columns", "-f", &path]);
    let mut partial = plain.clone();
    partial["monitor"] = json!({"reference": "bc_part"});
    let path = write_spec("partial", partial);
    keel.ok(&["deployment", "apply", "partial", "-f", &path]);

    let server = keel.serve(&[]).ready().await;
    let h_wrong = wait(&server, "wrong-columns", "a failed monitor", |h| {
        h["monitor"]["state"] == "failed"
    })
    .await;
    let err = h_wrong["monitor"]["error"].as_str().expect("error");
    assert!(
        err.contains("[\"label\"] are not inputs of model bc-lr:1") && err.contains("input_0"),
        "{err}"
    );
    let ready = wait(&server, "scoring", "a ready monitor", |h| {
        h["monitor"]["state"] == "ready"
    })
    .await;
    // The model's scores are compared with its own scores on the reference, from the start.
    assert_eq!(
        ready["monitor"]["predictions"],
        json!([{"column": "prediction", "variants": ["lr"], "baseline": "reference", "baseline_scores": 340}]),
        "{ready:#}"
    );
    // A reference that lacks model inputs is watched on its columns; its scores wait for a
    // first window, and the status says why.
    let partial = wait(&server, "partial", "a ready monitor", |h| {
        h["monitor"]["state"] == "ready"
    })
    .await;
    assert_eq!(partial["monitor"]["columns"].as_array().map(Vec::len), Some(10));
    let track = &partial["monitor"]["predictions"][0];
    assert_eq!(track["baseline"], "first_window", "{partial:#}");
    let note = track["note"].as_str().expect("why the reference was not scored");
    assert!(
        note.contains("bc-lr:1") && note.contains("lacks 20 input column(s)") && note.contains("input_10"),
        "{note}"
    );

    // In distribution: no drift; labels feed the live AUC.
    let mut labels = Vec::new();
    for i in 0..80 {
        let out = decide(&server, jittered(i), format!("a{i}")).await;
        let id = out["prediction_id"].as_str().expect("prediction id").to_owned();
        labels.push(json!({"prediction_id": id, "label": (i % 3 == 0) as i32}));
    }
    // A request that does not fit the model is a schema violation.
    let r = server
        .client
        .post(server.url("/v1/deployments/scoring/decide"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}))
        .send()
        .await
        .expect("decide");
    assert_eq!(r.status(), 400);
    labels.push(json!({"prediction_id": "not-a-prediction", "label": 1}));
    let (status, answer) = server.post("/v1/labels", &json!(labels)).await;
    assert_eq!(status, 200);
    assert_eq!(answer["live_monitor_matched"], 80, "{answer}");
    let calm = wait(&server, "scoring", "an evaluated window", |h| {
        h["monitor"]["last_window"]["window_rows_seen"].as_u64().unwrap_or(0) >= 40
    })
    .await;
    let m = &calm["monitor"];
    assert_eq!(m["last_window"]["features"]["columns"].as_array().expect("c").len(), 30);
    assert_eq!(m["last_window"]["features"]["drifted_columns"], json!([]), "{m:#}");
    let scores = &m["last_window"]["predictions"][0];
    assert_eq!(
        (&scores["name"], &scores["baseline"], &scores["drifted"]),
        (&json!("prediction"), &json!("reference"), &json!(false)),
        "in-distribution scores against the reference's: {m:#}"
    );
    assert_eq!(scores["reference_values"], 340);
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
        decide(&server, x, format!("b{i}")).await;
    }
    let metrics = server.metrics().await;
    let rolled = wait(&server, "scoring", "the rollback", |h| h["revision"] == 3).await;
    assert!(
        rolled.get("monitor").is_none(),
        "revision 3 is revision 1's spec: unmonitored"
    );
    let changes = keel.json(&["changes"]);
    let rollback = items(&changes)
        .iter()
        .find(|c| c["kind"] == "deployment.rollback")
        .unwrap_or_else(|| panic!("no rollback in {changes:#}"));
    assert_eq!(rollback["actor"], "keel-alert/input-drift");
    let metrics2 = server.metrics().await;
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

    let keel = Keel::inheriting();
    let out = keel.run(&["model", "push", "bc-lr", &repo_file("fixtures/models/bc-lr.onnx")]);
    assert!(out.status.success());
    // A bad endpoint is refused with the fix named.
    let out = keel.run(&["--otlp-endpoint", "localhost:4317", "model", "ls"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be an http:// or https:// URL"));

    let endpoint = format!("http://{otlp}");
    let server = keel
        .serve_on(
            Ports::free(),
            &[],
            &[
                ("KEEL_LOG", "warn"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_BSP_SCHEDULE_DELAY", "100"),
                ("OTEL_SERVICE_NAME", "keel-under-test"),
            ],
        )
        .ready()
        .await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let r = server
        .client
        .post(server.url("/v2/models/bc-lr/infer"))
        .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
        .json(&json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": bc_lr_row()}]}))
        .send()
        .await
        .expect("infer");
    assert_eq!(r.status(), 200);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let spans = eventually(Duration::from_secs(30), Duration::from_millis(100), async || {
        let spans: Vec<_> = collector
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|s| hex(&s.trace_id) == trace_id)
            .cloned()
            .collect();
        if spans.iter().any(|s| s.name == "onnx.run") {
            Ok(spans)
        } else {
            Err(format!("no trace exported within 30 s: {spans:?}"))
        }
    })
    .await;
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
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
    assert_eq!(attribute(infer, "model"), Some(AnyValue::StringValue("bc-lr".into())));
    assert_eq!(
        attribute(server_span, "http.response.status_code"),
        Some(AnyValue::IntValue(200))
    );
}
