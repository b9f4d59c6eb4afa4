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

/// The model name of an encoded record (read without decoding the rest; `""` if corrupt).
pub fn model_of(record: &[u8]) -> &str {
    Reader { buf: record, at: 0 }.str().unwrap_or("")
}

/// Reads an encoded record back in place.
pub fn view_encoded(record: &[u8]) -> Result<PredictionView<'_>> {
    let corrupt = || PredlogError::Sink("an encoded prediction is truncated or corrupt (a keel bug)".into());
    let mut r = Reader { buf: record, at: 0 };
    let model = r.str().ok_or_else(corrupt)?;
    let ts_us = r.i64().ok_or_else(corrupt)?;
    let version = r.i64().ok_or_else(corrupt)?;
    let latency_us = r.i64().ok_or_else(corrupt)?;
    let prediction_id = r.str().ok_or_else(corrupt)?;
    let request_id = r.opt_str().ok_or_else(corrupt)?;
    let routing = match r.u8().ok_or_else(corrupt)? {
        0 => None,
        _ => Some(RoutingView {
            deployment: r.str().ok_or_else(corrupt)?,
            variant: r.str().ok_or_else(corrupt)?,
            decision_id: r.str().ok_or_else(corrupt)?,
            shadow: r.u8().ok_or_else(corrupt)? != 0,
        }),
    };
    let n_in = r.u16().ok_or_else(corrupt)? as usize;
    let n_out = r.u16().ok_or_else(corrupt)? as usize;
    let mut tensors = Vec::with_capacity(n_in + n_out);
    for i in 0..n_in + n_out {
        tensors.push(r.tensor(i >= n_in).ok_or_else(corrupt)?);
    }
    if r.at != record.len() {
        return Err(corrupt());
    }
    Ok(PredictionView {
        ts_us,
        prediction_id,
        request_id,
        model,
        version,
        routing,
        latency_us,
        tensors,
    })
}

struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.at.checked_add(n)?;
        let out = self.buf.get(self.at..end)?;
        self.at = end;
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }

    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.take(n)?).ok()
    }

    fn opt_str(&mut self) -> Option<Option<&'a str>> {
        let n = self.u32()?;
        if n == u32::MAX {
            return Some(None);
        }
        Some(Some(std::str::from_utf8(self.take(n as usize)?).ok()?))
    }

    fn tensor(&mut self, is_output: bool) -> Option<TensorView<'a>> {
        let name = self.str()?;
        let code = self.u8()?;
        let ndim = self.u8()? as usize;
        let mut first_dim = None;
        for d in 0..ndim {
            let v = self.i64()?;
            if d == 0 {
                first_dim = Some(v);
            }
        }
        let n = self.u32()? as usize;
        let dtype = dtype_of(code)?;
        let values = if dtype == DataType::Bytes {
            // a corrupt count must not reserve more than the record could hold
            let mut items = Vec::with_capacity(n.min((self.buf.len() - self.at) / 4));
            for _ in 0..n {
                let len = self.u32()? as usize;
                items.push(self.take(len)?);
            }
            Values::Strings(items)
        } else {
            let width = dtype.element_size()?;
            Values::Raw {
                dtype,
                width,
                bytes: self.take(n.checked_mul(width)?)?,
            }
        };
        Some(TensorView {
            is_output,
            name,
            first_dim,
            values,
        })
    }
}

impl Entry {
    /// The prediction of a prediction entry, read in place.
    pub fn prediction(&self) -> Option<PredictionView<'_>> {
        match self {
            Entry::Prediction(p) => Some(p.view()),
            Entry::Decision(_) | Entry::Feedback(_) => None,
        }
    }
}

impl PredictionRecord {
    /// The record read in place (no copy).
    pub fn view(&self) -> PredictionView<'_> {
        fn tensor(is_output: bool, (name, t): &(String, Tensor)) -> TensorView<'_> {
            TensorView {
                is_output,
                name: name.as_str(),
                first_dim: t.shape.first().copied(),
                values: Values::Tensor(&t.data),
            }
        }
        PredictionView {
            ts_us: self.ts_us,
            prediction_id: &self.prediction_id,
            request_id: self.request_id.as_deref(),
            model: &self.model,
            version: self.version,
            routing: self.routing.as_ref().map(|r| RoutingView {
                deployment: &r.deployment,
                variant: &r.variant,
                decision_id: &r.decision_id,
                shadow: r.shadow,
            }),
            latency_us: self.latency_us,
            tensors: self
                .inputs
                .iter()
                .map(|t| tensor(false, t))
                .chain(self.outputs.iter().map(|t| tensor(true, t)))
                .collect(),
        }
    }
}

