//! Property tests of the V2 request decoder on bad input of every shape (issue 18, "bad input,
//! everywhere"): arbitrary JSON documents, valid requests with one field replaced by an
//! arbitrary value, byte-level mutations of valid bodies and binary-extension bodies whose
//! declared sizes lie. Every outcome is a decoded request or an error that is the caller's
//! fault (never a server-fault kind, never a panic). Valid requests of every datatype, in JSON
//! and in the binary extension, decode to exactly what was sent.
//!
//! `decoder_props.rs` beside this file covers arbitrary bytes and the FP32/INT64 round trips.

use keel_serving::protocol::{decode_json_request, element_count};
use keel_serving::{InferRequest, TensorData};
use proptest::prelude::*;
use serde_json::{Value, json};

/// An arbitrary JSON document (bounded depth and width).
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-z_]{0,12}".prop_map(Value::from),
        ".{0,8}".prop_map(Value::from),
        // Words the decoder gives meaning to, so structure is hit more often than by chance.
        prop::sample::select(vec![
            "FP32",
            "INT64",
            "BYTES",
            "BOOL",
            "FP16",
            "UINT8",
            "binary_data_size"
        ])
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "inputs",
                        "outputs",
                        "name",
                        "shape",
                        "datatype",
                        "data",
                        "parameters",
                        "id",
                        "binary_data_size",
                        "binary_data",
                        "x",
                    ]),
                    inner
                ),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

/// One tensor of any datatype with values that JSON carries exactly, and its JSON `data`.
fn any_tensor() -> impl Strategy<Value = (Vec<i64>, TensorData)> {
    let shape = prop::collection::vec(0i64..4, 1..4);
    shape.prop_flat_map(|shape| {
        let n = element_count("t", &shape).expect("small shape");
        let data = prop_oneof![
            prop::collection::vec(any::<bool>(), n).prop_map(TensorData::Bool),
            prop::collection::vec(any::<u8>(), n).prop_map(TensorData::Uint8),
            prop::collection::vec(any::<u16>(), n).prop_map(TensorData::Uint16),
            prop::collection::vec(any::<u32>(), n).prop_map(TensorData::Uint32),
            prop::collection::vec(any::<u64>(), n).prop_map(TensorData::Uint64),
            prop::collection::vec(any::<i8>(), n).prop_map(TensorData::Int8),
            prop::collection::vec(any::<i16>(), n).prop_map(TensorData::Int16),
            prop::collection::vec(any::<i32>(), n).prop_map(TensorData::Int32),
            prop::collection::vec(any::<i64>(), n).prop_map(TensorData::Int64),
            // Dyadic fractions: exact in decimal and in f32.
            prop::collection::vec((-1_000_000i32..1_000_000).prop_map(|i| i as f32 / 16.0), n)
                .prop_map(TensorData::Fp32),
            prop::collection::vec(any::<f64>().prop_filter("finite", |f| f.is_finite()), n).prop_map(TensorData::Fp64),
            prop::collection::vec(".{0,6}".prop_map(String::into_bytes), n).prop_map(TensorData::Bytes),
        ];
        (Just(shape), data)
    })
}

fn json_data(data: &TensorData) -> Value {
    match data {
        TensorData::Bool(v) => json!(v),
        TensorData::Uint8(v) => json!(v),
        TensorData::Uint16(v) | TensorData::Fp16(v) => json!(v),
        TensorData::Uint32(v) => json!(v),
        TensorData::Uint64(v) => json!(v),
        TensorData::Int8(v) => json!(v),
        TensorData::Int16(v) => json!(v),
        TensorData::Int32(v) => json!(v),
        TensorData::Int64(v) => json!(v),
        TensorData::Fp32(v) => json!(v),
        TensorData::Fp64(v) => json!(v),
        TensorData::Bytes(v) => json!(
            v.iter()
                .map(|b| String::from_utf8(b.clone()).expect("generated as text"))
                .collect::<Vec<_>>()
        ),
    }
}

/// A valid request of 1-3 inputs, as JSON (`binary: false`) or with every input in the binary
/// extension; returns the body and the header length (binary only).
fn encode(tensors: &[(Vec<i64>, TensorData)], binary: bool) -> (Vec<u8>, Option<usize>) {
    let mut tail = Vec::new();
    let inputs: Vec<Value> = tensors
        .iter()
        .enumerate()
        .map(|(i, (shape, data))| {
            let mut input = json!({"name": format!("in{i}"), "shape": shape, "datatype": data.datatype().as_str()});
            if binary {
                let raw = data.to_raw_bytes();
                input["parameters"] = json!({"binary_data_size": raw.len()});
                tail.extend_from_slice(&raw);
            } else {
                input["data"] = json_data(data);
            }
            input
        })
        .collect();
    let mut body =
        serde_json::to_vec(&json!({"id": "p", "inputs": inputs, "outputs": [{"name": "out"}]})).expect("serialise");
    let header = binary.then_some(body.len());
    body.extend_from_slice(&tail);
    (body, header)
}

