//! Codecs: how values become bytes in Redis.
//!
//! Two codecs ship: [`Bincode`] (the default: compact and fast; bincode 2) and [`Json`]
//! (readable with `redis-cli`, and by services in other languages). Stored values carry a
//! one-byte header naming their format and version ([`Codec::FORMAT`]); an entry with another
//! header, or one that fails to decode, is reported as [`ErrorCode::CacheDeserialization`],
//! which the cache treats as a miss (counted in the `corrupt` statistic, removed, and logged at
//! most once per key family every few seconds) — never a panic.
//!
//! ## What bincode cannot decode
//! Bincode is not self-describing: it writes fields in order, without names or types, and
//! reads them back the same way. Serde features that need the data to say what it is, or that
//! leave a field out, encode without complaint and then **fail to decode**:
//! - `#[serde(skip_serializing_if = "...")]` (the skipped field shifts every field after it),
//! - `#[serde(flatten)]`,
//! - untagged and internally tagged enums (`#[serde(untagged)]`, `#[serde(tag = "...")]`),
//! - types that deserialize through `deserialize_any`: `serde_json::Value`, and custom
//!   `Deserialize` impls that call it.
//!
//! Such a value is a miss on every read. Use the [`Json`] codec for those types (per call site,
//! `#[cached(codec = "json")]`, or for the whole cache in its config): it takes them all.
//! Changing a cached type's fields also makes its old entries undecodable under bincode (a
//! miss each, until they are rewritten or expire); JSON tolerates added optional fields.
//!
//! ```
//! use redisx_runtime::{Codec, Bincode, Json};
//! let bytes = Bincode::encode(&(1u32, "one")).unwrap();
//! let back: (u32, String) = Bincode::decode(&bytes).unwrap();
//! assert_eq!(back, (1, "one".to_owned()));
//! assert_eq!(Json::encode(&[1, 2]).unwrap(), b"[1,2]");
//! ```

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, ErrorCode, Result};

/// A serialization format for stored values.
pub trait Codec {
    /// The format byte written before every value stored with this codec.
    const FORMAT: u8;
    /// A short name (`"bincode"`, `"json"`), used in errors.
    const NAME: &'static str;

    /// Appends the encoded value to `out`.
    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()>;

    /// Encodes a value into a new buffer.
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        Self::encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Decodes a value; trailing bytes are an error.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T>;
}

/// The bincode codec (bincode 2, standard config: varint integers, little endian): the
/// default. It cannot decode `skip_serializing_if`, `flatten`, untagged or internally tagged
/// enums, or `deserialize_any`-based types such as `serde_json::Value` (see the
/// [module docs](self#what-bincode-cannot-decode)); use [`Json`] for those.
///
/// ```
/// use redisx_runtime::{Bincode, Codec, Json};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// struct Profile {
///     #[serde(skip_serializing_if = "Option::is_none")]
///     nickname: Option<String>,
///     age: u32,
/// }
///
/// let p = Profile { nickname: None, age: 36 };
/// assert!(Bincode::decode::<Profile>(&Bincode::encode(&p).unwrap()).is_err());
/// assert_eq!(Json::decode::<Profile>(&Json::encode(&p).unwrap()).unwrap(), p);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

/// The JSON codec (`serde_json`): self-describing, so it decodes every serde feature bincode
/// cannot (`skip_serializing_if`, `flatten`, untagged enums, `deserialize_any`).
///
/// ```
/// use redisx_runtime::{Codec, Json};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, PartialEq, Debug)]
/// #[serde(untagged)]
/// enum Id {
///     Number(u64),
///     Name(String),
/// }
///
/// let ids = vec![Id::Number(7), Id::Name("ada".into())];
/// assert_eq!(Json::decode::<Vec<Id>>(&Json::encode(&ids).unwrap()).unwrap(), ids);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

fn ser_error(codec: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::CacheSerialization,
        format!("cannot encode the value as {codec}: {e}"),
    )
}

fn de_error(codec: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::CacheDeserialization,
        format!("cannot decode the stored value as {codec}: {e}"),
    )
}

/// The largest value bincode may claim while decoding: Redis's own limit for a value. Without
/// a limit, corrupt (or old-schema) bytes that claim a huge length would make bincode try to
/// allocate it and abort the process; with it they are an error, hence a miss.
const DECODE_LIMIT: usize = 512 * 1024 * 1024;

fn decode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

impl Codec for Bincode {
    const FORMAT: u8 = 0x01;
    const NAME: &'static str = "bincode";

    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        struct VecWriter<'a>(&'a mut Vec<u8>);
        impl bincode::enc::write::Writer for VecWriter<'_> {
            fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
                self.0.extend_from_slice(bytes);
                Ok(())
            }
        }
        bincode::serde::encode_into_writer(value, VecWriter(out), bincode::config::standard())
            .map_err(|e| ser_error(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, decode_config())
            .map_err(|e| de_error(Self::NAME, e))?;
        if read != bytes.len() {
            return Err(de_error(
                Self::NAME,
                format!("{} trailing bytes", bytes.len() - read),
            ));
        }
        Ok(value)
    }
}

