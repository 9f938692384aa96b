//! Request fingerprints for the idempotency plugin: SHA-256 over a canonical, versioned encoding.
//!
//! A stored idempotency record keeps the fingerprint of the request that created it, and a
//! retry under the same key must carry the same one. Records outlive deploys, so the encoding
//! cannot depend on the process, platform or crate version: values are hashed as canonical JSON
//! (RFC 8785, the JSON Canonicalization Scheme), never as `Debug` output or in map iteration
//! order, and each part is length-framed behind a version tag.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, ErrorCode, Result};

/// The domain and version tag every fingerprint starts with. Changing it, the kind bytes or
/// the framing changes every digest, which breaks every stored idempotency record.
const TAG: &[u8] = b"redisx-fp-v1\n";
/// The kind byte of a part holding canonical JSON.
const KIND_JSON: u8 = b'j';
/// The kind byte of a part holding raw bytes.
const KIND_BYTES: u8 = b'b';

/// Serializes `value` as canonical JSON (RFC 8785): members sorted by the UTF-16 code units of
/// their names, no whitespace, JCS string escapes, numbers as ECMAScript prints them (integers
/// that fit `i64`/`u64` print as integers).
///
/// Fails with `ErrorCode::IdempotencySerialization` when `serde_json` cannot serialize the
/// value (such as a map keyed by tuples) or it holds a NaN or infinite float.
///
/// ```
/// use redisx_runtime::idempotency::canonical_json;
/// let json = serde_json::json!({"b": [1.0, 2.5e-7, 1e21], "a": "caf\u{e9}\n"});
/// assert_eq!(canonical_json(&json)?, r#"{"a":"café\n","b":[1,2.5e-7,1e+21]}"#);
/// assert!(canonical_json(&f64::NAN).is_err());
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<String> {
    let tree = serde_json::to_value(value).map_err(serialization_error)?;
    // `to_value` turns NaN and infinities into `null`; refuse them instead.
    value.serialize(FiniteCheck).map_err(serialization_error)?;
    let mut out = String::new();
    write_value(&mut out, &tree);
    Ok(out)
}

/// Parses `body` as a JSON document (an HTTP request body) and returns its canonical form (see
/// [`canonical_json`]), so bodies differing only in whitespace or member order agree.
///
/// Fails with `ErrorCode::IdempotencySerialization` when the body is not JSON (or holds a
/// number beyond `f64`): the caller then hashes the raw bytes instead, as [`http_fingerprint`]
/// does. Numbers are parsed by `serde_json`: without its `float_roundtrip` feature, one with
/// more than 15 significant digits may land on a neighbouring `f64`.
///
/// ```
/// use redisx_runtime::idempotency::canonicalize_json_body;
/// let canonical = canonicalize_json_body(b"{ \"b\": 1,\n \"a\": [true, null] }")?;
/// assert_eq!(canonical, br#"{"a":[true,null],"b":1}"#);
/// assert!(canonicalize_json_body(b"amount=100").is_err());
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
pub fn canonicalize_json_body(body: &[u8]) -> Result<Vec<u8>> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let message = format!("the body is not a JSON document: {e}");
        Error::new(ErrorCode::IdempotencySerialization, message)
    })?;
    let mut out = String::with_capacity(body.len());
    write_value(&mut out, &value);
    Ok(out.into_bytes())
}

/// A builder of a request fingerprint: a lowercase hex SHA-256 over named parts.
///
/// The hash starts with the tag `redisx-fp-v1\n`; each part then adds a kind byte (`j`: a
/// canonical JSON value, `b`: raw bytes), the name's length (big-endian `u64`), the name, the
/// value's length (big-endian `u64`) and the value, so distinct part lists never hash the same
/// input. **The order of the calls matters**: `arg("a", ..).arg("b", ..)` and
/// `arg("b", ..).arg("a", ..)` differ, so add the parts in a fixed order.
///
/// ```
/// use redisx_runtime::idempotency::Fingerprint;
/// let mut fp = Fingerprint::new();
/// fp.arg("user", &42u64).arg("items", &["a", "b"]).bytes("note", b"raw");
/// assert_eq!(fp.finish()?.len(), 64);
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Fingerprint {
    hasher: Sha256,
    error: Option<Error>,
}

impl Default for Fingerprint {
    fn default() -> Self {
        Self::new()
    }
}

impl Fingerprint {
    /// A fingerprint with no parts yet (only the version tag is hashed).
    ///
    /// ```
    /// use redisx_runtime::idempotency::Fingerprint;
    /// assert_eq!(Fingerprint::new().finish()?, Fingerprint::default().finish()?);
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn new() -> Self {
        let mut hasher = Sha256::new();
        hasher.update(TAG);
        Self {
            hasher,
            error: None,
        }
    }

