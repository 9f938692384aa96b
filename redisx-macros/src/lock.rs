//! `#[with_lock]`: runs the body under a distributed lock; expands into a `LockSpec` static and
//! one `__private::with_lock(..)` call around the original body.

use crate::args::read::{self, Duration};
use crate::args::{Arg, ArgParser, KEY, Keyword, Kw, TTL, VARY_BY};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::emit::{self, SpecStatic};
use crate::func::Func;
use crate::key_template::{self, Template};
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, LitStr};

const WAIT: Keyword<Duration> = Keyword::new("wait", r#"wait = "5s""#, read::duration);
const RETRIES: Keyword<u64> = Keyword::new("retries", "retries = 3", retries);
const RETRY: Keyword<Retry> = Keyword::new("retry", r#"retry = "exponential""#, retry);
const RETRY_DELAY: Keyword<Duration> =
    Keyword::new("retry_delay", r#"retry_delay = "100ms""#, read::duration);
const RETRY_MAX: Keyword<Duration> =
    Keyword::new("retry_max", r#"retry_max = "3s""#, read::duration);
const AUTO_RENEW: Keyword<bool> = Keyword::new("auto_renew", "auto_renew = false", read::boolean);
const ON_LOST: Keyword<OnLost> = Keyword::new("on_lost", r#"on_lost = "continue""#, on_lost);
const ON_BUSY: Keyword<OnBusy> = Keyword::new("on_busy", r#"on_busy = "skip""#, on_busy);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    Fixed,
    Linear,
    Exponential,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnLost {
    Cancel,
    Continue,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OnBusy {
    Error,
    Skip,
}

fn retries(kw: Kw, expr: &Expr) -> syn::Result<u64> {
    read::integer(kw, expr, 0..=1000)
}

fn retry(kw: Kw, expr: &Expr) -> syn::Result<Retry> {
    read::choice(
        kw,
        "`retry` strategy",
        expr,
        &[
            ("fixed", Retry::Fixed),
            ("linear", Retry::Linear),
            ("exponential", Retry::Exponential),
        ],
        r#"`"fixed"`, `"linear"` or `"exponential"`"#,
    )
}

fn on_lost(kw: Kw, expr: &Expr) -> syn::Result<OnLost> {
    read::choice(
        kw,
        "`on_lost` value",
        expr,
        &[("cancel", OnLost::Cancel), ("continue", OnLost::Continue)],
        r#"`"cancel"` or `"continue"`"#,
    )
}

fn on_busy(kw: Kw, expr: &Expr) -> syn::Result<OnBusy> {
    read::choice(
        kw,
        "`on_busy` value",
        expr,
        &[("error", OnBusy::Error), ("skip", OnBusy::Skip)],
        r#"`"error"` or `"skip"`"#,
    )
}

pub(crate) struct WithLock;

pub(crate) struct Args {
    key: Arg<LitStr>,
    vary_by: Arg<Vec<LitStr>>,
    ttl: Arg<Duration>,
    wait: Arg<Duration>,
    retries: Arg<u64>,
    retry: Arg<Retry>,
    retry_delay: Arg<Duration>,
    retry_max: Arg<Duration>,
    auto_renew: Arg<bool>,
    on_lost: Arg<OnLost>,
    on_busy: Arg<OnBusy>,
}

/// How the body's call is run: `run`, `run_skip` (`Result<(), E>`) or `run_skip_option`.
#[derive(Clone, Copy)]
enum Run {
    Wait,
    Skip,
    SkipOption,
}

pub(crate) struct Model {
    key: Template,
    spec: SpecStatic,
    run: Run,
}

impl Attribute for WithLock {
    const NAME: &'static str = "with_lock";
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        Args {
            key: args.take(&KEY),
            ttl: args.take(&TTL),
            wait: args.take(&WAIT),
            retries: args.take(&RETRIES),
            retry: args.take(&RETRY),
            retry_delay: args.take(&RETRY_DELAY),
            retry_max: args.take(&RETRY_MAX),
            auto_renew: args.take(&AUTO_RENEW),
            on_lost: args.take(&ON_LOST),
            on_busy: args.take(&ON_BUSY),
            vary_by: args.take(&VARY_BY),
        }
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let params = func.params();
        let key = site.required(diag, args.key, "the `key` to lock");
        let key = key_template::resolve_arg(key, &params, diag);
        let result = func.require_result(Self::NAME, diag);
        let run = match (args.on_busy.get(), result) {
            (Some(OnBusy::Skip), Some(result)) if result.is_unit() => Run::Skip,
            (Some(OnBusy::Skip), Some(result)) if result.ok_option().is_some() => Run::SkipOption,
            (Some(OnBusy::Skip), Some(_)) => {
                diag.error(
                    func.value_span(),
                    r#"`on_busy = "skip"` needs a function returning `Result<(), E>` or `Result<Option<T>, E>`: a skipped call returns `Ok(())` or `Ok(None)`"#,
                );
                Run::Wait
            }
            _ => Run::Wait,
        };
        for given in [args.retry_delay.get(), args.retry_max.get()] {
            if let (Some(d), None) = (given, args.retry.get()) {
                diag.error(
                    d.span,
                    r#"`retry_delay` and `retry_max` shape a `retry` strategy: name it, e.g. `retry = "fixed", retry_delay = "50ms"`"#,
                );
            }
        }
        let krate = &site.paths.krate;
        let mut spec = SpecStatic::new(quote!(#krate::__private::LockSpec), &quote!());
        spec.set_ms("ttl_ms", args.ttl.get().map(|d| d.ms));
        spec.set_vary_by(args.vary_by.into_value());
        spec.set_ms("wait_ms", args.wait.get().map(|d| d.ms));
        spec.set_some(
            "retries",
            args.retries.get().map(|n| {
                proc_macro2::Literal::u32_unsuffixed(u32::try_from(*n).unwrap_or(u32::MAX))
            }),
        );
        spec.set_some(
            "retry",
            args.retry.get().map(|r| {
                let kind = match r {
                    Retry::Fixed => quote!(Fixed),
                    Retry::Linear => quote!(Linear),
                    Retry::Exponential => quote!(Exponential),
                };
                quote!(#krate::__private::RetryKind::#kind)
            }),
        );
        spec.set_ms("retry_delay_ms", args.retry_delay.get().map(|d| d.ms));
        spec.set_ms("retry_max_ms", args.retry_max.get().map(|d| d.ms));
        spec.set_some("auto_renew", args.auto_renew.get());
        if args.on_lost.get() == Some(&OnLost::Continue) {
            spec.set_unit("on_lost_continue");
        }
        Some(Model {
            key: key?,
            spec,
            run,
        })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let Model { key, spec, run } = model;
        let method = match run {
            Run::Wait => "run",
            Run::Skip => "run_skip",
            Run::SkipOption => "run_skip_option",
        };
        emit::fallible_call(func, site, &spec, "with_lock", &key, method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        driver::expand_text::<WithLock>(args, item)
    }

    #[test]
    fn expands_with_every_option() {
        let out = run(
            quote!(
                key = "order:{id}",
                ttl = "30s",
                wait = "5s",
                retries = 4,
                retry = "fixed",
                retry_delay = "50ms",
                retry_max = "1s",
                auto_renew = false,
                on_lost = "continue"
            ),
            quote!(
                async fn pay(id: u64) -> Result<u64, E> {
                    Ok(id)
                }
            ),
        )
        .unwrap();
        let spec = quote! {
            static __REDISX_SPEC: ::redisx::__private::LockSpec = ::redisx::__private::LockSpec::new()
                .ttl_ms(30000).wait_ms(5000).retries(4)
                .retry(::redisx::__private::RetryKind::Fixed)
                .retry_delay_ms(50).retry_max_ms(1000).auto_renew(false).on_lost_continue();
        };
        assert!(out.contains(&spec.to_string()), "{out}");
        assert!(
            out.contains(
                &quote!(::redisx::__private::with_lock(
                    &__REDISX_SPEC,
                    ::core::option::Option::None,
                    ::core::format_args!("order:{}", id)
                ))
                .to_string()
            ),
            "{out}"
        );
        assert!(out.contains("__redisx_call . run (async move"), "{out}");
    }

    #[test]
    fn skip_picks_the_shape_of_the_return_type() {
        let unit = run(
            quote!(key = "job", on_busy = "skip"),
            quote!(
                async fn job() -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        assert!(
            unit.contains("__redisx_call . run_skip (async move"),
            "{unit}"
        );
        let option = run(
            quote!(key = "job", on_busy = "skip"),
            quote!(
                async fn job() -> Result<Option<u8>, E> {
                    Ok(None)
                }
            ),
        )
        .unwrap();
        assert!(
            option.contains("__redisx_call . run_skip_option (async move"),
            "{option}"
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            run(
                quote!(ttl = "1s"),
                quote!(
                    async fn f() -> Result<(), E> {
                        Ok(())
                    }
                )
            )
            .unwrap_err(),
            [r#"`#[with_lock]` needs the `key` to lock, e.g. `#[with_lock(key = "user:{id}")]`"#]
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
                "`#[with_lock]` requires a function returning `Result<T, E>` with `E: From<redisx::Error>`"
            ]
        );
        assert_eq!(
            run(
                quote!(key = "k", on_busy = "skip"),
                quote!(
                    async fn f() -> Result<u8, E> {
                        Ok(1)
                    }
                )
            )
            .unwrap_err(),
            [
                r#"`on_busy = "skip"` needs a function returning `Result<(), E>` or `Result<Option<T>, E>`: a skipped call returns `Ok(())` or `Ok(None)`"#
            ]
        );
        assert_eq!(
            run(
                quote!(key = "k:{nope}", on_lost = "panic", retry = "random"),
                quote!(
                    async fn f(id: u64) -> Result<(), E> {
                        Ok(())
                    }
                )
            )
            .unwrap_err()
            .len(),
            3
        );
    }
}
