//! Key templates and key validation. A template renders (through the stack buffer the
//! `#[cached]` expansion uses, spilling to the heap past 200 bytes) exactly as `format!` would;
//! a rendered key then validates or is refused with `CACHE_KEY_INVALID`, never a panic, and
//! validation accepts exactly the non-empty keys within the length limit without control
//! characters. Prefixing and cluster hash tags keep their invariants on any key.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redisx_runtime::__fuzz::{check_cache_key, render_key, render_templates};
use redisx_runtime::CacheConfig;
use redisx_runtime::ErrorCode;
use redisx_runtime::key::{KeyBuilder, MAX_KEY_LEN, hash_tag, slot, tagged, validate};

#[derive(Arbitrary, Debug)]
struct Input {
    a: String,
    b: String,
    n: u64,
    i: i64,
    c: char,
    max_len: u16,
    shape: u8,
    prefix: String,
}

/// Renders a template both ways and checks that they agree with `format!`.
macro_rules! render {
    ($($t:tt)*) => {{
        let (borrowed, owned) = render_key(format_args!($($t)*));
        let expected = format!($($t)*);
        assert_eq!(borrowed, expected);
        assert_eq!(owned, expected);
        expected
    }};
}

fn valid(key: &str, max: usize) -> bool {
    !key.is_empty() && key.len() <= max && !key.chars().any(char::is_control)
}

fuzz_target!(|input: Input| {
    let Input {
        a,
        b,
        n,
        i,
        c,
        max_len,
        shape,
        prefix,
    } = input;
    // The shapes the attribute macros expand `key = "..."` templates and automatic keys into.
    let key = match shape % 7 {
        0 => render!("user:{a}"),
        1 => render!("{a}:{n}:{b}"),
        2 => render!("{a}::{b}:{n:016x}"),
        3 => render!("order:{i}:{c}"),
        4 => render!("{a}"),
        5 => render!("{a}{a}{b}{b}{a}{b}"),
        _ => render!("tenant:{{{a}}}:{c}{c}"),
    };
    assert_eq!(
        render_templates(&[format_args!("tag:{a}"), format_args!("{b}")]),
        vec![format!("tag:{a}"), b.clone()]
    );

    let max = usize::from(max_len % 2048);
    for candidate in [key.as_str(), a.as_str()] {
        match validate(candidate, max) {
            Ok(()) => assert!(valid(candidate, max), "accepted {candidate:?} (max {max})"),
            Err(e) => {
                assert_eq!(e.code(), ErrorCode::CacheKeyInvalid);
                assert!(
                    !valid(candidate, max),
                    "refused {candidate:?} (max {max}): {e}"
                );
            }
        }
        // The cache's own check adds its reserved namespaces to the same rules.
        if check_cache_key(&CacheConfig::default(), candidate).is_ok() {
            assert!(
                valid(candidate, MAX_KEY_LEN),
                "the cache accepted {candidate:?}"
            );
        }
        let s = slot(candidate);
        assert!(s < 16384);
        let tag = hash_tag(candidate);
        assert!(candidate.contains(tag));
        assert_eq!(slot(tag), s, "{candidate:?}");
    }
    if !a.is_empty() && !a.contains('}') {
        let derived = format!("{}:{b}", tagged(&a));
        assert_eq!(hash_tag(&derived), a);
        assert_eq!(slot(&derived), slot(&tagged(&a)));
    }
    let keys = KeyBuilder::new(&prefix, "cache:");
    let full = keys.full(&key);
    assert!(full.starts_with(&prefix));
    assert_eq!(keys.strip(&full), Some(key.as_str()));
});
