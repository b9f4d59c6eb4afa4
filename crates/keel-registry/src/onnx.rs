//! Reading a model's signature from ONNX bytes.
//!
//! Only the parts of `onnx.proto` the registry needs are declared here (field numbers from the
//! ONNX specification); prost skips every other field, so large initializers cost a skip, not a
//! copy. Declared by hand rather than generated: the subset is small, stable across ONNX
//! versions, and needs no `protoc` or build script.

use std::collections::BTreeMap;

use prost::Message;
use serde::{Deserialize, Serialize};

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(string, tag = "3")]
    producer_version: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "14")]
    metadata_props: Vec<StringStringEntryProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct StringStringEntryProto {
    #[prost(string, tag = "1")]
    key: String,
    #[prost(string, tag = "2")]
    value: String,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorNameOnly>,
}

/// A `TensorProto` of which only the name is read (initializers are not graph inputs).
#[derive(Clone, PartialEq, Message)]
struct TensorNameOnly {
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(string, tag = "7")]
    domain: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
    #[prost(message, optional, boxed, tag = "4")]
    sequence_type: Option<Box<SequenceTypeProto>>,
    #[prost(message, optional, boxed, tag = "5")]
    map_type: Option<Box<MapTypeProto>>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct SequenceTypeProto {
    #[prost(message, optional, boxed, tag = "1")]
    elem_type: Option<Box<TypeProto>>,
}

#[derive(Clone, PartialEq, Message)]
struct MapTypeProto {
    #[prost(int32, tag = "1")]
    key_type: i32,
    #[prost(message, optional, boxed, tag = "2")]
    value_type: Option<Box<TypeProto>>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

/// One input or output of a model, with the datatype spelled as the Open Inference Protocol
/// spells it (`FP32`, `INT64`, `BYTES`...) and `-1` for a free dimension.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorSignature {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
    /// Set for ONNX types that are not plain tensors, e.g. `seq(map(int64,tensor(float)))`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx_type: Option<String>,
}

/// What the registry reads from an ONNX graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    pub inputs: Vec<TensorSignature>,
    pub outputs: Vec<TensorSignature>,
    pub ir_version: i64,
    /// Operator set per domain ("" is the default ONNX domain, "ai.onnx.ml" the ML operators).
    pub opsets: BTreeMap<String, i64>,
    /// Distinct operators used, as `domain:op_type` or plain `op_type` for the default domain.
    pub operators: Vec<String>,
    pub producer: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// Why some bytes are not a model keel can serve. The caller's file is at fault in every case
/// (kind [`InvalidArgument`](keel_types::ErrorKind::InvalidArgument)); each variant has a stable
/// public [`code`](SignatureError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No bytes at all.
    #[error("the file is empty")]
    Empty,
    /// The bytes are not an ONNX protobuf message (or not a complete one).
    #[error("not an ONNX model (protobuf decoding failed: {0})")]
    Decode(String),
    /// The message decodes but lacks a part every ONNX model has (`what`: "no IR version",
    /// "no operator set imported", "no graph").
    #[error("not an ONNX model ({what})")]
    NotOnnx { what: &'static str },
    /// The graph has no nodes, no inputs or no outputs (`what` names which).
    #[error("the ONNX graph {what}")]
    EmptyGraph { what: &'static str },
    /// A graph input or output has no type.
    #[error("graph value '{name}' has no type")]
    Untyped { name: String },
    /// A tensor's element type is not one ONNX defines (or keel knows).
    #[error("'{name}' has an unknown element type {elem_type}")]
    UnknownElementType { name: String, elem_type: i32 },
    /// A graph value is neither a tensor nor a sequence of maps.
    #[error("graph value '{name}' has a type keel cannot serve (only tensors and sequences of maps)")]
    UnsupportedType { name: String },
}

impl SignatureError {
    /// What kind of failure this is: always the caller's file.
    pub fn kind(&self) -> keel_types::ErrorKind {
        match self {
            SignatureError::Empty
            | SignatureError::Decode(_)
            | SignatureError::NotOnnx { .. }
            | SignatureError::EmptyGraph { .. }
            | SignatureError::Untyped { .. }
            | SignatureError::UnknownElementType { .. }
            | SignatureError::UnsupportedType { .. } => keel_types::ErrorKind::InvalidArgument,
        }
    }

    /// Stable public code.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Empty => "empty_model_file",
            SignatureError::Decode(_) | SignatureError::NotOnnx { .. } => "not_onnx",
            SignatureError::EmptyGraph { .. } => "empty_onnx_graph",
            SignatureError::Untyped { .. } => "untyped_graph_value",
            SignatureError::UnknownElementType { .. } => "unknown_element_type",
            SignatureError::UnsupportedType { .. } => "unsupported_graph_value",
        }
    }
}

impl keel_types::KeelError for SignatureError {
    fn kind(&self) -> keel_types::ErrorKind {
        SignatureError::kind(self)
    }

    fn code(&self) -> &'static str {
        SignatureError::code(self)
    }
}

