//! Durations written as strings: `"150ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`.
//!
//! A duration is a whole number followed by one unit. Zero and values that overflow `u64`
//! milliseconds are errors: a cache entry that lives for no time, or for longer than the
//! universe, is a typo. How long is too long for a given use is policy, the runtime's config
//! (`CacheConfig::max_ttl`, ...), not checked here.

/// Why a duration string was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not a number followed by a known unit.
    Invalid,
    /// The duration is zero.
    Zero,
    /// The duration does not fit in `u64` milliseconds.
    Overflow,
}

/// The units, longest suffix first so that `ms` wins over `s`, with their length in ms.
const UNITS: [(&str, u64); 5] = [
    ("ms", 1),
    ("s", 1000),
    ("m", 60 * 1000),
    ("h", 60 * 60 * 1000),
    ("d", 24 * 60 * 60 * 1000),
];

/// Parses `text` into milliseconds.
pub(crate) fn parse_ms(text: &str) -> Result<u64, DurationError> {
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(digits_end);
    if number.is_empty() {
        return Err(DurationError::Invalid);
    }
    let Some(&(_, factor)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(DurationError::Invalid);
    };
    // Only digits are left, so the one way `parse` can fail is a number too large for u64.
    let number: u64 = number.parse().map_err(|_| DurationError::Overflow)?;
    let ms = number.checked_mul(factor).ok_or(DurationError::Overflow)?;
    if ms == 0 {
        return Err(DurationError::Zero);
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::{DurationError, parse_ms};

    #[test]
    fn every_unit() {
        assert_eq!(parse_ms("150ms"), Ok(150));
        assert_eq!(parse_ms("30s"), Ok(30_000));
        assert_eq!(parse_ms("5m"), Ok(300_000));
        assert_eq!(parse_ms("1h"), Ok(3_600_000));
        assert_eq!(parse_ms("1d"), Ok(86_400_000));
        assert_eq!(parse_ms("24h"), Ok(86_400_000));
        assert_eq!(parse_ms("2d"), Ok(172_800_000));
        assert_eq!(parse_ms("007s"), Ok(7000));
    }

    #[test]
    fn invalid() {
        for text in [
            "",
            "5",
            "s",
            "ms",
            "5 minutes",
            "5 m",
            " 5m",
            "5m ",
            "5min",
            "5M",
            "-5s",
            "+5s",
            "1.5s",
            "1h30m",
            "5sec",
            "five s",
            "5_000ms",
            "5µs",
        ] {
            assert_eq!(parse_ms(text), Err(DurationError::Invalid), "{text:?}");
        }
    }

    #[test]
    fn zero() {
        for text in ["0ms", "0s", "0m", "0h", "0d", "000s"] {
            assert_eq!(parse_ms(text), Err(DurationError::Zero), "{text:?}");
        }
    }

    #[test]
    fn overflow() {
        assert_eq!(parse_ms("18446744073709551615ms"), Ok(u64::MAX));
        assert_eq!(
            parse_ms("18446744073709551616ms"),
            Err(DurationError::Overflow)
        );
        assert_eq!(
            parse_ms("18446744073709551615s"),
            Err(DurationError::Overflow)
        );
        assert_eq!(parse_ms("213503982335d"), Err(DurationError::Overflow));
        assert_eq!(
            parse_ms("99999999999999999999999999999999d"),
            Err(DurationError::Overflow)
        );
    }
}
