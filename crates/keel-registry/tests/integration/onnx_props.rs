//! Property tests of reading an uploaded model (issue 18, "bad input, everywhere"): arbitrary
//! bytes and damaged real models are refused as the caller's fault (never a server-fault kind,
//! never a panic) and leave the registry unchanged; generated valid ONNX graphs give back the
//! signature they were built with.
//!
//! The ONNX messages are declared here with prost, independently of the registry's own
//! declarations (field numbers from the ONNX specification's `onnx.proto`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use keel_registry::{PushRequest, Registry, RegistryError, Signature, read_signature};
use keel_store::Store;
use proptest::prelude::*;
use prost::Message;

#[derive(Clone, PartialEq, Message)]
struct Model {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<Graph>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OpSet>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<Entry>,
}

#[derive(Clone, PartialEq, Message)]
struct OpSet {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct Entry {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct Graph {
    #[prost(message, repeated, tag = "1")]
    node: Vec<Node>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<Initializer>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfo>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfo>,
}

#[derive(Clone, PartialEq, Message)]
struct Initializer {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct Node {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(string, tag = "7")]
    domain: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfo {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<Type>,
}

#[derive(Clone, PartialEq, Message)]
struct Type {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorType>,
    #[prost(message, optional, boxed, tag = "4")]
    sequence_type: Option<Box<SequenceType>>,
    #[prost(message, optional, boxed, tag = "5")]
    map_type: Option<Box<MapType>>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorType {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<Shape>,
}

#[derive(Clone, PartialEq, Message)]
struct SequenceType {
    #[prost(message, optional, boxed, tag = "1")]
    elem_type: Option<Box<Type>>,
}

#[derive(Clone, PartialEq, Message)]
struct MapType {
    #[prost(int32, tag = "1")]
    key_type: i32,
    #[prost(message, optional, boxed, tag = "2")]
    value_type: Option<Box<Type>>,
}

#[derive(Clone, PartialEq, Message)]
struct Shape {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dim>,
}

#[derive(Clone, PartialEq, Message)]
struct Dim {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// The ONNX element types and the Open Inference Protocol names keel gives them.
const ELEM_TYPES: [(i32, &str); 13] = [
    (1, "FP32"),
    (2, "UINT8"),
    (3, "INT8"),
    (4, "UINT16"),
    (5, "INT16"),
    (6, "INT32"),
    (7, "INT64"),
    (8, "BYTES"),
    (9, "BOOL"),
    (10, "FP16"),
    (11, "FP64"),
    (12, "UINT32"),
    (13, "UINT64"),
];

fn tensor(name: &str, elem: i32, dims: &[Option<i64>]) -> ValueInfo {
    ValueInfo {
        name: name.into(),
        r#type: Some(Type {
            tensor_type: Some(TensorType {
                elem_type: elem,
                shape: Some(Shape {
                    dim: dims
                        .iter()
                        .map(|d| Dim {
                            dim_value: *d,
                            dim_param: d.is_none().then(|| "N".into()),
                        })
                        .collect(),
                }),
            }),
            sequence_type: None,
            map_type: None,
        }),
    }
}

/// ZipMap's output type: `seq(map(key, tensor(value)))`.
fn zipmap(name: &str, key: i32, value: i32) -> ValueInfo {
    let value_type = Type {
        tensor_type: Some(TensorType {
            elem_type: value,
            shape: None,
        }),
        sequence_type: None,
        map_type: None,
    };
    ValueInfo {
        name: name.into(),
        r#type: Some(Type {
            tensor_type: None,
            sequence_type: Some(Box::new(SequenceType {
                elem_type: Some(Box::new(Type {
                    tensor_type: None,
                    sequence_type: None,
                    map_type: Some(Box::new(MapType {
                        key_type: key,
                        value_type: Some(Box::new(value_type)),
                    })),
                })),
            })),
            map_type: None,
        }),
    }
}

/// A generated valid model and what its signature must say.
#[derive(Debug, Clone)]
struct Case {
    bytes: Vec<u8>,
    inputs: Vec<(String, &'static str, Vec<i64>)>,
    outputs: Vec<(String, &'static str, Vec<i64>)>,
    operators: Vec<String>,
    opsets: BTreeMap<String, i64>,
    metadata: BTreeMap<String, String>,
}

fn dims() -> impl Strategy<Value = Vec<Option<i64>>> {
    prop::collection::vec(
        prop_oneof![Just(None), (0i64..1000).prop_map(Some), Just(Some(-1))],
        0..4,
    )
}

fn valid_model() -> impl Strategy<Value = Case> {
    let value = || (0usize..ELEM_TYPES.len(), dims());
    (
        prop::collection::vec(value(), 1..4),
        prop::collection::vec(value(), 0..3),
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(vec!["", "ai.onnx", "ai.onnx.ml", "com.x"]),
                "[A-Z][a-z]{0,6}",
            ),
            1..5,
        ),
        prop::collection::btree_map("[a-z]{0,4}", 1i64..30, 1..3),
        prop::collection::btree_map("[a-z]{1,6}", ".{0,8}", 0..3),
        (1i64..12, ".{0,6}"),
        0usize..3,
    )
        .prop_map(
            |(ins, outs, with_zipmap, nodes, opsets, metadata, (ir, producer), initialized)| {
                let mut inputs = Vec::new();
                let mut graph_inputs = Vec::new();
                for (i, (t, d)) in ins.iter().enumerate() {
                    let name = format!("in{i}");
                    graph_inputs.push(tensor(&name, ELEM_TYPES[*t].0, d));
                    inputs.push((name, ELEM_TYPES[*t].1, d.iter().map(|d| d.unwrap_or(-1)).collect()));
                }
                // Initializers listed as graph inputs (older exporters do this) are not inputs.
                let initializer: Vec<Initializer> = (0..initialized)
                    .map(|i| {
                        let name = format!("weight{i}");
                        graph_inputs.push(tensor(&name, 1, &[Some(3)]));
                        Initializer { dims: vec![3], name }
                    })
                    .collect();
                let mut outputs = Vec::new();
                let mut graph_outputs = Vec::new();
                for (i, (t, d)) in outs.iter().enumerate() {
                    let name = format!("out{i}");
                    graph_outputs.push(tensor(&name, ELEM_TYPES[*t].0, d));
                    outputs.push((name, ELEM_TYPES[*t].1, d.iter().map(|d| d.unwrap_or(-1)).collect()));
                }
                if with_zipmap || outputs.is_empty() {
                    graph_outputs.push(zipmap("probabilities", 7, 1));
                    outputs.push(("probabilities".to_string(), "FP32", vec![-1, -1]));
                }
                let node: Vec<Node> = nodes
                    .iter()
                    .map(|(domain, op)| Node {
                        input: vec!["in0".into()],
                        op_type: op.clone(),
                        domain: domain.to_string(),
                    })
                    .collect();
                let mut operators: Vec<String> = nodes
                    .iter()
                    .map(|(d, op)| {
                        if d.is_empty() || *d == "ai.onnx" {
                            op.clone()
                        } else {
                            format!("{d}:{op}")
                        }
                    })
                    .collect();
                operators.sort();
                operators.dedup();
                let model = Model {
                    ir_version: ir,
                    producer_name: producer.clone(),
                    producer_version: String::new(),
                    graph: Some(Graph {
                        node,
                        initializer,
                        input: graph_inputs,
                        output: graph_outputs,
                    }),
                    opset_import: opsets
                        .iter()
                        .map(|(d, v)| OpSet {
                            domain: d.clone(),
                            version: *v,
                        })
                        .collect(),
                    metadata_props: metadata
                        .iter()
                        .map(|(k, v)| Entry {
                            key: k.clone(),
                            value: v.clone(),
                        })
                        .collect(),
                };
                Case {
                    bytes: model.encode_to_vec(),
                    inputs,
                    outputs,
                    operators,
                    opsets,
                    metadata,
                }
            },
        )
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../fixtures/models/{name}.onnx"));
    std::fs::read(path).expect("fixture")
}

static FIXTURES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
    ["bc-lr", "bc-lr-zipmap", "iris-rf"]
        .iter()
        .map(|n| fixture(n))
        .collect()
});

