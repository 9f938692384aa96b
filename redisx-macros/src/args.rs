//! Keyword arguments shared by every attribute: `name = value` parsing, the set-once helper,
//! typed value readers (string literals, durations, tag lists, callables) and the `crate` /
//! `runtime` arguments.

use crate::diag::Diag;
use crate::duration::{self, DurationError};
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, ExprClosure, ExprPath, Ident, Lit, LitStr, Path, Token};

/// An argument keyword with the example shown in messages about it.
#[derive(Clone, Copy)]
pub(crate) struct Kw {
    /// The keyword, e.g. `ttl`.
    pub(crate) name: &'static str,
    /// A complete, valid use of it, e.g. `ttl = "5m"`.
    pub(crate) example: &'static str,
}

pub(crate) const KEY: Kw = Kw {
    name: "key",
    example: r#"key = "user:{id}""#,
};
pub(crate) const KEYS: Kw = Kw {
    name: "keys",
    example: r#"keys = ["user:{id}"]"#,
};
pub(crate) const TTL: Kw = Kw {
    name: "ttl",
    example: r#"ttl = "5m""#,
};
pub(crate) const L1_TTL: Kw = Kw {
    name: "l1_ttl",
    example: r#"l1_ttl = "30s""#,
};
pub(crate) const TAGS: Kw = Kw {
    name: "tags",
    example: r#"tags = ["users", "user:{id}"]"#,
};
pub(crate) const SWR: Kw = Kw {
    name: "swr",
    example: r#"swr = "30s""#,
};
pub(crate) const STALE_IF_ERROR: Kw = Kw {
    name: "stale_if_error",
    example: r#"stale_if_error = "1h""#,
};
pub(crate) const MODE: Kw = Kw {
    name: "mode",
    example: r#"mode = "l1_only""#,
};
pub(crate) const UNLESS: Kw = Kw {
    name: "unless",
    example: "unless = |value| value.is_empty()",
};
pub(crate) const CONDITION: Kw = Kw {
    name: "condition",
    example: "condition = |id| *id != 0",
};
pub(crate) const CODEC: Kw = Kw {
    name: "codec",
    example: "codec = Json",
};
pub(crate) const WHEN: Kw = Kw {
    name: "when",
    example: r#"when = "before""#,
};
pub(crate) const CRATE: Kw = Kw {
    name: "crate",
    example: r#"crate = "my_app::redisx""#,
};
pub(crate) const RUNTIME: Kw = Kw {
    name: "runtime",
    example: "runtime = &self.redisx",
};

/// The most tags one call site may attach (the runtime's default limit per key).
pub(crate) const MAX_TAGS: usize = 10;

/// One `name = value` (or a bare `name`) as written by the user, before interpretation.
pub(crate) struct RawArg {
    pub(crate) name: Ident,
    pub(crate) value: Option<Expr>,
}

/// Splits the attribute's arguments into `name = value` pairs. Only syntax is checked here; each
/// attribute interprets the names and values itself.
pub(crate) fn parse_raw(tokens: TokenStream, example: &str) -> syn::Result<Vec<RawArg>> {
    let parser = |input: ParseStream<'_>| {
        let mut args = Vec::new();
        while !input.is_empty() {
            let name = input.call(Ident::parse_any).map_err(|error| {
                syn::Error::new(
                    error.span(),
                    format!("expected arguments of the form `name = value`, e.g. `{example}`"),
                )
            })?;
            let value = if input.peek(Token![=]) {
                input.parse::<Token![=]>()?;
                Some(input.parse::<Expr>()?)
            } else {
                None
            };
            args.push(RawArg { name, value });
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    };
    parser.parse2(tokens)
}

/// The error for an argument name the attribute does not know.
pub(crate) fn unknown(name: &Ident, accepted: &[Kw]) -> syn::Error {
    let list = accepted
        .iter()
        .map(|kw| format!("`{}`", kw.name))
        .collect::<Vec<_>>()
        .join(", ");
    syn::Error::new(
        name.span(),
        format!(
            "unknown argument `{}`; expected one of {list}",
            name.unraw()
        ),
    )
}

/// A value that may be given once. A second occurrence is an error at its name; a value that
/// fails to parse is an error and leaves the slot empty.
pub(crate) struct Once<T> {
    kw: Kw,
    seen: bool,
    value: Option<T>,
}

