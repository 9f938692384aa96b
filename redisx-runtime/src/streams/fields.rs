//! The field layout of a stream entry, what a non-Rust producer writes to feed a redisx
//! consumer:
//!
//! | field | value |
//! |---|---|
//! | `data` | the payload: JSON text (default), or bincode bytes |
//! | `codec` | absent or `json` for JSON; `bincode` |
//! | `attempt` | which attempt this delivery is, from 1 (absent: 1) |
//! | `traceparent`, `tracestate` | the W3C trace context of the publishing span (feature `opentelemetry`) |
//!
//! A dead-letter entry carries the same fields (`attempt`: the attempts made) and `error`,
//! `original_id`, `original_stream`, `failed_at` (ms since the epoch).
//!
//! Retries and delayed messages wait in the stream's delayed set (a sorted set scored by due
//! time, ms) as one member each: a random 16-hex nonce, then every field as two netstrings
//! (`<len>:<bytes>,`), parsed back by the script that moves due members into the stream.

use std::fmt::Write as _;

use redis::Value;

pub(crate) const DATA: &str = "data";
pub(crate) const CODEC: &str = "codec";
pub(crate) const ATTEMPT: &str = "attempt";
#[cfg(feature = "opentelemetry")]
pub(crate) const TRACEPARENT: &str = "traceparent";
#[cfg(feature = "opentelemetry")]
pub(crate) const TRACESTATE: &str = "tracestate";
pub(crate) const ERROR: &str = "error";
pub(crate) const ORIGINAL_ID: &str = "original_id";
pub(crate) const ORIGINAL_STREAM: &str = "original_stream";
pub(crate) const FAILED_AT: &str = "failed_at";

/// The fields of one entry, in order.
pub type Fields = Vec<(String, Vec<u8>)>;

/// The value of `name` in `fields`.
pub(crate) fn get<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

/// `fields` with `name` set to `value` (replaced where present, else appended).
pub(crate) fn set(fields: &mut Fields, name: &str, value: Vec<u8>) {
    match fields.iter_mut().find(|(n, _)| n == name) {
        Some((_, v)) => *v = value,
        None => fields.push((name.to_owned(), value)),
    }
}

/// The attempt an entry says it is (1 when absent or unreadable).
pub(crate) fn attempt(fields: &[(String, Vec<u8>)]) -> u32 {
    get(fields, ATTEMPT)
        .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok())
        .unwrap_or(1)
        .max(1)
}

/// The delayed-set member of `fields`: a nonce, then the fields as netstrings.
pub(crate) fn delayed_member(fields: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        64 + fields
            .iter()
            .map(|(n, v)| n.len() + v.len() + 16)
            .sum::<usize>(),
    );
    let mut nonce = String::with_capacity(16);
    let _ = write!(nonce, "{:016x}", rand::random::<u64>());
    out.extend_from_slice(nonce.as_bytes());
    for (name, value) in fields {
        netstring(&mut out, name.as_bytes());
        netstring(&mut out, value);
    }
    out
}

fn netstring(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(bytes.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(bytes);
    out.push(b',');
}

/// The entries of an `XRANGE` / `XREADGROUP` / `XAUTOCLAIM` reply's entry list: `(id,
/// fields)`, skipping deleted entries (a nil field list).
pub(crate) fn entries(value: Value) -> Vec<(String, Fields)> {
    let Value::Array(items) = value else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let Value::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = pair.pop()?;
            let id = text(pair.pop()?)?;
            let Value::Array(flat) = fields else {
                return None;
            };
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(n), Some(v)) = (it.next(), it.next()) {
                out.push((text(n)?, bytes(v)?));
            }
            Some((id, out))
        })
        .collect()
}

/// A bulk or simple string as text.
pub(crate) fn text(v: Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// A bulk or simple string's bytes.
pub(crate) fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{Error, ErrorCode, Result};

    /// Parses a delayed-set member back into its fields (what `promote.lua` does, here to test
    /// the format).
    fn parse_member(member: &[u8]) -> Result<Fields> {
        let bad = || {
            Error::new(
                ErrorCode::StreamReadFailed,
                "a delayed message is malformed",
            )
        };
        let mut rest = member.get(16..).ok_or_else(bad)?;
        let mut parts = Vec::new();
        while !rest.is_empty() {
            let colon = rest.iter().position(|&b| b == b':').ok_or_else(bad)?;
            let len: usize = std::str::from_utf8(&rest[..colon])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(bad)?;
            let start = colon + 1;
            let end = start.checked_add(len).ok_or_else(bad)?;
            if rest.get(end) != Some(&b',') {
                return Err(bad());
            }
            parts.push(rest[start..end].to_vec());
            rest = &rest[end + 1..];
        }
        if parts.len() % 2 != 0 {
            return Err(bad());
        }
        let mut fields = Vec::with_capacity(parts.len() / 2);
        let mut it = parts.into_iter();
        while let (Some(n), Some(v)) = (it.next(), it.next()) {
            fields.push((String::from_utf8(n).map_err(|_| bad())?, v));
        }
        Ok(fields)
    }

    #[test]
    fn members_round_trip_binary_fields() {
        let fields: Fields = vec![
            ("data".to_owned(), vec![0, 1, b',', b':', 255]),
            ("attempt".to_owned(), b"3".to_vec()),
            ("empty".to_owned(), Vec::new()),
        ];
        let m = delayed_member(&fields);
        assert_eq!(parse_member(&m).unwrap(), fields);
        let other = delayed_member(&fields);
        assert_ne!(m, other, "each member is unique (its nonce)");
        assert!(parse_member(b"0123456789abcdef3:abc").is_err());
        assert!(parse_member(b"short").is_err());
        assert_eq!(attempt(&fields), 3);
        assert_eq!(attempt(&[]), 1);
    }
}