/// Parses ONNX bytes into a [`Signature`]; the error says why the bytes are not a usable model.
pub fn read_signature(bytes: &[u8]) -> Result<Signature, SignatureError> {
    if bytes.is_empty() {
        return Err(SignatureError::Empty);
    }
    let model = ModelProto::decode(bytes).map_err(|e| SignatureError::Decode(e.to_string()))?;
    if model.ir_version <= 0 {
        return Err(SignatureError::NotOnnx { what: "no IR version" });
    }
    if model.opset_import.is_empty() {
        return Err(SignatureError::NotOnnx {
            what: "no operator set imported",
        });
    }
    let graph = model.graph.ok_or(SignatureError::NotOnnx { what: "no graph" })?;
    if graph.node.is_empty() {
        return Err(SignatureError::EmptyGraph { what: "has no nodes" });
    }
    let initializers: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    let inputs = graph
        .input
        .iter()
        .filter(|v| !initializers.contains(v.name.as_str()))
        .map(tensor_signature)
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = graph
        .output
        .iter()
        .map(tensor_signature)
        .collect::<Result<Vec<_>, _>>()?;
    if inputs.is_empty() {
        return Err(SignatureError::EmptyGraph {
            what: "declares no inputs",
        });
    }
    if outputs.is_empty() {
        return Err(SignatureError::EmptyGraph {
            what: "declares no outputs",
        });
    }
    let mut operators: Vec<String> = graph
        .node
        .iter()
        .map(|n| {
            if n.domain.is_empty() || n.domain == "ai.onnx" {
                n.op_type.clone()
            } else {
                format!("{}:{}", n.domain, n.op_type)
            }
        })
        .collect();
    operators.sort();
    operators.dedup();
    let producer = [model.producer_name, model.producer_version]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Ok(Signature {
        inputs,
        outputs,
        ir_version: model.ir_version,
        opsets: model.opset_import.into_iter().map(|o| (o.domain, o.version)).collect(),
        operators,
        producer,
        metadata: model.metadata_props.into_iter().map(|p| (p.key, p.value)).collect(),
    })
}

fn tensor_signature(v: &ValueInfoProto) -> Result<TensorSignature, SignatureError> {
    let ty = v
        .r#type
        .as_ref()
        .ok_or_else(|| SignatureError::Untyped { name: v.name.clone() })?;
    if let Some(t) = &ty.tensor_type {
        return Ok(TensorSignature {
            name: v.name.clone(),
            datatype: elem_type_name(t.elem_type)
                .ok_or_else(|| SignatureError::UnknownElementType {
                    name: v.name.clone(),
                    elem_type: t.elem_type,
                })?
                .to_string(),
            shape: t
                .shape
                .as_ref()
                .map(|s| s.dim.iter().map(|d| d.dim_value.unwrap_or(-1)).collect())
                .unwrap_or_default(),
            onnx_type: None,
        });
    }
    // Sequences of maps are what scikit-learn's ZipMap produces: keel serves them as a
    // [batch, classes] tensor of the map's value type.
    let value_type = ty
        .sequence_type
        .as_ref()
        .and_then(|s| s.elem_type.as_ref())
        .and_then(|e| e.map_type.as_ref())
        .map(|m| {
            let value = m
                .value_type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .map(|t| t.elem_type)
                .unwrap_or(0);
            (m.key_type, value)
        });
    match value_type {
        Some((key, value)) => Ok(TensorSignature {
            name: v.name.clone(),
            datatype: elem_type_name(value).unwrap_or("FP32").to_string(),
            shape: vec![-1, -1],
            onnx_type: Some(format!("seq(map({},{}))", onnx_elem_name(key), onnx_elem_name(value))),
        }),
        None => Err(SignatureError::UnsupportedType { name: v.name.clone() }),
    }
}

fn elem_type_name(t: i32) -> Option<&'static str> {
    Some(match t {
        1 => "FP32",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "BYTES",
        9 => "BOOL",
        10 => "FP16",
        11 => "FP64",
        12 => "UINT32",
        13 => "UINT64",
        _ => return None,
    })
}

fn onnx_elem_name(t: i32) -> &'static str {
    match t {
        1 => "float",
        7 => "int64",
        8 => "string",
        11 => "double",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_model() -> Vec<u8> {
        let tensor = |name: &str, elem: i32, dims: &[Option<i64>]| ValueInfoProto {
            name: name.into(),
            r#type: Some(TypeProto {
                tensor_type: Some(TensorTypeProto {
                    elem_type: elem,
                    shape: Some(TensorShapeProto {
                        dim: dims
                            .iter()
                            .map(|d| Dimension {
                                dim_value: *d,
                                dim_param: d.is_none().then(|| "N".to_string()),
                            })
                            .collect(),
                    }),
                }),
                sequence_type: None,
                map_type: None,
            }),
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
            producer_name: "test".into(),
            producer_version: "1".into(),
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: "Identity".into(),
                    domain: String::new(),
                }],
                name: "g".into(),
                input: vec![tensor("x", 1, &[None, Some(3)])],
                output: vec![tensor("y", 7, &[None])],
                initializer: vec![],
            }),
            metadata_props: vec![],
        }
        .encode_to_vec()
    }

    #[test]
    fn reads_inputs_outputs_and_free_dimensions() {
        let sig = read_signature(&tiny_model()).expect("valid model");
        assert_eq!(sig.inputs[0].name, "x");
        assert_eq!(sig.inputs[0].datatype, "FP32");
        assert_eq!(sig.inputs[0].shape, vec![-1, 3]);
        assert_eq!(sig.outputs[0].datatype, "INT64");
        assert_eq!(sig.operators, vec!["Identity".to_string()]);
        assert_eq!(sig.opsets.get(""), Some(&17));
        assert_eq!(sig.producer, "test 1");
    }

    #[test]
    fn refuses_what_is_not_onnx() {
        let empty = read_signature(b"").unwrap_err();
        assert_eq!(empty, SignatureError::Empty);
        assert_eq!(empty.to_string(), "the file is empty");
        let garbage = read_signature(b"hello, this is not a model").unwrap_err();
        assert_eq!(garbage.code(), "not_onnx", "{garbage}");
        assert!(garbage.to_string().starts_with("not an ONNX model"), "{garbage}");
        let mut truncated = tiny_model();
        truncated.truncate(truncated.len() / 2);
        let truncated = read_signature(&truncated).unwrap_err();
        assert_eq!(truncated.kind(), keel_types::ErrorKind::InvalidArgument, "{truncated}");
    }
}