impl PredictionView<'_> {
    /// Rows of the request: the first dimension of its first input (1 for scalars).
    pub fn rows(&self) -> usize {
        rows_of(self.tensors.iter().find(|t| !t.is_output).and_then(|t| t.first_dim))
    }
}

/// The kind of column a tensor's values flatten into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Number,
    Bool,
    Text,
}

impl Values<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Tensor(d) => d.len(),
            Values::Raw { width, bytes, .. } => bytes.len() / (*width).max(1),
            Values::Strings(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> Kind {
        match self {
            Values::Tensor(TensorData::Bool(_))
            | Values::Raw {
                dtype: DataType::Bool, ..
            } => Kind::Bool,
            Values::Tensor(TensorData::Bytes(_)) | Values::Strings(_) => Kind::Text,
            _ => Kind::Number,
        }
    }

    /// Values `start..start + n` of an encoded numeric tensor as numbers, in order, to `out`
    /// (its type looked at once, not per value, as a log batch's hot loop wants). `false`, and
    /// nothing given, for other values or a range past the end: read them with [`Values::f64_at`].
    pub fn numbers(&self, start: usize, n: usize, mut out: impl FnMut(usize, f64)) -> bool {
        let Values::Raw { dtype, width, bytes } = self else {
            return false;
        };
        let Some(slice) = bytes.get(start * width..(start + n) * width) else {
            return false;
        };
        macro_rules! each {
            ($w:literal, |$b:ident| $decode:expr) => {{
                for (j, $b) in slice.chunks_exact($w).enumerate() {
                    let $b: [u8; $w] = $b.try_into().unwrap_or([0; $w]);
                    out(j, $decode);
                }
            }};
        }
        match dtype {
            DataType::Uint8 => each!(1, |b| f64::from(b[0])),
            DataType::Int8 => each!(1, |b| f64::from(b[0] as i8)),
            DataType::Uint16 => each!(2, |b| f64::from(u16::from_le_bytes(b))),
            DataType::Int16 => each!(2, |b| f64::from(i16::from_le_bytes(b))),
            DataType::Fp16 => each!(2, |b| f64::from(f16_to_f32(u16::from_le_bytes(b)))),
            DataType::Uint32 => each!(4, |b| f64::from(u32::from_le_bytes(b))),
            DataType::Int32 => each!(4, |b| f64::from(i32::from_le_bytes(b))),
            DataType::Fp32 => each!(4, |b| f64::from(f32::from_le_bytes(b))),
            DataType::Uint64 => each!(8, |b| u64::from_le_bytes(b) as f64),
            DataType::Int64 => each!(8, |b| i64::from_le_bytes(b) as f64),
            DataType::Fp64 => each!(8, |b| f64::from_le_bytes(b)),
            DataType::Bool | DataType::Bytes => return false,
        }
        true
    }

    /// Value `i` as a number (numeric types only).
    pub fn f64_at(&self, i: usize) -> Option<f64> {
        match self {
            Values::Tensor(d) => d.value_f64(i),
            Values::Raw { .. } => {
                let mut value = None;
                self.numbers(i, 1, |_, v| value = Some(v));
                value
            }
            Values::Strings(_) => None,
        }
    }

    /// Value `i` as a boolean (BOOL only).
    pub fn bool_at(&self, i: usize) -> Option<bool> {
        match self {
            Values::Tensor(TensorData::Bool(v)) => v.get(i).copied(),
            Values::Raw {
                dtype: DataType::Bool,
                bytes,
                ..
            } => bytes.get(i).map(|b| *b != 0),
            _ => None,
        }
    }

    /// Value `i` as bytes (BYTES only).
    pub fn bytes_at(&self, i: usize) -> Option<&[u8]> {
        match self {
            Values::Tensor(TensorData::Bytes(v)) => v.get(i).map(Vec::as_slice),
            Values::Strings(v) => v.get(i).copied(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests;
