//! The Open Inference Protocol (KServe V2) request and response, transport-neutral, with the
//! REST JSON codec and the binary tensor data extension.
//!
//! JSON tensor data is decoded straight into typed vectors (nested arrays are flattened in
//! row-major order) without building a `serde_json::Value` tree: the decoder is on the hot path.

use std::fmt;

use keel_runtime::{DataType, Tensor, TensorData};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{Result, ServingError};

/// Free-form parameters of a request, an input or an output.
pub type Parameters = serde_json::Map<String, serde_json::Value>;

/// A decoded inference request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct InferRequest {
    pub id: Option<String>,
    pub parameters: Parameters,
    pub inputs: Vec<InputTensor>,
    /// Outputs asked for; empty means all.
    pub outputs: Vec<RequestedOutput>,
}

impl InferRequest {
    /// Whether all outputs default to binary (`binary_data_output` request parameter).
    pub fn binary_output_default(&self) -> bool {
        bool_param(&self.parameters, "binary_data_output")
    }
}

/// One named input tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct InputTensor {
    pub name: String,
    pub tensor: Tensor,
    pub parameters: Parameters,
}

/// One output asked for by name.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestedOutput {
    pub name: String,
    pub parameters: Parameters,
}

impl RequestedOutput {
    pub fn binary(&self) -> Option<bool> {
        self.parameters.get("binary_data").and_then(serde_json::Value::as_bool)
    }
}

/// A named output tensor of a response.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputTensor {
    pub name: String,
    pub tensor: Tensor,
    /// Send this output as raw bytes after the JSON header (binary extension).
    pub binary: bool,
}

/// A response, before encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct InferResponse {
    pub model_name: String,
    pub model_version: String,
    pub id: Option<String>,
    /// The id this answer was logged under (prediction logging on): labels refer to it.
    /// Sent as the response parameter `prediction_id`.
    pub prediction_id: Option<String>,
    pub outputs: Vec<OutputTensor>,
}

pub(crate) fn bool_param(params: &Parameters, key: &str) -> bool {
    params.get(key).and_then(serde_json::Value::as_bool).unwrap_or(false)
}

#[derive(Deserialize)]
struct JsonRequest<'a> {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow)]
    inputs: Vec<JsonInput<'a>>,
    #[serde(default)]
    outputs: Option<Vec<JsonOutput>>,
}

#[derive(Deserialize)]
struct JsonInput<'a> {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Option<Parameters>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct JsonOutput {
    name: String,
    #[serde(default)]
    parameters: Option<Parameters>,
}

/// Decodes a REST request body. `header_len` is the `Inference-Header-Content-Length` value
/// when the binary extension is used: the JSON is the first `header_len` bytes and the binary
/// tensors follow, in input order.
pub fn decode_json_request(body: &[u8], header_len: Option<usize>) -> Result<InferRequest> {
    let (json, mut binary) = match header_len {
        None => (body, &[][..]),
        Some(n) if n <= body.len() => body.split_at(n),
        Some(n) => {
            return Err(ServingError::BadRequest(format!(
                "Inference-Header-Content-Length is {n} but the body has only {} bytes",
                body.len()
            )));
        }
    };
    let json = std::str::from_utf8(json).map_err(|e| {
        let hint = if header_len.is_none() {
            ", or set Inference-Header-Content-Length when binary tensors follow the JSON"
        } else {
            ""
        };
        ServingError::BadRequest(format!(
            "request body is not valid UTF-8 (invalid byte at offset {}); send JSON encoded as UTF-8{hint}",
            e.valid_up_to()
        ))
    })?;
    let raw: JsonRequest<'_> =
        serde_json::from_str(json).map_err(|e| ServingError::BadRequest(format!("malformed request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(raw.inputs.len());
    for input in raw.inputs {
        let datatype = parse_datatype(&input.name, &input.datatype)?;
        let expected = element_count(&input.name, &input.shape)?;
        let parameters = input.parameters.unwrap_or_default();
        let binary_size = parameters
            .get("binary_data_size")
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    ServingError::BadRequest(format!(
                        "input '{}': binary_data_size must be a non-negative integer",
                        input.name
                    ))
                })
            })
            .transpose()?;
        let data = match (binary_size, input.data) {
            (Some(_), Some(_)) => {
                return Err(ServingError::BadRequest(format!(
                    "input '{}' has both 'data' and a binary_data_size parameter; send one of them",
                    input.name
                )));
            }
            (Some(size), None) => {
                let size = usize::try_from(size).unwrap_or(usize::MAX);
                if header_len.is_none() {
                    return Err(ServingError::BadRequest(format!(
                        "input '{}' is binary but the Inference-Header-Content-Length header is missing",
                        input.name
                    )));
                }
                if size > binary.len() {
                    return Err(ServingError::BadRequest(format!(
                        "input '{}' declares {size} binary bytes but only {} remain in the body",
                        input.name,
                        binary.len()
                    )));
                }
                let (chunk, rest) = binary.split_at(size);
                binary = rest;
                TensorData::from_raw_bytes(datatype, chunk)
                    .map_err(|e| ServingError::BadRequest(format!("input '{}': {e}", input.name)))?
            }
            (None, Some(raw)) => decode_json_data(&input.name, datatype, raw, expected)?,
            (None, None) => {
                return Err(ServingError::BadRequest(format!(
                    "input '{}' has no 'data'; send the values as a JSON array (row-major)",
                    input.name
                )));
            }
        };
        check_count(&input.name, &input.shape, expected, data.len())?;
        inputs.push(InputTensor {
            name: input.name,
            tensor: Tensor {
                shape: input.shape,
                data,
            },
            parameters,
        });
    }
    if !binary.is_empty() {
        return Err(ServingError::BadRequest(format!(
            "{} bytes of binary data after the JSON header belong to no input",
            binary.len()
        )));
    }
    Ok(InferRequest {
        id: raw.id,
        parameters: raw.parameters.unwrap_or_default(),
        inputs,
        outputs: raw
            .outputs
            .unwrap_or_default()
            .into_iter()
            .map(|o| RequestedOutput {
                name: o.name,
                parameters: o.parameters.unwrap_or_default(),
            })
            .collect(),
    })
}

