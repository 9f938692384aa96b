//! What Redis holds for a key ([`Record`]) and what the check-and-lock script answers
//! ([`Checked`]).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Value;

use crate::error::{Error, ErrorCode, Result};

/// The state of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// A call claimed the key and runs its body.
    Processing,
    /// The call finished; its result (or recorded error) is replayed to duplicates.
    Completed,
    /// The call failed (an `Err` not recorded, a cancellation, a refused response); duplicates
    /// get `IDEMPOTENCY_PREVIOUS_FAILED` until the record expires (the lock ttl), then a retry
    /// runs.
    Failed,
}

impl Status {
    /// Its name in the record and in metrics: `processing`, `completed`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    fn parse(s: &[u8]) -> Option<Self> {
        match s {
            b"processing" => Some(Self::Processing),
            b"completed" => Some(Self::Completed),
            b"failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One key's record, as [`Idempotency::get`](super::Idempotency::get) reads it: a hash
/// `{app prefix}idem:{key}` with the fields `state`, `fingerprint`, `owner`, `started_at`,
/// `lease_until`, `completed_at` (server times in ms since the epoch), `outcome` (`ok` or
/// `err`), `result` (the encoded value), `reason` (why it failed), `takeovers`, and `waiters`
/// (how many checks found it running: its completion is published only then).
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// use redisx_runtime::idempotency::Status;
///
/// if let Some(r) = rx.idempotency().get("payment:abc").await? {
///     if r.status() == Status::Completed {
///         println!("done at {:?}", r.completed_at());
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub(crate) status: Status,
    pub(crate) fingerprint: String,
    pub(crate) owner: String,
    pub(crate) started_at: Option<SystemTime>,
    pub(crate) lease_until: Option<SystemTime>,
    pub(crate) completed_at: Option<SystemTime>,
    pub(crate) error_recorded: bool,
    pub(crate) result: Vec<u8>,
    pub(crate) reason: String,
    pub(crate) takeovers: u64,
}

impl Record {
    /// The record's state.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The fingerprint of the call that made it (hex SHA-256).
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The owner token of the claim that runs (or ran) the body.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// When the first call claimed the key (server time).
    pub fn started_at(&self) -> Option<SystemTime> {
        self.started_at
    }

    /// Until when the owner's lease runs (server time); past it, a duplicate takes over.
    pub fn lease_until(&self) -> Option<SystemTime> {
        self.lease_until
    }

    /// When the call completed or failed (server time).
    pub fn completed_at(&self) -> Option<SystemTime> {
        self.completed_at
    }

    /// Whether the stored result is a recorded `Err` (with `record_errors`).
    pub fn is_recorded_error(&self) -> bool {
        self.error_recorded
    }

    /// The encoded result (JSON for `run`; the layer's encoding for HTTP responses).
    pub fn result(&self) -> &[u8] {
        &self.result
    }

    /// Why a failed record failed (`error`, `cancelled`, `server_error`, ...).
    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// How many times a duplicate took the claim over from an owner whose lease ran out.
    pub fn takeovers(&self) -> u64 {
        self.takeovers
    }

