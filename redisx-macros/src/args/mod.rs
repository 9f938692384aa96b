//! Keyword arguments: `name = value` pairs.
//!
//! Each keyword is declared once, as a [`Keyword`] constant holding its name, an example of its
//! use and the reader of its value ([`read`]). An attribute takes its keywords from an
//! [`ArgParser`]; what it takes is what it accepts, so the "expected one of ..." list of an
//! unknown argument is derived from the keywords taken, never kept by hand beside them.
//! Every keyword may be given once; every mistake is recorded and all are reported together,
//! in the order they were written.

pub(crate) mod read;

use crate::diag::Diag;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote, quote_spanned};
use read::Duration;
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitStr, Path, Token};

/// A keyword's name and a complete, valid use of it, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Kw {
    /// The keyword, e.g. `ttl`.
    pub(crate) name: &'static str,
    /// A complete, valid use of it, e.g. `ttl = "5m"`.
    pub(crate) example: &'static str,
}

/// Reads the value of a keyword; the [`Kw`] names it in messages.
pub(crate) type Reader<T> = fn(Kw, &Expr) -> syn::Result<T>;

/// A keyword with the reader of its value: declared once, as a `const`.
pub(crate) struct Keyword<T> {
    pub(crate) kw: Kw,
    read: Reader<T>,
}

impl<T> Keyword<T> {
    pub(crate) const fn new(name: &'static str, example: &'static str, read: Reader<T>) -> Self {
        Self {
            kw: Kw { name, example },
            read,
        }
    }
}

