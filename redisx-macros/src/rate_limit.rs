//! `#[rate_limit]`: runs the body only when a rate limit admits the call; expands into a
//! `RateLimitSpec` static and one `__private::rate_limit(..)` call around the original body.

use crate::args::read::{self, Duration};
use crate::args::{Arg, ArgParser, KEY, Keyword, Kw, VARY_BY};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::emit::{self, SpecStatic};
use crate::func::Func;
use crate::key_template::{self, Template};
use proc_macro2::{Literal, TokenStream};
use quote::quote;
use syn::{Expr, LitStr};

const LIMIT: Keyword<u64> = Keyword::new("limit", "limit = 5", limit);
const WINDOW: Keyword<Duration> = Keyword::new("window", r#"window = "1m""#, read::duration);
const ALGORITHM: Keyword<Algorithm> =
    Keyword::new("algorithm", r#"algorithm = "sliding_window""#, algorithm);
const COST: Keyword<u64> = Keyword::new("cost", "cost = 1", limit);
const POLICY: Keyword<LitStr> = Keyword::new("policy", r#"policy = "login""#, read::lit_str);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algorithm {
    FixedWindow,
    SlidingWindow,
    SlidingCounter,
    TokenBucket,
    Gcra,
}

fn limit(kw: Kw, expr: &Expr) -> syn::Result<u64> {
    read::integer(kw, expr, 1..=u64::from(u32::MAX))
}

fn algorithm(kw: Kw, expr: &Expr) -> syn::Result<Algorithm> {
    read::choice(
        kw,
        "rate limit `algorithm`",
        expr,
        &[
            ("fixed_window", Algorithm::FixedWindow),
            ("sliding_window", Algorithm::SlidingWindow),
            ("sliding_counter", Algorithm::SlidingCounter),
            ("token_bucket", Algorithm::TokenBucket),
            ("gcra", Algorithm::Gcra),
        ],
        r#"`"fixed_window"`, `"sliding_window"`, `"sliding_counter"`, `"token_bucket"` or `"gcra"`"#,
    )
}

pub(crate) struct RateLimit;

pub(crate) struct Args {
    key: Arg<LitStr>,
    vary_by: Arg<Vec<LitStr>>,
    limit: Arg<u64>,
    window: Arg<Duration>,
    algorithm: Arg<Algorithm>,
    cost: Arg<u64>,
    policy: Arg<LitStr>,
}

pub(crate) struct Model {
    key: Template,
    spec: SpecStatic,
}

impl Attribute for RateLimit {
    const NAME: &'static str = "rate_limit";
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        Args {
            key: args.take(&KEY),
            limit: args.take(&LIMIT),
            window: args.take(&WINDOW),
            algorithm: args.take(&ALGORITHM),
            cost: args.take(&COST),
            policy: args.take(&POLICY),
            vary_by: args.take(&VARY_BY),
        }
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let params = func.params();
        let key = site.required(diag, args.key, "the `key` to count under");
        let key = key_template::resolve_arg(key, &params, diag);
        func.require_result(Self::NAME, diag);
        if let Some(policy) = args.policy.get() {
            if policy.value().is_empty() {
                diag.error(policy.span(), "the `policy` name is empty");
            }
            for (given, what) in [
                (args.limit.is_given(), "limit"),
                (args.window.is_given(), "window"),
                (args.algorithm.is_given(), "algorithm"),
            ] {
                if given {
                    diag.error(
                        policy.span(),
                        format!(
                            "a `policy` names its own limits: remove `{what}` (or the policy, and give `limit`, `window` and `algorithm` here)"
                        ),
                    );
                }
            }
        }
        let krate = &site.paths.krate;
        let mut spec = SpecStatic::new(quote!(#krate::__private::RateLimitSpec), &quote!());
        spec.set_some("policy", args.policy.get().cloned());
        spec.set_vary_by(args.vary_by.into_value());
        spec.set_some(
            "algorithm",
            args.algorithm.get().map(|a| {
                let variant = match a {
                    Algorithm::FixedWindow => quote!(FixedWindow),
                    Algorithm::SlidingWindow => quote!(SlidingWindow),
                    Algorithm::SlidingCounter => quote!(SlidingCounter),
                    Algorithm::TokenBucket => quote!(TokenBucket),
                    Algorithm::Gcra => quote!(Gcra),
                };
                quote!(#krate::__private::RateLimitAlgorithm::#variant)
            }),
        );
        spec.set_some(
            "limit",
            args.limit.get().map(|n| Literal::u64_unsuffixed(*n)),
        );
        spec.set_ms("window_ms", args.window.get().map(|d| d.ms));
        spec.set_some("cost", args.cost.get().map(|n| Literal::u64_unsuffixed(*n)));
        Some(Model { key: key?, spec })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let Model { key, spec } = model;
        emit::fallible_call(func, site, &spec, "rate_limit", &key, "run")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        driver::expand_text::<RateLimit>(args, item)
    }

    #[test]
    fn expands_with_every_option() {
        let out = run(
            quote!(
                key = "login:{ip}",
                limit = 5,
                window = "1m",
                algorithm = "gcra",
                cost = 2
            ),
            quote!(
                async fn login(ip: String) -> Result<u8, E> {
                    Ok(1)
                }
            ),
        )
        .unwrap();
        let spec = quote! {
            static __REDISX_SPEC: ::redisx::__private::RateLimitSpec = ::redisx::__private::RateLimitSpec::new()
                .algorithm(::redisx::__private::RateLimitAlgorithm::Gcra)
                .limit(5).window_ms(60000).cost(2);
        };
        assert!(out.contains(&spec.to_string()), "{out}");
        assert!(
            out.contains(
                &quote!(::redisx::__private::rate_limit(
                    &__REDISX_SPEC,
                    ::core::option::Option::None,
                    ::core::format_args!("login:{}", ip)
                ))
                .to_string()
            ),
            "{out}"
        );
        assert!(out.contains("__redisx_call . run (async move"), "{out}");
    }

    #[test]
    fn a_policy_names_its_own_limits() {
        let out = run(
            quote!(key = "k", policy = "login"),
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        assert!(out.contains(r#". policy ("login")"#), "{out}");
        let err = run(
            quote!(key = "k", policy = "login", limit = 3),
            quote!(
                async fn f() -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                "a `policy` names its own limits: remove `limit` (or the policy, and give `limit`, `window` and `algorithm` here)"
            ]
        );
    }

    #[test]
    fn errors() {
        let f = quote!(
            async fn f() -> Result<(), E> {
                Ok(())
            }
        );
        assert_eq!(
            run(quote!(limit = 3), f.clone()).unwrap_err(),
            [
                r#"`#[rate_limit]` needs the `key` to count under, e.g. `#[rate_limit(key = "user:{id}")]`"#
            ]
        );
        assert_eq!(
            run(quote!(key = "k", limit = 0), f.clone())
                .unwrap_err()
                .len(),
            1
        );
        assert_eq!(
            run(quote!(key = "k", algorithm = "leaky"), f.clone())
                .unwrap_err()
                .len(),
            1
        );
        assert_eq!(
            run(
                quote!(key = "k"),
                quote!(
                    async fn f() -> u8 {
                        1
                    }
                )
            )
            .unwrap_err(),
            [
                "`#[rate_limit]` requires a function returning `Result<T, E>` with `E: From<redisx::Error>`"
            ]
        );
    }
}
