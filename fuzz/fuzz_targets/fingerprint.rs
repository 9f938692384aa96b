//! Idempotency fingerprints. Any body canonicalizes exactly when it parses as JSON (else
//! `IDEMPOTENCY_SERIALIZATION`, never a panic); the canonical form is a fixed point, parses
//! back to the same document, and is what `canonical_json` gives for the parsed value. HTTP
//! fingerprints ignore the method's case, the order of query pairs and a JSON body's layout.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redisx_runtime::ErrorCode;
use redisx_runtime::idempotency::{
    Fingerprint, canonical_json, canonicalize_json_body, http_fingerprint,
};
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Input {
    body: Vec<u8>,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    rotate: usize,
}

/// Equal JSON documents, numbers compared by value (`1.0` canonicalizes to `1`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
                (Some(p), Some(q), _, _) => p == q,
                (_, _, Some(p), Some(q)) => p == q,
                _ => x.as_f64() == y.as_f64(),
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fuzz_target!(|input: Input| {
    let body = &input.body;
    let parsed = serde_json::from_slice::<Value>(body);
    match canonicalize_json_body(body) {
        Ok(canonical) => {
            let value = parsed.expect("canonicalized a body serde_json refuses");
            assert_eq!(
                canonicalize_json_body(&canonical).ok().as_deref(),
                Some(&canonical[..]),
                "not a fixed point"
            );
            let text = String::from_utf8(canonical.clone()).expect("canonical JSON is UTF-8");
            let back: Value = serde_json::from_str(&text).expect("canonical JSON parses");
            assert!(same(&value, &back), "{value} became {text}");
            assert_eq!(canonical_json(&value).ok().as_deref(), Some(text.as_str()));
            let mut fp = Fingerprint::new();
            fp.arg("body", &value).bytes("raw", body);
            assert_eq!(fp.finish().map(|h| h.len()).ok(), Some(64));
            // The layout of a JSON body does not change its request's fingerprint.
            assert_eq!(
                http_fingerprint("POST", &input.path, body, None),
                http_fingerprint("POST", &input.path, &canonical, None)
            );
        }
        Err(e) => {
            assert_eq!(e.code(), ErrorCode::IdempotencySerialization);
            assert!(
                parsed.is_err(),
                "serde_json reads a body canonicalization refused: {e}"
            );
        }
    }

    let pairs: Vec<String> = input
        .query
        .iter()
        .map(|(k, v)| format!("{}={}", k.replace(['&', '='], ""), v.replace('&', "")))
        .collect();
    let query = pairs.join("&");
    let mut rotated = pairs.clone();
    if !rotated.is_empty() {
        let by = input.rotate % rotated.len();
        rotated.rotate_left(by);
    }
    let rotated = rotated.join("&");
    let fp = http_fingerprint(&input.method, &input.path, body, Some(&query));
    assert_eq!(fp.len(), 64);
    assert!(
        fp.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(
        fp,
        http_fingerprint(
            &input.method.to_ascii_lowercase(),
            &input.path,
            body,
            Some(&rotated)
        )
    );
});
