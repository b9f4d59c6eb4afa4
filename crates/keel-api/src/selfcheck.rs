//! Known-answer checks of a running server over both transports.
//!
//! `keel demo` (and anyone bringing up a new machine) asks a live server for the outputs of
//! fixture rows over REST and over gRPC, and compares them with the outputs onnxruntime's own
//! Python package produced for the same rows (`fixtures/models/expected.json`). It lives here,
//! beside the transports, because it speaks both wire formats exactly as outside clients do.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse, model_infer_request::InferInputTensor};

/// Largest absolute difference from onnxruntime's outputs that still counts as the same answer.
pub const TOLERANCE: f64 = 1e-5;

/// What went wrong while checking (the server's answers, not their values: a mismatch is a
/// [`ModelCheck`] with `ok: false`).
#[derive(Debug, thiserror::Error)]
pub enum SelfCheckError {
    #[error("cannot read {path}: {source}; run from the repository root or pass --fixtures")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not the fixture format: {source}")]
    Format { path: String, source: serde_json::Error },
    #[error("REST call to {url} failed: {source}")]
    Rest { url: String, source: reqwest::Error },
    #[error("cannot connect to the gRPC port {addr}: {source}")]
    Connect {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
    #[error("gRPC infer of {model} failed: {source}")]
    Grpc { model: String, source: Box<tonic::Status> },
    #[error("{model}: {problem}")]
    Answer { model: String, problem: String },
}

/// The fixture file: per model, input rows and the outputs onnxruntime gave for them.
#[derive(Debug, Deserialize)]
pub struct Expected {
    pub models: BTreeMap<String, ExpectedModel>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedModel {
    pub input_name: String,
    pub n_features: usize,
    pub rows: Vec<Vec<f32>>,
    pub outputs: BTreeMap<String, ExpectedOutput>,
}

#[derive(Debug, Deserialize)]
pub struct ExpectedOutput {
    pub data: Vec<f64>,
}

impl Expected {
    /// Reads `expected.json` from a fixtures folder.
    pub fn read(fixtures: &Path) -> Result<Self, SelfCheckError> {
        let path = fixtures.join("expected.json");
        let shown = path.display().to_string();
        let bytes = std::fs::read(&path).map_err(|source| SelfCheckError::Read {
            path: shown.clone(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|source| SelfCheckError::Format { path: shown, source })
    }
}

/// One model's result: the worst difference over each transport and one call's latency.
#[derive(Debug, Clone, Serialize)]
pub struct ModelCheck {
    pub model: String,
    pub version: String,
    pub rows: usize,
    pub rest_max_abs_diff: f64,
    pub grpc_max_abs_diff: f64,
    pub rest_ms: f64,
    pub grpc_ms: f64,
    pub ok: bool,
}

/// Asks the server at `http` and `grpc` for every fixture model's outputs, over both transports.
pub async fn check_models(
    http: SocketAddr,
    grpc: SocketAddr,
    expected: &Expected,
) -> Result<Vec<ModelCheck>, SelfCheckError> {
    let client = reqwest::Client::new();
    let mut grpc_client = GrpcInferenceServiceClient::connect(format!("http://{grpc}"))
        .await
        .map_err(|source| SelfCheckError::Connect { addr: grpc, source })?;
    let mut checks = Vec::with_capacity(expected.models.len());
    for (name, model) in &expected.models {
        let n = model.rows.len();
        let flat: Vec<f32> = model.rows.iter().flatten().copied().collect();
        let body = serde_json::json!({
            "inputs": [{ "name": model.input_name, "shape": [n, model.n_features], "datatype": "FP32", "data": flat }]
        });
        let url = format!("http://{http}/v2/models/{name}/infer");
        let started = Instant::now();
        let rest: serde_json::Value = rest_call(&client, &url, &body).await?;
        let rest_ms = started.elapsed().as_secs_f64() * 1e3;
        let rest_diff = max_diff_json(&rest, &model.outputs).map_err(|problem| answer(name, problem))?;

        let request = ModelInferRequest {
            model_name: name.clone(),
            inputs: vec![InferInputTensor {
                name: model.input_name.clone(),
                datatype: "FP32".into(),
                shape: vec![n as i64, model.n_features as i64],
                contents: Some(InferTensorContents {
                    fp32_contents: flat,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let started = Instant::now();
        let response = grpc_client
            .model_infer(request)
            .await
            .map_err(|status| SelfCheckError::Grpc {
                model: name.clone(),
                source: Box::new(status),
            })?
            .into_inner();
        let grpc_ms = started.elapsed().as_secs_f64() * 1e3;
        let grpc_diff = max_diff_grpc(&response, &model.outputs).map_err(|problem| answer(name, problem))?;
        checks.push(ModelCheck {
            model: name.clone(),
            version: rest["model_version"].as_str().unwrap_or("?").to_string(),
            rows: n,
            rest_max_abs_diff: rest_diff,
            grpc_max_abs_diff: grpc_diff,
            rest_ms,
            grpc_ms,
            ok: rest_diff <= TOLERANCE && grpc_diff <= TOLERANCE,
        });
    }
    Ok(checks)
}

/// How many inference requests the server counted as answered, from its `/metrics`.
pub async fn served_requests(http: SocketAddr) -> Result<f64, SelfCheckError> {
    let url = format!("http://{http}/metrics");
    let rest_error = |source| SelfCheckError::Rest {
        url: url.clone(),
        source,
    };
    let text = reqwest::get(&url)
        .await
        .map_err(rest_error)?
        .text()
        .await
        .map_err(rest_error)?;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("keel_inference_requests_total") && l.contains("code=\"ok\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn rest_call(
    client: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
) -> Result<serde_json::Value, SelfCheckError> {
    let rest_error = |source| SelfCheckError::Rest {
        url: url.to_string(),
        source,
    };
    client
        .post(url)
        .json(body)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(rest_error)?
        .json()
        .await
        .map_err(rest_error)
}

fn answer(model: &str, problem: String) -> SelfCheckError {
    SelfCheckError::Answer {
        model: model.to_string(),
        problem,
    }
}

fn compare(name: &str, got: &[f64], want: &[f64]) -> Result<f64, String> {
    if got.len() != want.len() {
        return Err(format!("output {name}: {} values, expected {}", got.len(), want.len()));
    }
    Ok(got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max))
}

fn max_diff_json(response: &serde_json::Value, expected: &BTreeMap<String, ExpectedOutput>) -> Result<f64, String> {
    let outputs = response["outputs"].as_array().ok_or("the response has no outputs")?;
    let mut worst = 0.0f64;
    for (name, want) in expected {
        let out = outputs
            .iter()
            .find(|o| o["name"] == name.as_str())
            .ok_or_else(|| format!("output {name} missing from the REST response"))?;
        let got: Vec<f64> = out["data"]
            .as_array()
            .ok_or_else(|| format!("output {name} has no data"))?
            .iter()
            .map(|v| v.as_f64().unwrap_or(f64::NAN))
            .collect();
        worst = worst.max(compare(name, &got, &want.data)?);
    }
    Ok(worst)
}

fn max_diff_grpc(response: &ModelInferResponse, expected: &BTreeMap<String, ExpectedOutput>) -> Result<f64, String> {
    let mut worst = 0.0f64;
    for (name, want) in expected {
        let out = response
            .outputs
            .iter()
            .find(|o| &o.name == name)
            .ok_or_else(|| format!("output {name} missing from the gRPC response"))?;
        let c = out.contents.clone().unwrap_or_default();
        let got: Vec<f64> = match out.datatype.as_str() {
            "FP32" => c.fp32_contents.iter().map(|v| f64::from(*v)).collect(),
            "FP64" => c.fp64_contents,
            "INT64" => c.int64_contents.iter().map(|v| *v as f64).collect(),
            other => return Err(format!("output {name}: unexpected datatype {other}")),
        };
        worst = worst.max(compare(name, &got, &want.data)?);
    }
    Ok(worst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected(data: Vec<f64>) -> BTreeMap<String, ExpectedOutput> {
        BTreeMap::from([("probabilities".to_string(), ExpectedOutput { data })])
    }

    #[test]
    fn json_answers_are_compared_value_by_value() {
        let response = serde_json::json!({"outputs": [{"name": "probabilities", "data": [0.25, 0.75]}]});
        let worst = max_diff_json(&response, &expected(vec![0.25, 0.5])).unwrap();
        assert!((worst - 0.25).abs() < 1e-12);
    }

    #[test]
    fn a_missing_output_or_a_wrong_length_is_named() {
        let response = serde_json::json!({"outputs": [{"name": "label", "data": [1]}]});
        let e = max_diff_json(&response, &expected(vec![0.5])).unwrap_err();
        assert!(e.contains("probabilities"), "{e}");
        let response = serde_json::json!({"outputs": [{"name": "probabilities", "data": [0.5, 0.5]}]});
        let e = max_diff_json(&response, &expected(vec![0.5])).unwrap_err();
        assert!(e.contains("2 values, expected 1"), "{e}");
    }
}