/// The invariant for every upload: a signature with inputs and outputs that survives its JSON
/// round trip, or an error of the caller's kind that says what is wrong.
fn check(bytes: &[u8]) -> Result<Option<Signature>, TestCaseError> {
    match read_signature(bytes) {
        Ok(sig) => {
            prop_assert!(!sig.inputs.is_empty() && !sig.outputs.is_empty());
            let back: Signature = serde_json::from_value(serde_json::to_value(&sig).expect("serialise")).expect("read");
            prop_assert_eq!(&back, &sig);
            Ok(Some(sig))
        }
        Err(e) => {
            prop_assert!(!e.kind().is_server_fault(), "{:?}: {}", e.kind(), e);
            prop_assert!(!e.to_string().is_empty());
            Ok(None)
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes)?;
    }

    /// Real models (scikit-learn exports) with bytes flipped, inserted or cut anywhere.
    #[test]
    fn damaged_real_models(which in 0usize..3, edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..4), 1..8)) {
        let mut bytes = FIXTURES[which].clone();
        for (at, byte, op) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 | 1 if at < bytes.len() => bytes[at] = byte,
                2 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        check(&bytes)?;
    }

    /// Generated valid graphs: the signature says exactly what the graph declares.
    #[test]
    fn valid_models_give_back_their_signature(case in valid_model()) {
        let sig = check(&case.bytes)?.expect("a valid model is accepted");
        let got = |v: &[keel_registry::TensorSignature]| {
            v.iter().map(|t| (t.name.clone(), t.datatype.clone(), t.shape.clone())).collect::<Vec<_>>()
        };
        let want = |v: &[(String, &str, Vec<i64>)]| {
            v.iter().map(|(n, d, s)| (n.clone(), d.to_string(), s.clone())).collect::<Vec<_>>()
        };
        prop_assert_eq!(got(&sig.inputs), want(&case.inputs));
        prop_assert_eq!(got(&sig.outputs), want(&case.outputs));
        prop_assert_eq!(&sig.operators, &case.operators);
        prop_assert_eq!(&sig.opsets, &case.opsets);
        prop_assert_eq!(&sig.metadata, &case.metadata);
    }

    /// Valid graphs damaged at the protobuf level (flips, insertions, cuts).
    #[test]
    fn damaged_valid_models(case in valid_model(), edits in prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..4)) {
        let mut bytes = case.bytes;
        for (at, byte, op) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                _ => bytes.truncate(at),
            }
        }
        check(&bytes)?;
    }
}

