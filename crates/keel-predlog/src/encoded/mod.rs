//! Predictions as flat bytes: how serving hands what it answered to the writer.
//!
//! Serving logs every request, so what it does per request counts. Building a
//! [`PredictionRecord`] costs a dozen small allocations (ids, names, shapes, a copy of each
//! output) that the writer thread then frees (a free from another thread is the allocator's
//! slow path), and handing each record over is a queue push. [`EncodedChunk::push`] instead
//! reads the request's and the response's tensors in place and appends everything to the
//! chunk its serving thread owns (see the writer's lanes): once the chunk has grown, a request
//! costs no allocation, and the writer takes the whole chunk at once. It reads each prediction
//! back in place ([`view_encoded`]) straight into its Arrow builders.
//!
//! A chunk is a run of records, each a `u32` length, its rows (`u32`) and that many bytes. A record
//! (little-endian): the model name first (so the writer finds the table without decoding),
//! then the fixed fields, the routing, and each tensor as name, type code, shape and values
//! (numbers and booleans as fixed-width values, BYTES as length-prefixed strings). Strings are
//! a `u32` length and UTF-8 bytes; an absent optional string is length `u32::MAX`. The format
//! never leaves the process, so it has no version.

use keel_types::{DataType, Tensor, TensorData, f16_to_f32};

use crate::record::{Entry, PredictionRecord, Routing};
use crate::{PredlogError, Result};

/// The fields of a prediction other than its tensors, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct PredictionParts<'a> {
    pub ts_us: i64,
    pub prediction_id: &'a str,
    pub request_id: Option<&'a str>,
    pub model: &'a str,
    pub version: i64,
    pub routing: Option<&'a Routing>,
    pub latency_us: i64,
}

/// Encoded predictions, one after another (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EncodedChunk {
    buf: Vec<u8>,
    records: usize,
    rows: usize,
}

/// Where a prediction came from, borrowed from a record or an encoded buffer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoutingView<'a> {
    pub deployment: &'a str,
    pub variant: &'a str,
    pub decision_id: &'a str,
    pub shadow: bool,
}

/// A prediction read in place: from a [`PredictionRecord`] or an encoded record ([`view_encoded`]).
#[derive(Debug, Clone)]
pub struct PredictionView<'a> {
    pub ts_us: i64,
    pub prediction_id: &'a str,
    pub request_id: Option<&'a str>,
    pub model: &'a str,
    pub version: i64,
    pub routing: Option<RoutingView<'a>>,
    pub latency_us: i64,
    /// Inputs first, then outputs.
    pub tensors: Vec<TensorView<'a>>,
}

/// One tensor of a prediction, read in place.
#[derive(Debug, Clone)]
pub struct TensorView<'a> {
    pub is_output: bool,
    pub name: &'a str,
    /// The first dimension of its shape (the batch), if it has one.
    pub first_dim: Option<i64>,
    pub values: Values<'a>,
}

/// A tensor's values: an owned tensor's, or the raw little-endian values of an encoded one.
#[derive(Debug, Clone)]
pub enum Values<'a> {
    Tensor(&'a TensorData),
    /// Fixed-width values of `dtype`, `width` bytes each.
    Raw {
        dtype: DataType,
        width: usize,
        bytes: &'a [u8],
    },
    Strings(Vec<&'a [u8]>),
}

/// The type code written for a tensor's values: its datatype's place in [`DataType::ALL`].
fn code_of(dtype: DataType) -> u8 {
    DataType::ALL.iter().position(|d| *d == dtype).unwrap_or(0) as u8
}

fn dtype_of(code: u8) -> Option<DataType> {
    DataType::ALL.get(code as usize).copied()
}

fn str_len(s: &str) -> usize {
    4 + s.len()
}

fn tensor_len(name: &str, t: &Tensor) -> usize {
    let values = match &t.data {
        TensorData::Bytes(v) => v.iter().map(|b| 4 + b.len()).sum(),
        other => other.len() * other.datatype().element_size().unwrap_or(0),
    };
    // put_tensor writes at most 255 dimensions
    str_len(name) + 2 + 8 * t.shape.len().min(255) + 4 + values
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.extend_from_slice(&u32::MAX.to_le_bytes()),
    }
}

