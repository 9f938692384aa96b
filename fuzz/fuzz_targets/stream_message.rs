//! Stream entries as a consumer reads them. Arbitrary entry fields decode to a payload or fail
//! with `STREAM_READ_FAILED` (never a panic), and the attempt they claim is at least 1; every
//! entry a producer writes decodes back to its payload. Arbitrary replies (any RESP2/RESP3
//! shape, nested) never panic the `XRANGE`/`XREADGROUP`, `XINFO GROUPS` and `XPENDING` readers,
//! and a well-formed entry list reads back exactly. Entry ids parse and print back.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redisx_runtime::__fuzz::{
    decode_message, encode_message, message_attempt, next_entry_id, parse_entry_id, parse_groups,
    parse_pending, reply_pairs, stream_entries,
};
use redisx_runtime::redis::{Value, VerbatimFormat};
use redisx_runtime::{CodecKind, ErrorCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

#[derive(Arbitrary, Serialize, Deserialize, PartialEq, Debug)]
struct Order {
    id: u64,
    customer: String,
    lines: Vec<(String, u32)>,
    note: Option<String>,
    blob: Vec<u8>,
}

/// Any reply shape, as the server (or a proxy) could send it.
#[derive(Arbitrary, Debug)]
enum Reply {
    Nil,
    Okay,
    Int(i64),
    Bool(bool),
    Bulk(Vec<u8>),
    Simple(String),
    Verbatim(String),
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    fn into_value(self) -> Value {
        match self {
            Self::Nil => Value::Nil,
            Self::Okay => Value::Okay,
            Self::Int(i) => Value::Int(i),
            Self::Bool(b) => Value::Boolean(b),
            Self::Bulk(b) => Value::BulkString(b),
            Self::Simple(s) => Value::SimpleString(s),
            Self::Verbatim(text) => Value::VerbatimString {
                format: VerbatimFormat::Text,
                text,
            },
            Self::Array(items) => Value::Array(items.into_iter().map(Self::into_value).collect()),
            Self::Map(pairs) => Value::Map(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into_value(), v.into_value()))
                    .collect(),
            ),
        }
    }
}

#[derive(Arbitrary, Debug)]
struct Input {
    fields: Vec<(String, Vec<u8>)>,
    codec_field: Option<u8>,
    payload: Order,
    bincode: bool,
    reply: Reply,
    entries: Vec<(String, Vec<(String, Vec<u8>)>)>,
    id: String,
    ms: u64,
    seq: u64,
}

fn decode_any<T: DeserializeOwned>(fields: &[(String, Vec<u8>)]) {
    if let Err(e) = decode_message::<T>(fields) {
        assert_eq!(e.code(), ErrorCode::StreamReadFailed, "{e}");
    }
}

fn bulk(b: &[u8]) -> Value {
    Value::BulkString(b.to_vec())
}

fuzz_target!(|input: Input| {
    let mut fields = input.fields;
    // Bias towards the fields a consumer looks for.
    match input.codec_field {
        Some(0) => fields.push(("codec".to_owned(), b"json".to_vec())),
        Some(1) => fields.push(("codec".to_owned(), b"bincode".to_vec())),
        Some(2) => fields.insert(0, ("data".to_owned(), Vec::new())),
        Some(n) => fields.push(("attempt".to_owned(), n.to_string().into_bytes())),
        None => {}
    }
    decode_any::<Order>(&fields);
    decode_any::<String>(&fields);
    decode_any::<serde_json::Value>(&fields);
    decode_any::<Vec<u8>>(&fields);
    assert!(message_attempt(&fields) >= 1);

    let codec = if input.bincode {
        CodecKind::Bincode
    } else {
        CodecKind::Json
    };
    let written = encode_message(codec, &input.payload).expect("a payload encodes");
    let read: Order = decode_message(&written).expect("a written entry decodes");
    assert_eq!(read, input.payload);
    assert_eq!(message_attempt(&written), 1);

    let reply = input.reply.into_value();
    let _ = stream_entries(reply.clone());
    let _ = reply_pairs(reply.clone());
    let _ = parse_groups(reply.clone());
    let _ = parse_pending(reply.clone());
    let _ = parse_groups(Value::Array(vec![reply.clone()]));
    let _ = stream_entries(Value::Array(vec![reply]));

    // A well-formed entry list (RESP2 and RESP3 alike) reads back as it was.
    let list = Value::Array(
        input
            .entries
            .iter()
            .map(|(id, fields)| {
                let flat = fields
                    .iter()
                    .flat_map(|(n, v)| [bulk(n.as_bytes()), bulk(v)])
                    .collect();
                Value::Array(vec![bulk(id.as_bytes()), Value::Array(flat)])
            })
            .collect(),
    );
    assert_eq!(stream_entries(list), input.entries);

    if let Some((ms, seq)) = parse_entry_id(&input.id) {
        assert_eq!(parse_entry_id(&format!("{ms}-{seq}")), Some((ms, seq)));
    }
    let next = next_entry_id(input.ms, input.seq);
    if (input.ms, input.seq) != (u64::MAX, u64::MAX) {
        assert!(
            next > (input.ms, input.seq),
            "{next:?} after {}-{}",
            input.ms,
            input.seq
        );
        if input.seq < u64::MAX {
            assert_eq!(next, (input.ms, input.seq + 1));
        }
    }
});
