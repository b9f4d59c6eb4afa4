//! Bad input over HTTP on a live server (issue 18, "bad input, everywhere"): hundreds of
//! random and mutated bodies posted to infer (JSON and the binary extension), decide,
//! feedback, feedback batches and deployment specs. Every answer is below 500 with a JSON
//! error body saying what was wrong, and the server still serves a valid request after. The
//! bodies come from a fixed seed, so a failure replays.
//!
//! `/v1/labels` is not here: this server logs no predictions (that needs the lake), so the
//! route answers 503 `logging_disabled` to every body before reading it as labels. Its parse
//! and validation are fuzzed directly (bench/fuzz, target `labels_body`).

use serde_json::{Value, json};

use crate::support::{TestServer, bc_request};

/// xorshift64*: deterministic, dependency-free randomness for the mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A value of the wrong kind, size or sign for wherever it lands.
fn junk(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 2 { 12 } else { 14 }) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(0),
        4 => json!(i64::MIN),
        5 => json!(u64::MAX),
        6 => json!(1e308),
        7 => json!(-4.9e-324),
        8 => json!(""),
        9 => json!("\u{0}\u{202e}ü\u{1F600}"),
        10 => json!("x".repeat(rng.below(5000))),
        11 => json!([]),
        12 => Value::Array((0..rng.below(4)).map(|_| junk(rng, depth + 1)).collect()),
        _ => {
            let keys = [
                "inputs", "name", "shape", "datatype", "data", "context", "reward", "spec", "x",
            ];
            Value::Object(
                (0..rng.below(4))
                    .map(|_| (keys[rng.below(keys.len())].to_string(), junk(rng, depth + 1)))
                    .collect(),
            )
        }
    }
}

/// Every place in a document, as a path of keys and indices.
fn paths(v: &Value, prefix: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    out.push(prefix.clone());
    match v {
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            prefix.push(json!(i));
            paths(x, prefix, out);
            prefix.pop();
        }),
        Value::Object(o) => o.iter().for_each(|(k, x)| {
            prefix.push(json!(k));
            paths(x, prefix, out);
            prefix.pop();
        }),
        _ => {}
    }
}

fn at<'a>(doc: &'a mut Value, path: &[Value]) -> &'a mut Value {
    let mut here = doc;
    for step in path {
        here = match step {
            Value::String(k) => &mut here[k.as_str()],
            i => &mut here[i.as_u64().expect("index") as usize],
        };
    }
    here
}

/// One mutation of a valid body: a value replaced or removed, bytes damaged, garbage, or a
/// structure nested too deep.
fn mutate(rng: &mut Rng, valid: &Value) -> Vec<u8> {
    match rng.below(7) {
        0 | 1 => {
            let mut doc = valid.clone();
            let mut all = Vec::new();
            paths(&doc, &mut Vec::new(), &mut all);
            let path = all[rng.below(all.len())].clone();
            *at(&mut doc, &path) = junk(rng, 0);
            serde_json::to_vec(&doc).expect("serialise")
        }
        2 => {
            let mut doc = valid.clone();
            let mut all = Vec::new();
            paths(&doc, &mut Vec::new(), &mut all);
            let path = all[rng.below(all.len())].clone();
            if let Some((last, parent)) = path.split_last() {
                match (at(&mut doc, parent), last) {
                    (Value::Object(o), Value::String(k)) => {
                        o.remove(k);
                    }
                    (Value::Array(a), i) => {
                        a.remove(i.as_u64().expect("index") as usize);
                    }
                    _ => {}
                }
            }
            serde_json::to_vec(&doc).expect("serialise")
        }
        3 | 4 => {
            let mut body = serde_json::to_vec(valid).expect("serialise");
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(body.len() + 1);
                match rng.below(3) {
                    0 if i < body.len() => body[i] = rng.next() as u8,
                    1 => body.insert(i, rng.next() as u8),
                    _ => body.truncate(i),
                }
            }
            body
        }
        5 => (0..rng.below(300)).map(|_| rng.next() as u8).collect(),
        _ => {
            let depth = 10 + rng.below(3000);
            let mut body = "[".repeat(depth).into_bytes();
            body.extend(std::iter::repeat_n(b']', depth));
            body
        }
    }
}

fn spec() -> Value {
    json!({
        "variants": [{"name": "promo_a"}, {"name": "promo_b"}],
        "policy": {"type": "lin_ucb", "alpha": 0.5, "floor": 0.1},
        "context": [{"type": "numeric", "name": "spend"}, {"type": "categorical", "name": "device", "levels": ["ios", "web"]}],
        "control": {"variant": "promo_a", "share": 0.2},
        "reward": {"kind": "binary", "min": 0, "max": 1, "default": 0, "window_seconds": 600},
        "seed": 1
    })
}

