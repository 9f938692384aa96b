//! Canonical JSON against RFC 8785's samples, the framing, and the pinned digests.

use std::collections::BTreeMap;

use serde_json::json;

use super::*;

fn cj<T: Serialize + ?Sized>(value: &T) -> String {
    canonical_json(value).unwrap()
}

fn fp(build: impl FnOnce(&mut Fingerprint) -> &mut Fingerprint) -> String {
    let mut fp = Fingerprint::new();
    build(&mut fp);
    fp.finish().unwrap()
}

/// The `method` and `path` parts of a `POST` to `path`.
fn post(path: &str) -> Fingerprint {
    let mut f = Fingerprint::new();
    f.bytes("method", b"POST").bytes("path", path.as_bytes());
    f
}

#[test]
fn rfc8785_numbers() {
    // RFC 8785 appendix B (IEEE 754 bits, then JCS text), an exact tie broken to the even
    // digit (Rust's shortest form says ...369.3), and decimals of RFC 8785 section 3.2.2.
    let samples = "0x0000000000000000 0  0x8000000000000000 0  0x0000000000000001 5e-324
        0x8000000000000001 -5e-324  0x7fefffffffffffff 1.7976931348623157e+308
        0xffefffffffffffff -1.7976931348623157e+308  0x4340000000000000 9007199254740992
        0xc340000000000000 -9007199254740992  0x4430000000000000 295147905179352830000
        0x44b52d02c7e14af5 9.999999999999997e+22  0x44b52d02c7e14af6 1e+23
        0x44b52d02c7e14af7 1.0000000000000001e+23  0x444b1ae4d6e2ef4e 999999999999999700000
        0x444b1ae4d6e2ef4f 999999999999999900000  0x444b1ae4d6e2ef50 1e+21
        0x3eb0c6f7a0b5ed8c 9.999999999999997e-7  0x3eb0c6f7a0b5ed8d 0.000001
        0x41b3de4355555553 333333333.3333332  0x41b3de4355555554 333333333.33333325
        0x41b3de4355555555 333333333.3333333  0x41b3de4355555556 333333333.3333334
        0x41b3de4355555557 333333333.33333343  0xbecbf647612f3696 -0.0000033333333333333333
        0x43143ff3c1cb0959 1424953923781206.2  0x43097f8eb18f758a 897140657352369.2
        1e21 1e+21  1e-7 1e-7  0.000001 0.000001  333333333.33333329 333333333.3333333
        -0.0 0  4.50 4.5  2e-3 0.002  1e23 1e+23  9007199254740992 9007199254740992
        1E30 1e+30  1e-27 1e-27  -12.5e1 -125  0.1 0.1  100 100";
    let words: Vec<&str> = samples.split_whitespace().collect();
    for pair in words.chunks(2) {
        let f = match pair[0].strip_prefix("0x") {
            Some(hex) => f64::from_bits(u64::from_str_radix(hex, 16).unwrap()),
            None => pair[0].parse().unwrap(),
        };
        assert_eq!(cj(&f), pair[1], "{}", pair[0]);
    }
    let ints = (u64::MAX, i64::MIN, 9_007_199_254_740_993_u64);
    let want = "[18446744073709551615,-9223372036854775808,9007199254740993]";
    assert_eq!(cj(&ints), want);
}

#[test]
fn rfc8785_example() {
    // RFC 8785 section 3.2.2, with 333333333.3333333 for 333333333.33333329 (the same f64,
    // which serde_json parses exactly only with its `float_roundtrip` feature).
    let input = br#"{
      "numbers": [333333333.3333333, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
      "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
      "literals": [null, true, false]
    }"#;
    let want = concat!(
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,"#,
        r#"1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
    assert_eq!(canonicalize_json_body(input).unwrap(), want.as_bytes());
}

#[test]
fn members_sort_by_utf16_code_units() {
    // RFC 8785 section 3.2.3: U+1F600 (UTF-16 D83D DE00) sorts before U+FB33, unlike in
    // UTF-8 or `char` order; U+20AC sorts before both.
    let input = br#"{"\u20ac": "Euro", "\r": "CR", "\ufb33": "Dalet", "1": "One",
        "\ud83d\ude00": "Grin", "\u0080": "Control", "\u00f6": "o"}"#;
    let want = "{\"\\r\":\"CR\",\"1\":\"One\",\"\u{80}\":\"Control\",\"\u{f6}\":\"o\",\
        \"\u{20ac}\":\"Euro\",\"\u{1f600}\":\"Grin\",\"\u{fb33}\":\"Dalet\"}";
    assert_eq!(canonicalize_json_body(input).unwrap(), want.as_bytes());
    let map = BTreeMap::from([("\u{fb33}", 1), ("\u{1f600}", 2), ("\u{20ac}", 3)]);
    assert_eq!(cj(&map), "{\"\u{20ac}\":3,\"\u{1f600}\":2,\"\u{fb33}\":1}");
}

#[test]
fn string_escapes() {
    let s = "\"\\/\u{8}\u{c}\n\r\t\u{0}\u{b}\u{1f}\u{7f}é€😀<>&'";
    let want = "\"\\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u000b\\u001f\u{7f}é€😀<>&'\"";
    assert_eq!(cj(s), want);
}

#[test]
fn nested_objects_and_arrays() {
    let v = json!({
        "z": [{"b": [], "a": {}}, [1, [2, {"y": null, "x": true}]]],
        "a": {"d": 1.5, "c": "s"}
    });
    let want = r#"{"a":{"c":"s","d":1.5},"z":[{"a":{},"b":[]},[1,[2,{"x":true,"y":null}]]]}"#;
    assert_eq!(cj(&v), want);
}