pub(crate) fn parse_datatype(input: &str, name: &str) -> Result<DataType> {
    DataType::parse(name).ok_or_else(|| {
        ServingError::BadRequest(format!(
            "input '{input}' has unknown datatype '{name}'; use one of BOOL, UINT8, UINT16, UINT32, UINT64, INT8, INT16, INT32, INT64, FP16, FP32, FP64, BYTES"
        ))
    })
}

/// Elements a shape declares; refuses negative dimensions and absurd sizes.
pub fn element_count(input: &str, shape: &[i64]) -> Result<usize> {
    if let Some(d) = shape.iter().find(|d| **d < 0) {
        return Err(ServingError::BadRequest(format!(
            "input '{input}' has a negative dimension {d} in shape {shape:?}"
        )));
    }
    Tensor::shape_elements(shape)
        .ok_or_else(|| ServingError::BadRequest(format!("input '{input}' has shape {shape:?} whose size overflows")))
}

pub fn check_count(input: &str, shape: &[i64], expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(ServingError::BadRequest(format!(
            "input '{input}' has {got} values but shape {shape:?} needs {expected}"
        )));
    }
    Ok(())
}

fn decode_json_data(input: &str, datatype: DataType, raw: &RawValue, expected: usize) -> Result<TensorData> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let cap = expected.min(1 << 20);
    macro_rules! flat {
        ($variant:ident, $t:ty) => {{
            let mut out: Vec<$t> = Vec::with_capacity(cap);
            Flatten(&mut out)
                .deserialize(&mut de)
                .map(|_| TensorData::$variant(out))
        }};
    }
    let data = match datatype {
        DataType::Bool => flat!(Bool, bool),
        DataType::Uint8 => flat!(Uint8, u8),
        DataType::Uint16 => flat!(Uint16, u16),
        DataType::Uint32 => flat!(Uint32, u32),
        DataType::Uint64 => flat!(Uint64, u64),
        DataType::Int8 => flat!(Int8, i8),
        DataType::Int16 => flat!(Int16, i16),
        DataType::Int32 => flat!(Int32, i32),
        DataType::Int64 => flat!(Int64, i64),
        DataType::Fp16 => {
            return Err(ServingError::BadRequest(format!(
                "input '{input}': FP16 data is accepted only in binary form; send FP32"
            )));
        }
        DataType::Fp32 => flat!(Fp32, f32),
        DataType::Fp64 => flat!(Fp64, f64),
        DataType::Bytes => flat!(Bytes, Vec<u8>),
    };
    data.map_err(|e| ServingError::BadRequest(format!("input '{input}' ({datatype}) data: {e}")))
}

/// An element type JSON tensor data can be decoded into.
trait Element: Sized {
    const WHAT: &'static str;
    fn from_i64(v: i64) -> Option<Self>;
    fn from_u64(v: u64) -> Option<Self>;
    fn from_f64(_v: f64) -> Option<Self> {
        None
    }
    fn from_bool(_v: bool) -> Option<Self> {
        None
    }
    fn from_str(_v: &str) -> Option<Self> {
        None
    }
}

macro_rules! int_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            const WHAT: &'static str = stringify!($t);
            fn from_i64(v: i64) -> Option<Self> { <$t>::try_from(v).ok() }
            fn from_u64(v: u64) -> Option<Self> { <$t>::try_from(v).ok() }
        }
    )*};
}
int_element!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Element for f32 {
    const WHAT: &'static str = "a number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f32)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v as f32)
    }
}

