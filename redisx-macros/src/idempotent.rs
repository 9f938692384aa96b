//! `#[idempotent]`: runs the body once per idempotency key and replays its recorded result to
//! repeated calls; expands into an `IdempotentSpec` static and one `__private::idempotent(..)`
//! call, given the key and the call's fingerprint, around the original body.

use crate::args::read::{self, Duration};
use crate::args::{Arg, ArgParser, KEY, Keyword, TTL, VARY_BY};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::emit::{self, SpecStatic};
use crate::func::Func;
use crate::key_template::{self, Template};
use crate::names::FP;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, LitStr, Pat};

const LOCK_TTL: Keyword<Duration> = Keyword::new("lock_ttl", r#"lock_ttl = "30s""#, read::duration);
const WAIT: Keyword<Duration> = Keyword::new("wait", r#"wait = "60s""#, read::duration);
const FINGERPRINT: Keyword<Vec<Ident>> =
    Keyword::new("fingerprint", "fingerprint = [req]", read::param_list);
const RECORD_ERRORS: Keyword<bool> =
    Keyword::new("record_errors", "record_errors = true", read::boolean);

pub(crate) struct Idempotent;

pub(crate) struct Args {
    key: Arg<LitStr>,
    vary_by: Arg<Vec<LitStr>>,
    ttl: Arg<Duration>,
    lock_ttl: Arg<Duration>,
    wait: Arg<Duration>,
    fingerprint: Arg<Vec<Ident>>,
    record_errors: Arg<bool>,
}

pub(crate) struct Model {
    key: Template,
    spec: SpecStatic,
    /// The fingerprinted parameters, in order: each the parameter's own name, located where a
    /// message about its argument should point.
    fingerprint: Vec<Ident>,
    record_errors: bool,
}

impl Attribute for Idempotent {
    const NAME: &'static str = "idempotent";
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        Args {
            key: args.take(&KEY),
            ttl: args.take(&TTL),
            lock_ttl: args.take(&LOCK_TTL),
            wait: args.take(&WAIT),
            fingerprint: args.take(&FINGERPRINT),
            record_errors: args.take(&RECORD_ERRORS),
            vary_by: args.take(&VARY_BY),
        }
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let params = func.params();
        let key = site.required(diag, args.key, "the `key` that identifies a request");
        let key = key_template::resolve_arg(key, &params, diag);
        func.require_result(Self::NAME, diag);
        let fingerprint = fingerprint(args.fingerprint.into_value(), func, diag);
        let krate = &site.paths.krate;
        let mut spec = SpecStatic::new(quote!(#krate::__private::IdempotentSpec), &quote!());
        spec.set_ms("ttl_ms", args.ttl.get().map(|d| d.ms));
        spec.set_vary_by(args.vary_by.into_value());
        spec.set_ms("lock_ttl_ms", args.lock_ttl.get().map(|d| d.ms));
        spec.set_ms("wait_ms", args.wait.get().map(|d| d.ms));
        Some(Model {
            key: key?,
            spec,
            fingerprint,
            record_errors: args.record_errors.get() == Some(&true),
        })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let Model {
            key,
            spec,
            fingerprint,
            record_errors,
        } = model;
        let fingerprint = fingerprint_value(&site.paths.krate, &fingerprint);
        // Every unmet bound of the run is reported at one type (see `fallible_call_with`):
        // the one whose bound is this attribute's own, so that its likeliest mistake points
        // at the right token. `From<redisx::Error>` every fallible attribute needs; a value
        // that cannot be recorded (or, with `record_errors`, an error) is new here. A `()`
        // value is always recorded, so then it is the error type.
        let unit = func.result().is_some_and(|result| result.is_unit());
        let at = func
            .error_type()
            .filter(|_| record_errors || unit)
            .map_or_else(|| func.value_span(), Spanned::span);
        let method = if record_errors {
            "run_recording_errors"
        } else {
            "run"
        };
        let args = quote!(#key, #fingerprint);
        emit::fallible_call_with(func, site, &spec, "idempotent", &args, method, at)
    }
}

/// The parameters declared with a plain name (`req: Request`, `mut n: u8`), in order; the
/// receiver and destructuring patterns (`(a, b): (u8, u8)`, `_: u8`) are not among them.
fn plain_params(func: &Func) -> Vec<&Ident> {
    func.sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.subpat.is_none() => Some(&pat.ident),
                _ => None,
            },
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// The parameters a call is fingerprinted by: those of `fingerprint = [..]` when given (each
/// checked: a parameter of the function, declared with a plain name, listed once, not
/// `self`), else every parameter declared with a plain name. Each is the parameter's own
/// ident, located at the name in the list when the user wrote one there.
fn fingerprint(list: Option<Vec<Ident>>, func: &Func, diag: &mut Diag) -> Vec<Ident> {
    let plain = plain_params(func);
    let Some(list) = list else {
        return plain.into_iter().cloned().collect();
    };
    let (receiver, list): (Vec<Ident>, Vec<Ident>) =
        list.into_iter().partition(|name| name == "self");
    for name in receiver {
        diag.error(
            name.span(),
            "`fingerprint` lists the arguments that identify a request, and `self` is not one: name parameters, e.g. `fingerprint = [req]`",
        );
    }
    let mut kept: Vec<Ident> = Vec::new();
    for name in func.params().check_names(FINGERPRINT.kw.name, list, diag) {
        let unraw = name.unraw();
        let Some(param) = plain.iter().find(|param| param.unraw() == unraw) else {
            diag.error(
                name.span(),
                format!(
                    "`{unraw}` is bound inside a destructuring pattern; `fingerprint` names whole arguments: give this argument a plain name (e.g. `req: Request`) to fingerprint it"
                ),
            );
            continue;
        };
        if kept.iter().any(|kept| kept.unraw() == unraw) {
            diag.error(
                name.span(),
                format!("`{unraw}` is listed twice in `fingerprint`"),
            );
            continue;
        }
        let mut param = (*param).clone();
        param.set_span(param.span().located_at(name.span()));
        kept.push(param);
    }
    kept
}

/// The call's `Fingerprint`: one `fingerprint_arg(&mut fp, "name", &name)` per parameter,
/// located at the parameter's name (mixed-site, as the expansion's own code), so an argument
/// that cannot be fingerprinted is reported there.
fn fingerprint_value(krate: &TokenStream, params: &[Ident]) -> TokenStream {
    let new = quote!(#krate::__private::Fingerprint::new());
    if params.is_empty() {
        return new;
    }
    let args = params.iter().map(|param| {
        let span = Span::mixed_site().located_at(param.span());
        let fp = FP.at(span);
        let name = LitStr::new(&param.unraw().to_string(), span);
        quote_spanned!(span=> #krate::__private::fingerprint_arg(&mut #fp, #name, &#param);)
    });
    let fp = FP.at(Span::call_site());
    quote!({
        let mut #fp = #new;
        #(#args)*
        #fp
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;
    use crate::func::expected_future;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        driver::expand_text::<Idempotent>(args, item)
    }

    fn charge() -> TokenStream {
        quote!(
            async fn charge(req: Req, n: u8) -> Result<u8, E> {
                Ok(n)
            }
        )
    }

    /// The `Fingerprint` expression built from `args` (`"name", &name` each).
    fn fp(args: &[&str]) -> TokenStream {
        if args.is_empty() {
            return quote!(::redisx::__private::Fingerprint::new());
        }
        let args = args.iter().map(|a| {
            let ident: Ident = syn::parse_str(a).unwrap();
            let name = ident.unraw().to_string();
            quote!(::redisx::__private::fingerprint_arg(&mut __redisx_fp, #name, &#ident);)
        });
        quote!({
            let mut __redisx_fp = ::redisx::__private::Fingerprint::new();
            #(#args)*
            __redisx_fp
        })
    }

    #[test]
    fn expands_with_every_option() {
        let out = run(
            quote!(
                key = "payment:{req.idempotency_key}",
                ttl = "24h",
                lock_ttl = "30s",
                wait = "60s",
                fingerprint = [req],
                record_errors = true
            ),
            charge(),
        )
        .unwrap();
        let fp = fp(&["req"]);
        let future = expected_future(&quote!(Result<u8, E>), &quote!(Ok(n)));
        let expected = quote! {
            async fn charge(req: Req, n: u8) -> Result<u8, E> {
                static __REDISX_SPEC: ::redisx::__private::IdempotentSpec =
                    ::redisx::__private::IdempotentSpec::new()
                        .ttl_ms(86400000).lock_ttl_ms(30000).wait_ms(60000);
                let __redisx_call = ::redisx::__private::idempotent(
                    &__REDISX_SPEC,
                    ::core::option::Option::None,
                    ::core::format_args!("payment:{}", req.idempotency_key),
                    #fp
                );
                __redisx_call.run_recording_errors(#future).await
            }
        };
        assert_eq!(out, expected.to_string());
    }

    #[test]
    fn fingerprints_every_plain_parameter_by_default() {
        let out = run(
            quote!(key = "k"),
            quote!(
                async fn f(
                    &self,
                    a: u8,
                    mut r#type: u8,
                    (c, d): (u8, u8),
                    _: u8,
                    __redisx_fp: u8,
                ) -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        let expected = fp(&["a", "r#type", "__redisx_fp"]).to_string();
        assert!(out.contains(&expected), "{out}");
        assert!(out.contains("__redisx_call . run (async move"), "{out}");
        assert!(!out.contains("IdempotentSpec :: new () ."), "{out}");
    }

    #[test]
    fn fingerprints_the_listed_parameters() {
        let listed = |list: TokenStream| run(quote!(key = "k", fingerprint = #list), charge());
        assert!(
            listed(quote!([n, req]))
                .unwrap()
                .contains(&fp(&["n", "req"]).to_string())
        );
        let none = listed(quote!([])).unwrap();
        assert!(
            none.contains(&format!(r#"format_args ! ("k") , {})"#, fp(&[]))),
            "{none}"
        );
        assert!(!none.contains("__redisx_fp"), "{none}");
    }

    #[test]
    fn fingerprint_errors() {
        let err = run(
            quote!(key = "k", fingerprint = [self, reqq, a, b, b]),
            quote!(
                async fn f(&self, (a, _): (u8, u8), b: u8) -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .unwrap_err();
        assert_eq!(
            err,
            [
                "`fingerprint` lists the arguments that identify a request, and `self` is not one: name parameters, e.g. `fingerprint = [req]`",
                "unknown parameter `reqq` in `fingerprint`; the function's parameters are `self`, `a`, `b`",
                "`a` is bound inside a destructuring pattern; `fingerprint` names whole arguments: give this argument a plain name (e.g. `req: Request`) to fingerprint it",
                "`b` is listed twice in `fingerprint`",
            ]
        );
        assert_eq!(
            run(quote!(key = "k", fingerprint = req), charge()).unwrap_err(),
            ["`fingerprint` must be an array of parameter names, e.g. `fingerprint = [req]`"]
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            run(quote!(ttl = "1h"), charge()).unwrap_err(),
            [
                r#"`#[idempotent]` needs the `key` that identifies a request, e.g. `#[idempotent(key = "user:{id}")]`"#
            ]
        );
        assert_eq!(
            run(
                quote!(
                    key = "k:{nope}",
                    wait = "0s",
                    lock_ttl = "soon",
                    record_errors = "yes",
                    replay = true
                ),
                charge()
            )
            .unwrap_err(),
            [
                "`wait` must be greater than zero",
                "invalid duration `soon`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. `\"30s\"`",
                "`record_errors` must be `true` or `false`, e.g. `record_errors = true`",
                "unknown argument `replay`; expected one of `key`, `ttl`, `lock_ttl`, `wait`, `fingerprint`, `record_errors`, `vary_by`, `crate`, `runtime`",
                "unknown parameter `nope` in key template; the function's parameters are `req`, `n`",
            ]
        );
    }
}
