//! Reading the replies of the stream commands (`XINFO`, `XPENDING`, entry ids, in RESP2 and
//! RESP3), and the error wrapping every stream call shares.

use std::fmt;

use redis::Value;

use super::fields;
use super::ops::{GroupInfo, PendingSummary};
use crate::error::{Error, ErrorCode};

/// `err` as an error of `code` about `stream`: connection, timeout, config and name errors
/// keep their own code (they say more), as does an error that already has `code`; the others are
/// wrapped (the message names the operation, the cause says what went wrong).
pub(crate) fn failed(err: Error, code: ErrorCode, what: &'static str, stream: &str) -> Error {
    let kept = err.code();
    if kept == code
        || matches!(kept.family(), "connection" | "config")
        || kept == ErrorCode::OperationTimeout
        || kept == ErrorCode::StreamNameInvalid
    {
        if err.context_value("stream").is_some() {
            return err;
        }
        return err.with_context("stream", stream);
    }
    Error::new(code, what)
        .with_context("stream", stream)
        .with_source(err)
}

/// Whether `e` is Redis saying the key does not exist (`XINFO` of a missing stream), directly
/// or as the cause of a wrapped error.
pub(crate) fn is_no_such_key(e: &Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<Error>().and_then(Error::redis_error)
            && r.to_string().contains("no such key")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The pairs of a map reply: a RESP3 map or a RESP2 flat array.
pub(crate) fn pairs(v: Value) -> Vec<(String, Value)> {
    match v {
        Value::Map(m) => m
            .into_iter()
            .filter_map(|(k, v)| Some((fields::text(k)?, v)))
            .collect(),
        Value::Array(flat) => {
            let mut out = Vec::with_capacity(flat.len() / 2);
            let mut it = flat.into_iter();
            while let (Some(k), Some(v)) = (it.next(), it.next()) {
                if let Some(k) = fields::text(k) {
                    out.push((k, v));
                }
            }
            out
        }
        _ => Vec::new(),
    }
}

/// A non-negative integer reply (or a numeric string).
pub(crate) fn int(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

/// The id of an `[id, fields]` entry reply (`nil`: none).
pub(crate) fn entry_id(v: Value) -> Option<String> {
    match v {
        Value::Array(mut pair) if !pair.is_empty() => fields::text(pair.swap_remove(0)),
        _ => None,
    }
}

/// The groups of an `XINFO GROUPS` reply.
pub(crate) fn parse_groups(v: Value) -> Vec<GroupInfo> {
    let Value::Array(items) = v else {
        return Vec::new();
    };
    items
        .into_iter()
        .map(|item| {
            let mut g = GroupInfo::default();
            for (name, v) in pairs(item) {
                match name.as_str() {
                    "name" => g.name = fields::text(v).unwrap_or_default(),
                    "consumers" => g.consumers = int(&v).unwrap_or(0),
                    "pending" => g.pending = int(&v).unwrap_or(0),
                    "last-delivered-id" => {
                        g.last_delivered_id = fields::text(v).unwrap_or_default();
                    }
                    "entries-read" => g.entries_read = int(&v),
                    "lag" => g.lag = int(&v),
                    _ => {}
                }
            }
            g
        })
        .collect()
}

/// An `XPENDING key group` summary reply.
pub(crate) fn parse_pending(v: Value) -> PendingSummary {
    let Value::Array(parts) = v else {
        return PendingSummary::default();
    };
    let mut it = parts.into_iter();
    let count = it.next().as_ref().and_then(int).unwrap_or(0);
    let min_id = it.next().and_then(fields::text);
    let max_id = it.next().and_then(fields::text);
    let consumers = match it.next() {
        Some(Value::Array(list)) => list
            .into_iter()
            .filter_map(|c| {
                let Value::Array(pair) = c else { return None };
                let mut pair = pair.into_iter();
                let name = fields::text(pair.next()?)?;
                let n = int(&pair.next()?)?;
                Some((name, n))
            })
            .collect(),
        _ => Vec::new(),
    };
    PendingSummary {
        count,
        min_id,
        max_id,
        consumers,
    }
}

/// A stream entry id, `ms-seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct EntryId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl EntryId {
    /// Parses `ms-seq` (or `ms`, sequence 0).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        Some(Self {
            ms: ms.parse().ok()?,
            seq: seq.parse().ok()?,
        })
    }

    /// The smallest id after this one.
    pub(crate) fn next(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self {
                ms: self.ms.saturating_add(1),
                seq: 0,
            },
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn entry_ids_parse_order_and_step() {
        let a = EntryId::parse("1700000000000-5").unwrap();
        assert_eq!(a.next().to_string(), "1700000000000-6");
        assert_eq!(EntryId::parse("7").unwrap().to_string(), "7-0");
        let top = EntryId {
            ms: 3,
            seq: u64::MAX,
        };
        assert_eq!(top.next().to_string(), "4-0");
        assert!(EntryId::parse("3-9").unwrap() < EntryId::parse("10-0").unwrap());
        assert!(EntryId::parse("x-1").is_none());
    }

    #[test]
    fn groups_and_pending_read_both_protocols() {
        let flat = Value::Array(vec![Value::Array(vec![
            bulk("name"),
            bulk("billing"),
            bulk("consumers"),
            Value::Int(2),
            bulk("pending"),
            Value::Int(3),
            bulk("last-delivered-id"),
            bulk("5-0"),
            bulk("entries-read"),
            Value::Int(5),
            bulk("lag"),
            Value::Nil,
        ])]);
        let map = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("billing")),
            (bulk("consumers"), Value::Int(2)),
            (bulk("pending"), Value::Int(3)),
            (bulk("last-delivered-id"), bulk("5-0")),
            (bulk("entries-read"), Value::Int(5)),
            (bulk("lag"), Value::Nil),
        ])]);
        let want = vec![GroupInfo {
            name: "billing".to_owned(),
            consumers: 2,
            pending: 3,
            last_delivered_id: "5-0".to_owned(),
            entries_read: Some(5),
            lag: None,
        }];
        assert_eq!(parse_groups(flat), want);
        assert_eq!(parse_groups(map), want);

        let p = parse_pending(Value::Array(vec![
            Value::Int(3),
            bulk("1-0"),
            bulk("4-0"),
            Value::Array(vec![Value::Array(vec![bulk("c1"), bulk("3")])]),
        ]));
        assert_eq!(p.count, 3);
        assert_eq!(p.min_id.as_deref(), Some("1-0"));
        assert_eq!(p.consumers, vec![("c1".to_owned(), 3)]);
        let empty = parse_pending(Value::Array(vec![
            Value::Int(0),
            Value::Nil,
            Value::Nil,
            Value::Nil,
        ]));
        assert_eq!(empty, PendingSummary::default());
    }
}