/// The binary-extension form of a bc-lr request: the JSON header, then 30 FP32 values.
fn binary_request() -> (Vec<u8>, usize) {
    let row = bc_request(1)["inputs"][0]["data"].clone();
    let header = serde_json::to_vec(&json!({"inputs": [{
        "name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": 120}
    }]}))
    .expect("serialise");
    let mut body = header.clone();
    for v in row.as_array().expect("row") {
        body.extend_from_slice(&(v.as_f64().expect("number") as f32).to_le_bytes());
    }
    (body, header.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_bad_bodies_get_4xx_and_the_server_keeps_serving() {
    let server = TestServer::start(&["bc-lr"]).await;
    let put = |name: &str, spec: Value| {
        server
            .client
            .put(server.url(&format!("/v1/deployments/{name}")))
            .json(&json!({"spec": spec}))
            .send()
    };
    assert_eq!(put("promo", spec()).await.expect("put").status().as_u16(), 200);
    let scored = json!({"variants": [{"name": "lr", "model": "bc-lr@production"}, {"name": "none"}],
        "policy": {"type": "fixed_weights", "weights": [1, 1]}});
    assert_eq!(put("scored", scored).await.expect("put").status().as_u16(), 200);
    let (status, decision) = server
        .post_json(
            "/v1/deployments/promo/decide",
            &json!({"unit_id": "c1", "context": {"spend": 4.0, "device": "ios"}}),
        )
        .await;
    assert_eq!(status, 200, "{decision}");
    let decision_id = decision["decision_id"].clone();

    let mut scored_decide = json!({"unit_id": "c2"});
    scored_decide["inputs"] = bc_request(1)["inputs"].clone();
    let routes: Vec<(&str, &str, Value)> = vec![
        ("POST", "/v2/models/bc-lr/infer", bc_request(2)),
        (
            "POST",
            "/v1/deployments/promo/decide",
            json!({"unit_id": "c9", "context": {"spend": 1.5, "device": "web"}}),
        ),
        ("POST", "/v1/deployments/scored/decide", scored_decide),
        (
            "POST",
            "/v1/deployments/promo/feedback",
            json!({"decision_id": decision_id, "reward": 1.0}),
        ),
        (
            "POST",
            "/v1/deployments/promo/feedback/batch",
            json!({"events": [{"decision_id": decision_id, "reward": 1.0}, {"decision_id": "nope", "reward": 0}]}),
        ),
        (
            "PUT",
            "/v1/deployments/fuzzed",
            json!({"spec": spec(), "reason": "fuzz"}),
        ),
    ];
    let (binary, header_len) = binary_request();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut sent = 0;
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for round in 0..70 {
        for (method, path, valid) in &routes {
            let body = mutate(&mut rng, valid);
            let request = match *method {
                "PUT" => server.client.put(server.url(path)),
                _ => server.client.post(server.url(path)),
            };
            let response = request
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("the server answers");
            let status = response.status().as_u16();
            let text = response.text().await.expect("body");
            sent += 1;
            *by_status.entry(status).or_default() += 1;
            assert!(
                status < 500,
                "round {round}: {method} {path} answered {status} {text} to {}",
                String::from_utf8_lossy(&body)
            );
            if status >= 400 {
                let error: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{path} answered {status} with a body that is not JSON ({e}): {text}"));
                assert!(
                    error["error"].as_str().is_some_and(|m| !m.is_empty()),
                    "{path} {status}: no error message in {text}"
                );
            }
        }
        // The binary extension, with its header length right, off, or absurd.
        let mut body = binary.clone();
        let declared = match rng.below(4) {
            0 => header_len.to_string(),
            1 => (header_len as i64 + rng.below(40) as i64 - 20).to_string(),
            2 => ["-1", "abc", "", "18446744073709551616", "1e3"][rng.below(5)].to_string(),
            _ => u64::MAX.to_string(),
        };
        if rng.below(2) == 0 {
            body = mutate(
                &mut rng,
                &serde_json::from_slice(&binary[..header_len]).expect("header"),
            );
            body.extend_from_slice(&binary[header_len..]);
        }
        let response = server
            .client
            .post(server.url("/v2/models/bc-lr/infer"))
            .header("inference-header-content-length", declared.as_str())
            .body(body)
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        sent += 1;
        *by_status.entry(status).or_default() += 1;
        assert!(
            status < 500,
            "binary body with header length {declared:?} answered {status}"
        );
    }
    eprintln!("{sent} bodies, answers by status: {by_status:?}");
    assert!(sent >= 400, "{sent} bodies sent");
    assert!(
        by_status.keys().any(|s| (400..500).contains(s)),
        "bad bodies were refused: {by_status:?}"
    );

    // Still serving, and the deployments still decide.
    let (status, answer) = server.post_json("/v2/models/bc-lr/infer", &bc_request(1)).await;
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server
        .post_json(
            "/v1/deployments/promo/decide",
            &json!({"unit_id": "c1", "context": {"spend": 4.0, "device": "ios"}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// A random gRPC infer request: names, datatypes, shapes, typed contents and raw contents that
/// may or may not agree with each other or with the model.
fn grpc_request(rng: &mut Rng, rows: &[f32]) -> keel_api::proto::ModelInferRequest {
    use keel_api::proto::infer_parameter::ParameterChoice;
    use keel_api::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
    use keel_api::proto::{InferParameter, InferTensorContents};
    let mut request = crate::grpc::request("bc-lr", rows, rng.below(2) == 0);
    let datatypes = [
        "FP32", "FP64", "FP16", "INT8", "INT64", "UINT8", "UINT64", "BOOL", "BYTES", "fp32", "", "X",
    ];
    for _ in 0..1 + rng.below(3) {
        match rng.below(9) {
            0 => request.model_name = ["", "nope", "bc-lr", "../bc-lr", "bc-lr\u{0}"][rng.below(5)].into(),
            1 => request.model_version = ["", "1", "7", "-1", "x"][rng.below(5)].into(),
            2 => {
                let input = &mut request.inputs[0];
                input.shape = (0..rng.below(4))
                    .map(|_| [0, 1, 30, -1, i64::MAX, i64::MIN, 1 << 40][rng.below(7)])
                    .collect();
            }
            3 => request.inputs[0].datatype = datatypes[rng.below(datatypes.len())].into(),
            4 => {
                let n = rng.below(70);
                let mut c = InferTensorContents::default();
                match rng.below(6) {
                    0 => c.int_contents = (0..n).map(|_| rng.next() as i32).collect(),
                    1 => c.int64_contents = (0..n).map(|_| rng.next() as i64).collect(),
                    2 => c.uint_contents = (0..n).map(|_| rng.next() as u32).collect(),
                    3 => c.fp64_contents = (0..n).map(|_| f64::from_bits(rng.next())).collect(),
                    4 => c.bytes_contents = (0..n).map(|_| vec![rng.next() as u8; rng.below(5)]).collect(),
                    _ => c.fp32_contents = (0..n).map(|_| f32::from_bits(rng.next() as u32)).collect(),
                }
                request.inputs[0].contents = Some(c);
            }
            5 => {
                let len = rng.below(200);
                request.raw_input_contents = (0..rng.below(3))
                    .map(|_| (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>().into())
                    .collect();
            }
            6 => request.inputs.push(InferInputTensor {
                name: ["input", "extra", ""][rng.below(3)].into(),
                datatype: datatypes[rng.below(datatypes.len())].into(),
                shape: vec![rng.below(3) as i64],
                ..Default::default()
            }),
            7 => request.outputs.push(InferRequestedOutputTensor {
                name: ["label", "probabilities", "nope", ""][rng.below(4)].into(),
                ..Default::default()
            }),
            _ => {
                let choice = match rng.below(4) {
                    0 => ParameterChoice::BoolParam(rng.below(2) == 0),
                    1 => ParameterChoice::Int64Param(rng.next() as i64),
                    2 => ParameterChoice::DoubleParam(f64::from_bits(rng.next())),
                    _ => ParameterChoice::StringParam("x".repeat(rng.below(10))),
                };
                let key = ["binary_data_output", "allow_non_finite", "x"][rng.below(3)];
                request.parameters.insert(
                    key.into(),
                    InferParameter {
                        parameter_choice: Some(choice),
                    },
                );
            }
        }
    }
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_bad_grpc_requests_get_client_error_codes() {
    use keel_api::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
    use prost::Message;
    use tonic::Code;
    let server = TestServer::start(&["bc-lr"]).await;
    let mut client = GrpcInferenceServiceClient::connect(format!("http://{}", server.grpc))
        .await
        .expect("connect");
    let rows: Vec<f32> = bc_request(1)["inputs"][0]["data"]
        .as_array()
        .expect("row")
        .iter()
        .map(|v| v.as_f64().expect("number") as f32)
        .collect();
    let server_fault = |c: Code| matches!(c, Code::Internal | Code::Unknown | Code::Unavailable | Code::DataLoss);
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    let mut by_code = std::collections::BTreeMap::<String, usize>::new();
    for i in 0..300 {
        let request = grpc_request(&mut rng, &rows);
        // The conversion alone, on the request after a protobuf round trip with damage: what
        // still decodes as a message must convert or be refused with a client code.
        let mut bytes = request.encode_to_vec();
        let at = rng.below(bytes.len() + 1);
        bytes.truncate(at);
        if let Ok(damaged) = keel_api::proto::ModelInferRequest::decode(bytes.as_slice())
            && let Err(status) = keel_api::grpc::decode_request(damaged)
        {
            assert!(!server_fault(status.code()), "{i}: {status:?}");
        }
        let code = match client.model_infer(request.clone()).await {
            Ok(_) => Code::Ok,
            Err(status) => {
                assert!(
                    !server_fault(status.code()),
                    "{i}: {:?} {} for {request:?}",
                    status.code(),
                    status.message()
                );
                assert!(!status.message().is_empty(), "{i}: no message");
                status.code()
            }
        };
        *by_code.entry(format!("{code:?}")).or_default() += 1;
    }
    eprintln!("gRPC answers by code: {by_code:?}");
    assert!(by_code.contains_key("InvalidArgument"), "{by_code:?}");
    let answer = client
        .model_infer(crate::grpc::request("bc-lr", &rows, false))
        .await
        .expect("still serving");
    assert_eq!(answer.into_inner().model_name, "bc-lr");
}
