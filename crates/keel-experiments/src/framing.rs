//! How a record of a decision log is framed: one line `<seq> <xxh3> <len> <json>\n`, where
//! `seq` is the record's sequence number (decimal), `xxh3` the XXH3-64 hash of the JSON bytes
//! seeded with `seq` (16 lowercase hex digits) and `len` the byte length of the JSON; lines
//! written before framing existed are the JSON alone ("legacy"). Written by the log's writer
//! (`log.rs`), read by [`crate::logfile`], checked again when archived ([`crate::archive`]).

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::event::Event;

/// Appends the framed record of an event (its JSON encoding `json`, sequence number `seq`)
/// to `out`.
pub(crate) fn frame(out: &mut Vec<u8>, seq: u64, json: &[u8]) {
    let (header, n) = header(seq, json);
    out.reserve(n + json.len() + 1);
    out.extend_from_slice(&header[..n]);
    out.extend_from_slice(json);
    out.push(b'\n');
}

/// The header `<seq> <xxh3> <len> ` of a record, in a stack buffer (at most 20 + 1 + 16 + 1
/// + 20 + 1 bytes), with its length. Formatted by hand: this runs for every decision.
fn header(seq: u64, json: &[u8]) -> ([u8; 64], usize) {
    fn decimal(buf: &mut [u8; 64], at: usize, mut v: u64) -> usize {
        let mut digits = [0u8; 20];
        let mut n = 0;
        loop {
            digits[n] = b'0' + (v % 10) as u8;
            n += 1;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for i in 0..n {
            buf[at + i] = digits[n - 1 - i];
        }
        at + n
    }
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hash = xxh3_64_with_seed(json, seq);
    let mut buf = [0u8; 64];
    let mut at = decimal(&mut buf, 0, seq);
    buf[at] = b' ';
    at += 1;
    for i in 0..16 {
        buf[at + i] = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    buf[at + 16] = b' ';
    at = decimal(&mut buf, at + 17, json.len() as u64);
    buf[at] = b' ';
    (buf, at + 1)
}

/// One record read back: its event, and whether it was written before framing.
#[derive(Debug)]
pub(crate) enum Decoded {
    Framed(Event),
    Legacy(Event),
}

/// A framed line's body (without its `\n`) cut into its four parts: `seq`, `xxh3`, `len`, JSON.
fn parts(body: &[u8]) -> Option<[&[u8]; 4]> {
    let mut parts = body.splitn(4, |b| *b == b' ');
    Some([parts.next()?, parts.next()?, parts.next()?, parts.next()?])
}

/// A header number written exactly as the writer writes it (decimal, or 16 lowercase hex
/// digits; no sign, no padding), so no changed byte of a header reads as the same number.
fn number(b: &[u8], radix: u32) -> Option<u64> {
    let digit = |c: &u8| c.is_ascii_digit() || (radix == 16 && (b'a'..=b'f').contains(c));
    let width = if radix == 16 {
        b.len() == 16
    } else {
        !b.is_empty() && b.len() <= 20
    };
    (width && b.iter().all(digit))
        .then(|| std::str::from_utf8(b).ok())
        .flatten()
        .and_then(|s| u64::from_str_radix(s, radix).ok())
}

/// Decodes one line (with its `\n`), or says what is wrong with it.
pub(crate) fn decode(line: &[u8]) -> std::result::Result<Decoded, String> {
    let Some(body) = line.strip_suffix(b"\n") else {
        return Err(format!("incomplete record ({} bytes, no end of line)", line.len()));
    };
    if body.first() == Some(&b'{') {
        return serde_json::from_slice::<Event>(body)
            .map(Decoded::Legacy)
            .map_err(|e| format!("unreadable record: {e}"));
    }
    let Some([seq, hash, len, json]) = parts(body) else {
        return Err("not a record (no `seq hash len` header)".into());
    };
    let (Some(seq), Some(hash), Some(len)) = (number(seq, 10), number(hash, 16), number(len, 10)) else {
        return Err("not a record (unreadable `seq hash len` header)".into());
    };
    if json.len() as u64 != len {
        return Err(format!(
            "record length {} does not match its header ({len})",
            json.len()
        ));
    }
    if xxh3_64_with_seed(json, seq) != hash {
        return Err(format!("checksum mismatch in record {seq}"));
    }
    let event = serde_json::from_slice::<Event>(json).map_err(|e| format!("unreadable record {seq}: {e}"))?;
    if event.seq() != seq {
        return Err(format!("record header says {seq} but its event says {}", event.seq()));
    }
    Ok(Decoded::Framed(event))
}

/// The JSON of a record line that [`decode`] accepted, exactly as logged: after the `seq hash
/// len` header of a framed record, the whole line (without its `\n`) of a legacy one.
pub(crate) fn json_of(line: &[u8]) -> &[u8] {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if body.first() == Some(&b'{') {
        return body;
    }
    parts(body).map_or(&[][..], |[_, _, _, json]| json)
}

/// The sequence number of a framed record whose checksum holds, without decoding its JSON;
/// `None` for anything else (decoded the slow way, which says what is wrong).
pub(crate) fn framed_seq(line: &[u8]) -> Option<u64> {
    let [seq, hash, len, json] = parts(line.strip_suffix(b"\n")?)?;
    let (seq, hash, len) = (number(seq, 10)?, number(hash, 16)?, number(len, 10)?);
    (json.len() as u64 == len && xxh3_64_with_seed(json, seq) == hash).then_some(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_formatted_like_format() {
        for (seq, json) in [(0u64, &b""[..]), (7, b"{}"), (u64::MAX, &[b'x'; 1234][..])] {
            let (buf, n) = header(seq, json);
            let hash = xxh3_64_with_seed(json, seq);
            assert_eq!(&buf[..n], format!("{seq} {hash:016x} {} ", json.len()).as_bytes());
        }
    }
}
