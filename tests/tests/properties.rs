//! Property tests over the parsers of untrusted input, with a fixed case count each (the whole
//! binary runs in seconds; the fuzz targets in `fuzz/` run the same properties for minutes):
//! - the cache's glob matcher (L1 pattern invalidation) agrees with Redis: generated keys are
//!   written on a real server under a unique prefix and every pattern's `SCAN MATCH` result is
//!   compared with the matcher's verdict on each key;
//! - decoding arbitrary bytes (cache entries, codecs, stream entries, JSON bodies) errors with
//!   the decoder's code and never panics;
//! - a rendered key template always validates or errors: never a panic, never an invalid key
//!   accepted, and a key the cache accepts is stored in Redis under exactly its full key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use redisx::{CacheConfig, CodecKind, ErrorCode};
use redisx_runtime::__fuzz::{
    ENTRY_HEADER_LEN, check_cache_key, decode_entry, decode_entry_header, decode_message,
    encode_entry, glob_escape, glob_matches, message_attempt, render_key,
};
use redisx_runtime::idempotency::canonicalize_json_body;
use redisx_runtime::key::{MAX_KEY_LEN, validate};
use redisx_tests::{RedisServer, raw_connection, runtime, unique_prefix};
use serde::{Deserialize, Serialize};

/// A runner with `cases` cases and no persisted failures (CI runs from a fresh clone).
fn runner(cases: u32) -> TestRunner {
    TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    })
}

/// Text from `pieces`, `min..max` of them: glob metacharacters among plain ones, a two-byte
/// character (`?` takes one byte, as in Redis) and a byte whose signed value is negative.
fn text_of(pieces: &'static [&'static str], min: usize, max: usize) -> BoxedStrategy<String> {
    vec(proptest::sample::select(pieces), min..max)
        .prop_map(|p| p.concat())
        .boxed()
}

const KEY_PIECES: &[&str] = &[
    "a", "a", "b", "b", "c", ":", "-", "^", "]", "[", "*", "?", "\\", "é", "{", "}",
];
const PATTERN_PIECES: &[&str] = &[
    "a", "a", "b", "b", "c", "*", "*", "?", "[", "]", "^", "-", "\\", "é", ":",
];

/// A pattern made from one of `keys` that matches it unless `extra` appends a character: each
/// character kept (escaped where it is a glob character), or turned into `?` (one per byte),
/// `*`, a class holding it (`[\cz]`), a negated class without it or a range around it.
fn derived_pattern(keys: Vec<String>) -> impl Strategy<Value = String> {
    (0..keys.len(), vec(0u8..12, 8), 0u8..4).prop_map(move |(i, ops, extra)| {
        let mut out = String::new();
        for (j, c) in keys[i].chars().enumerate() {
            let lit = glob_escape(&c.to_string());
            match ops[j % ops.len()] {
                5 => out.push_str(&"?".repeat(c.len_utf8())),
                6 => out.push('*'),
                7 if c.is_ascii() => {
                    out.push_str("[\\");
                    out.push(c);
                    out.push_str("z]");
                }
                8 if c.is_ascii() => out.push_str(if c == 'b' { "[^a]" } else { "[^b]" }),
                9 if ('a'..='c').contains(&c) => out.push_str("[a-c]"),
                10 => {
                    out.push_str(&lit);
                    out.push('*');
                }
                _ => out.push_str(&lit),
            }
        }
        if extra == 0 {
            out.push('a');
        }
        out
    })
}

