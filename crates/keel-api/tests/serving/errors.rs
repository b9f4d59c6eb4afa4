//! Bad input over REST: a clear 4xx with the V2 error body, never a 5xx, and the server
//! keeps serving.

use crate::support::{TestServer, bc_request};

fn input(name: &str, shape: serde_json::Value, datatype: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let server = TestServer::start_with(&["bc-lr"], 64 * 1024).await;
    let ok_row = || serde_json::json!(vec![1.0; 30]);
    let mut extra = bc_request(1);
    extra["inputs"].as_array_mut().expect("inputs").push(serde_json::json!(
        {"name": "extra", "shape": [1], "datatype": "FP32", "data": [1.0]}
    ));
    let mut twice = bc_request(1);
    let first = twice["inputs"][0].clone();
    twice["inputs"].as_array_mut().expect("inputs").push(first);
    let cases: Vec<(&str, serde_json::Value, u16, &str)> = vec![
        (
            "/v2/models/nope/infer",
            bc_request(1),
            404,
            "model 'nope' is not loaded",
        ),
        (
            "/v2/models/bc-lr/versions/7/infer",
            bc_request(1),
            404,
            "version 7 of model 'bc-lr' is not loaded",
        ),
        (
            "/v2/models/bc-lr/infer",
            serde_json::json!({"inputs": []}),
            400,
            "input 'input' is missing",
        ),
        ("/v2/models/bc-lr/infer", extra, 400, "has no input named 'extra'"),
        ("/v2/models/bc-lr/infer", twice, 400, "given twice"),
        (
            "/v2/models/bc-lr/infer",
            input("input", serde_json::json!([1, 30]), "FP64", ok_row()),
            400,
            "must be FP32, got FP64",
        ),
        (
            "/v2/models/bc-lr/infer",
            input(
                "input",
                serde_json::json!([1, 31]),
                "FP32",
                serde_json::json!(vec![1.0; 31]),
            ),
            400,
            "expects [-1, 30]",
        ),
        (
            "/v2/models/bc-lr/infer",
            input("input", serde_json::json!([30]), "FP32", ok_row()),
            400,
            "expects [-1, 30]",
        ),
        (
            "/v2/models/bc-lr/infer",
            input("input", serde_json::json!([2, 30]), "FP32", ok_row()),
            400,
            "has 30 values but shape [2, 30] needs 60",
        ),
        (
            "/v2/models/bc-lr/infer",
            input("input", serde_json::json!([0, 30]), "FP32", serde_json::json!([])),
            400,
            "no rows",
        ),
        (
            "/v2/models/bc-lr/infer",
            input(
                "input",
                serde_json::json!([1, 30]),
                "FP32",
                serde_json::json!(vec!["x"; 30]),
            ),
            400,
            "is not a number",
        ),
        (
            "/v2/models/bc-lr/infer",
            input("input", serde_json::json!([1, 30]), "FLOAT", ok_row()),
            400,
            "unknown datatype 'FLOAT'",
        ),
        (
            "/v2/models/bc-lr/infer",
            serde_json::json!({"inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32"}]}),
            400,
            "has no 'data'",
        ),
        (
            "/v2/models/bc-lr/infer",
            serde_json::json!({"outputs": []}),
            400,
            "missing field `inputs`",
        ),
        (
            "/v2/models/bc-lr/infer",
            {
                let mut b = bc_request(1);
                b["outputs"] = serde_json::json!([{"name": "nope"}]);
                b
            },
            400,
            "has no output named 'nope'",
        ),
        (
            "/v2/models/bc-lr/infer",
            input("input", serde_json::json!([1, -30]), "FP32", ok_row()),
            400,
            "negative dimension",
        ),
    ];
    for (path, body, status, needle) in cases {
        let (got, response) = server.post_json(path, &body).await;
        assert_eq!(got, status, "{path} {body}: {response}");
        let message = response["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error field: {response}"));
        assert!(message.contains(needle), "'{message}' should contain '{needle}'");
        assert!(response["code"].is_string(), "{response}");
    }
    // Raw bodies: malformed JSON, NaN (not JSON), non-UTF-8, trailing garbage.
    let raw_cases: Vec<(Vec<u8>, &str)> = vec![
        (b"{\"inputs\": [".to_vec(), "malformed request JSON"),
        (b"not json at all".to_vec(), "malformed request JSON"),
        (
            br#"{"inputs":[{"name":"input","shape":[1,1],"datatype":"FP32","data":[NaN]}]}"#.to_vec(),
            "malformed request JSON",
        ),
        (vec![0xff, 0xfe, 0x00, 0x7b], "not valid UTF-8"),
        (b"{\"inputs\": []} trailing".to_vec(), "malformed request JSON"),
    ];
    for (body, needle) in raw_cases {
        let (status, response) = server.post_raw("/v2/models/bc-lr/infer", body).await;
        assert_eq!(status, 400, "{response}");
        assert!(
            response["error"].as_str().expect("error").contains(needle),
            "{response}"
        );
    }
    // NaN and Inf through the binary extension, where they can be expressed.
    for bad in [f32::NAN, f32::INFINITY] {
        let header = serde_json::to_vec(&serde_json::json!({
            "inputs": [{"name": "input", "shape": [1, 30], "datatype": "FP32", "parameters": {"binary_data_size": 120}}]
        }))
        .expect("json");
        let mut body = header.clone();
        for i in 0..30 {
            let v: f32 = if i == 7 { bad } else { 1.0 };
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
        assert_eq!(r.status().as_u16(), 400);
        let response: serde_json::Value = r.json().await.expect("json");
        assert!(
            response["error"]
                .as_str()
                .expect("e")
                .contains("NaN or infinite value at flat position 7"),
            "{response}"
        );
    }
    // Oversized body: 413 with the limit named.
    let big = bc_request(300);
    let (status, response) = server.post_json("/v2/models/bc-lr/infer", &big).await;
    assert_eq!(status, 413, "{response}");
    assert!(
        response["error"]
            .as_str()
            .expect("e")
            .contains("over the limit of 65536 bytes"),
        "{response}"
    );
    // Unknown route and wrong method: JSON errors too.
    assert_eq!(server.get("/v2/nothing/here").await.0, 404);
    let r = server
        .client
        .get(server.url("/v2/models/bc-lr/infer"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 405);
    // Bad repository calls.
    let (status, response) = server
        .post_json("/v2/repository/models/unknown-model/load", &serde_json::json!({}))
        .await;
    assert_eq!(status, 404, "{response}");
    let (status, _) = server
        .post_json(
            "/v2/repository/models/bc-lr/load",
            &serde_json::json!({"parameters": {"version": "9"}}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = server
        .post_json(
            "/v2/repository/models/bc-lr/load",
            &serde_json::json!({"parameters": {"version": [1]}}),
        )
        .await;
    assert_eq!(status, 400);
    // After all of that, the model still serves the same version.
    let (status, response) = server.post_json("/v2/models/bc-lr/infer", &bc_request(1)).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["model_version"], "1");
    assert_eq!(server.get("/v2/health/ready").await.0, 200);
}