#[test]
fn field_declaration_order_does_not_matter() {
    #[derive(Serialize)]
    struct A {
        n: u32,
        s: &'static str,
    }
    #[derive(Serialize)]
    struct B {
        s: &'static str,
        n: u32,
    }
    let a = cj(&A { n: 7, s: "x" });
    assert_eq!(a, cj(&B { s: "x", n: 7 }));
    assert_eq!(a, r#"{"n":7,"s":"x"}"#);
}

#[test]
fn unserializable_values_error() {
    let code = |r: Result<String>| r.unwrap_err().code();
    let invalid = ErrorCode::IdempotencySerialization;
    assert_eq!(
        code(canonical_json(&BTreeMap::from([((1, 2), "x")]))),
        invalid
    );
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        assert_eq!(code(canonical_json(&[Some(v)])), invalid);
    }
    assert_eq!(
        code(canonical_json(&BTreeMap::from([("x", f32::NAN)]))),
        invalid
    );
    // serde_json writes number keys as strings: accepted.
    let number_keys = BTreeMap::from([(10, 'a'), (9, 'b')]);
    assert_eq!(cj(&number_keys), r#"{"10":"a","9":"b"}"#);
}

#[test]
fn fingerprint_keeps_the_first_error() {
    let mut f = Fingerprint::new();
    let worse = BTreeMap::from([((1, 2), 3)]);
    f.arg("ok", &1).arg("bad", &f64::NAN).arg("worse", &worse);
    let err = f.finish().unwrap_err();
    assert_eq!(err.code(), ErrorCode::IdempotencySerialization);
    assert_eq!(err.context_value("arg"), Some("bad"));
}

#[test]
fn framing_is_unambiguous_and_ordered() {
    assert_ne!(fp(|f| f.bytes("ab", b"c")), fp(|f| f.bytes("a", b"bc")));
    assert_ne!(fp(|f| f.bytes("a", b"")), fp(|f| f.bytes("", b"a")));
    assert_ne!(fp(|f| f.arg("x", "1")), fp(|f| f.bytes("x", b"\"1\"")));
    let ab = fp(|f| f.arg("a", &1).arg("b", &2));
    assert_ne!(ab, fp(|f| f.arg("b", &2).arg("a", &1)));
    assert_ne!(fp(|f| f), fp(|f| f.bytes("", b"")));
    let (map, json) = (
        BTreeMap::from([("a", 2), ("b", 1)]),
        json!({"b": 1, "a": 2}),
    );
    assert_eq!(fp(|f| f.arg("v", &json)), fp(|f| f.arg("v", &map)));
}

#[test]
fn query_order_does_not_matter() {
    let h = |q| http_fingerprint("GET", "/p", b"", q);
    assert_eq!(h(Some("b=2&a=1&a=0")), h(Some("a=0&a=1&b=2")));
    assert_eq!(h(Some("flag&b=2")), h(Some("b=2&&flag")));
    assert_eq!(h(None), h(Some("")));
    assert_ne!(h(Some("a=1")), h(Some("a=2")));
    assert_ne!(h(Some("a=1")), h(None));
    assert_ne!(h(Some("a=%31")), h(Some("a=1")));
}

#[test]
fn json_body_whitespace_and_key_order_do_not_matter() {
    let h = |method, path, body: &[u8]| http_fingerprint(method, path, body, None);
    let a = h("post", "/pay", br#"{"b": 1, "a": [1.0, "x"]}"#);
    assert_eq!(a, h("POST", "/pay", b"{\n  \"a\":[1,\"x\"],\"b\":1\n}"));
    assert_ne!(a, h("POST", "/pay/", br#"{"a":[1,"x"],"b":1}"#));
    assert_ne!(a, h("PUT", "/pay", br#"{"a":[1,"x"],"b":1}"#));
    // A JSON body is the `arg` of its document.
    let mut f = post("/pay");
    f.arg("body", &json!({"a": [1, "x"], "b": 1}));
    assert_eq!(a, f.finish().unwrap());
}

#[test]
fn non_json_body_falls_back_to_bytes() {
    let h = |body: &[u8]| http_fingerprint("POST", "/p", body, None);
    let raw = |body: &[u8]| {
        let mut f = post("/p");
        f.bytes("body", body);
        f.finish().unwrap()
    };
    assert_eq!(h(b"a=1&b=2"), raw(b"a=1&b=2"));
    assert_eq!(h(b""), raw(b""));
    assert_eq!(h(b"{\"a\": 1,}"), raw(b"{\"a\": 1,}"));
    assert_ne!(h(b"a=1 "), h(b"a=1"));
}

// Pinned digests. If one changes (tag, framing, canonical form), every fingerprint changes
// and every idempotency record already stored breaks: its retries are refused as mismatches.
const PINNED_ARG: &str = "aa9c45c9b53e246a15348799c9f1b38f6a41fbcd5a10b886e8187c828e438b7b";
const PINNED_HTTP: &str = "92660f1848ccec86f40096d4714f3ec31535ed01775681bb9934630849fc91d6";

#[test]
fn pinned_arg_digest() {
    let digest = fp(|f| f.arg("req", &json!({"amount": 100, "currency": "EUR"})));
    assert_eq!(digest, PINNED_ARG);
}

#[test]
fn pinned_http_digest() {
    let digest = http_fingerprint("post", "/payments", br#"{"b":1, "a":2}"#, None);
    assert_eq!(digest, PINNED_HTTP);
}
