//! gRPC decide with model inputs: a model-variant deployment decided over gRPC returns the same
//! prediction as REST decide and as plain V2 inference, and says when a fallback answered.

use keel_api::experiments_proto::DecideRequest;
use keel_api::experiments_proto::experiments_client::ExperimentsClient;
use keel_api::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use serde_json::json;

use crate::support::{TestServer, bc_request};

/// Two rows of the breast-cancer fixture, as f32.
fn rows() -> Vec<f32> {
    bc_request(2)["inputs"][0]["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect()
}

/// Model inputs for decide: a V2 request naming no model (the deployment's variant decides).
fn inputs(rows: &[f32], raw: bool) -> ModelInferRequest {
    crate::grpc::request("", rows, raw)
}

/// The `probabilities` output of a gRPC answer (typed or raw contents).
fn grpc_probabilities(r: &ModelInferResponse) -> Vec<f32> {
    let (i, out) = r
        .outputs
        .iter()
        .enumerate()
        .find(|(_, o)| o.name == "probabilities")
        .expect("a probabilities output");
    assert_eq!(out.datatype, "FP32");
    match &out.contents {
        Some(c) => c.fp32_contents.clone(),
        None => r.raw_output_contents[i]
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    }
}

fn json_f32(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

async fn put(server: &TestServer, name: &str, spec: serde_json::Value) {
    let put = server
        .client
        .put(server.url(&format!("/v1/deployments/{name}")))
        .json(&json!({"spec": spec}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status().as_u16(), 200, "{}", put.text().await.unwrap_or_default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_decide_with_model_inputs_matches_rest_and_plain_inference() {
    let server = TestServer::start(&["bc-lr"]).await;
    // The model variant always answers; "safe" is a plain action.
    put(
        &server,
        "scored",
        json!({
            "variants": [{"name": "lr", "model": "bc-lr"}, {"name": "safe"}],
            "policy": {"type": "fixed_weights", "weights": [1, 0]},
        }),
    )
    .await;
    let rows = rows();

    // Plain V2 inference.
    let (status, plain) = server.post_json("/v2/models/bc-lr/infer", &bc_request(2)).await;
    assert_eq!(status, 200, "{plain}");
    let plain = plain["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .find(|o| o["name"] == "probabilities")
        .map(|o| json_f32(&o["data"]))
        .expect("probabilities");
    assert_eq!(plain.len(), 4, "two rows of two classes");

    // REST decide.
    let (status, rest) = server
        .post_json(
            "/v1/deployments/scored/decide",
            &json!({"unit_id": "u1", "inputs": bc_request(2)["inputs"]}),
        )
        .await;
    assert_eq!(status, 200, "{rest}");
    assert_eq!(rest["variant"], "lr");
    assert_eq!(json_f32(&rest["prediction"]["probabilities"]["data"]), plain);

    // gRPC decide, typed and raw inputs.
    let mut client = ExperimentsClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    for raw in [false, true] {
        let d = client
            .decide(DecideRequest {
                deployment: "scored".into(),
                unit_id: "u1".into(),
                inputs: Some(inputs(&rows, raw)),
                ..Default::default()
            })
            .await
            .expect("grpc decide")
            .into_inner();
        assert_eq!(d.variant, "lr");
        assert!(!d.fallback, "no guardrail here");
        assert!(!d.decision_id.is_empty());
        let prediction = d.prediction.expect("the model's answer");
        assert_eq!(prediction.raw_output_contents.is_empty(), !raw, "raw in, raw out");
        assert_eq!(grpc_probabilities(&prediction), plain, "raw inputs: {raw}");
    }

    // Without inputs a model deployment refuses, over gRPC as over REST.
    let err = client
        .decide(DecideRequest {
            deployment: "scored".into(),
            ..Default::default()
        })
        .await
        .expect_err("inputs are required");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("send 'inputs'"), "{}", err.message());
    // Inputs the model does not take are refused before deciding.
    let mut bad = inputs(&rows[..30], false);
    bad.inputs[0].shape = vec![1, 30];
    bad.inputs[0].datatype = "FP64".into();
    bad.inputs[0].contents = Some(InferTensorContents {
        fp64_contents: vec![0.0; 30],
        ..Default::default()
    });
    let err = client
        .decide(DecideRequest {
            deployment: "scored".into(),
            inputs: Some(bad),
            ..Default::default()
        })
        .await
        .expect_err("wrong datatype");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_decide_says_when_a_fallback_answered() {
    let server = TestServer::start(&["bc-lr"]).await;
    // No probability may exceed 0.5: every answer of the classifier is held back.
    put(
        &server,
        "guarded",
        json!({
            "variants": [{"name": "lr", "model": "bc-lr"}, {"name": "safe"}],
            "policy": {"type": "fixed_weights", "weights": [1, 0]},
            "output_guardrails": {"output": "probabilities", "min": 0, "max": 0.5, "fallback": "safe"},
        }),
    )
    .await;
    let mut client = ExperimentsClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let d = client
        .decide(DecideRequest {
            deployment: "guarded".into(),
            inputs: Some(inputs(&rows(), false)),
            ..Default::default()
        })
        .await
        .expect("grpc decide")
        .into_inner();
    assert!(d.fallback, "the guardrail held the answer back");
    assert_eq!(d.variant, "safe");
    assert!(d.prediction.is_none(), "a plain-action fallback has no prediction");
    let why: serde_json::Value = serde_json::from_str(&d.fallback_json).expect("fallback JSON");
    assert_eq!(why["from"], "lr");
}