/// Every key of the server matching `pattern`, by `SCAN MATCH`.
async fn scan_match(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> HashSet<String> {
    let mut found = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

#[test]
fn glob_matcher_agrees_with_redis_scan_match() {
    const CASES: u32 = 96;
    let server = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let conn = rt.block_on(raw_connection(&server.url()));
    let (matched, missed) = (AtomicUsize::new(0), AtomicUsize::new(0));
    // Random patterns, and patterns made from the case's own keys (so that many match).
    let strategy = vec(text_of(KEY_PIECES, 1, 6), 1..12).prop_flat_map(|keys| {
        let derived = vec(derived_pattern(keys.clone()), 1..5);
        let random = vec(text_of(PATTERN_PIECES, 0, 7), 1..4);
        (Just(keys), derived, random).prop_map(|(keys, mut patterns, random)| {
            patterns.extend(random);
            (keys, patterns)
        })
    });
    runner(CASES)
        .run(&strategy, |(keys, patterns)| {
            // A multiplexed connection: each case's clone shares it.
            let mut conn = conn.clone();
            rt.block_on(async {
                let prefix = unique_prefix("glob");
                let keys: HashSet<String> = keys.into_iter().collect();
                let full: Vec<String> = keys.iter().map(|k| format!("{prefix}{k}")).collect();
                let mut mset = redis::cmd("MSET");
                for k in &full {
                    mset.arg(k).arg(1);
                }
                let () = mset.query_async(&mut conn).await.expect("MSET");
                for pattern in &patterns {
                    // The prefix escaped, as the cache scans its own keys.
                    let full_pattern = format!("{}{pattern}", glob_escape(&prefix));
                    let found = scan_match(&mut conn, &full_pattern).await;
                    for (key, full_key) in keys.iter().zip(&full) {
                        let redis_says = found.contains(full_key);
                        prop_assert_eq!(
                            glob_matches(&full_pattern, full_key),
                            redis_says,
                            "pattern {:?} on key {:?}",
                            full_pattern,
                            full_key
                        );
                        prop_assert_eq!(glob_matches(pattern, key), redis_says);
                        let tally = if redis_says { &matched } else { &missed };
                        tally.fetch_add(1, Ordering::Relaxed);
                    }
                    prop_assert!(
                        found.iter().all(|k| full.contains(k)),
                        "SCAN MATCH {:?} found keys outside this case: {:?}",
                        full_pattern,
                        found
                    );
                }
                let mut del = redis::cmd("DEL");
                del.arg(&full);
                let _: u64 = del.query_async(&mut conn).await.expect("DEL");
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (matched, missed) = (matched.into_inner(), missed.into_inner());
    println!(
        "glob: {CASES} cases, {matched} matching and {missed} non-matching verdicts agree with SCAN MATCH"
    );
    // Both verdicts occur often, so agreement is not agreement on "no match" alone.
    assert!(
        matched >= CASES as usize && missed >= CASES as usize,
        "matched {matched}, missed {missed}"
    );
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Payload {
    id: u64,
    name: String,
    tags: Vec<String>,
    score: Option<i32>,
}

fn payload() -> impl Strategy<Value = Payload> {
    (
        any::<u64>(),
        ".{0,12}",
        vec(".{0,6}", 0..4),
        any::<Option<i32>>(),
    )
        .prop_map(|(id, name, tags, score)| Payload {
            id,
            name,
            tags,
            score,
        })
}

/// Stored bytes: arbitrary, or starting with a format byte the envelope knows.
fn stored_bytes() -> impl Strategy<Value = Vec<u8>> {
    let header = proptest::sample::select(vec![0x01u8, 0x02, 0x41, 0x42, 0xFE, 0x00]);
    prop_oneof![
        vec(any::<u8>(), 0..96),
        (header, vec(any::<u8>(), 0..96)).prop_map(|(h, mut rest)| {
            rest.insert(0, h);
            rest
        }),
    ]
}

#[test]
fn decoding_arbitrary_bytes_errors_and_never_panics() {
    const CASES: u32 = 2000;
    let strategy = (
        stored_bytes(),
        vec((".{0,8}", vec(any::<u8>(), 0..24)), 0..4),
        payload(),
        vec("[a-z:]{0,8}", 0..3),
        any::<(u64, u64, bool, usize)>(),
    );
    runner(CASES)
        .run(
            &strategy,
            |(bytes, fields, value, tags, (stale, expires, json, cut))| {
                match decode_entry::<Payload>(&bytes) {
                    Ok(entry) => {
                        prop_assert_eq!(&entry.header[..], &bytes[..ENTRY_HEADER_LEN]);
                        prop_assert_eq!(
                            decode_entry_header(&bytes),
                            Some((entry.stale_at, entry.expires_at))
                        );
                    }
                    Err(e) => prop_assert_eq!(e.code(), ErrorCode::CacheDeserialization),
                }
                if let Err(e) = decode_entry::<serde_json::Value>(&bytes) {
                    prop_assert_eq!(e.code(), ErrorCode::CacheDeserialization);
                }
                for codec in [CodecKind::Bincode, CodecKind::Json] {
                    if let Err(e) = codec.decode::<Payload>(&bytes) {
                        prop_assert_eq!(e.code(), ErrorCode::CacheDeserialization);
                    }
                }
                if let Err(e) = canonicalize_json_body(&bytes) {
                    prop_assert_eq!(e.code(), ErrorCode::IdempotencySerialization);
                }
                let mut entry: Vec<(String, Vec<u8>)> = fields;
                entry.push(("data".to_owned(), bytes.clone()));
                if let Err(e) = decode_message::<Payload>(&entry) {
                    prop_assert_eq!(e.code(), ErrorCode::StreamReadFailed);
                }
                prop_assert!(message_attempt(&entry) >= 1);
                // What the cache writes reads back, and no truncation of it does.
                let codec = if json {
                    CodecKind::Json
                } else {
                    CodecKind::Bincode
                };
                let written = encode_entry(codec, &value, stale, expires, &tags).expect("encodes");
                let back = decode_entry::<Payload>(&written).expect("decodes");
                prop_assert_eq!(&back.value, &value);
                prop_assert_eq!((back.stale_at, back.expires_at), (stale, expires));
                let cut = cut % written.len();
                prop_assert!(
                    decode_entry::<Payload>(&written[..cut]).is_err(),
                    "cut at {}",
                    cut
                );
                Ok(())
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
}

/// What a valid user key is: not empty, at most `max` bytes, no control character.
fn valid(key: &str, max: usize) -> bool {
    !key.is_empty() && key.len() <= max && !key.chars().any(char::is_control)
}

/// Template values: any characters (control characters, braces, globs, newlines among them),
/// sometimes long enough to spill the renderer's 200-byte stack buffer or pass the key limit.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => text_of(&["{", "}", "*", ":", "\n", "\r", "\u{0}", "\u{85}", "\u{7f}", "a", "é"], 0, 8),
        1 => (".{1,4}", 60..400usize).prop_map(|(s, n)| s.repeat(n)),
    ]
}

#[test]
fn rendered_keys_validate_or_error() {
    const CASES: u32 = 128;
    let server = RedisServer::start();
    let rt = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    let prefix = unique_prefix("render");
    let rx = rt.block_on(runtime(&server.url(), &prefix, CacheConfig::default()));
    let conn = rt.block_on(raw_connection(&server.url()));
    let (stored, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    runner(CASES)
        .run(&(value(), value(), any::<u32>()), |(a, b, n)| {
            // The shapes `key = "..."` templates expand into.
            for (borrowed, owned, expected) in [
                {
                    let (x, y) = render_key(format_args!("user:{a}:{n}"));
                    (x, y, format!("user:{a}:{n}"))
                },
                {
                    let (x, y) = render_key(format_args!("{a}{b}"));
                    (x, y, format!("{a}{b}"))
                },
            ] {
                prop_assert_eq!(&borrowed, &expected);
                prop_assert_eq!(&owned, &expected);
                let key = expected;
                prop_assert_eq!(
                    validate(&key, MAX_KEY_LEN).is_ok(),
                    valid(&key, MAX_KEY_LEN)
                );
                let accepted = check_cache_key(&CacheConfig::default(), &key).is_ok();
                prop_assert!(!accepted || valid(&key, MAX_KEY_LEN));
                // Through the cache on a real server: stored under exactly its full key, or
                // refused with CACHE_KEY_INVALID before any command.
                let mut conn = conn.clone();
                rt.block_on(async {
                    let full = rx.cache().full_key(&key);
                    match rx
                        .cache()
                        .set(&key, &n, Some(Duration::from_secs(60)))
                        .await
                    {
                        Ok(()) => {
                            prop_assert!(accepted, "the cache stored {:?}", key);
                            let exists: u64 = redis::cmd("EXISTS")
                                .arg(&full)
                                .query_async(&mut conn)
                                .await
                                .expect("EXISTS");
                            prop_assert_eq!(exists, 1, "{:?} is not under {:?}", key, full);
                            stored.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            prop_assert_eq!(e.code(), ErrorCode::CacheKeyInvalid, "{}", e);
                            prop_assert!(!accepted, "the cache refused {:?}: {}", key, e);
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (stored, refused) = (stored.into_inner(), refused.into_inner());
    println!("render: {CASES} cases, {stored} keys stored under their full key, {refused} refused");
    assert!(
        stored >= 10 && refused >= 10,
        "stored {stored}, refused {refused}"
    );
    // Every key the server holds under the prefix is one the cache was asked to store.
    let keys: Vec<String> = rt.block_on(async {
        redis::cmd("KEYS")
            .arg(format!("{}*", glob_escape(&prefix)))
            .query_async(&mut conn.clone())
            .await
            .expect("KEYS")
    });
    assert!(
        keys.len() <= stored,
        "{} keys for {stored} stores",
        keys.len()
    );
}