/// `key = "user:{id}"`: a key template.
pub(crate) const KEY: Keyword<LitStr> = Keyword::new("key", r#"key = "user:{id}""#, read::key);
/// `ttl = "5m"`: how long what the call writes lives.
pub(crate) const TTL: Keyword<Duration> = Keyword::new("ttl", r#"ttl = "5m""#, read::duration);
/// `crate = "path"`: the facade's path; every attribute takes it.
pub(crate) const CRATE: Keyword<Path> =
    Keyword::new("crate", r#"crate = "my_app::redisx""#, read::crate_path);
/// `vary_by = ["tenant"]`: the context values the call's keys (and tags) vary by.
pub(crate) const VARY_BY: Keyword<Vec<LitStr>> =
    Keyword::new("vary_by", r#"vary_by = ["tenant"]"#, read::context_names);
/// `runtime = expr`: the `RedisX` to use; every attribute takes it.
pub(crate) const RUNTIME: Keyword<Expr> =
    Keyword::new("runtime", "runtime = &self.redisx", read::expr);

/// What the user gave for one keyword.
pub(crate) struct Arg<T> {
    kw: Kw,
    given: bool,
    value: Option<T>,
}

impl<T> Arg<T> {
    pub(crate) fn kw(&self) -> Kw {
        self.kw
    }

    /// Whether the keyword was given (even with a rejected value).
    pub(crate) fn is_given(&self) -> bool {
        self.given
    }

    /// Whether the keyword was given with a value that was rejected (and reported).
    pub(crate) fn is_invalid(&self) -> bool {
        self.given && self.value.is_none()
    }

    pub(crate) fn get(&self) -> Option<&T> {
        self.value.as_ref()
    }

    pub(crate) fn into_value(self) -> Option<T> {
        self.value
    }
}

/// One `name = value` (or a bare `name`) as written by the user, before interpretation.
pub(crate) struct RawArg {
    pub(crate) name: Ident,
    pub(crate) value: Option<Expr>,
}

/// Splits the attribute's arguments into `name = value` pairs. Only syntax is checked here;
/// `example` is shown when the arguments are not of that form.
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

/// The arguments of one attribute, taken keyword by keyword ([`ArgParser::take`]), then
/// checked for leftovers ([`ArgParser::finish`]).
pub(crate) struct ArgParser {
    /// The arguments as written; split on the first [`ArgParser::take`].
    tokens: Option<TokenStream>,
    raw: Vec<(RawArg, bool)>,
    /// Every keyword taken, in order: what the attribute accepts.
    accepted: Vec<Kw>,
    /// Errors with the index of the argument they are about, to report them in source order.
    errors: Vec<(usize, syn::Error)>,
    /// The arguments are not `name = value` pairs.
    syntax: Option<syn::Error>,
}

impl ArgParser {
    pub(crate) fn new(tokens: TokenStream) -> Self {
        Self {
            tokens: Some(tokens),
            raw: Vec::new(),
            accepted: Vec::new(),
            errors: Vec::new(),
            syntax: None,
        }
    }

    /// Splits the arguments, once. The first keyword an attribute takes is its main one: its
    /// example is the one shown when the arguments are not `name = value` pairs.
    fn split(&mut self, example: &str) {
        if let Some(tokens) = self.tokens.take() {
            match parse_raw(tokens, example) {
                Ok(raw) => self.raw = raw.into_iter().map(|arg| (arg, false)).collect(),
                Err(error) => self.syntax = Some(error),
            }
        }
    }

    /// Registers `keyword` as accepted and reads its value. A second occurrence is an error at
    /// its name ("given twice"), as is a name without a value; a value the reader rejects is
    /// an error and leaves the argument without a value.
    pub(crate) fn take<T>(&mut self, keyword: &Keyword<T>) -> Arg<T> {
        let kw = keyword.kw;
        self.split(kw.example);
        debug_assert!(!self.accepted.contains(&kw), "`{}` is taken twice", kw.name);
        self.accepted.push(kw);
        let mut arg = Arg {
            kw,
            given: false,
            value: None,
        };
        for (index, (raw, taken)) in self.raw.iter_mut().enumerate() {
            if *taken || raw.name.unraw() != kw.name {
                continue;
            }
            *taken = true;
            let error = if arg.given {
                Some(syn::Error::new(
                    raw.name.span(),
                    format!("`{}` is given twice", kw.name),
                ))
            } else {
                arg.given = true;
                match &raw.value {
                    Some(value) => (keyword.read)(kw, value)
                        .map(|value| arg.value = Some(value))
                        .err(),
                    None => Some(syn::Error::new(
                        raw.name.span(),
                        format!("`{}` needs a value, e.g. `{}`", kw.name, kw.example),
                    )),
                }
            };
            self.errors.extend(error.map(|error| (index, error)));
        }
        arg
    }

    /// Refuses keyword `name` wherever it is given, with `message` at its name: an argument
    /// other attributes take that this one cannot (`runtime` of `#[stream_consumer]`). It is
    /// not listed among the accepted ones, and counts as understood (so a missing argument is
    /// still reported).
    pub(crate) fn refuse(&mut self, name: &str, message: &str) {
        self.split(CRATE.kw.example);
        for (index, (raw, taken)) in self.raw.iter_mut().enumerate() {
            if !*taken && raw.name.unraw() == name {
                *taken = true;
                let error = syn::Error::new(raw.name.span(), message);
                self.errors.push((index, error));
            }
        }
    }

    /// Records every error in source order, each argument no keyword took as unknown (listing
    /// the keywords taken), and returns whether every argument was understood.
    pub(crate) fn finish(mut self, diag: &mut Diag) -> bool {
        self.split(CRATE.kw.example);
        let mut complete = self.syntax.is_none();
        if let Some(error) = self.syntax {
            diag.push(error);
        }
        for (index, (raw, taken)) in self.raw.iter().enumerate() {
            if !taken {
                complete = false;
                self.errors
                    .push((index, unknown(&raw.name, &self.accepted)));
            }
        }
        self.errors.sort_by_key(|(index, _)| *index);
        for (_, error) in self.errors {
            diag.push(error);
        }
        complete
    }
}

/// The arguments every attribute accepts: `crate = "path"` and `runtime = expr`.
pub(crate) struct Common {
    krate: Arg<Path>,
    runtime: Arg<Expr>,
}

impl Common {
    /// Takes `crate` and, when the attribute has a runtime to choose, `runtime` (after the
    /// attribute's own keywords, so messages list them last).
    pub(crate) fn take(args: &mut ArgParser, runtime: bool) -> Self {
        Self {
            krate: args.take(&CRATE),
            runtime: if runtime {
                args.take(&RUNTIME)
            } else {
                Arg {
                    kw: RUNTIME.kw,
                    given: false,
                    value: None,
                }
            },
        }
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

/// "`#[attr]` needs {what}, e.g. `#[attr(example)]`", at the attribute.
pub(crate) fn missing(attr: &str, what: &str, example: &str) -> syn::Error {
    syn::Error::new(
        Span::call_site(),
        format!("`#[{attr}]` needs {what}, e.g. `#[{attr}({example})]`"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::messages;

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
            unknown(&name, &[KEY.kw, TTL.kw, CRATE.kw]).to_string(),
            "unknown argument `tll`; expected one of `key`, `ttl`, `crate`"
        );
    }

    /// Takes `key`, `ttl`, `crate` and `runtime` from `tokens`: the messages and whether every
    /// argument was understood.
    fn parse(tokens: TokenStream) -> (Option<LitStr>, Option<u64>, Vec<String>, bool) {
        let mut diag = Diag::default();
        let mut args = ArgParser::new(tokens);
        let key = args.take(&KEY);
        let ttl = args.take(&TTL);
        Common::take(&mut args, true);
        let complete = args.finish(&mut diag);
        let ttl = ttl.into_value().map(|d| d.ms);
        (key.into_value(), ttl, messages(diag.finish()), complete)
    }

    #[test]
    fn once() {
        let (_, ttl, messages, complete) = parse(quote!(ttl = "5m", ttl = "6m"));
        assert_eq!(ttl, Some(300_000));
        assert_eq!(messages, ["`ttl` is given twice"]);
        assert!(complete);

        let (_, ttl, messages, _) = parse(quote!(ttl));
        assert_eq!(ttl, None);
        assert_eq!(messages, [r#"`ttl` needs a value, e.g. `ttl = "5m"`"#]);
    }

    #[test]
    fn unknown_arguments_list_what_was_taken() {
        let (key, _, messages, complete) = parse(quote!(tll = "5m", key = "a", r#ttl = "1s"));
        assert_eq!(key.map(|k| k.value()).as_deref(), Some("a"));
        assert_eq!(
            messages,
            ["unknown argument `tll`; expected one of `key`, `ttl`, `crate`, `runtime`"]
        );
        assert!(!complete);
    }

    #[test]
    fn errors_come_in_source_order() {
        let (_, _, messages, complete) = parse(quote!(
            runtime,
            bogus = 1,
            ttl = "0s",
            key = "",
            crate = 1,
            key = "a"
        ));
        assert_eq!(
            messages,
            [
                r"`runtime` needs a value, e.g. `runtime = &self.redisx`",
                "unknown argument `bogus`; expected one of `key`, `ttl`, `crate`, `runtime`",
                "`ttl` must be greater than zero",
                "`key` must not be empty",
                r#"`crate` must be a string literal holding a path, e.g. `crate = "my_app::redisx"`"#,
                "`key` is given twice",
            ]
        );
        assert!(!complete);
    }

    #[test]
    fn syntax_errors_show_the_first_keyword() {
        let (_, _, messages, complete) = parse(quote!("user:{id}"));
        assert_eq!(
            messages,
            [r#"expected arguments of the form `name = value`, e.g. `key = "user:{id}"`"#]
        );
        assert!(!complete);
    }

    #[test]
    fn keywords_with_a_bounded_integer() {
        const LIMIT: Keyword<u64> = Keyword::new("limit", "limit = 5", |kw, expr| {
            read::integer(kw, expr, 1..=100)
        });
        let mut diag = Diag::default();
        let mut args = ArgParser::new(quote!(limit = 5));
        assert_eq!(args.take(&LIMIT).into_value(), Some(5));
        assert!(args.finish(&mut diag));
        let mut args = ArgParser::new(quote!(limit = 500));
        assert_eq!(args.take(&LIMIT).into_value(), None);
        args.finish(&mut diag);
        assert_eq!(
            messages(diag.finish()),
            ["`limit` must be from 1 to 100; `500` is out of range"]
        );
    }

    #[test]
    fn refused_keywords() {
        let mut diag = Diag::default();
        let mut args = ArgParser::new(quote!(runtime = rx, key = "k", runtime = ry));
        let key = args.take(&KEY);
        args.refuse("runtime", "no runtime here");
        Common::take(&mut args, false);
        assert!(args.finish(&mut diag));
        assert!(key.is_given());
        assert_eq!(
            messages(diag.finish()),
            ["no runtime here", "no runtime here"]
        );
    }

    #[test]
    fn arg_states() {
        let mut diag = Diag::default();
        let mut args = ArgParser::new(quote!(ttl = "x"));
        let key = args.take(&KEY);
        let ttl = args.take(&TTL);
        assert!(args.finish(&mut diag));
        assert!(!key.is_given() && !key.is_invalid() && key.get().is_none());
        assert!(ttl.is_given() && ttl.is_invalid());
        assert_eq!(ttl.kw(), TTL.kw);
    }

    #[test]
    fn common_defaults() {
        let mut args = ArgParser::new(TokenStream::new());
        let paths = Common::take(&mut args, true).build();
        assert!(args.finish(&mut Diag::default()));
        assert_eq!(paths.krate.to_string(), ":: redisx");
        assert_eq!(
            paths.runtime.to_string(),
            ":: core :: option :: Option :: None"
        );
    }

    #[test]
    fn missing_message() {
        assert_eq!(
            missing("with_lock", "`key`", KEY.kw.example).to_string(),
            r#"`#[with_lock]` needs `key`, e.g. `#[with_lock(key = "user:{id}")]`"#
        );
    }
}
