//! Plain tensors: a shape, a datatype named as in the Open Inference Protocol, and the data.

use serde::{Deserialize, Serialize};

/// Element types, spelled as the Open Inference Protocol (KServe V2) spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name for this type (`"FP32"`, `"INT64"`...).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol datatype name; `None` for an unknown name.
    pub fn parse(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Bytes per element in the binary (raw) encoding; `None` for BYTES, whose elements
    /// are length-prefixed.
    pub fn element_size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => 1,
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 => 2,
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => 4,
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tensor contents, one variant per element type (FP16 is carried as raw `u16` bits).
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<u16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Why raw (binary-extension) bytes are not a tensor of the declared type: always the
/// sender's fault ([`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawDataError {
    /// The length is not a whole number of elements.
    Ragged { len: usize, element_size: usize },
    /// BYTES data ends inside an element's 4-byte length prefix.
    TruncatedPrefix,
    /// A BYTES element declares more bytes than remain.
    TruncatedElement { declared: usize, remaining: usize },
}

impl std::fmt::Display for RawDataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RawDataError::Ragged { len, element_size } => write!(
                f,
                "raw data of {len} bytes is not a whole number of {element_size}-byte elements"
            ),
            RawDataError::TruncatedPrefix => f.write_str("BYTES raw data ends inside a 4-byte length prefix"),
            RawDataError::TruncatedElement { declared, remaining } => {
                write!(f, "BYTES element declares {declared} bytes but only {remaining} remain")
            }
        }
    }
}

impl std::error::Error for RawDataError {}

impl crate::KeelError for RawDataError {
    fn kind(&self) -> crate::ErrorKind {
        match self {
            RawDataError::Ragged { .. } | RawDataError::TruncatedPrefix | RawDataError::TruncatedElement { .. } => {
                crate::ErrorKind::InvalidArgument
            }
        }
    }

    fn code(&self) -> &'static str {
        "invalid_raw_data"
    }
}

/// IEEE half-precision bits to f32.
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let frac = u32::from(bits & 0x3ff);
    let out = match (exp, frac) {
        (0, 0) => sign,
        (0, f) => {
            // subnormal: value = f * 2^-24
            let v = f as f32 * (1.0 / 16_777_216.0);
            return if sign != 0 { -v } else { v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(out)
}

impl TensorData {
    /// Element `i` as a number (`None` for BOOL and BYTES, or past the end).
    pub fn value_f64(&self, i: usize) -> Option<f64> {
        Some(match self {
            TensorData::Uint8(v) => f64::from(*v.get(i)?),
            TensorData::Uint16(v) => f64::from(*v.get(i)?),
            TensorData::Uint32(v) => f64::from(*v.get(i)?),
            TensorData::Uint64(v) => *v.get(i)? as f64,
            TensorData::Int8(v) => f64::from(*v.get(i)?),
            TensorData::Int16(v) => f64::from(*v.get(i)?),
            TensorData::Int32(v) => f64::from(*v.get(i)?),
            TensorData::Int64(v) => *v.get(i)? as f64,
            TensorData::Fp16(v) => f64::from(f16_to_f32(*v.get(i)?)),
            TensorData::Fp32(v) => f64::from(*v.get(i)?),
            TensorData::Fp64(v) => *v.get(i)?,
            TensorData::Bool(_) | TensorData::Bytes(_) => return None,
        })
    }

    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            TensorData::Bool(v) => v.len(),
            TensorData::Uint8(v) => v.len(),
            TensorData::Uint16(v) | TensorData::Fp16(v) => v.len(),
            TensorData::Uint32(v) => v.len(),
            TensorData::Uint64(v) => v.len(),
            TensorData::Int8(v) => v.len(),
            TensorData::Int16(v) => v.len(),
            TensorData::Int32(v) => v.len(),
            TensorData::Int64(v) => v.len(),
            TensorData::Fp32(v) => v.len(),
            TensorData::Fp64(v) => v.len(),
            TensorData::Bytes(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Index of the first NaN or infinite value, for float types.
    pub fn first_non_finite(&self) -> Option<usize> {
        match self {
            TensorData::Fp32(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::Fp64(v) => v.iter().position(|x| !x.is_finite()),
            TensorData::Fp16(v) => v.iter().position(|b| (b & 0x7c00) == 0x7c00),
            _ => None,
        }
    }

    /// Little-endian raw bytes, as the binary extensions of the protocol carry them
    /// (BYTES elements are each prefixed by a 4-byte little-endian length).
    pub fn to_raw_bytes(&self) -> Vec<u8> {
        fn pack<T: Copy, const N: usize>(v: &[T], f: impl Fn(T) -> [u8; N]) -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * N);
            for x in v {
                out.extend_from_slice(&f(*x));
            }
            out
        }
        match self {
            TensorData::Bool(v) => v.iter().map(|b| u8::from(*b)).collect(),
            TensorData::Uint8(v) => v.clone(),
            TensorData::Uint16(v) | TensorData::Fp16(v) => pack(v, u16::to_le_bytes),
            TensorData::Uint32(v) => pack(v, u32::to_le_bytes),
            TensorData::Uint64(v) => pack(v, u64::to_le_bytes),
            TensorData::Int8(v) => v.iter().map(|x| x.to_le_bytes()[0]).collect(),
            TensorData::Int16(v) => pack(v, i16::to_le_bytes),
            TensorData::Int32(v) => pack(v, i32::to_le_bytes),
            TensorData::Int64(v) => pack(v, i64::to_le_bytes),
            TensorData::Fp32(v) => pack(v, f32::to_le_bytes),
            TensorData::Fp64(v) => pack(v, f64::to_le_bytes),
            TensorData::Bytes(v) => {
                let mut out = Vec::with_capacity(v.iter().map(|b| b.len() + 4).sum());
                for b in v {
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                    out.extend_from_slice(b);
                }
                out
            }
        }
    }

    /// Decodes little-endian raw bytes of a datatype. The error says what was wrong.
    pub fn from_raw_bytes(datatype: DataType, raw: &[u8]) -> Result<TensorData, RawDataError> {
        fn unpack<T, const N: usize>(raw: &[u8], f: impl Fn([u8; N]) -> T) -> Result<Vec<T>, RawDataError> {
            if !raw.len().is_multiple_of(N) {
                return Err(RawDataError::Ragged {
                    len: raw.len(),
                    element_size: N,
                });
            }
            Ok(raw
                .chunks_exact(N)
                .map(|c| {
                    let mut a = [0u8; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect())
        }
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(raw.iter().map(|b| *b != 0).collect()),
            DataType::Uint8 => TensorData::Uint8(raw.to_vec()),
            DataType::Uint16 => TensorData::Uint16(unpack(raw, u16::from_le_bytes)?),
            DataType::Fp16 => TensorData::Fp16(unpack(raw, u16::from_le_bytes)?),
            DataType::Uint32 => TensorData::Uint32(unpack(raw, u32::from_le_bytes)?),
            DataType::Uint64 => TensorData::Uint64(unpack(raw, u64::from_le_bytes)?),
            DataType::Int8 => TensorData::Int8(raw.iter().map(|b| i8::from_le_bytes([*b])).collect()),
            DataType::Int16 => TensorData::Int16(unpack(raw, i16::from_le_bytes)?),
            DataType::Int32 => TensorData::Int32(unpack(raw, i32::from_le_bytes)?),
            DataType::Int64 => TensorData::Int64(unpack(raw, i64::from_le_bytes)?),
            DataType::Fp32 => TensorData::Fp32(unpack(raw, f32::from_le_bytes)?),
            DataType::Fp64 => TensorData::Fp64(unpack(raw, f64::from_le_bytes)?),
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut rest = raw;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(RawDataError::TruncatedPrefix);
                    }
                    let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                    rest = &rest[4..];
                    if rest.len() < n {
                        return Err(RawDataError::TruncatedElement {
                            declared: n,
                            remaining: rest.len(),
                        });
                    }
                    out.push(rest[..n].to_vec());
                    rest = &rest[n..];
                }
                TensorData::Bytes(out)
            }
        })
    }
}