impl<T> Once<T> {
    pub(crate) const fn new(kw: Kw) -> Self {
        Self {
            kw,
            seen: false,
            value: None,
        }
    }

    /// Whether `arg` is this keyword.
    pub(crate) fn matches(&self, arg: &RawArg) -> bool {
        arg.name.unraw() == self.kw.name
    }

    /// Reads `arg` with `read` unless the keyword was already given.
    pub(crate) fn set(
        &mut self,
        diag: &mut Diag,
        arg: &RawArg,
        read: impl FnOnce(Kw, &Expr) -> syn::Result<T>,
    ) {
        if self.seen {
            diag.error(
                arg.name.span(),
                format!("`{}` is given twice", self.kw.name),
            );
            return;
        }
        self.seen = true;
        match &arg.value {
            Some(value) => self.value = diag.ok(read(self.kw, value)),
            None => diag.error(
                arg.name.span(),
                format!(
                    "`{}` needs a value, e.g. `{}`",
                    self.kw.name, self.kw.example
                ),
            ),
        }
    }

    /// Whether the keyword was given (even with an invalid value).
    pub(crate) fn is_given(&self) -> bool {
        self.seen
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    pub(crate) fn into_value(self) -> Option<T> {
        self.value
    }
}

/// Looks through the invisible groups `macro_rules!` puts around `$x:expr`.
fn ungroup(mut expr: &Expr) -> &Expr {
    while let Expr::Group(group) = expr {
        expr = &group.expr;
    }
    expr
}

fn as_lit_str(expr: &Expr) -> Option<&LitStr> {
    match ungroup(expr) {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(lit), ..
        }) => Some(lit),
        _ => None,
    }
}

/// A string literal.
pub(crate) fn lit_str(kw: Kw, expr: &Expr) -> syn::Result<LitStr> {
    as_lit_str(expr).cloned().ok_or_else(|| {
        syn::Error::new(
            expr.span(),
            format!(
                "`{}` must be a string literal, e.g. `{}`",
                kw.name, kw.example
            ),
        )
    })
}

/// A non-empty string literal: a key template.
pub(crate) fn key(kw: Kw, expr: &Expr) -> syn::Result<LitStr> {
    let lit = lit_str(kw, expr)?;
    if lit.value().is_empty() {
        return Err(syn::Error::new(
            lit.span(),
            format!("`{}` must not be empty", kw.name),
        ));
    }
    Ok(lit)
}

