//! `#[cached]`: its own keywords (`l1_ttl`, `swr`, `stale_if_error`, `mode`, `unless`,
//! `condition`), its validation, and its expansion into one `__private::cached(..)` call
//! around the original body.

use super::{CODEC, Codec, TAGS, cached_spec, run_call};
use crate::args::read::{self, Duration};
use crate::args::{Arg, ArgParser, KEY, Keyword, Kw, Paths, TTL, VARY_BY};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::emit::SpecStatic;
use crate::func::Func;
use crate::key_template::{self, Template};
use crate::names::{self, CALL, ENABLED, VALUE};
use crate::params::Params;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Expr, ExprClosure, ExprPath, Ident, LitStr};

const L1_TTL: Keyword<Duration> = Keyword::new("l1_ttl", r#"l1_ttl = "30s""#, read::duration);
const SWR: Keyword<Duration> = Keyword::new("swr", r#"swr = "30s""#, read::duration);
const STALE_IF_ERROR: Keyword<Duration> =
    Keyword::new("stale_if_error", r#"stale_if_error = "1h""#, read::duration);
const MODE: Keyword<Mode> = Keyword::new("mode", r#"mode = "l1_only""#, mode);
const UNLESS: Keyword<Callable> =
    Keyword::new("unless", "unless = |value| value.is_empty()", callable);
const CONDITION: Keyword<Callable> =
    Keyword::new("condition", "condition = |id| *id != 0", callable);

/// `#[cached]`.
pub(crate) struct Cached;

/// Where a cached value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    L1L2,
    L1Only,
    L2Only,
}

fn mode(kw: Kw, expr: &Expr) -> syn::Result<Mode> {
    read::choice(
        kw,
        kw.name,
        expr,
        &[
            ("l1_l2", Mode::L1L2),
            ("l1_only", Mode::L1Only),
            ("l2_only", Mode::L2Only),
            ("L1L2", Mode::L1L2),
            ("L1Only", Mode::L1Only),
            ("L2Only", Mode::L2Only),
        ],
        r#"one of `"l1_l2"`, `"l1_only"` or `"l2_only"`"#,
    )
}

impl Mode {
    fn tokens(self, krate: &TokenStream) -> TokenStream {
        match self {
            Mode::L1L2 => quote!(#krate::__private::CacheMode::L1L2),
            Mode::L1Only => quote!(#krate::__private::CacheMode::L1Only),
            Mode::L2Only => quote!(#krate::__private::CacheMode::L2Only),
        }
    }
}

/// A function path or a closure, for `unless` and `condition`.
#[derive(Clone)]
enum Callable {
    Path(ExprPath),
    Closure(ExprClosure),
}

/// `f`, `Self::f`, `|value| ...`.
fn callable(kw: Kw, expr: &Expr) -> syn::Result<Callable> {
    match read::ungroup(expr) {
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
    fn span(&self) -> Span {
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

/// The arguments as written: each given at most once, each value of the right shape.
pub(crate) struct Args {
    key: Arg<LitStr>,
    vary_by: Arg<Vec<LitStr>>,
    ttl: Arg<Duration>,
    l1_ttl: Arg<Duration>,
    tags: Arg<Vec<LitStr>>,
    swr: Arg<Duration>,
    stale_if_error: Arg<Duration>,
    mode: Arg<Mode>,
    unless: Arg<Callable>,
    condition: Arg<Callable>,
    codec: Arg<Codec>,
}

/// The validated call site.
pub(crate) struct Model {
    spec: SpecStatic,
    swr: bool,
    params: Params,
    /// `None`: the runtime derives the key from the function's path and its arguments.
    key: Option<Template>,
    tags: Vec<Template>,
    unless: Option<Callable>,
    condition: Option<Callable>,
}

impl Attribute for Cached {
    const NAME: &'static str = "cached";
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        Args {
            key: args.take(&KEY),
            ttl: args.take(&TTL),
            l1_ttl: args.take(&L1_TTL),
            tags: args.take(&TAGS),
            swr: args.take(&SWR),
            stale_if_error: args.take(&STALE_IF_ERROR),
            mode: args.take(&MODE),
            unless: args.take(&UNLESS),
            condition: args.take(&CONDITION),
            codec: args.take(&CODEC),
            vary_by: args.take(&VARY_BY),
        }
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let params = func.params();
        // A contradiction within one call site (not a policy, which is the runtime's).
        if let (Some(l1_ttl), Some(ttl)) = (args.l1_ttl.get(), args.ttl.get())
            && l1_ttl.ms > ttl.ms
        {
            diag.error(
                l1_ttl.span,
                format!(
                    "`l1_ttl` of {} exceeds `ttl` of {}; an L1 entry must not outlive its L2 entry",
                    l1_ttl.text, ttl.text
                ),
            );
        }
        let swr = args.swr.get().is_some();
        if swr {
            borrowed_args_with_swr(func, diag);
        }
        let krate = &site.paths.krate;
        let ms = |arg: &Arg<Duration>| arg.get().map(|d| d.ms);
        let mut spec = cached_spec(krate, func, &args.ttl, &args.codec);
        spec.set_ms("l1_ttl_ms", ms(&args.l1_ttl));
        spec.set_vary_by(args.vary_by.into_value());
        spec.set_ms("swr_ms", ms(&args.swr));
        spec.set_ms("stale_if_error_ms", ms(&args.stale_if_error));
        spec.set_some("mode", args.mode.get().map(|mode| mode.tokens(krate)));
        let key = key_template::resolve_arg(args.key.into_value(), &params, diag);
        let tags = key_template::resolve_all(args.tags.into_value(), &params, diag);
        Some(Model {
            spec,
            swr,
            params,
            key,
            tags,
            unless: args.unless.into_value(),
            condition: args.condition.into_value(),
        })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let Paths { krate, runtime } = &site.paths;
        let mut body = model.spec.to_token_stream();
        let enabled = match &model.condition {
            None => quote!(true),
            Some(condition) => {
                let value = condition_call(condition, &model.params);
                body.extend(quote!(let #ENABLED: bool = #value;));
                ENABLED.to_token_stream()
            }
        };
        let key = key(&model, func, krate);
        let tags = &model.tags;
        let spec = SpecStatic::reference();
        let erasure = erasure(func, krate);
        body.extend(quote! {
            let #CALL = #krate::__private::cached::<_>(
                #spec, #runtime, #enabled, #key, &[#(#tags),*], #erasure);
        });
        let future = func.body_future();
        let unless = unless_arg(model.unless.as_ref(), krate);
        let args = if func.result().is_some() {
            let errors = error_sharing(func, krate);
            quote!(#future, #unless, #errors)
        } else {
            quote!(#future, #unless)
        };
        body.extend(run_call(func, model.swr, &args));
        func.with_body(&body)
    }
}

/// With `swr` the body may run in the background after the caller got its stale value, so it
/// cannot borrow from the caller: a borrowed receiver or a reference parameter is an error at
/// that token (instead of a lifetime error deep inside the expansion).
fn borrowed_args_with_swr(func: &Func, diag: &mut Diag) {
    for input in &func.sig.inputs {
        match input {
            syn::FnArg::Receiver(r) if r.reference.is_some() => {
                diag.error(
                    r.span(),
                    "`swr` refreshes in the background, so the function cannot borrow `self`; take `self` by value (e.g. a cheap `Clone` handle) or drop `swr`",
                );
            }
            syn::FnArg::Typed(pat) if matches!(*pat.ty, syn::Type::Reference(_)) => {
                diag.error(
                    pat.ty.span(),
                    "`swr` refreshes in the background, so the function's parameters must be owned; take this argument by value or drop `swr`",
                );
            }
            _ => {}
        }
    }
}

/// The `CallKey`: the rendered template, or the automatic key the runtime builds from the
/// spec's module path and name, the `Self` type of a method (the receiver is not hashed) and
/// the serialized arguments (arguments that cannot be serialized make the call run uncached).
/// The arguments' tuple is spanned to the parameter list, so an argument that is not
/// `Serialize` is reported at the parameters rather than at the attribute.
fn key(model: &Model, func: &Func, krate: &TokenStream) -> TokenStream {
    if let Some(template) = &model.key {
        return quote!(#krate::__private::template_key(#template));
    }
    let names = &model.params.names;
    let self_type = if model.params.receiver {
        quote!(::core::option::Option::Some(
            ::core::any::type_name::<Self>()
        ))
    } else {
        quote!(::core::option::Option::None)
    };
    let args = quote_spanned!(func.sig.paren_token.span.join()=> &(#(&#names,)*));
    quote!(#krate::__private::auto_key(#self_type, #args))
}

/// A choice the runtime makes by autoref specialization on a type: `(&&Probe::<T>::new())
/// .method()` with the probe's two traits in scope picks the impl on `&Probe<T>` when it
/// applies, else the one on `Probe<T>`.
struct Probe {
    ty: &'static str,
    traits: [&'static str; 2],
    method: &'static str,
}

/// The L1 storage of the value type (an `Arc<U>` is stored as the `Arc` itself).
const ERASURE: Probe = Probe {
    ty: "ErasureProbe",
    traits: ["ProbeAny", "ProbeArc"],
    method: "erasure",
};

/// How a failed load is shared with the callers waiting on it (a `Clone` error is shared).
const ERRORS: Probe = Probe {
    ty: "ErrorProbe",
    traits: ["ShareClone", "ShareKnown"],
    method: "sharing",
};

impl Probe {
    /// The probe of `ty`; its method is spanned to `span` (the type, for messages).
    fn call(&self, krate: &TokenStream, ty: &dyn ToTokens, span: Span) -> TokenStream {
        let probe = Ident::new(self.ty, Span::call_site());
        let [first, second] = self.traits.map(|name| Ident::new(name, Span::call_site()));
        let method = Ident::new(self.method, span);
        quote! {
            {
                #[allow(unused_imports)]
                use #krate::__private::{#first as _, #second as _};
                (&&#krate::__private::#probe::<#ty>::new()).#method()
            }
        }
    }
}

/// The erasure argument; a value type that cannot be named gets the general form.
fn erasure(func: &Func, krate: &TokenStream) -> TokenStream {
    if let Some(value) = func.value_type() {
        ERASURE.call(krate, &value, func.value_span())
    } else {
        quote!(#krate::__private::Erasure::boxed())
    }
}

/// The error-sharing argument; an `E` that cannot be named (`io::Result<T>`, an alias,
/// `impl Trait`) gets the form for the runtime's known error types.
fn error_sharing(func: &Func, krate: &TokenStream) -> TokenStream {
    if let Some(error) = func.error_type() {
        ERRORS.call(krate, error, error.span())
    } else {
        quote!(#krate::__private::ErrorSharing::known())
    }
}

/// `(f)(&a, &b)` for a path (argument coercions apply); for a closure, a call through a local
/// generic fn so the closure's parameter types are inferred from the arguments (an immediately
/// called closure gets no such help and would need every type written out).
fn condition_call(condition: &Callable, params: &Params) -> TokenStream {
    let names = &params.names;
    let span = condition.span();
    match condition {
        Callable::Path(path) => quote_spanned!(span=> (#path)(#(&#names),*)),
        Callable::Closure(closure) => {
            let helper = Ident::new(names::CONDITION_FN, span);
            let tys: Vec<Ident> = (0..names.len())
                .map(|i| format_ident!("{}{i}", names::CONDITION_TYPE))
                .collect();
            let vals: Vec<Ident> = (0..names.len())
                .map(|i| format_ident!("{}{i}", names::CONDITION_ARG))
                .collect();
            quote_spanned! {span=>
                {
                    fn #helper<#(#tys: ?::core::marker::Sized,)* __F: ::core::ops::FnOnce(#(&#tys),*) -> bool>(
                        f: __F, #(#vals: &#tys),*
                    ) -> bool {
                        f(#(#vals),*)
                    }
                    #helper(#closure, #(&#names),*)
                }
            }
        }
    }
}

/// The `unless` argument of the `run*` methods.
fn unless_arg(unless: Option<&Callable>, krate: &TokenStream) -> TokenStream {
    match unless {
        None => quote!(#krate::__private::never),
        Some(Callable::Closure(closure)) => closure.to_token_stream(),
        // Mixed-site, located at the path: a type error still points at the user's path, but
        // the closure is the expansion's own, so clippy's `redundant_closure` lints (which
        // skip expansions) do not flag a wrapper the user never wrote.
        Some(Callable::Path(path)) => {
            let span = Span::mixed_site().located_at(path.span());
            quote_spanned!(span=> |#VALUE| (#path)(#VALUE))
        }
    }
}

#[cfg(test)]
mod tests;
