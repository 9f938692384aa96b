//! The L1 glob matcher against Redis's own `stringmatchlen` (the matcher of `SCAN MATCH`,
//! `KEYS` and `PSUBSCRIBE`), transliterated below from Redis 7.0's `util.c` (case-sensitive
//! branch): both must give the same verdict on every pattern and non-empty key. An escaped
//! literal must match itself and nothing else.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redisx_runtime::__fuzz::{glob_escape, glob_matches};

#[derive(Arbitrary, Debug)]
struct Input {
    /// Pattern bytes; mapped onto the glob alphabet unless `raw`.
    pattern: Vec<u8>,
    key: Vec<u8>,
    other: Vec<u8>,
    raw: bool,
}

/// The bytes glob patterns are made of, plus bytes whose signed value is negative (the class
/// ranges compare as C `char`s) and a multi-byte character.
const ALPHABET: &[&str] = &[
    "a", "b", "z", "-", "*", "*", "?", "[", "]", "^", "\\", "\\", "0", "9", ":", "é", "\u{7f}",
    "\u{ff}",
];

fn text(bytes: &[u8], raw: bool) -> String {
    if raw {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    bytes
        .iter()
        .map(|&b| ALPHABET[usize::from(b) % ALPHABET.len()])
        .collect()
}

/// Redis's `stringmatchlen` (7.0, `nocase` = 0), on bytes. A read past the end sees the NUL
/// that terminates every sds string, as the C code does.
fn redis_match(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    redis_match_impl(pattern, string, &mut skip_longer, 0)
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

#[allow(clippy::cast_possible_wrap)]
fn redis_match_impl(pat: &[u8], st: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    let (mut p, mut s) = (0usize, 0usize);
    while p < pat.len() && s < st.len() {
        match pat[p] {
            b'*' => {
                while p < pat.len() && at(pat, p + 1) == b'*' {
                    p += 1;
                }
                if pat.len() - p == 1 {
                    return true;
                }
                while s < st.len() {
                    if redis_match_impl(&pat[p + 1..], &st[s..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let not = at(pat, p) == b'^';
                if not {
                    p += 1;
                }
                let c = st[s];
                let mut matched = false;
                loop {
                    let rem = pat.len() - p;
                    if at(pat, p) == b'\\' && rem >= 2 {
                        p += 1;
                        if pat[p] == c {
                            matched = true;
                        }
                    } else if at(pat, p) == b']' {
                        break;
                    } else if rem == 0 {
                        p -= 1;
                        break;
                    } else if rem >= 3 && pat[p + 1] == b'-' {
                        let (mut start, mut end) = (pat[p] as i8, pat[p + 2] as i8);
                        if start > end {
                            std::mem::swap(&mut start, &mut end);
                        }
                        p += 2;
                        let c = c as i8;
                        if c >= start && c <= end {
                            matched = true;
                        }
                    } else if pat[p] == c {
                        matched = true;
                    }
                    p += 1;
                }
                s += 1;
                if not {
                    matched = !matched;
                }
                if !matched {
                    return false;
                }
            }
            b'\\' => {
                if pat.len() - p >= 2 {
                    p += 1;
                }
                if pat[p] != st[s] {
                    return false;
                }
                s += 1;
            }
            b => {
                if b != st[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == st.len() {
            while at(pat, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p == pat.len() && s == st.len()
}

fuzz_target!(|input: Input| {
    let pattern = text(&input.pattern[..input.pattern.len().min(64)], input.raw);
    let key = text(&input.key[..input.key.len().min(64)], input.raw);
    let other = text(&input.other[..input.other.len().min(64)], input.raw);
    // Redis keys of redisx are never empty (a prefix, then a validated user key); on the empty
    // string Redis answers "no match" even to `**`, where SCAN special-cases only `*`.
    if !key.is_empty() {
        assert_eq!(
            glob_matches(&pattern, &key),
            redis_match(pattern.as_bytes(), key.as_bytes()),
            "pattern {pattern:?} key {key:?}"
        );
    }
    let escaped = glob_escape(&key);
    for candidate in [&key, &other] {
        if candidate.is_empty() {
            continue;
        }
        let expected = *candidate == key;
        assert_eq!(
            glob_matches(&escaped, candidate),
            expected,
            "escaped {escaped:?} vs {candidate:?}"
        );
        assert_eq!(
            redis_match(escaped.as_bytes(), candidate.as_bytes()),
            expected,
            "Redis: escaped {escaped:?} vs {candidate:?}"
        );
    }
});
