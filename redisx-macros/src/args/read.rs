//! Readers of keyword values, written once and shared by every attribute: strings, key
//! templates, lists of templates, durations, integers, booleans, lists of parameter names,
//! choices among names, paths and plain expressions. Each checks the value's shape only;
//! checks against the function (template parameters, named parameters) come after parsing.

use super::Kw;
use crate::diag::Diag;
use crate::duration::{self, DurationError};
use proc_macro2::Span;
use std::ops::RangeInclusive;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Lit, LitStr, Path};

/// Looks through the invisible groups `macro_rules!` puts around `$x:expr`.
pub(crate) fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

fn as_lit(expr: &Expr) -> Option<&Lit> {
    match ungroup(expr) {
        Expr::Lit(lit) => Some(&lit.lit),
        _ => None,
    }
}

fn as_lit_str(expr: &Expr) -> Option<&LitStr> {
    match as_lit(expr) {
        Some(Lit::Str(lit)) => Some(lit),
        _ => None,
    }
}

/// "`{name}` must be {shape}, e.g. `{example}`", at `expr`.
fn shape_error(kw: Kw, expr: &Expr, shape: &str) -> syn::Error {
    syn::Error::new(
        expr.span(),
        format!("`{}` must be {shape}, e.g. `{}`", kw.name, kw.example),
    )
}

/// Any expression, taken as written (`runtime = &self.redisx`).
#[expect(
    clippy::unnecessary_wraps,
    reason = "a `Reader`: every keyword reader returns `syn::Result`"
)]
pub(crate) fn expr(_: Kw, expr: &Expr) -> syn::Result<Expr> {
    Ok(expr.clone())
}

/// A string literal.
pub(crate) fn lit_str(kw: Kw, expr: &Expr) -> syn::Result<LitStr> {
    as_lit_str(expr)
        .cloned()
        .ok_or_else(|| shape_error(kw, expr, "a string literal"))
}

