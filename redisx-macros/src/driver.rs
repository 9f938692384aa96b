//! The one driver every attribute runs through: parse the arguments, parse the function,
//! check `async`, validate, report every error found so far, and only then expand (no
//! `quote!` of an expansion before validation passed). On error the user's function is
//! emitted unchanged beside the errors, so one mistake gives one message.

use crate::args::{self, Arg, ArgParser, Common, Paths};
use crate::diag::{self, Diag};
use crate::func::{self, Func};
use proc_macro2::{Span, TokenStream};

/// One attribute: its keywords, its validation against the function, its expansion.
pub(crate) trait Attribute {
    /// The attribute's name, as in `#[cached]`.
    const NAME: &'static str;
    /// The arguments as read (each keyword once).
    type Args;
    /// The validated call site: everything [`Attribute::expand`] needs, nothing left to check.
    type Model;
    /// Whether the attribute takes `runtime = expr` (every one that uses a runtime does).
    const RUNTIME: bool = true;

    /// Takes the attribute's keywords (`args.take(&KEY)`, ...); the order taken is the order
    /// messages list them in, before `crate` and `runtime`. The first is shown as the example
    /// when the arguments are not `name = value` pairs.
    fn keywords(args: &mut ArgParser) -> Self::Args;

    /// Checks the arguments against the function, recording every error in `diag`. Returns
    /// `None` only after recording an error.
    fn validate(args: Self::Args, site: &Site, func: &Func, diag: &mut Diag)
    -> Option<Self::Model>;

    /// The function with its new body (and, for a registering attribute, its registration).
    fn expand(model: Self::Model, site: &Site, func: &Func) -> TokenStream;
}

/// What validation and expansion share about the call site.
pub(crate) struct Site {
    /// The attribute's name, for messages.
    pub(crate) attr: &'static str,
    /// The facade's path and the `Option<&RedisX>` expression.
    pub(crate) paths: Paths,
    /// Every argument was understood (no syntax error, no unknown name).
    complete: bool,
}

impl Site {
    /// Records "`#[attr]` needs {what}, e.g. `#[attr(example)]`" when `present` is false,
    /// unless an argument was not understood: the user most likely misspelled the one that is
    /// missing, and one mistake should give one message.
    pub(crate) fn require(&self, diag: &mut Diag, present: bool, what: &str, example: &str) {
        if !present && self.complete {
            diag.push(args::missing(self.attr, what, example));
        }
    }

    /// The value of a required keyword; when it was not given, records (as
    /// [`Site::require`]) that `#[attr]` needs `what`, e.g. "the `key` to write".
    pub(crate) fn required<T>(&self, diag: &mut Diag, arg: Arg<T>, what: &str) -> Option<T> {
        self.require(diag, arg.is_given(), what, arg.kw().example);
        arg.into_value()
    }
}

/// The entry point of attribute `A`: its expansion, or the function as written plus every
/// error.
pub(crate) fn run<A: Attribute>(args: TokenStream, item: TokenStream) -> TokenStream {
    diag::or_item_with_errors(item.clone(), build::<A>(args, item))
}

/// The expansion of attribute `A`, or every error found.
pub(crate) fn build<A: Attribute>(
    args: TokenStream,
    item: TokenStream,
) -> syn::Result<TokenStream> {
    let mut diag = Diag::default();
    let mut parser = ArgParser::new(args);
    let own = A::keywords(&mut parser);
    let common = Common::take(&mut parser, A::RUNTIME);
    let complete = parser.finish(&mut diag);
    let func = match func::parse(item, A::NAME) {
        Ok(func) => func,
        Err(error) => return Err(diag.fail(error)),
    };
    func.require_async(A::NAME, &mut diag);
    let site = Site {
        attr: A::NAME,
        paths: common.build(),
        complete,
    };
    let model = A::validate(own, &site, &func, &mut diag);
    diag.finish()?;
    let Some(model) = model else {
        // Unreachable: `validate` returns `None` only after recording an error.
        return Err(syn::Error::new(
            Span::call_site(),
            format!("`#[{}]` could not be expanded", A::NAME),
        ));
    };
    Ok(A::expand(model, &site, &func))
}

/// The expansion of `A` as text, or its error messages (for the attributes' tests).
#[cfg(test)]
pub(crate) fn expand_text<A: Attribute>(
    args: TokenStream,
    item: TokenStream,
) -> Result<String, Vec<String>> {
    build::<A>(args, item)
        .map(|tokens| tokens.to_string())
        .map_err(|error| diag::messages::<()>(Err(error)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{KEY, TTL, read::Duration};
    use quote::quote;
    use syn::LitStr;

    /// An attribute shaped like the next ones: a required `key`, an optional `ttl`.
    struct Probe;

    impl Attribute for Probe {
        const NAME: &'static str = "probe";
        type Args = (Arg<LitStr>, Arg<Duration>);
        type Model = (LitStr, Option<u64>);

        fn keywords(args: &mut ArgParser) -> Self::Args {
            (args.take(&KEY), args.take(&TTL))
        }

        fn validate(
            (key, ttl): Self::Args,
            site: &Site,
            _: &Func,
            diag: &mut Diag,
        ) -> Option<Self::Model> {
            let key = site.required(diag, key, "`key`");
            Some((key?, ttl.into_value().map(|d| d.ms)))
        }

        fn expand((key, ttl): Self::Model, site: &Site, func: &Func) -> TokenStream {
            let krate = &site.paths.krate;
            let ttl = ttl.unwrap_or_default();
            func.with_body(&quote!(#krate::probe(#key, #ttl)))
        }
    }

    fn messages(args: TokenStream, item: TokenStream) -> Vec<String> {
        expand_text::<Probe>(args, item).unwrap_err()
    }

    #[test]
    fn expands_after_validation() {
        let out = build::<Probe>(
            quote!(key = "k", ttl = "1s", crate = "rx"),
            quote!(
                async fn f() {}
            ),
        )
        .unwrap();
        assert_eq!(
            out.to_string(),
            quote!(
                async fn f() {
                    rx::probe("k", 1000u64)
                }
            )
            .to_string()
        );
    }

    #[test]
    fn reports_every_error_in_order() {
        assert_eq!(
            messages(
                quote!(ttl = "x"),
                quote!(
                    fn f() {}
                )
            ),
            [
                "invalid duration `x`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. `\"30s\"`",
                "`#[probe]` requires an `async fn`",
                r#"`#[probe]` needs `key`, e.g. `#[probe(key = "user:{id}")]`"#,
            ]
        );
        // A misspelled argument is not also reported as missing.
        assert_eq!(
            messages(
                quote!(kye = "k"),
                quote!(
                    async fn f() {}
                )
            ),
            ["unknown argument `kye`; expected one of `key`, `ttl`, `crate`, `runtime`"]
        );
        assert_eq!(
            messages(
                quote!(kye = "k"),
                quote!(
                    struct S;
                )
            ),
            [
                "unknown argument `kye`; expected one of `key`, `ttl`, `crate`, `runtime`",
                "`#[probe]` can only be applied to an `async fn` with a body",
            ]
        );
    }

    #[test]
    fn emits_the_item_with_the_errors() {
        let item = quote!(
            async fn f(id: u64) -> u64 {
                id
            }
        );
        let out = run::<Probe>(quote!(tll = "5m"), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()));
        assert!(out.contains("compile_error"));
    }
}
