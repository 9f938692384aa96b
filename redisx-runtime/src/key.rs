//! Keys: one prefix scheme, validation, stable hashing and cluster hash tags.
//!
//! Every key redisx writes is `{app prefix}{plugin prefix}{user key}`, for example
//! `myapp:cache:user:42` (app prefix `myapp:`, cache prefix `cache:`, user key `user:42`).
//! User keys are validated: not empty, at most [`MAX_KEY_LEN`] bytes (configurable), and no
//! control characters.

use std::fmt::{self, Write as _};

use crate::error::{Error, ErrorCode, Result};

/// The default longest user key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// Checks a user key: not empty, at most `max_len` bytes, no control characters.
///
/// ```
/// use redisx_runtime::key::validate;
/// assert!(validate("user:42", 1024).is_ok());
/// assert!(validate("", 1024).is_err());
/// assert!(validate("bad\nkey", 1024).is_err());
/// assert!(validate(&"x".repeat(1025), 1024).is_err());
/// ```
#[inline]
pub fn validate(key: &str, max_len: usize) -> Result<()> {
    check(key, max_len, ErrorCode::CacheKeyInvalid)
}

/// [`validate`], failing with `code` (each plugin reports its own keys).
pub(crate) fn check(key: &str, max_len: usize, code: ErrorCode) -> Result<()> {
    if key.is_empty() {
        return Err(Error::new(code, "the key is empty"));
    }
    if key.len() > max_len {
        return Err(Error::new(
            code,
            format!(
                "the key is {} bytes long; the limit is {max_len}",
                key.len()
            ),
        )
        .with_context("key", format!("{}…", truncate(key, 64))));
    }
    // Control characters are C0 and DEL (single bytes) and C1 (U+0080..=U+009F, encoded as
    // 0xC2 0x80..=0x9F): a byte scan finds any candidate, the char scan only runs then.
    let suspect = key.bytes().any(|b| b < 0x20 || b == 0x7F || b == 0xC2);
    if suspect && let Some((i, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Error::new(
            code,
            format!("the key contains the control character {c:?} at byte {i}"),
        )
        .with_context("key", key.escape_debug().to_string()));
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Checks an app or plugin prefix: at most 256 bytes, no control characters (may be empty).
pub(crate) fn validate_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > 256 || prefix.chars().any(char::is_control) {
        return Err(Error::new(
            ErrorCode::ConfigInvalid,
            "a key prefix must be at most 256 bytes without control characters",
        )
        .with_context("prefix", prefix.escape_debug().to_string()));
    }
    Ok(())
}

/// Builds full keys: `{app prefix}{plugin prefix}{user key}`.
///
/// ```
/// use redisx_runtime::key::KeyBuilder;
/// let keys = KeyBuilder::new("myapp:", "cache:");
/// assert_eq!(keys.full("user:42"), "myapp:cache:user:42");
/// assert_eq!(keys.strip("myapp:cache:user:42"), Some("user:42"));
/// assert_eq!(keys.prefix(), "myapp:cache:");
/// ```
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    prefix: String,
}

impl KeyBuilder {
    /// A builder for one plugin under one app prefix.
    pub fn new(app_prefix: &str, plugin_prefix: &str) -> Self {
        Self {
            prefix: format!("{app_prefix}{plugin_prefix}"),
        }
    }

    /// The combined prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full Redis key of a user key.
    pub fn full(&self, key: &str) -> String {
        let mut s = String::with_capacity(self.prefix.len() + key.len());
        s.push_str(&self.prefix);
        s.push_str(key);
        s
    }

    /// The user key of a full key, if it carries this builder's prefix.
    pub fn strip<'a>(&self, full: &'a str) -> Option<&'a str> {
        full.strip_prefix(self.prefix.as_str())
    }
}

/// The hash tag of a key as Redis Cluster computes it: the part between the first `{` and the
/// next `}` if that part is not empty, else the whole key.
///
/// ```
/// use redisx_runtime::key::hash_tag;
/// assert_eq!(hash_tag("{user:1}:profile"), "user:1");
/// assert_eq!(hash_tag("plain"), "plain");
/// assert_eq!(hash_tag("a{}b"), "a{}b");
/// ```
pub fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{')
        && let Some(len) = key[open + 1..].find('}')
        && len > 0
    {
        return &key[open + 1..open + 1 + len];
    }
    key
}

/// Wraps `key` in a hash tag so that keys derived from it land in one cluster slot:
/// `tagged("order:7")` is `{order:7}`.
///
/// ```
/// use redisx_runtime::key::{tagged, slot};
/// assert_eq!(tagged("order:7"), "{order:7}");
/// assert_eq!(slot(&format!("{}:a", tagged("order:7"))), slot(&format!("{}:b", tagged("order:7"))));
/// ```
pub fn tagged(key: &str) -> String {
    format!("{{{key}}}")
}

