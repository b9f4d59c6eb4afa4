//! Reading a model's signature from a file or stream without holding the model in memory.
//!
//! [`read_signature`](crate::read_signature) decodes a whole ONNX message. A model's weights
//! (initializers, constant nodes' tensors) are most of its bytes and none of its signature, so
//! [`read_signature_from`] walks the protobuf wire format once, keeps only the fields the
//! signature is read from (their sizes are small: names, types, operator names) and skips the
//! rest as it reads, then hands the compacted message to the same `read_signature`. A push over
//! the API and `keel models push` therefore read the signature with one function.

use std::io::Read;

use crate::onnx::{Signature, SignatureError, read_signature};

/// What to do with a field of a message.
#[derive(Clone, Copy)]
enum Keep {
    /// Copy the field as it is.
    Copy,
    /// Keep the field, compacting its contents (a nested message) by this table.
    Message(&'static [(u32, Keep)]),
}

/// A node: only its operator type (4) and domain (7); attributes can hold whole tensors.
const NODE: &[(u32, Keep)] = &[(4, Keep::Copy), (7, Keep::Copy)];
/// An initializer: only its name (8).
const TENSOR: &[(u32, Keep)] = &[(8, Keep::Copy)];
/// A graph: nodes, name, initializers (by name), inputs and outputs.
const GRAPH: &[(u32, Keep)] = &[
    (1, Keep::Message(NODE)),
    (2, Keep::Copy),
    (5, Keep::Message(TENSOR)),
    (11, Keep::Copy),
    (12, Keep::Copy),
];
/// A model: IR version, producer, graph, operator sets, metadata.
const MODEL: &[(u32, Keep)] = &[
    (1, Keep::Copy),
    (2, Keep::Copy),
    (3, Keep::Copy),
    (7, Keep::Message(GRAPH)),
    (8, Keep::Copy),
    (14, Keep::Copy),
];

/// A kept field larger than this is refused: names, types and metadata are far smaller, so such
/// a file is not a model keel can serve (and reading it would hold it in memory).
const MAX_KEPT_FIELD: u64 = 64 * 1024 * 1024;

/// Reads the signature of the ONNX model `reader` yields, holding only the parts of the message
/// the signature is read from. The answer is the one [`read_signature`] gives on the whole bytes
/// for every well-formed model.
pub fn read_signature_from(reader: impl Read) -> Result<Signature, SignatureError> {
    let mut reader = CountingReader { inner: reader, read: 0 };
    let compact = compact_message(&mut reader, None, MODEL)?;
    if reader.read == 0 {
        return Err(SignatureError::Empty);
    }
    read_signature(&compact)
}

struct CountingReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> CountingReader<R> {
    /// Fills `buf` whole; `Ok(false)` when the input ended before its first byte.
    fn fill(&mut self, buf: &mut [u8]) -> Result<bool, SignatureError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) if filled == 0 => return Ok(false),
                Ok(0) => return Err(truncated()),
                Ok(n) => {
                    filled += n;
                    self.read += n as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SignatureError::Decode(format!("cannot read the file: {e}"))),
            }
        }
        Ok(true)
    }

    fn byte(&mut self) -> Result<Option<u8>, SignatureError> {
        let mut b = [0u8];
        Ok(self.fill(&mut b)?.then_some(b[0]))
    }

    /// A varint; `Ok(None)` at the end of input before its first byte.
    fn varint(&mut self, out: Option<&mut Vec<u8>>) -> Result<Option<u64>, SignatureError> {
        let mut value = 0u64;
        let mut raw = Vec::with_capacity(10);
        for i in 0..10 {
            let Some(b) = self.byte()? else {
                return if i == 0 { Ok(None) } else { Err(truncated()) };
            };
            raw.push(b);
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                if let Some(out) = out {
                    out.extend_from_slice(&raw);
                }
                return Ok(Some(value));
            }
        }
        Err(SignatureError::Decode("invalid varint".into()))
    }

    fn copy(&mut self, len: u64, out: &mut Vec<u8>) -> Result<(), SignatureError> {
        let start = out.len();
        out.resize(start + len as usize, 0);
        if len > 0 && !self.fill(&mut out[start..])? {
            return Err(truncated());
        }
        Ok(())
    }

    fn skip(&mut self, len: u64) -> Result<(), SignatureError> {
        let mut buf = [0u8; 64 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            if !self.fill(&mut buf[..n])? {
                return Err(truncated());
            }
            left -= n as u64;
        }
        Ok(())
    }
}

