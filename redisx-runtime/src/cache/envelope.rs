//! The stored form of a cache entry in L2.
//!
//! ```text
//! byte 0      format/version header: the codec's format byte (0x01 bincode, 0x02 json)
//! bytes 1..9  stale_at, unix ms, little endian (== expires_at when SWR is off)
//! bytes 9..17 expires_at, unix ms, little endian
//! bytes 17..  the value, encoded by the codec
//! ```
//!
//! Anything else (another header, a short entry, bytes that do not decode) is a corrupt entry:
//! the cache reports a miss and removes it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};

pub(crate) const HEADER_LEN: usize = 17;

/// Unix time in milliseconds.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(crate) struct Envelope<T> {
    pub(crate) value: T,
    pub(crate) stale_at: u64,
    pub(crate) expires_at: u64,
    pub(crate) format: u8,
}

impl<T> Envelope<T> {
    /// The entry's first [`HEADER_LEN`] bytes, as stored: they identify this version of the
    /// entry (a rewrite changes its timestamps), for compare-and-set writes.
    pub(crate) fn header(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[0] = self.format;
        h[1..9].copy_from_slice(&self.stale_at.to_le_bytes());
        h[9..17].copy_from_slice(&self.expires_at.to_le_bytes());
        h
    }
}

pub(crate) fn encode<T: Serialize + ?Sized>(
    codec: CodecKind,
    value: &T,
    stale_at: u64,
    expires_at: u64,
) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(64);
    out.push(codec.format());
    out.extend_from_slice(&stale_at.to_le_bytes());
    out.extend_from_slice(&expires_at.to_le_bytes());
    codec.encode_into(value, &mut out)?;
    Ok(out)
}

/// Reads `(stale_at, expires_at)` from the first [`HEADER_LEN`] bytes of an entry; `None`
/// for a lock marker or anything that is not an entry.
pub(crate) fn decode_header(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < HEADER_LEN || CodecKind::from_format(bytes[0]).is_none() {
        return None;
    }
    let stale_at = u64::from_le_bytes(bytes[1..9].try_into().ok()?);
    let expires_at = u64::from_le_bytes(bytes[9..17].try_into().ok()?);
    Some((stale_at, expires_at))
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<Envelope<T>> {
    if bytes.len() < HEADER_LEN {
        return Err(Error::new(
            ErrorCode::CacheDeserialization,
            format!(
                "the stored entry is {} bytes, shorter than its header",
                bytes.len()
            ),
        ));
    }
    let Some(codec) = CodecKind::from_format(bytes[0]) else {
        return Err(Error::new(
            ErrorCode::CacheDeserialization,
            format!("unknown format header 0x{:02x}", bytes[0]),
        ));
    };
    let stale_at = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let expires_at = u64::from_le_bytes(bytes[9..17].try_into().expect("8 bytes"));
    let value = codec.decode(&bytes[HEADER_LEN..])?;
    Ok(Envelope {
        value,
        stale_at,
        expires_at,
        format: bytes[0],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_both_codecs() {
        for codec in [CodecKind::Bincode, CodecKind::Json] {
            let bytes = encode(codec, &("a", 1u8), 10, 20).unwrap();
            let env: Envelope<(String, u8)> = decode(&bytes).unwrap();
            assert_eq!(env.value, ("a".to_owned(), 1));
            assert_eq!((env.stale_at, env.expires_at), (10, 20));
            assert_eq!(&env.header()[..], &bytes[..HEADER_LEN]);
        }
    }

    #[test]
    fn corrupt_entries_are_errors() {
        assert!(decode::<u8>(b"").is_err());
        assert!(decode::<u8>(b"\x07aaaaaaaaaaaaaaaaaaaa").is_err());
        let mut ok = encode(CodecKind::Bincode, &1u8, 1, 1).unwrap();
        ok.truncate(HEADER_LEN);
        assert_eq!(
            decode::<u8>(&ok).err().map(|e| e.code()),
            Some(ErrorCode::CacheDeserialization)
        );
    }
}
