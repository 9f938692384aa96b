//! The stored form of a cache entry in L2.
//!
//! ```text
//! byte 0      format/version header: the codec's format byte (0x01 bincode, 0x02 json)
//!             with bit 0x40 set: a tag section follows the header
//! bytes 1..9  stale_at, unix ms, little endian (== expires_at when SWR is off)
//! bytes 9..17 expires_at, unix ms, little endian
//! byte 17     the tag count (0 for an untagged entry), then per tag one length byte and
//!             the tag's bytes
//! then        the value, encoded by the codec
//! ```
//!
//! The tag section lets a tag invalidation (`tag_delete.lua`) delete only the entries that
//! still carry the tag: an entry rewritten without it since it was indexed stays. It costs an
//! untagged entry one byte. Entries without the 0x40 bit (the format before tag sections)
//! still decode, and a tag invalidation deletes them as it always did.
//!
//! A regeneration lock held in an entry's own key is a marker instead: `0xFE` and a 16-byte
//! token, plus `w` once a waiter flagged it (see `flag_waiter.lua`).
//!
//! Anything else (another header, a short entry, bytes that do not decode) is a corrupt entry:
//! the cache reports a miss and removes it.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codec::CodecKind;
use crate::error::{Error, ErrorCode, Result};

pub(crate) const HEADER_LEN: usize = 17;

/// Set in the format byte when a tag section follows the header.
pub(crate) const TAGGED: u8 = 0x40;

/// The most tags one entry can carry (its count is one byte).
pub(crate) const MAX_TAGS: usize = 255;

/// The first byte of a regeneration lock marker.
pub(crate) const MARKER: u8 = 0xFE;

/// A regeneration lock's token: [`MARKER`] and 16 random bytes.
pub(crate) type Marker = [u8; 17];

/// A new marker with a random token.
pub(crate) fn new_marker() -> Marker {
    let mut m = [MARKER; 17];
    m[1..].copy_from_slice(&rand::random::<u128>().to_le_bytes());
    m
}

/// Whether stored bytes are a lock marker (flagged or not). Other bytes starting with 0xFE
/// are no lock of ours: they are decoded (and found corrupt) rather than waited for.
pub(crate) fn is_marker(bytes: &[u8]) -> bool {
    bytes.first() == Some(&MARKER)
        && (bytes.len() == 17 || (bytes.len() == 18 && bytes[17] == b'w'))
}

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
    /// The stored entry's size in bytes (the weight of its L1 copy under a byte budget).
    pub(crate) size: usize,
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
    tags: &[String],
) -> Result<Vec<u8>> {
    let section: usize = tags.iter().map(|t| 1 + t.len()).sum();
    let mut out = Vec::with_capacity(64 + section);
    out.push(codec.format() | TAGGED);
    out.extend_from_slice(&stale_at.to_le_bytes());
    out.extend_from_slice(&expires_at.to_le_bytes());
    {
        let count = u8::try_from(tags.len()).map_err(|_| {
            Error::new(
                ErrorCode::CacheSerialization,
                format!(
                    "an entry carries at most {MAX_TAGS} tags, not {}",
                    tags.len()
                ),
            )
        })?;
        out.push(count);
        for t in tags {
            let len = u8::try_from(t.len()).map_err(|_| {
                Error::new(
                    ErrorCode::CacheSerialization,
                    format!("a tag is at most 128 bytes, not {}", t.len()),
                )
            })?;
            out.push(len);
            out.extend_from_slice(t.as_bytes());
        }
    }
    codec.encode_into(value, &mut out)?;
    Ok(out)
}

/// The value bytes after a tag section (`body` starts at the section's count byte).
fn skip_tags(body: &[u8]) -> Result<&[u8]> {
    let corrupt = || {
        Error::new(
            ErrorCode::CacheDeserialization,
            "the stored entry's tag section runs past its end",
        )
    };
    let (&count, mut rest) = body.split_first().ok_or_else(corrupt)?;
    for _ in 0..count {
        let (&len, after) = rest.split_first().ok_or_else(corrupt)?;
        rest = after.get(usize::from(len)..).ok_or_else(corrupt)?;
    }
    Ok(rest)
}