fn put_tensor(buf: &mut Vec<u8>, name: &str, t: &Tensor) {
    put_str(buf, name);
    buf.push(code_of(t.data.datatype()));
    buf.push(t.shape.len().min(255) as u8);
    for d in t.shape.iter().take(255) {
        buf.extend_from_slice(&d.to_le_bytes());
    }
    buf.extend_from_slice(&(t.data.len() as u32).to_le_bytes());
    macro_rules! le {
        ($v:expr) => {
            for x in $v {
                buf.extend_from_slice(&x.to_le_bytes());
            }
        };
    }
    match &t.data {
        TensorData::Bool(v) => buf.extend(v.iter().map(|b| u8::from(*b))),
        TensorData::Uint8(v) => buf.extend_from_slice(v),
        TensorData::Uint16(v) | TensorData::Fp16(v) => le!(v),
        TensorData::Uint32(v) => le!(v),
        TensorData::Uint64(v) => le!(v),
        TensorData::Int8(v) => le!(v),
        TensorData::Int16(v) => le!(v),
        TensorData::Int32(v) => le!(v),
        TensorData::Int64(v) => le!(v),
        TensorData::Fp32(v) => le!(v),
        TensorData::Fp64(v) => le!(v),
        TensorData::Bytes(v) => {
            for b in v {
                buf.extend_from_slice(&(b.len() as u32).to_le_bytes());
                buf.extend_from_slice(b);
            }
        }
    }
}

/// Rows of a request given its inputs: the first dimension of the first (1 for scalars).
pub fn rows_of_first<'t>(mut inputs: impl Iterator<Item = (&'t str, &'t Tensor)>) -> usize {
    rows_of(inputs.next().and_then(|(_, t)| t.shape.first().copied()))
}

/// Rows of a request: the first dimension of its first input (1 for scalars), at least 1.
fn rows_of(first_dim: Option<i64>) -> usize {
    first_dim.map_or(1, |d| d.max(0) as usize).max(1)
}

/// Bytes one record takes (without its length prefix).
fn record_len<'t, I, O>(parts: &PredictionParts<'_>, inputs: I, outputs: O) -> usize
where
    I: Iterator<Item = (&'t str, &'t Tensor)>,
    O: Iterator<Item = (&'t str, &'t Tensor)>,
{
    let routing_len = parts.routing.map_or(0, |r| {
        str_len(&r.deployment) + str_len(&r.variant) + str_len(&r.decision_id) + 1
    });
    str_len(parts.model)
        + 24
        + str_len(parts.prediction_id)
        + parts.request_id.map_or(4, str_len)
        + 1
        + routing_len
        + 4
        + inputs.take(MAX_TENSORS).map(|(n, t)| tensor_len(n, t)).sum::<usize>()
        + outputs.take(MAX_TENSORS).map(|(n, t)| tensor_len(n, t)).sum::<usize>()
}

/// Tensors of one side (inputs, outputs) a record keeps: their count is a `u16`.
const MAX_TENSORS: usize = u16::MAX as usize;