impl Element for f64 {
    const WHAT: &'static str = "a number";
    fn from_i64(v: i64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_u64(v: u64) -> Option<Self> {
        Some(v as f64)
    }
    fn from_f64(v: f64) -> Option<Self> {
        Some(v)
    }
}

impl Element for bool {
    const WHAT: &'static str = "true or false";
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_bool(v: bool) -> Option<Self> {
        Some(v)
    }
}

impl Element for Vec<u8> {
    const WHAT: &'static str = "a string";
    fn from_i64(_: i64) -> Option<Self> {
        None
    }
    fn from_u64(_: u64) -> Option<Self> {
        None
    }
    fn from_str(v: &str) -> Option<Self> {
        Some(v.as_bytes().to_vec())
    }
}

/// Appends the leaves of a (possibly nested) JSON array to a vector.
struct Flatten<'v, T>(&'v mut Vec<T>);

impl<'de, T: Element> DeserializeSeed<'de> for Flatten<'_, T> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Element> Visitor<'de> for Flatten<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {}", T::WHAT)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        while seq.next_element_seed(Flatten(&mut *self.0))?.is_some() {}
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<(), E> {
        push(self.0, T::from_i64(v), &v)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<(), E> {
        push(self.0, T::from_u64(v), &v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<(), E> {
        push(self.0, T::from_f64(v), &v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<(), E> {
        push(self.0, T::from_bool(v), &v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<(), E> {
        push(self.0, T::from_str(v), &format!("\"{v}\""))
    }
}

fn push<T: Element, E: de::Error>(
    out: &mut Vec<T>,
    v: Option<T>,
    shown: &dyn fmt::Display,
) -> std::result::Result<(), E> {
    match v {
        Some(v) => {
            out.push(v);
            Ok(())
        }
        None => Err(E::custom(format_args!(
            "value {shown} at position {} is not {}",
            out.len(),
            T::WHAT
        ))),
    }
}

#[derive(Serialize)]
struct JsonResponse<'a> {
    model_name: &'a str,
    model_version: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<JsonResponseParameters<'a>>,
    outputs: Vec<JsonOutputTensor<'a>>,
}

#[derive(Serialize)]
struct JsonResponseParameters<'a> {
    prediction_id: &'a str,
}

#[derive(Serialize)]
struct JsonOutputTensor<'a> {
    name: &'a str,
    datatype: &'static str,
    shape: &'a [i64],
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JsonData<'a>>,
}

struct JsonData<'a>(&'a TensorData);

impl Serialize for JsonData<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self.0 {
            TensorData::Bool(v) => v.serialize(s),
            TensorData::Uint8(v) => v.serialize(s),
            TensorData::Uint16(v) | TensorData::Fp16(v) => v.serialize(s),
            TensorData::Uint32(v) => v.serialize(s),
            TensorData::Uint64(v) => v.serialize(s),
            TensorData::Int8(v) => v.serialize(s),
            TensorData::Int16(v) => v.serialize(s),
            TensorData::Int32(v) => v.serialize(s),
            TensorData::Int64(v) => v.serialize(s),
            TensorData::Fp32(v) => v.serialize(s),
            TensorData::Fp64(v) => v.serialize(s),
            TensorData::Bytes(v) => s.collect_seq(v.iter().map(|b| String::from_utf8_lossy(b))),
        }
    }
}

/// An encoded REST response: the body, and the JSON header length when binary outputs follow.
pub struct EncodedResponse {
    pub body: Vec<u8>,
    pub header_len: Option<usize>,
}

/// Encodes a response as JSON, appending binary outputs after the JSON when asked for.
pub fn encode_json_response(response: &InferResponse) -> Result<EncodedResponse> {
    let mut binary: Vec<u8> = Vec::new();
    let mut outputs = Vec::with_capacity(response.outputs.len());
    for out in &response.outputs {
        if out.binary {
            let raw = out.tensor.data.to_raw_bytes();
            outputs.push(JsonOutputTensor {
                name: &out.name,
                datatype: out.tensor.datatype().as_str(),
                shape: &out.tensor.shape,
                parameters: Some(serde_json::json!({ "binary_data_size": raw.len() })),
                data: None,
            });
            binary.extend_from_slice(&raw);
        } else {
            outputs.push(JsonOutputTensor {
                name: &out.name,
                datatype: out.tensor.datatype().as_str(),
                shape: &out.tensor.shape,
                parameters: None,
                data: Some(JsonData(&out.tensor.data)),
            });
        }
    }
    let json = JsonResponse {
        model_name: &response.model_name,
        model_version: &response.model_version,
        id: response.id.as_deref(),
        parameters: response
            .prediction_id
            .as_deref()
            .map(|prediction_id| JsonResponseParameters { prediction_id }),
        outputs,
    };
    let mut body = serde_json::to_vec(&json).map_err(|e| ServingError::Internal(format!("encoding response: {e}")))?;
    let any_binary = response.outputs.iter().any(|o| o.binary);
    let header_len = any_binary.then_some(body.len());
    body.extend_from_slice(&binary);
    Ok(EncodedResponse { body, header_len })
}

#[cfg(test)]
mod tests;