/// The tags an entry carries (empty for an untagged one or one without a tag section);
/// `None` if it is not an entry. `bytes` may end after the tag section.
pub(crate) fn tags_of(bytes: &[u8]) -> Option<Vec<String>> {
    if bytes.len() < HEADER_LEN || bytes[0] & TAGGED == 0 {
        return (bytes.len() >= HEADER_LEN).then(Vec::new);
    }
    let (&count, mut rest) = bytes[HEADER_LEN..].split_first()?;
    let mut tags = Vec::new();
    for _ in 0..count {
        let (&len, after) = rest.split_first()?;
        let tag = after.get(..usize::from(len))?;
        tags.push(String::from_utf8(tag.to_vec()).ok()?);
        rest = &after[usize::from(len)..];
    }
    Some(tags)
}

/// Reads `(stale_at, expires_at)` from the first [`HEADER_LEN`] bytes of an entry; `None`
/// for a lock marker or anything that is not an entry.
pub(crate) fn decode_header(bytes: &[u8]) -> Option<(u64, u64)> {
    if bytes.len() < HEADER_LEN || CodecKind::from_format(bytes[0] & !TAGGED).is_none() {
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
    let Some(codec) = CodecKind::from_format(bytes[0] & !TAGGED) else {
        return Err(Error::new(
            ErrorCode::CacheDeserialization,
            format!("unknown format header 0x{:02x}", bytes[0]),
        ));
    };
    let stale_at = u64::from_le_bytes(bytes[1..9].try_into().expect("8 bytes"));
    let expires_at = u64::from_le_bytes(bytes[9..17].try_into().expect("8 bytes"));
    let body = if bytes[0] & TAGGED == 0 {
        &bytes[HEADER_LEN..]
    } else {
        skip_tags(&bytes[HEADER_LEN..])?
    };
    let value = codec.decode(body)?;
    Ok(Envelope {
        value,
        stale_at,
        expires_at,
        format: bytes[0],
        size: bytes.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_both_codecs() {
        for codec in [CodecKind::Bincode, CodecKind::Json] {
            let bytes = encode(codec, &("a", 1u8), 10, 20, &[]).unwrap();
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
        let mut ok = encode(CodecKind::Bincode, &1u8, 1, 1, &[]).unwrap();
        ok.truncate(HEADER_LEN);
        assert_eq!(
            decode::<u8>(&ok).err().map(|e| e.code()),
            Some(ErrorCode::CacheDeserialization)
        );
    }

    #[test]
    fn tagged_entries_roundtrip_and_name_their_tags() {
        let tags = vec!["users".to_owned(), "user:7".to_owned(), "x".repeat(128)];
        for codec in [CodecKind::Bincode, CodecKind::Json] {
            let bytes = encode(codec, &("a", 1u8), 10, 20, &tags).unwrap();
            assert_eq!(bytes[0], codec.format() | TAGGED);
            assert_eq!(usize::from(bytes[HEADER_LEN]), tags.len());
            assert_eq!(tags_of(&bytes), Some(tags.clone()));
            let env: Envelope<(String, u8)> = decode(&bytes).unwrap();
            assert_eq!(env.value, ("a".to_owned(), 1));
            assert_eq!((env.stale_at, env.expires_at), (10, 20));
            assert_eq!(&env.header()[..], &bytes[..HEADER_LEN]);
            assert_eq!(decode_header(&bytes), Some((10, 20)));
            // Cut anywhere inside the tag section: corrupt, never a panic.
            let section_end = HEADER_LEN + 1 + tags.iter().map(|t| 1 + t.len()).sum::<usize>();
            for cut in HEADER_LEN..section_end {
                assert_eq!(
                    decode::<(String, u8)>(&bytes[..cut])
                        .err()
                        .map(|e| e.code()),
                    Some(ErrorCode::CacheDeserialization),
                    "cut at {cut}"
                );
            }
        }
        let untagged = encode(CodecKind::Bincode, &1u8, 1, 1, &[]).unwrap();
        assert_eq!(untagged[0], CodecKind::Bincode.format() | TAGGED);
        assert_eq!(
            untagged[HEADER_LEN], 0,
            "an untagged entry has an empty section"
        );
        assert_eq!(tags_of(&untagged), Some(vec![]));
        // An entry without a section (the earlier format) still decodes.
        let mut old = untagged.clone();
        old[0] = CodecKind::Bincode.format();
        old.remove(HEADER_LEN);
        assert_eq!(decode::<u8>(&old).unwrap().value, 1);
        assert_eq!(decode_header(&old), Some((1, 1)));
        let too_long = vec!["y".repeat(256)];
        assert!(encode(CodecKind::Bincode, &1u8, 1, 1, &too_long).is_err());
        let too_many: Vec<String> = (0..256).map(|i| i.to_string()).collect();
        assert!(encode(CodecKind::Bincode, &1u8, 1, 1, &too_many).is_err());
    }
}