/// The invariant: decoded, or refused as the caller's fault with a message.
fn check(body: &[u8], header: Option<usize>) -> Result<Option<InferRequest>, TestCaseError> {
    match decode_json_request(body, header) {
        Ok(request) => {
            for input in &request.inputs {
                let n = element_count(&input.name, &input.tensor.shape).expect("decoded shapes have a size");
                prop_assert_eq!(n, input.tensor.data.len());
            }
            Ok(Some(request))
        }
        Err(e) => {
            prop_assert!(
                !e.kind().is_server_fault(),
                "server fault {:?} for bad input: {}",
                e.kind(),
                e
            );
            prop_assert!(!e.to_string().is_empty());
            Ok(None)
        }
    }
}

/// Replaces the value at a path chosen by `pick` with `replacement`.
fn replace_somewhere(doc: &mut Value, pick: usize, replacement: Value) {
    let mut paths: Vec<Vec<PathStep>> = Vec::new();
    collect_paths(doc, &mut Vec::new(), &mut paths);
    let path = &paths[pick % paths.len()];
    let mut at = doc;
    for step in path {
        at = match step {
            PathStep::Index(i) => &mut at[*i],
            PathStep::Key(k) => &mut at[k.as_str()],
        };
    }
    *at = replacement;
}

#[derive(Clone)]
enum PathStep {
    Index(usize),
    Key(String),
}

fn collect_paths(v: &Value, prefix: &mut Vec<PathStep>, out: &mut Vec<Vec<PathStep>>) {
    out.push(prefix.clone());
    match v {
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                prefix.push(PathStep::Index(i));
                collect_paths(x, prefix, out);
                prefix.pop();
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                prefix.push(PathStep::Key(k.clone()));
                collect_paths(x, prefix, out);
                prefix.pop();
            }
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any JSON document, sent as a body with or without a binary header length.
    #[test]
    fn arbitrary_json_is_decoded_or_refused_as_the_callers_fault(doc in any_json(), header in prop::option::of(0usize..64)) {
        let body = serde_json::to_vec(&doc).expect("serialise");
        check(&body, header)?;
    }

    /// A valid request with one value anywhere in it replaced by an arbitrary JSON value.
    #[test]
    fn valid_requests_with_one_value_replaced(
        tensors in prop::collection::vec(any_tensor(), 1..3),
        pick in any::<usize>(),
        replacement in any_json(),
    ) {
        let (body, _) = encode(&tensors, false);
        let mut doc: Value = serde_json::from_slice(&body).expect("valid JSON");
        replace_somewhere(&mut doc, pick, replacement);
        check(&serde_json::to_vec(&doc).expect("serialise"), None)?;
    }

    /// Byte-level damage to valid bodies (JSON or binary extension): flips, cuts, insertions,
    /// and a header length that is off.
    #[test]
    fn valid_bodies_damaged_byte_by_byte(
        tensors in prop::collection::vec(any_tensor(), 1..3),
        binary in any::<bool>(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..6),
        header_shift in -8i64..8,
    ) {
        let (mut body, header) = encode(&tensors, binary);
        for (at, byte, op) in edits {
            let at = at % (body.len() + 1);
            match op {
                0 if at < body.len() => body[at] = byte,
                1 => body.insert(at, byte),
                _ => body.truncate(at),
            }
        }
        let header = header.map(|h| (h as i64 + header_shift).max(0) as usize);
        check(&body, header)?;
    }

    /// Binary inputs whose declared sizes disagree with the bytes that follow.
    #[test]
    fn binary_sizes_that_lie(
        tensors in prop::collection::vec(any_tensor(), 1..3),
        lies in prop::collection::vec(any::<u64>(), 1..3),
    ) {
        let (body, header) = encode(&tensors, true);
        let header = header.expect("binary");
        let mut doc: Value = serde_json::from_slice(&body[..header]).expect("valid JSON");
        for (input, lie) in doc["inputs"].as_array_mut().expect("inputs").iter_mut().zip(lies) {
            input["parameters"]["binary_data_size"] = json!(lie);
        }
        let mut lying = serde_json::to_vec(&doc).expect("serialise");
        let new_header = lying.len();
        lying.extend_from_slice(&body[header..]);
        check(&lying, Some(new_header))?;
    }

    /// Valid requests of every datatype decode to exactly what was sent, in JSON and in the
    /// binary extension alike.
    #[test]
    fn valid_requests_round_trip(tensors in prop::collection::vec(any_tensor(), 1..4), binary in any::<bool>()) {
        let (body, header) = encode(&tensors, binary);
        let request = check(&body, header)?.expect("a valid request decodes");
        prop_assert_eq!(request.id.as_deref(), Some("p"));
        prop_assert_eq!(request.inputs.len(), tensors.len());
        for (i, (input, (shape, data))) in request.inputs.iter().zip(&tensors).enumerate() {
            prop_assert_eq!(&input.name, &format!("in{i}"));
            prop_assert_eq!(&input.tensor.shape, shape);
            prop_assert_eq!(&input.tensor.data, data);
        }
        prop_assert_eq!(request.outputs.len(), 1);
    }
}
