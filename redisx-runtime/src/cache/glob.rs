//! Redis glob patterns, in process: matching L1 keys exactly as `SCAN MATCH` matches Redis
//! keys, and escaping a literal for `SCAN MATCH`.

/// Escapes the glob characters of a literal for `SCAN MATCH`.
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A Redis-style glob matcher for L1 pattern invalidation, reading patterns exactly as
/// Redis's `stringmatchlen` does (so L1 and `SCAN MATCH` agree): bytes, not characters;
/// `*`, `?`, `[abc]`, `[^abc]`, `[a-z]` (a reversed range counts too; bounds compare as
/// signed bytes, as Redis's `char`s do), `\x` (an escaped class member starts no range); an
/// unterminated class runs to the end of the pattern. It matches in O(pattern × key) steps
/// (one backtracking point, the last `*`), so no pattern can make it run away, whoever
/// published it.
pub(crate) struct Glob {
    toks: Vec<GlobTok>,
}

enum GlobTok {
    Star,
    Any,
    Lit(u8),
    Class {
        negated: bool,
        /// Inclusive ranges of signed bytes; a single byte is a range of one.
        ranges: Vec<(i8, i8)>,
    },
}

impl GlobTok {
    fn matches(&self, b: u8) -> bool {
        match self {
            Self::Star | Self::Any => true,
            Self::Lit(l) => *l == b,
            Self::Class { negated, ranges } => {
                let b = b.cast_signed();
                ranges.iter().any(|&(lo, hi)| lo <= b && b <= hi) != *negated
            }
        }
    }
}

impl Glob {
    pub(crate) fn new(p: &str) -> Self {
        let p = p.as_bytes();
        let mut toks = Vec::new();
        let mut i = 0;
        while i < p.len() {
            let tok = match p[i] {
                b'*' => {
                    i += 1;
                    if matches!(toks.last(), Some(GlobTok::Star)) {
                        continue;
                    }
                    GlobTok::Star
                }
                b'?' => {
                    i += 1;
                    GlobTok::Any
                }
                b'\\' if i + 1 < p.len() => {
                    i += 2;
                    GlobTok::Lit(p[i - 1])
                }
                b'[' => {
                    i += 1;
                    let negated = p.get(i) == Some(&b'^');
                    if negated {
                        i += 1;
                    }
                    let mut ranges = Vec::new();
                    while i < p.len() {
                        match p[i] {
                            b']' => {
                                i += 1;
                                break;
                            }
                            b'\\' if i + 1 < p.len() => {
                                let b = p[i + 1].cast_signed();
                                ranges.push((b, b));
                                i += 2;
                            }
                            _ if i + 2 < p.len() && p[i + 1] == b'-' => {
                                let (a, b) = (p[i].cast_signed(), p[i + 2].cast_signed());
                                ranges.push((a.min(b), a.max(b)));
                                i += 3;
                            }
                            c => {
                                ranges.push((c.cast_signed(), c.cast_signed()));
                                i += 1;
                            }
                        }
                    }
                    GlobTok::Class { negated, ranges }
                }
                c => {
                    i += 1;
                    GlobTok::Lit(c)
                }
            };
            toks.push(tok);
        }
        Self { toks }
    }

    pub(crate) fn matches(&self, key: &str) -> bool {
        let s = key.as_bytes();
        let toks = &self.toks;
        let (mut p, mut i) = (0, 0);
        // The last `*` seen and the key position it is tried to end at next.
        let mut star: Option<(usize, usize)> = None;
        while i < s.len() {
            match toks.get(p) {
                Some(GlobTok::Star) => {
                    star = Some((p, i));
                    p += 1;
                }
                Some(t) if t.matches(s[i]) => {
                    p += 1;
                    i += 1;
                }
                _ => match star {
                    Some((sp, si)) => {
                        star = Some((sp, si + 1));
                        p = sp + 1;
                        i = si + 1;
                    }
                    None => return false,
                },
            }
        }
        toks[p..].iter().all(|t| matches!(t, GlobTok::Star))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_matches_like_redis() {
        let g = |p: &str, s: &str| Glob::new(p).matches(s);
        assert!(g("user:*", "user:1"));
        assert!(!g("user:*", "users"));
        assert!(g("a?c", "abc"));
        assert!(g("[ab]x", "bx"));
        assert!(!g("[ab]x", "cx"));
        assert!(g("a\\*", "a*"));
        assert!(!g("a\\*", "ab"));
        assert!(
            !g("[\\a-z]", "m"),
            "an escaped member starts no range, as in Redis"
        );
        assert!(g("[\\a-z]", "-") && g("[\\a-z]", "z"));
        assert!(!g("user:?", "user:é"), "`?` is one byte, as in Redis");
        assert!(g("user:??", "user:é"));
        assert!(g("[^ab]x", "cx"));
        assert!(!g("[^ab]x", "ax"));
        assert!(g("user:[0-9]", "user:7"));
        assert!(
            g("user:[9-0]", "user:7"),
            "a reversed range, as Redis reads it"
        );
        assert!(!g("user:[0-9]", "user:x"));
        assert!(g("[\\]]", "]"));
        // As Redis reads it (checked against `SCAN MATCH`): `a-]` is the range `]`..`a`, and
        // the class then runs to the end.
        assert!(g("[a-]", "_") && g("[a-]", "]") && !g("[a-]", "-"));
        assert!(
            g("[ab", "b"),
            "an unterminated class runs to the end, as in Redis"
        );
        assert!(g("*", ""));
        assert!(g("a*b*c", "aXXbYYc"));
        assert!(!g("a*b*c", "aXXbYY"));
        assert!(g("*user*", "user"));
        assert!(g("h?llo*", "hello world"));
        assert!(!g("", "a"));
        assert!(g("", ""));
        // A pattern that makes a naive recursive matcher run for ages answers at once.
        let key = "a".repeat(4000);
        assert!(!g("*a*a*a*a*a*a*a*a*a*a*a*b", &key));
        assert_eq!(glob_escape("a*b[1]"), "a\\*b\\[1\\]");
        for lit in ["a*b[1]", "x\\y?", "plain"] {
            assert!(
                g(&glob_escape(lit), lit),
                "an escaped literal matches itself: {lit}"
            );
        }
    }
}