/// A non-empty string literal: a name (`stream = "orders"`, `group = "billing"`).
pub(crate) fn non_empty_str(kw: Kw, expr: &Expr) -> syn::Result<LitStr> {
    let lit = lit_str(kw, expr)?;
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{}` must not be empty", kw.name),
        ));
    }
    Ok(lit)
}

/// A non-empty string literal: a key template, resolved against the parameters later
/// (`key_template::resolve`).
pub(crate) fn key(kw: Kw, expr: &Expr) -> syn::Result<LitStr> {
    non_empty_str(kw, expr)
}

/// The elements of `[a, b]`, or the error saying `kw` must be an array of `what`.
fn array<'a>(kw: Kw, expr: &'a Expr, what: &str) -> syn::Result<impl Iterator<Item = &'a Expr>> {
    match ungroup(expr) {
        Expr::Array(array) => Ok(array.elems.iter()),
        _ => Err(shape_error(kw, expr, &format!("an array of {what}"))),
    }
}

/// `["a", "b:{id}"]`: a list of non-empty string literals (tags, keys), each a template
/// resolved against the parameters later (`key_template::resolve_all`). How many a call may
/// carry is the runtime's policy, not checked here.
pub(crate) fn template_list(kw: Kw, expr: &Expr) -> syn::Result<Vec<LitStr>> {
    let mut diag = Diag::default();
    let mut items = Vec::new();
    for elem in array(kw, expr, "string literals")? {
        match as_lit_str(elem) {
            Some(lit) if lit.value().is_empty() => {
                diag.error(
                    lit.span(),
                    format!("an entry of `{}` must not be empty", kw.name),
                );
            }
            Some(lit) => items.push(lit.clone()),
            None => diag.error(
                elem.span(),
                format!(
                    "an entry of `{}` must be a string literal, e.g. `{}`",
                    kw.name, kw.example
                ),
            ),
        }
    }
    diag.finish()?;
    Ok(items)
}

/// `["tenant", "locale"]`: context names (see the runtime's `context` module): each 1 to 32
/// characters of `a-z`, `0-9` and `_`, starting with a letter, each at most once.
pub(crate) fn context_names(kw: Kw, expr: &Expr) -> syn::Result<Vec<LitStr>> {
    let mut diag = Diag::default();
    let mut names: Vec<LitStr> = Vec::new();
    for elem in array(kw, expr, "string literals")? {
        let Some(lit) = as_lit_str(elem) else {
            diag.error(
                elem.span(),
                format!(
                    "an entry of `{}` must be a string literal, e.g. `{}`",
                    kw.name, kw.example
                ),
            );
            continue;
        };
        let name = lit.value();
        let valid = !name.is_empty()
            && name.len() <= 32
            && name.as_bytes()[0].is_ascii_lowercase()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            diag.error(
                lit.span(),
                format!(
                    "`{name}` is not a context name: 1 to 32 characters of a-z, 0-9 and `_`, starting with a letter, e.g. `{}`",
                    kw.example
                ),
            );
        } else if names.iter().any(|n| n.value() == name) {
            diag.error(
                lit.span(),
                format!("`{name}` is named twice in `{}`", kw.name),
            );
        } else {
            names.push(lit.clone());
        }
    }
    diag.finish()?;
    Ok(names)
}

/// `[req, id]`: a list of parameter names, checked against the signature later
/// (`Params::check_names`).
pub(crate) fn param_list(kw: Kw, expr: &Expr) -> syn::Result<Vec<Ident>> {
    let mut diag = Diag::default();
    let mut names = Vec::new();
    for elem in array(kw, expr, "parameter names")? {
        match ungroup(elem) {
            Expr::Path(path) if path.qself.is_none() && path.path.get_ident().is_some() => {
                names.extend(path.path.get_ident().cloned());
            }
            _ => diag.error(
                elem.span(),
                format!(
                    "an entry of `{}` must be a parameter name, e.g. `{}`",
                    kw.name, kw.example
                ),
            ),
        }
    }
    diag.finish()?;
    Ok(names)
}

/// A duration parsed at compile time.
#[derive(Clone, Debug)]
pub(crate) struct Duration {
    pub(crate) ms: u64,
    /// As written, for messages (`5m`).
    pub(crate) text: String,
    pub(crate) span: Span,
}

/// `"30s"`: a string literal holding a non-zero duration. How long is too long is the
/// runtime's policy (its config), not checked here.
pub(crate) fn duration(kw: Kw, expr: &Expr) -> syn::Result<Duration> {
    let lit = lit_str(kw, expr)?;
    let text = lit.value();
    let message = match duration::parse_ms(&text) {
        Ok(ms) => {
            return Ok(Duration {
                ms,
                text,
                span: lit.span(),
            });
        }
        Err(DurationError::Invalid) => format!(
            "invalid duration `{text}`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. `\"30s\"`"
        ),
        Err(DurationError::Zero) => format!("`{}` must be greater than zero", kw.name),
        Err(DurationError::Overflow) => format!("duration `{text}` is too large"),
    };
    Err(syn::Error::new(lit.span(), message))
}

/// `5`: an unsuffixed whole number within `range` (`limit = 5`, `concurrency = 8`).
pub(crate) fn integer(kw: Kw, expr: &Expr, range: RangeInclusive<u64>) -> syn::Result<u64> {
    let (min, max) = (range.start(), range.end());
    let out_of_range = |span: Span, value: &str| {
        syn::Error::new(
            span,
            format!(
                "`{}` must be from {min} to {max}; `{value}` is out of range",
                kw.name
            ),
        )
    };
    match ungroup(expr) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Int(lit), ..
        }) if lit.suffix().is_empty() => match lit.base10_parse::<u64>() {
            Ok(value) if range.contains(&value) => Ok(value),
            _ => Err(out_of_range(lit.span(), lit.base10_digits())),
        },
        Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr: inner,
            ..
        }) if matches!(as_lit(inner), Some(Lit::Int(_))) => Err(out_of_range(
            expr.span(),
            &format!("-{}", quote::quote!(#inner)),
        )),
        _ => Err(shape_error(
            kw,
            expr,
            &format!("a whole number from {min} to {max}"),
        )),
    }
}

/// A path, e.g. to a function: `config = my_config` or `config = setup::builder`.
pub(crate) fn path(kw: Kw, expr: &Expr) -> syn::Result<syn::Path> {
    match ungroup(expr) {
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => Ok(path.path.clone()),
        _ => Err(shape_error(kw, expr, "a path to a function")),
    }
}

/// `true` or `false`.
pub(crate) fn boolean(kw: Kw, expr: &Expr) -> syn::Result<bool> {
    match as_lit(expr) {
        Some(Lit::Bool(lit)) => Ok(lit.value),
        _ => Err(shape_error(kw, expr, "`true` or `false`")),
    }
}