/// `["a", "b:{id}"]`: a list of non-empty string literals (tags or keys), at most
/// [`MAX_TAGS`] long when `limit` is set.
pub(crate) fn lit_str_list(kw: Kw, expr: &Expr, limit: bool) -> syn::Result<Vec<LitStr>> {
    let Expr::Array(array) = ungroup(expr) else {
        return Err(syn::Error::new(
            expr.span(),
            format!(
                "`{}` must be an array of string literals, e.g. `{}`",
                kw.name, kw.example
            ),
        ));
    };
    let mut diag = Diag::default();
    let mut items = Vec::new();
    for elem in &array.elems {
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
    if limit && array.elems.len() > MAX_TAGS {
        let extra = &array.elems[MAX_TAGS];
        diag.error(
            extra.span(),
            format!(
                "too many `{}`: {} given, the maximum is {MAX_TAGS}",
                kw.name,
                array.elems.len()
            ),
        );
    }
    diag.finish()?;
    Ok(items)
}

/// A duration parsed at compile time.
#[derive(Clone)]
pub(crate) struct Duration {
    pub(crate) ms: u64,
    /// As written, for messages (`5m`).
    pub(crate) text: String,
    pub(crate) span: Span,
}

/// `"30s"`: a string literal holding a non-zero duration.
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

/// Like [`duration()`], and at most [`crate::duration::MAX_TTL_MS`].
pub(crate) fn ttl(kw: Kw, expr: &Expr) -> syn::Result<Duration> {
    let ttl = duration(kw, expr)?;
    if ttl.ms > duration::MAX_TTL_MS {
        return Err(syn::Error::new(
            ttl.span,
            format!(
                "`{}` of {} exceeds the maximum of {}",
                kw.name,
                ttl.text,
                duration::MAX_TTL_TEXT
            ),
        ));
    }
    Ok(ttl)
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

/// One of a fixed set of choices, given as a string literal or a path; `options` maps every
/// accepted spelling to its value, and `shown` is what messages list.
pub(crate) fn choice<T: Copy>(
    kw: Kw,
    expr: &Expr,
    options: &[(&str, T)],
    shown: &str,
) -> syn::Result<T> {
    choice_named(kw, kw.name, expr, options, shown)
}

/// [`choice`], with `what` naming the value in "unknown {what} `x`" (`mode`, `` `when` value``).
pub(crate) fn choice_named<T: Copy>(
    kw: Kw,
    what: &str,
    expr: &Expr,
    options: &[(&str, T)],
    shown: &str,
) -> syn::Result<T> {
    let Some((name, span)) = choice_name(expr) else {
        return Err(syn::Error::new(
            expr.span(),
            format!("`{}` must be {shown}, e.g. `{}`", kw.name, kw.example),
        ));
    };
    options
        .iter()
        .find(|(option, _)| *option == name)
        .map(|&(_, value)| value)
        .ok_or_else(|| syn::Error::new(span, format!("unknown {what} `{name}`; expected {shown}")))
}

/// The codec of stored values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Bincode,
    Json,
}

/// `codec = Json`, `codec = Bincode`, `codec = "json"` or `codec = "bincode"`.
pub(crate) fn codec(kw: Kw, expr: &Expr) -> syn::Result<Codec> {
    choice(
        kw,
        expr,
        &[
            ("Json", Codec::Json),
            ("json", Codec::Json),
            ("Bincode", Codec::Bincode),
            ("bincode", Codec::Bincode),
        ],
        "`Json` or `Bincode`",
    )
}

impl Codec {
    /// `<crate>::__private::CodecKind::Json` and so on.
    pub(crate) fn tokens(self, krate: &TokenStream) -> TokenStream {
        match self {
            Codec::Bincode => quote!(#krate::__private::CodecKind::Bincode),
            Codec::Json => quote!(#krate::__private::CodecKind::Json),
        }
    }
}

/// A function path or a closure, for `unless` and `condition`.
#[derive(Clone)]
pub(crate) enum Callable {
    Path(ExprPath),
    Closure(ExprClosure),
}

/// `f`, `Self::f`, `|value| ...`.
pub(crate) fn callable(kw: Kw, expr: &Expr) -> syn::Result<Callable> {
    match ungroup(expr) {
        Expr::Path(path) => Ok(Callable::Path(path.clone())),
        Expr::Closure(closure) => Ok(Callable::Closure(closure.clone())),
        _ => Err(syn::Error::new(
            expr.span(),
            format!(
                "`{}` must be a function path or a closure, e.g. `{}`",
                kw.name, kw.example
            ),
        )),
    }
}

impl Callable {
    pub(crate) fn span(&self) -> Span {
        match self {
            Callable::Path(path) => path.span(),
            Callable::Closure(closure) => closure.span(),
        }
    }
}

impl ToTokens for Callable {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Callable::Path(path) => path.to_tokens(tokens),
            Callable::Closure(closure) => closure.to_tokens(tokens),
        }
    }
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
        _ => Err(syn::Error::new(
            expr.span(),
            format!(
                "`{}` must be a string literal holding a path, e.g. `{}`",
                kw.name, kw.example
            ),
        )),
    }
}

/// The arguments every attribute accepts: `crate = "path"` and `runtime = expr`; also tracks
/// whether every argument was understood.
pub(crate) struct Common {
    krate: Once<Path>,
    runtime: Once<Expr>,
    incomplete: bool,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            krate: Once::new(CRATE),
            runtime: Once::new(RUNTIME),
            incomplete: false,
        }
    }
}

impl Common {
    /// Splits `tokens` into arguments ([`parse_raw`]); on a syntax error, records it and
    /// returns no arguments.
    pub(crate) fn parse_raw(
        &mut self,
        diag: &mut Diag,
        tokens: TokenStream,
        example: &str,
    ) -> Vec<RawArg> {
        let raw = diag.ok(parse_raw(tokens, example));
        self.incomplete |= raw.is_none();
        raw.unwrap_or_default()
    }

    /// Records "unknown argument" for `arg`.
    pub(crate) fn reject(&mut self, diag: &mut Diag, arg: &RawArg, accepted: &[Kw]) {
        self.incomplete = true;
        diag.push(unknown(&arg.name, accepted));
    }