    /// Adds a part `name` holding the canonical JSON of `value` (see [`canonical_json`]). The
    /// first value that cannot be serialized is kept as the error [`finish`](Self::finish)
    /// returns, with the part's name as its `arg` context.
    ///
    /// ```
    /// use redisx_runtime::idempotency::Fingerprint;
    /// let mut fp = Fingerprint::new();
    /// fp.arg("amount", &100).arg("bad", &f64::NAN).arg("currency", "EUR");
    /// assert!(fp.finish().is_err());
    /// ```
    pub fn arg<T: Serialize + ?Sized>(&mut self, name: &str, value: &T) -> &mut Self {
        if self.error.is_none() {
            match canonical_json(value) {
                Ok(json) => self.part(KIND_JSON, name, json.as_bytes()),
                Err(e) => self.error = Some(e.with_context("arg", name.to_owned())),
            }
        }
        self
    }

    /// Adds a part `name` holding `value` as it is.
    ///
    /// ```
    /// use redisx_runtime::idempotency::Fingerprint;
    /// let (mut a, mut b) = (Fingerprint::new(), Fingerprint::new());
    /// a.bytes("body", b"hello");
    /// b.bytes("body", b"hell").bytes("o", b"");
    /// assert_ne!(a.finish()?, b.finish()?);
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn bytes(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.part(KIND_BYTES, name, value);
        self
    }

    /// The fingerprint as 64 lowercase hex digits, or the first error of [`arg`](Self::arg).
    ///
    /// ```
    /// use redisx_runtime::idempotency::Fingerprint;
    /// let mut fp = Fingerprint::new();
    /// fp.arg("id", "order-7");
    /// let hex = fp.finish()?;
    /// assert!(hex.len() == 64 && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    /// # Ok::<(), redisx_runtime::Error>(())
    /// ```
    pub fn finish(self) -> Result<String> {
        match self.error {
            Some(e) => Err(e),
            None => Ok(self.digest()),
        }
    }

    fn part(&mut self, kind: u8, name: &str, value: &[u8]) {
        self.hasher.update([kind]);
        self.hasher.update((name.len() as u64).to_be_bytes());
        self.hasher.update(name.as_bytes());
        self.hasher.update((value.len() as u64).to_be_bytes());
        self.hasher.update(value);
    }

    fn digest(self) -> String {
        let mut out = String::with_capacity(64);
        for b in self.hasher.finalize() {
            let _ = write!(out, "{b:02x}"); // writing to a `String` cannot fail
        }
        out
    }
}

/// The fingerprint of an HTTP request.
///
/// Its parts, in order: `method` (uppercased) and `path`, as bytes; `body`, as
/// [`Fingerprint::arg`] of the document when the body is JSON (whitespace and member order do
/// not matter), else as the raw bytes (an empty body is an empty part); then, when the query
/// holds a pair, `query`: its `k=v` pairs (empty ones skipped) sorted by key then value, bytes
/// as given (no percent-decoding), joined by `&`. So `b=2&a=1` and `a=1&b=2` agree, as do
/// `None` and `Some("")`. Pass the query without its leading `?`.
///
/// ```
/// use redisx_runtime::idempotency::http_fingerprint;
/// let a = http_fingerprint("post", "/pay", br#"{"cents": 100, "cur": "EUR"}"#, Some("b=2&a=1"));
/// let b = http_fingerprint("POST", "/pay", br#"{"cur":"EUR","cents":100}"#, Some("a=1&b=2"));
/// assert_eq!(a, b);
/// assert_ne!(a, http_fingerprint("POST", "/pay", br#"{"cents":1,"cur":"EUR"}"#, None));
/// ```
pub fn http_fingerprint(method: &str, path: &str, body: &[u8], query: Option<&str>) -> String {
    let mut fp = Fingerprint::new();
    fp.bytes("method", method.to_ascii_uppercase().as_bytes());
    fp.bytes("path", path.as_bytes());
    match canonicalize_json_body(body) {
        Ok(json) => fp.part(KIND_JSON, "body", &json),
        Err(_) => fp.part(KIND_BYTES, "body", body),
    }
    let query = query.unwrap_or_default();
    let mut pairs: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    if !pairs.is_empty() {
        // By key, then value; a pair without `=` has no value and sorts first.
        pairs.sort_by_key(|p| p.split_once('=').map_or((*p, None), |(k, v)| (k, Some(v))));
        fp.bytes("query", pairs.join("&").as_bytes());
    }
    fp.digest()
}

fn serialization_error(e: impl std::fmt::Display) -> Error {
    let message = format!("cannot encode the value as canonical JSON: {e}");
    Error::new(ErrorCode::IdempotencySerialization, message)
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_u64() && !n.is_i64() => write_f64(out, f),
            _ => out.push_str(&n.to_string()), // an integer
        },
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                out.push_str(if i == 0 { "" } else { "," });
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                out.push_str(if i == 0 { "" } else { "," });
                write_string(out, name);
                out.push(':');
                write_value(out, member);
            }
            out.push('}');
        }
    }
}

/// A finite `f64` as ECMAScript's Number-to-String prints it.
fn write_f64(out: &mut String, f: f64) {
    if f == 0.0 {
        out.push('0'); // -0 too
        return;
    }
    if f < 0.0 {
        out.push('-');
    }
    let abs = f.abs();
    // `None` would mean Rust's float formatting broke its documented form.
    out.push_str(&es_number(abs).unwrap_or_else(|| abs.to_string()));
}