/// A named-less tensor: shape plus data. The product of the shape equals the data length.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<i64>,
    pub data: TensorData,
}

impl Tensor {
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    /// Number of elements the shape declares, `None` on a negative dimension or overflow.
    pub fn shape_elements(shape: &[i64]) -> Option<usize> {
        shape.iter().try_fold(1usize, |acc, d| {
            usize::try_from(*d).ok().and_then(|d| acc.checked_mul(d))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_as_numbers_and_half_floats() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(TensorData::Fp16(vec![0x3c00]).value_f64(0), Some(1.0));
        assert_eq!(TensorData::Int64(vec![-3, 4]).value_f64(1), Some(4.0));
        assert_eq!(TensorData::Fp32(vec![0.5]).value_f64(1), None);
        assert_eq!(TensorData::Bytes(vec![b"a".to_vec()]).value_f64(0), None);
    }

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
        }
        assert_eq!(DataType::parse("FLOAT32"), None);
    }

    #[test]
    fn raw_bytes_round_trip() {
        let cases = vec![
            TensorData::Fp32(vec![1.5, -2.0, f32::MAX]),
            TensorData::Int64(vec![i64::MIN, 0, 7]),
            TensorData::Bool(vec![true, false]),
            TensorData::Bytes(vec![b"abc".to_vec(), vec![], b"z".to_vec()]),
            TensorData::Fp64(vec![0.1]),
        ];
        for data in cases {
            let raw = data.to_raw_bytes();
            assert_eq!(TensorData::from_raw_bytes(data.datatype(), &raw), Ok(data));
        }
    }

    #[test]
    fn raw_bytes_of_wrong_length_are_refused() {
        let err = TensorData::from_raw_bytes(DataType::Fp32, &[0, 0, 0]).unwrap_err();
        assert_eq!(
            err,
            RawDataError::Ragged {
                len: 3,
                element_size: 4
            }
        );
        assert!(err.to_string().contains("3 bytes"), "{err}");
        let err = TensorData::from_raw_bytes(DataType::Bytes, &[9, 0, 0, 0, 1]).unwrap_err();
        assert!(err.to_string().contains("declares 9 bytes"), "{err}");
        let err = TensorData::from_raw_bytes(DataType::Bytes, &[1, 0]).unwrap_err();
        assert_eq!(err, RawDataError::TruncatedPrefix);
        use crate::{ErrorKind, KeelError};
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert_eq!(err.code(), "invalid_raw_data");
    }

    #[test]
    fn shape_elements_rejects_negative_and_overflow() {
        assert_eq!(Tensor::shape_elements(&[2, 3]), Some(6));
        assert_eq!(Tensor::shape_elements(&[]), Some(1));
        assert_eq!(Tensor::shape_elements(&[-1, 3]), None);
        assert_eq!(Tensor::shape_elements(&[i64::MAX, i64::MAX]), None);
    }
}
