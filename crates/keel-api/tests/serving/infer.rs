//! Inference over REST against onnxruntime's recorded outputs, metadata, repository, metrics.

use crate::support::{TestServer, bc_request, expected};

const ALL: &[&str] = &[
    "bc-lr",
    "bc-rf",
    "bc-lr-zipmap",
    "bc-gb",
    "bc-xgb",
    "bc-lgbm",
    "iris-rf",
    "diabetes-lgbm-reg",
    "diabetes-rf-reg",
];

fn close(got: f64, want: f64) -> bool {
    (got - want).abs() <= 1e-5 + 1e-6 * want.abs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fixture_matches_onnxruntime_over_rest() {
    let server = TestServer::start(ALL).await;
    let exp = expected();
    for name in ALL {
        let model = &exp["models"][name];
        let rows = model["rows"].as_array().expect("rows");
        let n_features = model["n_features"].as_u64().expect("n");
        let data: Vec<f64> = rows
            .iter()
            .flat_map(|r| r.as_array().expect("row").iter().map(|v| v.as_f64().expect("f")))
            .collect();
        let body = serde_json::json!({
            "id": format!("req-{name}"),
            "inputs": [{"name": "input", "shape": [rows.len(), n_features], "datatype": "FP32", "data": data}]
        });
        let (status, response) = server.post_json(&format!("/v2/models/{name}/infer"), &body).await;
        assert_eq!(status, 200, "{name}: {response}");
        assert_eq!(response["model_name"], *name);
        assert_eq!(response["model_version"], "1");
        assert_eq!(response["id"], format!("req-{name}"));
        let outputs = model["outputs"].as_object().expect("outputs");
        assert_eq!(
            response["outputs"].as_array().expect("outputs").len(),
            outputs.len(),
            "{name}"
        );
        for (out_name, want) in outputs {
            let got = response["outputs"]
                .as_array()
                .expect("outputs")
                .iter()
                .find(|o| o["name"] == out_name.as_str())
                .unwrap_or_else(|| panic!("{name}: output {out_name} missing"));
            assert_eq!(got["datatype"], want["datatype"], "{name}.{out_name}");
            assert_eq!(got["shape"], want["shape"], "{name}.{out_name}");
            let got: Vec<f64> = got["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_f64().expect("f"))
                .collect();
            let want: Vec<f64> = want["data"]
                .as_array()
                .expect("data")
                .iter()
                .map(|v| v.as_f64().expect("f"))
                .collect();
            assert_eq!(got.len(), want.len());
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(close(*g, *w), "{name}.{out_name}[{i}]: keel {g} vs onnxruntime {w}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requested_outputs_nested_data_and_version_path() {
    let server = TestServer::start(&["bc-lr"]).await;
    let exp = expected();
    let row = exp["models"]["bc-lr"]["rows"][0].clone();
    // Nested (row-major) data, one requested output, explicit version path.
    let body = serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "data": [row]}],
        "outputs": [{"name": "probabilities"}]
    });
    let (status, response) = server.post_json("/v2/models/bc-lr/versions/1/infer", &body).await;
    assert_eq!(status, 200, "{response}");
    let outputs = response["outputs"].as_array().expect("outputs");
    assert_eq!(outputs.len(), 1);
    assert_eq!(outputs[0]["name"], "probabilities");
    assert_eq!(outputs[0]["shape"], serde_json::json!([1, 2]));
    let p: f64 = outputs[0]["data"]
        .as_array()
        .expect("d")
        .iter()
        .map(|v| v.as_f64().expect("f"))
        .sum();
    assert!((p - 1.0).abs() < 1e-5, "probabilities sum to {p}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_tensor_extension_round_trip() {
    let server = TestServer::start(&["bc-lr"]).await;
    let exp = expected();
    let row: Vec<f32> = exp["models"]["bc-lr"]["rows"][1]
        .as_array()
        .expect("row")
        .iter()
        .map(|v| v.as_f64().expect("f") as f32)
        .collect();
    let header = serde_json::to_vec(&serde_json::json!({
        "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": 120}}],
        "outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}, {"name": "label", "parameters": {"binary_data": false}}]
    }))
    .expect("json");
    let mut body = header.clone();
    for v in &row {
        body.extend_from_slice(&v.to_le_bytes());
    }
    let r = server
        .client
        .post(server.url("/v2/models/bc-lr/infer"))
        .header("Inference-Header-Content-Length", header.len().to_string())
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 200);
    let json_len: usize = r.headers()["inference-header-content-length"]
        .to_str()
        .expect("h")
        .parse()
        .expect("n");
    let bytes = r.bytes().await.expect("body");
    let json: serde_json::Value = serde_json::from_slice(&bytes[..json_len]).expect("json part");
    assert_eq!(json["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(
        json["outputs"][1]["data"][0],
        exp["models"]["bc-lr"]["outputs"]["label"]["data"][1]
    );
    let probs: Vec<f32> = bytes[json_len..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let want = exp["models"]["bc-lr"]["outputs"]["probabilities"]["data"]
        .as_array()
        .expect("d");
    assert!((f64::from(probs[0]) - want[2].as_f64().expect("f")).abs() < 1e-5);
    assert!((f64::from(probs[1]) - want[3].as_f64().expect("f")).abs() < 1e-5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_metadata_and_repository() {
    let server = TestServer::start(&["bc-lr", "iris-rf"]).await;
    assert_eq!(
        server.get("/v2/health/live").await,
        (200, serde_json::json!({"live": true}))
    );
    assert_eq!(
        server.get("/v2/health/ready").await,
        (200, serde_json::json!({"ready": true}))
    );
    let (status, meta) = server.get("/v2").await;
    assert_eq!(status, 200);
    assert_eq!(meta["name"], "keel");
    assert!(
        meta["extensions"]
            .as_array()
            .expect("ext")
            .contains(&serde_json::json!("model_repository"))
    );

    let (status, meta) = server.get("/v2/models/iris-rf").await;
    assert_eq!(status, 200);
    assert_eq!(meta["platform"], "onnxruntime_onnx");
    assert_eq!(meta["versions"], serde_json::json!(["1"]));
    assert_eq!(
        meta["inputs"],
        serde_json::json!([{"name": "input", "datatype": "FP32", "shape": [-1, 4]}])
    );
    assert_eq!(server.get("/v2/models/iris-rf/versions/1/ready").await.0, 200);

    let (status, index) = server.post_json("/v2/repository/index", &serde_json::json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        index,
        serde_json::json!([
            {"name": "bc-lr", "version": "1", "state": "READY", "reason": ""},
            {"name": "iris-rf", "version": "1", "state": "READY", "reason": ""}
        ])
    );
    let (status, _) = server
        .post_json("/v2/repository/models/iris-rf/unload", &serde_json::json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/v2/models/iris-rf/ready").await.0, 404);
    let (_, index) = server
        .post_json("/v2/repository/index", &serde_json::json!({"ready": true}))
        .await;
    assert_eq!(index.as_array().expect("list").len(), 1);
    let (status, loaded) = server
        .post_json("/v2/repository/models/iris-rf/load", &serde_json::json!({}))
        .await;
    assert_eq!((status, loaded["version"].clone()), (200, serde_json::json!("1")));
    assert_eq!(server.get("/v2/models/iris-rf/ready").await.0, 200);

    // Draining: readiness goes false (503) while liveness stays true.
    server.service.set_ready(false);
    assert_eq!(
        server.get("/v2/health/ready").await,
        (503, serde_json::json!({"ready": false}))
    );
    assert_eq!(server.get("/v2/health/live").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_latency_errors_and_in_flight() {
    let server = TestServer::start(&["bc-rf"]).await;
    for _ in 0..3 {
        assert_eq!(server.post_json("/v2/models/bc-rf/infer", &bc_request(2)).await.0, 200);
    }
    let bad =
        serde_json::json!({"inputs": [{"name": "nope", "shape": [1, 30], "datatype": "FP32", "data": vec![0.0; 30]}]});
    assert_eq!(server.post_json("/v2/models/bc-rf/infer", &bad).await.0, 400);
    let text = server
        .client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // The recorder is process-wide and other tests run in parallel: count only this model's series.
    assert!(
        value(r#"keel_inference_requests_total{protocol="rest",model="bc-rf",version="1",code="ok"}"#) >= 3.0,
        "{text}"
    );
    assert!(
        value(r#"keel_inference_requests_total{protocol="rest",model="bc-rf",version="1",code="invalid_input"}"#)
            >= 1.0
    );
    assert!(
        value(r#"keel_inference_request_duration_seconds_count{protocol="rest",model="bc-rf",version="1"}"#) >= 4.0
    );
    assert!(text.contains("keel_inference_request_duration_seconds_bucket{protocol=\"rest\",model=\"bc-rf\""));
    assert!(text.contains("keel_inference_requests_in_flight{protocol=\"rest\"}"));
    assert!(value(r#"keel_inference_rows_total{model="bc-rf",version="1"}"#) >= 6.0);
}