/// `abs` (finite, positive) as ECMAScript prints it: the fewest significant digits that
/// round-trip and, of those, the decimal nearest `abs` (ties to even); positional for decimal
/// exponents -7 < e < 21, else `d.ddde+x` / `d.ddde-x`.
fn es_number(abs: f64) -> Option<String> {
    // Rust's shortest form has the fewest digits but may break a tie to the odd neighbour
    // (897140657352369.3 where ECMAScript prints ...369.2): keep only its digit count and
    // round `abs` exactly (half to even) to that many digits.
    let shortest = format!("{abs:e}");
    let k = shortest.find('e')? - usize::from(shortest.contains('.'));
    let sci = format!("{abs:.*e}", k.saturating_sub(1));
    let round_trips = sci.parse::<f64>().ok()?.to_bits() == abs.to_bits();
    let sci = if round_trips { sci } else { shortest };
    let (mantissa, exp) = sci.split_once('e')?;
    let digits = mantissa.replace('.', "");
    let digits = digits.trim_end_matches('0');
    let exp: i32 = exp.parse().ok()?;
    Some(match exp {
        0..=20 => {
            let n = usize::try_from(exp).ok()? + 1;
            match digits.get(n..) {
                Some(frac) if !frac.is_empty() => format!("{}.{frac}", &digits[..n]),
                _ => format!("{digits:0<n$}"),
            }
        }
        -6..=-1 => format!("0.{}{digits}", "0".repeat(usize::try_from(-exp - 1).ok()?)),
        _ => {
            let (first, rest) = digits.split_at(1);
            let dot = if rest.is_empty() { "" } else { "." };
            let sign = if exp < 0 { '-' } else { '+' };
            format!("{first}{dot}{rest}e{sign}{}", exp.unsigned_abs())
        }
    })
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c)); // cannot fail
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A serializer that only walks a value, failing on a NaN or infinite float.
struct FiniteCheck;

type Check<T = ()> = std::result::Result<T, serde_json::Error>;

/// `FiniteCheck`'s methods: `accept` a leaf, `walk` into the value, `open` a compound.
macro_rules! methods {
    (accept $($m:ident($($t:ty),*))*) => { $(fn $m(self, $(_: $t),*) -> Check { Ok(()) })* };
    (walk $($m:ident($($t:ty),*))*) => {
        $(fn $m<T: Serialize + ?Sized>(self, $(_: $t,)* v: &T) -> Check { v.serialize(self) })*
    };
    (open $($m:ident($($t:ty),*))*) => { $(fn $m(self, $(_: $t),*) -> Check<Self> { Ok(self) })* };
}

/// The compound traits, on `FiniteCheck` too: each element is walked, `end` accepts.
macro_rules! compounds {
    ($($tr:ident { $($m:ident($($t:ty),*))* })*) => {$(
        impl serde::ser::$tr for FiniteCheck {
            type Ok = ();
            type Error = serde_json::Error;
            $(fn $m<T: Serialize + ?Sized>(&mut self, $(_: $t,)* v: &T) -> Check {
                v.serialize(FiniteCheck)
            })*
            fn end(self) -> Check { Ok(()) }
        }
    )*};
}

compounds! {
    SerializeSeq { serialize_element() } SerializeTuple { serialize_element() }
    SerializeTupleStruct { serialize_field() } SerializeTupleVariant { serialize_field() }
    SerializeMap { serialize_key() serialize_value() }
    SerializeStruct { serialize_field(&'static str) }
    SerializeStructVariant { serialize_field(&'static str) }
}

impl serde::Serializer for FiniteCheck {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    methods! { accept
        serialize_bool(bool) serialize_char(char) serialize_str(&str) serialize_bytes(&[u8])
        serialize_i8(i8) serialize_i16(i16) serialize_i32(i32) serialize_i64(i64)
        serialize_i128(i128) serialize_u8(u8) serialize_u16(u16) serialize_u32(u32)
        serialize_u64(u64) serialize_u128(u128) serialize_none() serialize_unit()
        serialize_unit_struct(&'static str) serialize_unit_variant(&'static str, u32, &'static str)
    }
    methods! { walk
        serialize_some() serialize_newtype_struct(&'static str)
        serialize_newtype_variant(&'static str, u32, &'static str)
    }
    methods! { open
        serialize_seq(Option<usize>) serialize_tuple(usize) serialize_map(Option<usize>)
        serialize_tuple_struct(&'static str, usize) serialize_struct(&'static str, usize)
        serialize_tuple_variant(&'static str, u32, &'static str, usize)
        serialize_struct_variant(&'static str, u32, &'static str, usize)
    }

    fn serialize_f32(self, v: f32) -> Check {
        self.serialize_f64(f64::from(v))
    }

    fn serialize_f64(self, v: f64) -> Check {
        let error = || serde::ser::Error::custom(format!("{v} is not a JSON number"));
        v.is_finite().then_some(()).ok_or_else(error)
    }
}

#[cfg(test)]
mod tests;