/// Appends one record; returns the rows it holds.
fn put_record<'t, I, O>(buf: &mut Vec<u8>, parts: &PredictionParts<'_>, inputs: I, outputs: O) -> usize
where
    I: Iterator<Item = (&'t str, &'t Tensor)> + Clone,
    O: Iterator<Item = (&'t str, &'t Tensor)> + Clone,
{
    put_str(buf, parts.model);
    buf.extend_from_slice(&parts.ts_us.to_le_bytes());
    buf.extend_from_slice(&parts.version.to_le_bytes());
    buf.extend_from_slice(&parts.latency_us.to_le_bytes());
    put_str(buf, parts.prediction_id);
    put_opt_str(buf, parts.request_id);
    match parts.routing {
        Some(r) => {
            buf.push(1);
            put_str(buf, &r.deployment);
            put_str(buf, &r.variant);
            put_str(buf, &r.decision_id);
            buf.push(u8::from(r.shadow));
        }
        None => buf.push(0),
    }
    let (n_in, n_out) = (
        inputs.clone().take(MAX_TENSORS).count(),
        outputs.clone().take(MAX_TENSORS).count(),
    );
    buf.extend_from_slice(&(n_in as u16).to_le_bytes());
    buf.extend_from_slice(&(n_out as u16).to_le_bytes());
    let mut first_dim = None;
    for (i, (name, t)) in inputs.take(MAX_TENSORS).enumerate() {
        if i == 0 {
            first_dim = t.shape.first().copied();
        }
        put_tensor(buf, name, t);
    }
    for (name, t) in outputs.take(MAX_TENSORS) {
        put_tensor(buf, name, t);
    }
    rows_of(first_dim)
}

impl EncodedChunk {
    /// Appends a prediction from borrowed parts and tensors (nothing cloned; no allocation
    /// while the chunk has room). Returns `false`, appending nothing, for a prediction of more
    /// than 4 GiB (which no request body allowed reaches).
    pub fn push<'t, I, O>(&mut self, parts: &PredictionParts<'_>, inputs: I, outputs: O) -> bool
    where
        I: Iterator<Item = (&'t str, &'t Tensor)> + Clone,
        O: Iterator<Item = (&'t str, &'t Tensor)> + Clone,
    {
        let len = record_len(parts, inputs.clone(), outputs.clone());
        let Ok(prefix) = u32::try_from(len) else {
            return false;
        };
        self.buf.reserve(8 + len);
        let start = self.buf.len();
        self.buf.extend_from_slice(&prefix.to_le_bytes());
        self.buf.extend_from_slice(&0u32.to_le_bytes());
        let rows = put_record(&mut self.buf, parts, inputs, outputs);
        debug_assert_eq!(
            self.buf.len() - start,
            8 + len,
            "the size computed up front is the size written"
        );
        let rows_prefix = u32::try_from(rows).unwrap_or(u32::MAX);
        self.buf[start + 4..start + 8].copy_from_slice(&rows_prefix.to_le_bytes());
        self.records += 1;
        self.rows += rows_prefix as usize;
        true
    }

    /// Appends an owned record (for callers that have one).
    pub fn push_record(&mut self, p: &PredictionRecord) -> bool {
        let parts = PredictionParts {
            ts_us: p.ts_us,
            prediction_id: &p.prediction_id,
            request_id: p.request_id.as_deref(),
            model: &p.model,
            version: p.version,
            routing: p.routing.as_ref(),
            latency_us: p.latency_us,
        };
        self.push(
            &parts,
            p.inputs.iter().map(|(n, t)| (n.as_str(), t)),
            p.outputs.iter().map(|(n, t)| (n.as_str(), t)),
        )
    }

    /// Predictions held.
    pub fn records(&self) -> usize {
        self.records
    }

    /// Table rows the predictions become.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes held.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Bytes it can hold without growing.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Appends `other`'s records after this chunk's, copying their bytes.
    pub fn append(&mut self, other: &EncodedChunk) {
        self.buf.extend_from_slice(&other.buf);
        self.records += other.records;
        self.rows += other.rows;
    }

    /// Empties the chunk, keeping its memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        (self.records, self.rows) = (0, 0);
    }

    /// Each record's rows and bytes, in order (read the bytes with [`view_encoded`] and
    /// [`model_of`]).
    pub fn records_iter(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        let mut r = Reader { buf: &self.buf, at: 0 };
        std::iter::from_fn(move || {
            let n = r.u32()? as usize;
            let rows = r.u32()? as usize;
            Some((rows, r.take(n)?))
        })
    }
}

mod read;
use read::Reader;
pub use read::{Kind, model_of, view_encoded};

#[cfg(test)]
mod tests;
