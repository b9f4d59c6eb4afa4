use super::*;

#[test]
fn decodes_flat_and_nested_data() {
    let body = br#"{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2.5],[3,4]]}]}"#;
    let req = decode_json_request(body, None).expect("valid");
    assert_eq!(req.id.as_deref(), Some("r1"));
    assert_eq!(req.inputs[0].tensor.data, TensorData::Fp32(vec![1.0, 2.5, 3.0, 4.0]));
    let body = br#"{"inputs":[{"name":"x","shape":[3],"datatype":"INT64","data":[1,-2,3]}]}"#;
    let req = decode_json_request(body, None).expect("valid");
    assert_eq!(req.inputs[0].tensor.data, TensorData::Int64(vec![1, -2, 3]));
}

#[test]
fn refuses_count_type_and_range_errors_with_names() {
    let cases: &[(&[u8], &str)] = &[
        (
            br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#,
            "has 2 values but shape [3] needs 3",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"INT8","data":[300]}]}"#,
            "value 300 at position 0 is not i8",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":["a"]}]}"#,
            "is not a number",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FLOAT","data":[1]}]}"#,
            "unknown datatype 'FLOAT'",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[-1],"datatype":"FP32","data":[1]}]}"#,
            "negative dimension",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32"}]}"#,
            "has no 'data'",
        ),
        (
            br#"{"inputs":[{"name":"x","shape":[1],"datatype":"FP32","data":[NaN]}]}"#,
            "malformed request JSON",
        ),
        (br#"{"inputs": ["#, "malformed request JSON"),
        (b"\xff\xfe", "not valid UTF-8"),
    ];
    for (body, want) in cases {
        let err = decode_json_request(body, None).expect_err("must be refused");
        assert_eq!(err.code(), "bad_request");
        assert!(err.to_string().contains(want), "{err} should contain {want}");
    }
}

#[test]
fn binary_extension_round_trip() {
    let json = br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","parameters":{"binary_data_size":8}}],"parameters":{"binary_data_output":true}}"#;
    let mut body = json.to_vec();
    body.extend_from_slice(&TensorData::Fp32(vec![1.0, 2.0]).to_raw_bytes());
    let req = decode_json_request(&body, Some(json.len())).expect("valid");
    assert!(req.binary_output_default());
    assert_eq!(req.inputs[0].tensor.data, TensorData::Fp32(vec![1.0, 2.0]));
    let err = decode_json_request(&body[..body.len() - 1], Some(json.len())).expect_err("short");
    assert!(err.to_string().contains("declares 8 binary bytes"), "{err}");
    let err = decode_json_request(&body, None).expect_err("no header");
    assert!(err.to_string().contains("Inference-Header-Content-Length"), "{err}");
}

#[test]
fn encodes_json_and_binary_outputs() {
    let response = InferResponse {
        model_name: "m".into(),
        model_version: "1".into(),
        id: None,
        prediction_id: None,
        outputs: vec![
            OutputTensor {
                name: "label".into(),
                tensor: Tensor {
                    shape: vec![1],
                    data: TensorData::Int64(vec![1]),
                },
                binary: false,
            },
            OutputTensor {
                name: "p".into(),
                tensor: Tensor {
                    shape: vec![1, 2],
                    data: TensorData::Fp32(vec![0.25, 0.75]),
                },
                binary: true,
            },
        ],
    };
    let enc = encode_json_response(&response).expect("encode");
    let n = enc.header_len.expect("binary");
    let json: serde_json::Value = serde_json::from_slice(&enc.body[..n]).expect("json");
    assert_eq!(json["outputs"][0]["data"], serde_json::json!([1]));
    assert_eq!(json["outputs"][1]["parameters"]["binary_data_size"], 8);
    assert_eq!(
        TensorData::from_raw_bytes(DataType::Fp32, &enc.body[n..]),
        Ok(TensorData::Fp32(vec![0.25, 0.75]))
    );
}
