//! Entry points for the fuzz targets in `fuzz/` and the property tests (feature `fuzzing`, off
//! by default). **Not an API**: hidden, unversioned, and gone without the feature.
//!
//! Thin wrappers over the crate-private parsers that read untrusted bytes: key rendering and
//! validation, the Redis glob matcher, the cache envelope and the stream entry decoders, so
//! the fuzzers run the shipped code.

use std::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::CacheConfig;
use crate::codec::CodecKind;
use crate::error::Result;

use crate::cache::envelope;
use crate::streams::{fields, message, reply};

pub use crate::streams::{Fields, GroupInfo, PendingSummary};

/// The length of a cache entry's header (format byte, `stale_at`, `expires_at`).
pub const ENTRY_HEADER_LEN: usize = envelope::HEADER_LEN;

/// Renders a key template as the `#[cached]` expansion does (a stack buffer spilling to the
/// heap): returns both the borrowed and the owned form, which must agree.
pub fn render_key(args: fmt::Arguments<'_>) -> (String, String) {
    let buf = crate::key::KeyBuf::render(args);
    let borrowed = buf.as_str().to_owned();
    (borrowed, buf.into_string())
}

/// Renders tag templates as the attribute expansions do.
pub fn render_templates(templates: &[fmt::Arguments<'_>]) -> Vec<String> {
    crate::call_site::render(templates)
}

/// Checks a user key as the cache does: [`crate::key::validate`] and its reserved namespaces.
pub fn check_cache_key(config: &CacheConfig, key: &str) -> Result<()> {
    config.check_key(key)
}

/// Whether `key` matches the Redis glob `pattern`, as the cache's L1 pattern invalidation
/// decides it.
pub fn glob_matches(pattern: &str, key: &str) -> bool {
    crate::cache::glob::Glob::new(pattern).matches(key)
}

/// A literal escaped for `SCAN MATCH`.
pub fn glob_escape(literal: &str) -> String {
    crate::cache::glob::glob_escape(literal)
}

/// A decoded cache entry.
#[derive(Debug)]
pub struct DecodedEntry<T> {
    /// The value.
    pub value: T,
    /// Unix ms after which the entry is stale.
    pub stale_at: u64,
    /// Unix ms after which the entry is gone.
    pub expires_at: u64,
    /// The header the entry re-encodes to, for compare-and-set writes.
    pub header: [u8; ENTRY_HEADER_LEN],
    /// The stored size in bytes.
    pub size: usize,
}

/// Decodes stored bytes as a cache entry, as an L2 read does.
pub fn decode_entry<T: DeserializeOwned>(bytes: &[u8]) -> Result<DecodedEntry<T>> {
    let env = envelope::decode::<T>(bytes)?;
    Ok(DecodedEntry {
        header: env.header(),
        value: env.value,
        stale_at: env.stale_at,
        expires_at: env.expires_at,
        size: env.size,
    })
}

/// Reads `(stale_at, expires_at)` from stored bytes; `None` when they are not an entry.
pub fn decode_entry_header(bytes: &[u8]) -> Option<(u64, u64)> {
    envelope::decode_header(bytes)
}

/// Encodes a cache entry as an L2 write does.
pub fn encode_entry<T: Serialize + ?Sized>(
    codec: CodecKind,
    value: &T,
    stale_at: u64,
    expires_at: u64,
    tags: &[String],
) -> Result<Vec<u8>> {
    envelope::encode(codec, value, stale_at, expires_at, tags)
}

/// Whether stored bytes are a regeneration lock marker.
pub fn is_lock_marker(bytes: &[u8]) -> bool {
    envelope::is_marker(bytes)
}

/// Decodes a stream entry's payload by its `codec` field, as a consumer does.
pub fn decode_message<T: DeserializeOwned>(entry: &[(String, Vec<u8>)]) -> Result<T> {
    message::decode(entry)
}

/// The fields a producer writes for `payload`.
pub fn encode_message<T: Serialize + ?Sized>(codec: CodecKind, payload: &T) -> Result<Fields> {
    message::encode("fuzz", codec, payload)
}

/// The attempt an entry says it is.
pub fn message_attempt(entry: &[(String, Vec<u8>)]) -> u32 {
    fields::attempt(entry)
}

/// The `(id, fields)` entries of an `XRANGE` / `XREADGROUP` / `XAUTOCLAIM` entry list.
pub fn stream_entries(reply: redis::Value) -> Vec<(String, Fields)> {
    fields::entries(reply)
}

/// The pairs of a map reply (RESP3 map or RESP2 flat array).
pub fn reply_pairs(reply: redis::Value) -> Vec<(String, redis::Value)> {
    reply::pairs(reply)
}

/// The groups of an `XINFO GROUPS` reply.
pub fn parse_groups(reply: redis::Value) -> Vec<GroupInfo> {
    reply::parse_groups(reply)
}

/// An `XPENDING` summary reply.
pub fn parse_pending(reply: redis::Value) -> PendingSummary {
    reply::parse_pending(reply)
}

/// A stream entry id `ms-seq` (or `ms`) as `(ms, seq)`.
pub fn parse_entry_id(id: &str) -> Option<(u64, u64)> {
    reply::EntryId::parse(id).map(|id| (id.ms, id.seq))
}

/// The smallest entry id after `(ms, seq)`.
pub fn next_entry_id(ms: u64, seq: u64) -> (u64, u64) {
    let next = reply::EntryId { ms, seq }.next();
    (next.ms, next.seq)
}