    /// Reads a record from `HGETALL`'s fields; `None` for an empty reply (no key).
    pub(crate) fn from_fields(
        key: &str,
        mut fields: HashMap<String, Vec<u8>>,
    ) -> Result<Option<Self>> {
        if fields.is_empty() {
            return Ok(None);
        }
        let status = fields
            .get("state")
            .and_then(|s| Status::parse(s))
            .ok_or_else(|| invalid_record(key, "its `state` field is missing or unknown"))?;
        let mut text = |name: &str| {
            fields
                .remove(name)
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let fingerprint = text("fingerprint");
        let owner = text("owner");
        let reason = text("reason");
        let outcome = text("outcome");
        let takeovers = text("takeovers").parse().unwrap_or(0);
        let time = |v: String| {
            v.parse::<u64>()
                .ok()
                .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        };
        Ok(Some(Self {
            status,
            fingerprint,
            owner,
            started_at: time(text("started_at")),
            lease_until: time(text("lease_until")),
            completed_at: time(text("completed_at")),
            error_recorded: outcome == "err",
            result: fields.remove("result").unwrap_or_default(),
            reason,
            takeovers,
        }))
    }
}

/// The error of a record that is not one redisx wrote (or no longer decodes).
pub(crate) fn invalid_record(key: &str, what: &str) -> Error {
    Error::new(
        ErrorCode::IdempotencyRecordInvalid,
        format!(
            "the idempotency record cannot be read: {what}; delete it to let the key run again"
        ),
    )
    .with_context("key", key.to_owned())
}

/// What the check-and-lock script answered.
#[derive(Debug)]
pub(crate) enum Checked {
    /// Claimed; `Some(previous owner)` for a takeover.
    Claimed(Option<String>),
    Mismatch,
    /// A live owner runs it; its lease ends in this long.
    Processing(Duration),
    /// Finished: whether the result is a recorded error, and the encoded result.
    Completed {
        error: bool,
        result: Vec<u8>,
    },
    /// Failed: the reason, and how long the record refuses duplicates.
    Failed {
        reason: String,
        left: Duration,
    },
}

impl Checked {
    /// Parses the script's reply.
    pub(crate) fn parse(key: &str, reply: Value) -> Result<Self> {
        let bad = || invalid_record(key, "the check script answered in an unknown shape");
        let Value::Array(items) = reply else {
            return Err(bad());
        };
        let bytes = |i: usize| match items.get(i) {
            Some(Value::BulkString(b)) => Some(b.as_slice()),
            Some(Value::SimpleString(s)) => Some(s.as_bytes()),
            _ => None,
        };
        let int = |i: usize| match items.get(i) {
            Some(Value::Int(n)) => u64::try_from(*n).ok(),
            _ => None,
        };
        let text = |i: usize| bytes(i).map(|b| String::from_utf8_lossy(b).into_owned());
        Ok(match bytes(0).ok_or_else(bad)? {
            b"new" => Self::Claimed(None),
            b"takeover" => Self::Claimed(Some(text(1).unwrap_or_default())),
            b"mismatch" => Self::Mismatch,
            b"processing" => Self::Processing(Duration::from_millis(int(1).ok_or_else(bad)?)),
            b"completed" => Self::Completed {
                error: bytes(1) == Some(b"err"),
                result: bytes(2).map(<[u8]>::to_vec).unwrap_or_default(),
            },
            b"failed" => Self::Failed {
                reason: text(1).unwrap_or_default(),
                left: Duration::from_millis(int(2).unwrap_or(0)),
            },
            b"invalid" => {
                return Err(invalid_record(
                    key,
                    "the key holds a hash without a known state",
                ));
            }
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn parses_the_check_replies() {
        let k = "k";
        assert!(matches!(
            Checked::parse(k, Value::Array(vec![bulk("new")])).unwrap(),
            Checked::Claimed(None)
        ));
        assert!(matches!(
            Checked::parse(k, Value::Array(vec![bulk("takeover"), bulk("o1")])).unwrap(),
            Checked::Claimed(Some(o)) if o == "o1"
        ));
        assert!(matches!(
            Checked::parse(k, Value::Array(vec![bulk("processing"), Value::Int(250)])).unwrap(),
            Checked::Processing(d) if d == Duration::from_millis(250)
        ));
        assert!(matches!(
            Checked::parse(k, Value::Array(vec![bulk("completed"), bulk("err"), bulk("{}")])).unwrap(),
            Checked::Completed { error: true, result } if result == b"{}"
        ));
        let err = Checked::parse(k, Value::Array(vec![bulk("invalid")])).unwrap_err();
        assert_eq!(err.code(), ErrorCode::IdempotencyRecordInvalid);
        assert!(Checked::parse(k, Value::Int(1)).is_err());
    }

    #[test]
    fn reads_records_and_refuses_unknown_states() {
        let mut f = HashMap::new();
        assert!(Record::from_fields("k", f.clone()).unwrap().is_none());
        f.insert("state".to_owned(), b"completed".to_vec());
        f.insert("outcome".to_owned(), b"ok".to_vec());
        f.insert("completed_at".to_owned(), b"1000".to_vec());
        let r = Record::from_fields("k", f.clone()).unwrap().unwrap();
        assert_eq!(r.status(), Status::Completed);
        assert_eq!(r.completed_at(), Some(UNIX_EPOCH + Duration::from_secs(1)));
        assert!(!r.is_recorded_error());
        f.insert("state".to_owned(), b"weird".to_vec());
        let err = Record::from_fields("k", f).unwrap_err();
        assert_eq!(err.code(), ErrorCode::IdempotencyRecordInvalid);
    }
}
