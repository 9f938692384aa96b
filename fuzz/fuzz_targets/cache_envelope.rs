//! The cache entry envelope and the codecs. Arbitrary stored bytes decode into an entry or fail
//! with `CACHE_DESERIALIZATION` (never a panic, never an abort on a huge claimed length); a
//! decoded entry re-encodes its header byte for byte. Every entry the cache can write decodes
//! back to the same value, and every truncation of it is an error. Lock markers never read as
//! entries.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redisx_runtime::__fuzz::{
    ENTRY_HEADER_LEN, decode_entry, decode_entry_header, encode_entry, is_lock_marker,
};
use redisx_runtime::{CodecKind, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Debug)]
struct Payload {
    id: u64,
    name: String,
    score: Option<i32>,
    items: Vec<(String, u8)>,
    flag: bool,
    raw: Vec<u8>,
    kind: Kind,
}

#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Debug)]
enum Kind {
    Plain,
    Wrapped(i64),
    Named { label: String },
}

#[derive(Arbitrary, Debug)]
struct Input {
    stored: Vec<u8>,
    value: Payload,
    tags: Vec<String>,
    stale_at: u64,
    expires_at: u64,
    json: bool,
    cut: usize,
}

fn decode_any<T: DeserializeOwned>(bytes: &[u8]) {
    match decode_entry::<T>(bytes) {
        Ok(entry) => {
            assert_eq!(entry.size, bytes.len());
            assert_eq!(&entry.header[..], &bytes[..ENTRY_HEADER_LEN]);
            assert_eq!(
                decode_entry_header(bytes),
                Some((entry.stale_at, entry.expires_at))
            );
        }
        Err(e) => assert_eq!(e.code(), ErrorCode::CacheDeserialization, "{e}"),
    }
}

fuzz_target!(|input: Input| {
    let bytes = &input.stored;
    decode_any::<Payload>(bytes);
    decode_any::<String>(bytes);
    decode_any::<Vec<u8>>(bytes);
    decode_any::<u64>(bytes);
    decode_any::<BTreeMap<String, Vec<Option<u32>>>>(bytes);
    decode_any::<serde_json::Value>(bytes);
    if is_lock_marker(bytes) {
        assert_eq!(
            decode_entry_header(bytes),
            None,
            "a lock marker read as an entry"
        );
    }
    // The codecs alone, as `Codec::decode` runs on a value's bytes.
    if let Some((&format, rest)) = bytes.split_first()
        && let Some(codec) = CodecKind::from_format(format)
        && let Err(e) = codec.decode::<Payload>(rest)
    {
        assert_eq!(e.code(), ErrorCode::CacheDeserialization, "{e}");
    }

    let codec = if input.json {
        CodecKind::Json
    } else {
        CodecKind::Bincode
    };
    let tags = &input.tags;
    let encoded = encode_entry(codec, &input.value, input.stale_at, input.expires_at, tags);
    let fits = tags.len() <= 255 && tags.iter().all(|t| t.len() <= 255);
    let Ok(encoded) = encoded else {
        assert!(!fits, "a writable entry was refused");
        return;
    };
    assert!(fits, "{} tags encoded", tags.len());
    let entry = decode_entry::<Payload>(&encoded).expect("an entry the cache wrote decodes");
    assert_eq!(entry.value, input.value);
    assert_eq!(
        (entry.stale_at, entry.expires_at),
        (input.stale_at, input.expires_at)
    );
    assert_eq!(&entry.header[..], &encoded[..ENTRY_HEADER_LEN]);
    let cut = input.cut % encoded.len();
    let truncated = decode_entry::<Payload>(&encoded[..cut]);
    assert_eq!(
        truncated.err().map(|e| e.code()),
        Some(ErrorCode::CacheDeserialization),
        "a truncated entry decoded (cut at {cut} of {})",
        encoded.len()
    );
});