    /// Whether an argument was not understood (a syntax error or an unknown name). A check for
    /// a missing argument is then skipped: the user most likely misspelled it, and one mistake
    /// should give one message.
    pub(crate) fn incomplete(&self) -> bool {
        self.incomplete
    }

    /// Takes `arg` if it is `crate` or `runtime`; returns whether it did.
    pub(crate) fn accept(&mut self, diag: &mut Diag, arg: &RawArg) -> bool {
        if self.krate.matches(arg) {
            self.krate.set(diag, arg, crate_path);
        } else if self.runtime.matches(arg) {
            self.runtime.set(diag, arg, |_, expr| Ok(expr.clone()));
        } else {
            return false;
        }
        true
    }

    pub(crate) fn build(self) -> Paths {
        let krate = self
            .krate
            .into_value()
            .map_or_else(|| quote!(::redisx), |path| path.to_token_stream());
        let runtime = self.runtime.into_value().map_or_else(
            || quote!(::core::option::Option::None),
            |expr| {
                quote_spanned! {expr.span()=>
                    ::core::option::Option::Some(
                        <_ as ::core::borrow::Borrow<#krate::__private::RedisX>>::borrow(&(#expr))
                    )
                }
            },
        );
        Paths { krate, runtime }
    }
}

/// The validated common arguments, as tokens.
pub(crate) struct Paths {
    /// The facade's path: `::redisx` or the `crate = "..."` override.
    pub(crate) krate: TokenStream,
    /// `Option<&RedisX>`: `None` (the installed runtime) or `Some(..)` from `runtime = expr`.
    pub(crate) runtime: TokenStream,
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn messages(result: syn::Result<impl Sized>) -> Vec<String> {
        match result {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    fn expr(tokens: TokenStream) -> Expr {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn raw_args() {
        let args = parse_raw(quote!(key = "a", crate = "x", ttl, runtime = &rx,), "").unwrap();
        let names: Vec<String> = args.iter().map(|a| a.name.to_string()).collect();
        assert_eq!(names, ["key", "crate", "ttl", "runtime"]);
        assert!(args[2].value.is_none());
        assert!(parse_raw(TokenStream::new(), "").unwrap().is_empty());
        assert_eq!(
            messages(parse_raw(quote!("user:{id}"), r#"key = "user:{id}""#)),
            [r#"expected arguments of the form `name = value`, e.g. `key = "user:{id}"`"#]
        );
        assert_eq!(
            messages(parse_raw(quote!(a = 1 b = 2), "")),
            ["expected `,`"]
        );
    }

    #[test]
    fn unknown_lists_accepted() {
        let name = Ident::new("tll", Span::call_site());
        assert_eq!(
            unknown(&name, &[KEY, TTL, CRATE]).to_string(),
            "unknown argument `tll`; expected one of `key`, `ttl`, `crate`"
        );
    }

    #[test]
    fn once() {
        let mut diag = Diag::default();
        let mut ttl = Once::new(TTL);
        let args = parse_raw(quote!(ttl = "5m", ttl = "6m"), "").unwrap();
        for arg in &args {
            assert!(ttl.matches(arg));
            ttl.set(&mut diag, arg, duration);
        }
        assert!(ttl.is_given());
        assert_eq!(ttl.get().map(|d| d.ms), Some(300_000));
        assert_eq!(messages(diag.finish()), ["`ttl` is given twice"]);

        let mut diag = Diag::default();
        let mut ttl = Once::new(TTL);
        ttl.set(&mut diag, &parse_raw(quote!(ttl), "").unwrap()[0], duration);
        assert_eq!(
            messages(diag.finish()),
            [r#"`ttl` needs a value, e.g. `ttl = "5m"`"#]
        );
    }

    #[test]
    fn durations() {
        assert_eq!(duration(TTL, &expr(quote!("150ms"))).unwrap().ms, 150);
        assert_eq!(
            messages(duration(TTL, &expr(quote!("5 minutes")))),
            [
                "invalid duration `5 minutes`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. `\"30s\"`"
            ]
        );
        assert_eq!(
            messages(duration(SWR, &expr(quote!("0s")))),
            ["`swr` must be greater than zero"]
        );
        assert_eq!(
            messages(duration(TTL, &expr(quote!("99999999999999999999d")))),
            ["duration `99999999999999999999d` is too large"]
        );
        assert_eq!(
            messages(duration(TTL, &expr(quote!(300)))),
            [r#"`ttl` must be a string literal, e.g. `ttl = "5m"`"#]
        );
        assert_eq!(ttl(TTL, &expr(quote!("24h"))).unwrap().ms, 86_400_000);
        assert_eq!(
            messages(ttl(TTL, &expr(quote!("2d")))),
            ["`ttl` of 2d exceeds the maximum of 24h"]
        );
    }

    #[test]
    fn lists() {
        let tags = lit_str_list(TAGS, &expr(quote!(["users", "user:{id}"])), true).unwrap();
        assert_eq!(tags.len(), 2);
        assert_eq!(
            messages(lit_str_list(TAGS, &expr(quote!("users")), true)),
            [r#"`tags` must be an array of string literals, e.g. `tags = ["users", "user:{id}"]`"#]
        );
        assert_eq!(
            messages(lit_str_list(TAGS, &expr(quote!(["", 1])), true)),
            [
                "an entry of `tags` must not be empty",
                r#"an entry of `tags` must be a string literal, e.g. `tags = ["users", "user:{id}"]`"#
            ]
        );
        let eleven = expr(quote!([
            "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"
        ]));
        assert_eq!(
            messages(lit_str_list(TAGS, &eleven, true)),
            ["too many `tags`: 11 given, the maximum is 10"]
        );
        assert_eq!(lit_str_list(KEYS, &eleven, false).unwrap().len(), 11);
    }

    #[test]
    fn keys() {
        assert_eq!(
            key(KEY, &expr(quote!("user:{id}"))).unwrap().value(),
            "user:{id}"
        );
        assert_eq!(
            messages(key(KEY, &expr(quote!("")))),
            ["`key` must not be empty"]
        );
    }

    #[test]
    fn codecs() {
        assert_eq!(codec(CODEC, &expr(quote!(Json))).unwrap(), Codec::Json);
        assert_eq!(
            codec(CODEC, &expr(quote!(redisx::Bincode))).unwrap(),
            Codec::Bincode
        );
        assert_eq!(codec(CODEC, &expr(quote!("json"))).unwrap(), Codec::Json);
        assert_eq!(
            codec(CODEC, &expr(quote!("bincode"))).unwrap(),
            Codec::Bincode
        );
        assert_eq!(
            messages(codec(CODEC, &expr(quote!(Xml)))),
            ["unknown codec `Xml`; expected `Json` or `Bincode`"]
        );
        assert_eq!(
            messages(codec(CODEC, &expr(quote!(1)))),
            ["`codec` must be `Json` or `Bincode`, e.g. `codec = Json`"]
        );
    }

    #[test]
    fn callables() {
        assert!(matches!(
            callable(UNLESS, &expr(quote!(Vec::is_empty))),
            Ok(Callable::Path(_))
        ));
        assert!(matches!(
            callable(UNLESS, &expr(quote!(|v| v.is_empty()))),
            Ok(Callable::Closure(_))
        ));
        assert_eq!(
            messages(callable(UNLESS, &expr(quote!("is_empty")))),
            [
                "`unless` must be a function path or a closure, e.g. `unless = |value| value.is_empty()`"
            ]
        );
    }

    #[test]
    fn crate_paths() {
        let path = crate_path(CRATE, &expr(quote!("::my::redisx"))).unwrap();
        assert_eq!(path.to_token_stream().to_string(), ":: my :: redisx");
        assert!(crate_path(CRATE, &expr(quote!(rx))).is_ok());
        assert_eq!(
            messages(crate_path(CRATE, &expr(quote!("not a path")))),
            [
                r#"`crate` must name a path, e.g. `crate = "my_app::redisx"`; `not a path` is not a path"#
            ]
        );
        assert_eq!(
            messages(crate_path(CRATE, &expr(quote!(1)))),
            [r#"`crate` must be a string literal holding a path, e.g. `crate = "my_app::redisx"`"#]
        );
    }

    #[test]
    fn common_defaults() {
        let paths = Common::default().build();
        assert_eq!(paths.krate.to_string(), ":: redisx");
        assert_eq!(
            paths.runtime.to_string(),
            ":: core :: option :: Option :: None"
        );
    }
}