fn truncated() -> SignatureError {
    SignatureError::Decode("the message is truncated".into())
}

fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one message (`len` bytes, or to the end of input when `None`) and returns it with only
/// the fields `table` keeps.
fn compact_message<R: Read>(
    r: &mut CountingReader<R>,
    len: Option<u64>,
    table: &'static [(u32, Keep)],
) -> Result<Vec<u8>, SignatureError> {
    let mut out = Vec::new();
    let end = len.map(|l| r.read + l);
    loop {
        if end.is_some_and(|end| r.read >= end) {
            if end.is_some_and(|end| r.read > end) {
                return Err(SignatureError::Decode("a field runs past its message".into()));
            }
            return Ok(out);
        }
        let mut tag_bytes = Vec::new();
        let Some(tag) = r.varint(Some(&mut tag_bytes))? else {
            return match end {
                None => Ok(out),
                Some(_) => Err(truncated()),
            };
        };
        let (field, wire) = ((tag >> 3) as u32, (tag & 7) as u8);
        let keep = table.iter().find(|(f, _)| *f == field).map(|(_, k)| *k);
        match (wire, keep) {
            (0, keep) => {
                let mut value = Vec::new();
                r.varint(Some(&mut value))?.ok_or_else(truncated)?;
                if keep.is_some() {
                    out.extend_from_slice(&tag_bytes);
                    out.extend_from_slice(&value);
                }
            }
            (1 | 5, keep) => {
                let n = if wire == 1 { 8 } else { 4 };
                if keep.is_some() {
                    out.extend_from_slice(&tag_bytes);
                    r.copy(n, &mut out)?;
                } else {
                    r.skip(n)?;
                }
            }
            (2, keep) => {
                let n = r.varint(None)?.ok_or_else(truncated)?;
                match keep {
                    None => r.skip(n)?,
                    Some(Keep::Copy) => {
                        if n > MAX_KEPT_FIELD {
                            return Err(SignatureError::Decode(format!(
                                "field {field} is {n} bytes, more than a model's signature can hold"
                            )));
                        }
                        out.extend_from_slice(&tag_bytes);
                        encode_varint(n, &mut out);
                        r.copy(n, &mut out)?;
                    }
                    Some(Keep::Message(inner)) => {
                        let nested = compact_message(r, Some(n), inner)?;
                        out.extend_from_slice(&tag_bytes);
                        encode_varint(nested.len() as u64, &mut out);
                        out.extend_from_slice(&nested);
                    }
                }
            }
            (other, _) => {
                return Err(SignatureError::Decode(format!(
                    "field {field} has wire type {other}, which ONNX does not use"
                )));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../../fixtures/models/{name}.onnx", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn the_streamed_signature_equals_the_whole_message_one_for_every_fixture() {
        let dir = format!("{}/../../fixtures/models", env!("CARGO_MANIFEST_DIR"));
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("onnx") {
                continue;
            }
            let bytes = std::fs::read(&path).expect("read");
            let whole = read_signature(&bytes);
            let streamed = read_signature_from(bytes.as_slice());
            assert_eq!(whole, streamed, "{}", path.display());
            seen += 1;
        }
        assert!(seen >= 3, "only {seen} fixtures in {dir}");
    }

    #[test]
    fn bad_input_is_refused_as_the_whole_message_reader_refuses_it() {
        assert_eq!(read_signature_from(&b""[..]), Err(SignatureError::Empty));
        let bytes = fixture("bc-lr");
        let cut = &bytes[..bytes.len() / 2];
        assert!(matches!(read_signature_from(cut), Err(SignatureError::Decode(_))));
        assert!(matches!(
            read_signature_from(&b"not a model at all"[..]),
            Err(SignatureError::Decode(_) | SignatureError::NotOnnx { .. })
        ));
    }

    #[test]
    fn the_compacted_message_is_smaller_than_a_model_with_weights() {
        let bytes = fixture("bc-rf");
        let mut reader = CountingReader {
            inner: bytes.as_slice(),
            read: 0,
        };
        let compact = compact_message(&mut reader, None, MODEL).expect("compact");
        assert!(compact.len() < bytes.len(), "{} >= {}", compact.len(), bytes.len());
    }
}