/// The Redis Cluster slot (0..16384) of a key: CRC16/XMODEM of its hash tag, mod 16384.
///
/// ```
/// use redisx_runtime::key::slot;
/// assert_eq!(slot("foo"), 12182);
/// assert_eq!(slot("{user1000}.following"), slot("{user1000}.followers"));
/// ```
pub fn slot(key: &str) -> u16 {
    slot_of(key.as_bytes())
}

/// [`slot`] of a key given as bytes (a key read back from Redis need not be UTF-8).
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let tag = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let len = rest.iter().position(|&b| b == b'}')?;
            (len > 0).then(|| &rest[..len])
        })
        .unwrap_or(key);
    crc16(tag) % 16384
}

fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A stable 64-bit hash (SHA-256, first 8 bytes) of a value's serialized form, used for keys
/// built from arguments. Stable across processes, platforms and releases of redisx 0.x, for
/// values whose serialized form is: a `HashMap` or `HashSet` serializes in its iteration
/// order, which differs between processes, so equal maps may hash apart (a miss, never a
/// wrong value). Use a `BTreeMap`/`BTreeSet`, or give the function a `key` template.
///
/// ```
/// use redisx_runtime::key::hash_args;
/// let a = hash_args(&(&42u64, &"x")).unwrap();
/// assert_eq!(a, hash_args(&(&42u64, &"x")).unwrap());
/// assert_ne!(a, hash_args(&(&43u64, &"x")).unwrap());
/// assert_eq!(format!("{a:016x}").len(), 16);
/// ```
pub fn hash_args<A: serde::Serialize + ?Sized>(args: &A) -> Result<u64> {
    use sha2::Digest as _;
    struct W(sha2::Sha256);
    impl bincode::enc::write::Writer for W {
        fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
            self.0.update(bytes);
            Ok(())
        }
    }
    let mut w = W(sha2::Sha256::new());
    bincode::serde::encode_into_writer(args, &mut w, bincode::config::standard()).map_err(|e| {
        Error::new(
            ErrorCode::CacheSerialization,
            format!("cannot serialize the arguments for the key: {e}"),
        )
    })?;
    let digest = w.0.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    Ok(u64::from_be_bytes(first))
}

/// A key rendered without touching the heap when it fits in 200 bytes.
pub(crate) struct KeyBuf {
    stack: [u8; 200],
    len: usize,
    heap: Option<String>,
}

impl KeyBuf {
    #[inline]
    pub(crate) fn render(args: fmt::Arguments<'_>) -> Self {
        let mut buf = Self {
            stack: [0; 200],
            len: 0,
            heap: None,
        };
        if let Some(s) = args.as_str() {
            let _ = buf.write_str(s);
        } else {
            let _ = buf.write_fmt(args);
        }
        buf
    }

    #[inline]
    pub(crate) fn as_str(&self) -> &str {
        match &self.heap {
            Some(s) => s,
            // Only whole `&str` pieces are ever copied in, so this is valid UTF-8.
            None => std::str::from_utf8(&self.stack[..self.len]).unwrap_or(""),
        }
    }

    pub(crate) fn into_string(self) -> String {
        match self.heap {
            Some(s) => s,
            None => self.as_str().to_owned(),
        }
    }
}

impl fmt::Write for KeyBuf {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if let Some(heap) = &mut self.heap {
            heap.push_str(s);
            return Ok(());
        }
        let end = self.len + s.len();
        if end <= self.stack.len() {
            self.stack[self.len..end].copy_from_slice(s.as_bytes());
            self.len = end;
        } else {
            let mut heap = String::with_capacity(end * 2);
            heap.push_str(std::str::from_utf8(&self.stack[..self.len]).unwrap_or(""));
            heap.push_str(s);
            self.heap = Some(heap);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_matches_redis() {
        // Values from the Redis Cluster specification / CLUSTER KEYSLOT.
        assert_eq!(slot("123456789"), 0x31C3);
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
    }

    #[test]
    fn validate_rejects_exactly_the_control_characters() {
        // Every char up to U+07FF (all one- and two-byte encodings, C0, DEL and C1 among
        // them), in the middle of a key, plus a few wider ones.
        let wide = ['\u{2028}', '\u{FEFF}', '\u{1F600}'];
        for c in (0..=0x7FF_u32).filter_map(char::from_u32).chain(wide) {
            let key = format!("user:{c}:1");
            let verdict = validate(&key, 64);
            assert_eq!(
                verdict.is_err(),
                c.is_control(),
                "{c:?} (U+{:04X})",
                c as u32
            );
            if let Err(e) = verdict {
                assert!(e.to_string().contains("at byte 5"), "{e}");
            }
        }
    }

    #[test]
    fn keybuf_spills_to_heap() {
        let long = "x".repeat(300);
        let k = KeyBuf::render(format_args!("a:{long}"));
        assert_eq!(k.as_str().len(), 302);
        let id = 5;
        let k = KeyBuf::render(format_args!("user:{id}"));
        assert_eq!(k.as_str(), "user:5");
        assert_eq!(k.into_string(), "user:5");
    }
}
