//! Reading encoded predictions back in place: the record's fields and tensors as views over
//! the chunk's bytes (what the writer's Arrow builders read), and the same views over a
//! [`PredictionRecord`] built by hand.

use super::*;

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

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
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

    pub(super) fn u32(&mut self) -> Option<u32> {
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