impl Codec for Json {
    const FORMAT: u8 = 0x02;
    const NAME: &'static str = "json";

    fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<()> {
        serde_json::to_writer(out, value).map_err(|e| ser_error(Self::NAME, e))
    }

    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
        serde_json::from_slice(bytes).map_err(|e| de_error(Self::NAME, e))
    }
}

/// A codec chosen at run time (in config or per call site).
///
/// ```
/// use redisx_runtime::CodecKind;
/// let c = CodecKind::Json;
/// let bytes = c.encode(&42u8).unwrap();
/// assert_eq!(c.decode::<u8>(&bytes).unwrap(), 42);
/// assert_eq!(CodecKind::from_format(c.format()), Some(CodecKind::Json));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CodecKind {
    /// [`Bincode`] (default).
    #[default]
    Bincode,
    /// [`Json`].
    Json,
}

impl CodecKind {
    /// The format byte of this codec.
    pub const fn format(self) -> u8 {
        match self {
            Self::Bincode => Bincode::FORMAT,
            Self::Json => Json::FORMAT,
        }
    }

    /// The codec of a format byte, if it is one redisx knows.
    pub const fn from_format(format: u8) -> Option<Self> {
        match format {
            Bincode::FORMAT => Some(Self::Bincode),
            Json::FORMAT => Some(Self::Json),
            _ => None,
        }
    }

    /// The codec's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Bincode => Bincode::NAME,
            Self::Json => Json::NAME,
        }
    }

    /// Appends the encoded value to `out`.
    pub fn encode_into<T: Serialize + ?Sized>(self, value: &T, out: &mut Vec<u8>) -> Result<()> {
        match self {
            Self::Bincode => Bincode::encode_into(value, out),
            Self::Json => Json::encode_into(value, out),
        }
    }

    /// Encodes a value.
    pub fn encode<T: Serialize + ?Sized>(self, value: &T) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.encode_into(value, &mut out)?;
        Ok(out)
    }

    /// Decodes a value.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T> {
        match self {
            Self::Bincode => Bincode::decode(bytes),
            Self::Json => Json::decode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut bytes = Bincode::encode(&7u32).unwrap();
        bytes.push(0);
        let err = Bincode::decode::<u32>(&bytes).unwrap_err();
        assert_eq!(err.code(), ErrorCode::CacheDeserialization);
    }

    #[test]
    fn a_huge_claimed_length_is_an_error_not_an_abort() {
        // An old schema's u64 (a timestamp, say) read where a String now stands: the varint
        // claims a length of about 2^60 bytes.
        let bytes = Bincode::encode(&(u64::MAX >> 4, 0u8)).unwrap();
        assert_eq!(
            Bincode::decode::<String>(&bytes).unwrap_err().code(),
            ErrorCode::CacheDeserialization
        );
        let bytes = Bincode::encode(&(1u64 << 40)).unwrap();
        assert!(Bincode::decode::<Vec<u8>>(&bytes).is_err());
        assert!(Bincode::decode::<(String, String)>(&bytes).is_err());
    }

    /// The serde features the docs say bincode cannot decode: each is an error (a miss in the
    /// cache), and JSON takes them.
    #[test]
    fn bincode_rejects_what_needs_a_self_describing_format() {
        use serde::Deserialize;

        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Skipped {
            #[serde(skip_serializing_if = "Option::is_none")]
            a: Option<u32>,
            b: u32,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Inner {
            x: u32,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct Flattened {
            #[serde(flatten)]
            inner: Inner,
            y: u32,
        }
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        #[serde(untagged)]
        enum Untagged {
            N(u32),
            S(String),
        }

        fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(v: &T) {
            if let Ok(bytes) = Bincode::encode(v) {
                let err = Bincode::decode::<T>(&bytes).unwrap_err();
                assert_eq!(err.code(), ErrorCode::CacheDeserialization, "{v:?}");
            }
            assert_eq!(&Json::decode::<T>(&Json::encode(v).unwrap()).unwrap(), v);
        }
        check(&Skipped { a: None, b: 1 });
        check(&Flattened {
            inner: Inner { x: 1 },
            y: 2,
        });
        check(&Untagged::S("s".into()));
        check(&serde_json::json!({"k": [1, 2]}));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [&b""[..], b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"{"] {
            assert!(Bincode::decode::<(String, u64)>(bytes).is_err());
            assert!(Json::decode::<(String, u64)>(bytes).is_err());
        }
    }
}
