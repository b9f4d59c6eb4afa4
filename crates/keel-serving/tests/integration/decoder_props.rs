//! Property tests of the REST request decoder: it takes untrusted bytes.

use keel_serving::protocol::{decode_json_request, encode_json_response};
use keel_serving::{InferResponse, OutputTensor, Tensor, TensorData};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any bytes, with or without a binary header length: an error of the request kind or a
    /// request, never a panic.
    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512), header in proptest::option::of(0usize..600)) {
        if let Err(e) = decode_json_request(&body, header) {
            prop_assert_eq!(e.code(), "bad_request");
            prop_assert!(!e.to_string().is_empty());
        }
    }

    /// Mutations of a valid request: truncation and byte flips are refused or decoded, never a panic.
    #[test]
    fn mutated_valid_requests_never_panic(cut in 0usize..200, flip in 0usize..200, byte in any::<u8>()) {
        let valid = br#"{"id":"a","inputs":[{"name":"input","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4.5]]}],"outputs":[{"name":"p","parameters":{"binary_data":true}}]}"#;
        let mut body = valid.to_vec();
        if flip < body.len() { body[flip] = byte; }
        body.truncate(cut.min(body.len()));
        let _ = decode_json_request(&body, None);
    }

    /// Whatever FP32 tensor is encoded as a JSON output decodes back to the same values
    /// when sent as an input (shape, count and values preserved).
    #[test]
    fn fp32_json_round_trip(values in proptest::collection::vec(-1e30f32..1e30f32, 1..64)) {
        let n = values.len() as i64;
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: None,
            prediction_id: None,
            outputs: vec![OutputTensor {
                name: "x".into(),
                tensor: Tensor { shape: vec![1, n], data: TensorData::Fp32(values.clone()) },
                binary: false,
            }],
        };
        let encoded = encode_json_response(&response).expect("encode");
        let json: serde_json::Value = serde_json::from_slice(&encoded.body).expect("json");
        let request = serde_json::json!({"inputs": [{
            "name": "x", "shape": json["outputs"][0]["shape"], "datatype": "FP32", "data": json["outputs"][0]["data"]
        }]});
        let decoded = decode_json_request(&serde_json::to_vec(&request).expect("json"), None).expect("decode");
        prop_assert_eq!(&decoded.inputs[0].tensor.data, &TensorData::Fp32(values));
        prop_assert_eq!(&decoded.inputs[0].tensor.shape, &vec![1, n]);
    }

    /// Binary inputs of any INT64 values survive the binary extension exactly.
    #[test]
    fn int64_binary_round_trip(values in proptest::collection::vec(any::<i64>(), 1..64)) {
        let data = TensorData::Int64(values.clone());
        let raw = data.to_raw_bytes();
        let header = serde_json::to_vec(&serde_json::json!({"inputs": [{
            "name": "x", "shape": [values.len()], "datatype": "INT64", "parameters": {"binary_data_size": raw.len()}
        }]})).expect("json");
        let mut body = header.clone();
        body.extend_from_slice(&raw);
        let decoded = decode_json_request(&body, Some(header.len())).expect("decode");
        prop_assert_eq!(&decoded.inputs[0].tensor.data, &data);
    }
}