/// Refused uploads leave no trace: no version, no artifact, nothing in the change log.
#[test]
fn refused_uploads_leave_the_registry_unchanged() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tmp");
    let registry = rt.block_on(async {
        let store = Store::open(&format!("sqlite://{}", dir.path().join("keel.db").display()))
            .await
            .expect("store");
        Registry::open(store, &dir.path().join("artifacts").display().to_string()).expect("registry")
    });
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    let uploads = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..128),
        (0usize..3, any::<usize>()).prop_map(|(w, cut)| {
            let b = &FIXTURES[w];
            b[..cut % b.len()].to_vec()
        }),
    ];
    runner
        .run(&uploads, |bytes| {
            if read_signature(&bytes).is_ok() {
                return Ok(());
            }
            let request = PushRequest {
                name: "fuzzed".into(),
                author: "ana".into(),
                description: None,
                metrics: serde_json::json!({}),
                training_data: None,
            };
            let err = rt
                .block_on(registry.push(request, bytes.into()))
                .expect_err("a model without a signature is refused");
            prop_assert!(matches!(err, RegistryError::InvalidArtifact { .. }), "{err}");
            prop_assert!(!err.kind().is_server_fault(), "{:?}: {err}", err.kind());
            Ok(())
        })
        .expect("every refused upload is the caller's fault");
    let versions = rt.block_on(registry.list_models()).expect("list");
    assert!(versions.is_empty(), "nothing was recorded: {versions:?}");
    assert!(
        !dir.path().join("artifacts").join("models").exists(),
        "no artifact was written"
    );
}