/// The name of a choice given as a string literal (`"json"`) or a path (`Json`).
fn choice_name(expr: &Expr) -> Option<(String, Span)> {
    match ungroup(expr) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some((lit.value(), lit.span())),
        Expr::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            segment
                .arguments
                .is_none()
                .then(|| (segment.ident.unraw().to_string(), path.span()))
        }
        _ => None,
    }
}

/// One of a fixed set of choices, given as a string literal or a path: `options` maps every
/// accepted spelling to its value, `shown` is what messages list, and `what` names the value
/// in "unknown {what} `x`" (`mode`, `` `when` value``).
pub(crate) fn choice<T: Copy>(
    kw: Kw,
    what: &str,
    expr: &Expr,
    options: &[(&str, T)],
    shown: &str,
) -> syn::Result<T> {
    let Some((name, span)) = choice_name(expr) else {
        return Err(shape_error(kw, expr, shown));
    };
    options
        .iter()
        .find(|(option, _)| *option == name)
        .map(|&(_, value)| value)
        .ok_or_else(|| syn::Error::new(span, format!("unknown {what} `{name}`; expected {shown}")))
}

/// `crate = "path"` (as tokio-macros' `crate` argument), or a bare path.
pub(crate) fn crate_path(kw: Kw, expr: &Expr) -> syn::Result<Path> {
    match ungroup(expr) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => lit.parse::<Path>().map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`{}` must name a path, e.g. `{}`; `{}` is not a path",
                    kw.name,
                    kw.example,
                    lit.value()
                ),
            )
        }),
        Expr::Path(path) if path.qself.is_none() && path.attrs.is_empty() => Ok(path.path.clone()),
        _ => Err(shape_error(kw, expr, "a string literal holding a path")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{CRATE, KEY, TTL};
    use crate::diag::messages;
    use proc_macro2::TokenStream;
    use quote::{ToTokens, quote};

    const TAGS: Kw = Kw {
        name: "tags",
        example: r#"tags = ["users", "user:{id}"]"#,
    };
    const SWR: Kw = Kw {
        name: "swr",
        example: r#"swr = "30s""#,
    };
    const LIMIT: Kw = Kw {
        name: "limit",
        example: "limit = 5",
    };
    const FINGERPRINT: Kw = Kw {
        name: "fingerprint",
        example: "fingerprint = [req]",
    };

    fn expr(tokens: TokenStream) -> Expr {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn durations() {
        let ttl = TTL.kw;
        assert_eq!(duration(ttl, &expr(quote!("150ms"))).unwrap().ms, 150);
        assert_eq!(
            messages(duration(ttl, &expr(quote!("5 minutes")))),
            [
                "invalid duration `5 minutes`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. `\"30s\"`"
            ]
        );
        assert_eq!(
            messages(duration(SWR, &expr(quote!("0s")))),
            ["`swr` must be greater than zero"]
        );
        assert_eq!(
            messages(duration(ttl, &expr(quote!("99999999999999999999d")))),
            ["duration `99999999999999999999d` is too large"]
        );
        assert_eq!(
            messages(duration(ttl, &expr(quote!(300)))),
            [r#"`ttl` must be a string literal, e.g. `ttl = "5m"`"#]
        );
        // No maximum: the runtime's config bounds a ttl.
        assert_eq!(duration(ttl, &expr(quote!("24h"))).unwrap().ms, 86_400_000);
        assert_eq!(duration(ttl, &expr(quote!("2d"))).unwrap().ms, 172_800_000);
    }

    #[test]
    fn template_lists() {
        let tags = template_list(TAGS, &expr(quote!(["users", "user:{id}"]))).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(
            messages(template_list(TAGS, &expr(quote!("users")))),
            [r#"`tags` must be an array of string literals, e.g. `tags = ["users", "user:{id}"]`"#]
        );
        assert_eq!(
            messages(template_list(TAGS, &expr(quote!(["", 1])))),
            [
                "an entry of `tags` must not be empty",
                r#"an entry of `tags` must be a string literal, e.g. `tags = ["users", "user:{id}"]`"#
            ]
        );
        // No maximum: the runtime's config bounds the tags of a key.
        let eleven = expr(quote!([
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"
        ]));
        assert_eq!(template_list(TAGS, &eleven).unwrap().len(), 11);
    }

    #[test]
    fn keys() {
        assert_eq!(
            key(KEY.kw, &expr(quote!("user:{id}"))).unwrap().value(),
            "user:{id}"
        );
        assert_eq!(
            messages(key(KEY.kw, &expr(quote!("")))),
            ["`key` must not be empty"]
        );
        assert_eq!(lit_str(KEY.kw, &expr(quote!(""))).unwrap().value(), "");
    }

    #[test]
    fn integers() {
        let limit = |tokens| integer(LIMIT, &expr(tokens), 1..=1000);
        assert_eq!(limit(quote!(5)).unwrap(), 5);
        assert_eq!(limit(quote!(1_000)).unwrap(), 1000);
        let out_of_range = |value: &str| {
            vec![format!(
                "`limit` must be from 1 to 1000; `{value}` is out of range"
            )]
        };
        assert_eq!(messages(limit(quote!(0))), out_of_range("0"));
        assert_eq!(messages(limit(quote!(1001))), out_of_range("1001"));
        assert_eq!(messages(limit(quote!(-3))), out_of_range("-3"));
        assert_eq!(
            messages(limit(quote!(99999999999999999999999))),
            out_of_range("99999999999999999999999")
        );
        let not_a_number = ["`limit` must be a whole number from 1 to 1000, e.g. `limit = 5`"];
        for tokens in [
            quote!("5"),
            quote!(5.0),
            quote!(5u8),
            quote!(n),
            quote!(2 + 3),
        ] {
            assert_eq!(messages(limit(tokens.clone())), not_a_number, "{tokens}");
        }
    }

    #[test]
    fn booleans() {
        const ACK: Kw = Kw {
            name: "auto_ack",
            example: "auto_ack = false",
        };
        assert!(boolean(ACK, &expr(quote!(true))).unwrap());
        assert!(!boolean(ACK, &expr(quote!(false))).unwrap());
        assert_eq!(
            messages(boolean(ACK, &expr(quote!("true")))),
            ["`auto_ack` must be `true` or `false`, e.g. `auto_ack = false`"]
        );
    }

    #[test]
    fn param_lists() {
        let names = param_list(FINGERPRINT, &expr(quote!([req, r#type]))).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.unraw().to_string()).collect();
        assert_eq!(names, ["req", "type"]);
        assert!(
            param_list(FINGERPRINT, &expr(quote!([])))
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            messages(param_list(FINGERPRINT, &expr(quote!(req)))),
            ["`fingerprint` must be an array of parameter names, e.g. `fingerprint = [req]`"]
        );
        assert_eq!(
            messages(param_list(FINGERPRINT, &expr(quote!(["req", a.b])))),
            [
                "an entry of `fingerprint` must be a parameter name, e.g. `fingerprint = [req]`",
                "an entry of `fingerprint` must be a parameter name, e.g. `fingerprint = [req]`"
            ]
        );
    }

    #[test]
    fn choices() {
        const WHEN: Kw = Kw {
            name: "when",
            example: r#"when = "before""#,
        };
        let options = [("after", 1), ("before", 2)];
        let shown = r#"`"after"` or `"before"`"#;
        let when = |tokens| choice(WHEN, "`when` value", &expr(tokens), &options, shown);
        assert_eq!(when(quote!("before")).unwrap(), 2);
        assert_eq!(when(quote!(after)).unwrap(), 1);
        assert_eq!(when(quote!(my::after)).unwrap(), 1);
        assert_eq!(
            messages(when(quote!("during"))),
            [r#"unknown `when` value `during`; expected `"after"` or `"before"`"#]
        );
        assert_eq!(
            messages(when(quote!(1))),
            [r#"`when` must be `"after"` or `"before"`, e.g. `when = "before"`"#]
        );
    }

    #[test]
    fn crate_paths() {
        let path = crate_path(CRATE.kw, &expr(quote!("::my::redisx"))).unwrap();
        assert_eq!(path.to_token_stream().to_string(), ":: my :: redisx");
        assert!(crate_path(CRATE.kw, &expr(quote!(rx))).is_ok());
        assert_eq!(
            messages(crate_path(CRATE.kw, &expr(quote!("not a path")))),
            [
                r#"`crate` must name a path, e.g. `crate = "my_app::redisx"`; `not a path` is not a path"#
            ]
        );
        assert_eq!(
            messages(crate_path(CRATE.kw, &expr(quote!(1)))),
            [r#"`crate` must be a string literal holding a path, e.g. `crate = "my_app::redisx"`"#]
        );
    }
}
