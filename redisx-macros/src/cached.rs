//! `#[cached]`: parse the arguments ([`Args`]), validate them against the function
//! ([`Model`]), then [`expand`] into one `__private::cached(..)` call around the original body.

use crate::args::{
    self, CODEC, CONDITION, CRATE, Callable, Codec, Common, Duration, KEY, Kw, L1_TTL, MODE, Once,
    Paths, RUNTIME, STALE_IF_ERROR, SWR, TAGS, TTL, UNLESS,
};
use crate::diag::{self, Diag};
use crate::func::{self, Func, Params, local};
use crate::key_template::{self, Template};
use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, LitStr};

/// What `#[cached]` accepts, in the order messages list it.
const ACCEPTED: &[Kw] = &[
    KEY,
    TTL,
    L1_TTL,
    TAGS,
    SWR,
    STALE_IF_ERROR,
    MODE,
    UNLESS,
    CONDITION,
    CODEC,
    CRATE,
    RUNTIME,
];

/// The entry point behind `#[cached]`.
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    diag::or_item_with_errors(item.clone(), build(args, item))
}

fn build(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut diag = Diag::default();
    let args = Args::parse(args, &mut diag);
    let func = match func::parse(item, "cached") {
        Ok(func) => func,
        Err(error) => return Err(diag.fail(error)),
    };
    func.require_async("cached", &mut diag);
    let model = Model::validate(args, &func, &mut diag);
    diag.finish()?;
    Ok(expand(&func, &model))
}

/// Where a cached value lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    L1L2,
    L1Only,
    L2Only,
}

fn mode(kw: Kw, expr: &syn::Expr) -> syn::Result<Mode> {
    args::choice(
        kw,
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

/// The arguments as written: each given at most once, each value of the right shape.
struct Args {
    key: Once<LitStr>,
    ttl: Once<Duration>,
    l1_ttl: Once<Duration>,
    tags: Once<Vec<LitStr>>,
    swr: Once<Duration>,
    stale_if_error: Once<Duration>,
    mode: Once<Mode>,
    unless: Once<Callable>,
    condition: Once<Callable>,
    codec: Once<Codec>,
    common: Common,
}

impl Args {
    fn parse(tokens: TokenStream, diag: &mut Diag) -> Self {
        let mut args = Self {
            key: Once::new(KEY),
            ttl: Once::new(TTL),
            l1_ttl: Once::new(L1_TTL),
            tags: Once::new(TAGS),
            swr: Once::new(SWR),
            stale_if_error: Once::new(STALE_IF_ERROR),
            mode: Once::new(MODE),
            unless: Once::new(UNLESS),
            condition: Once::new(CONDITION),
            codec: Once::new(CODEC),
            common: Common::default(),
        };
        for arg in &args.common.parse_raw(diag, tokens, KEY.example) {
            if args.key.matches(arg) {
                args.key.set(diag, arg, args::key);
            } else if args.ttl.matches(arg) {
                args.ttl.set(diag, arg, args::ttl);
            } else if args.l1_ttl.matches(arg) {
                args.l1_ttl.set(diag, arg, args::ttl);
            } else if args.tags.matches(arg) {
                args.tags
                    .set(diag, arg, |kw, expr| args::lit_str_list(kw, expr, true));
            } else if args.swr.matches(arg) {
                args.swr.set(diag, arg, args::duration);
            } else if args.stale_if_error.matches(arg) {
                args.stale_if_error.set(diag, arg, args::duration);
            } else if args.mode.matches(arg) {
                args.mode.set(diag, arg, mode);
            } else if args.unless.matches(arg) {
                args.unless.set(diag, arg, args::callable);
            } else if args.condition.matches(arg) {
                args.condition.set(diag, arg, args::callable);
            } else if args.codec.matches(arg) {
                args.codec.set(diag, arg, args::codec);
            } else if !args.common.accept(diag, arg) {
                args.common.reject(diag, arg, ACCEPTED);
            }
        }
        args
    }
}

/// The `CachedSpec` built at compile time: `CachedSpec::new("name").ttl_ms(..)...`.
pub(crate) struct Spec {
    pub(crate) name: String,
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) l1_ttl_ms: Option<u64>,
    pub(crate) swr_ms: Option<u64>,
    pub(crate) stale_if_error_ms: Option<u64>,
    pub(crate) mode: Option<TokenStream>,
    pub(crate) codec: Option<Codec>,
}

impl Spec {
    pub(crate) fn new(name: String) -> Self {
        Self {
            name,
            ttl_ms: None,
            l1_ttl_ms: None,
            swr_ms: None,
            stale_if_error_ms: None,
            mode: None,
            codec: None,
        }
    }

    /// `static __REDISX_SPEC: CachedSpec = ...;` and the static's name.
    pub(crate) fn static_item(&self, krate: &TokenStream) -> (Ident, TokenStream) {
        let ident = Ident::new("__REDISX_SPEC", Span::mixed_site());
        let name = LitStr::new(&self.name, Span::call_site());
        let mut value = quote!(#krate::__private::CachedSpec::new(#name));
        let durations = [
            ("ttl_ms", self.ttl_ms),
            ("l1_ttl_ms", self.l1_ttl_ms),
            ("swr_ms", self.swr_ms),
            ("stale_if_error_ms", self.stale_if_error_ms),
        ];
        for (setter, ms) in durations {
            if let Some(ms) = ms {
                let setter = format_ident!("{setter}");
                let ms = Literal::u64_unsuffixed(ms);
                value.extend(quote!(.#setter(#ms)));
            }
        }
        if let Some(mode) = &self.mode {
            value.extend(quote!(.mode(#mode)));
        }
        if let Some(codec) = self.codec {
            let codec = codec.tokens(krate);
            value.extend(quote!(.codec(#codec)));
        }
        let item = quote! {
            static #ident: #krate::__private::CachedSpec = #value;
        };
        (ident, item)
    }
}

/// The validated call site: everything `expand` needs, nothing left to check.
struct Model {
    paths: Paths,
    spec: Spec,
    params: Params,
    /// `None`: the key is derived from the function's path and its hashed arguments.
    key: Option<Template>,
    tags: Vec<Template>,
    unless: Option<Callable>,
    condition: Option<Callable>,
}

/// Resolves templates, recording errors; `None` entries were reported.
fn templates(lits: &[LitStr], params: &Params, diag: &mut Diag) -> Vec<Template> {
    lits.iter()
        .filter_map(|lit| diag.ok(key_template::resolve(lit, params)))
        .collect()
}

impl Model {
    fn validate(args: Args, func: &Func, diag: &mut Diag) -> Self {
        let params = func.params();
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
        if args.swr.get().is_some() {
            borrowed_args_with_swr(func, diag);
        }
        let paths = args.common.build();
        let mut spec = Spec::new(func.name());
        spec.ttl_ms = args.ttl.get().map(|d| d.ms);
        spec.l1_ttl_ms = args.l1_ttl.get().map(|d| d.ms);
        spec.swr_ms = args.swr.get().map(|d| d.ms);
        spec.stale_if_error_ms = args.stale_if_error.get().map(|d| d.ms);
        spec.codec = args.codec.get().copied();
        spec.mode = args.mode.get().map(|mode| {
            let krate = &paths.krate;
            match mode {
                Mode::L1L2 => quote!(#krate::__private::CacheMode::L1L2),
                Mode::L1Only => quote!(#krate::__private::CacheMode::L1Only),
                Mode::L2Only => quote!(#krate::__private::CacheMode::L2Only),
            }
        });
        let key = args
            .key
            .into_value()
            .and_then(|lit| diag.ok(key_template::resolve(&lit, &params)));
        let tags = templates(&args.tags.into_value().unwrap_or_default(), &params, diag);
        Model {
            paths,
            spec,
            key,
            tags,
            params,
            unless: args.unless.into_value(),
            condition: args.condition.into_value(),
        }
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

/// `(f)(&a, &b)` for a path (argument coercions apply); for a closure, a call through a local
/// generic fn so the closure's parameter types are inferred from the arguments (an immediately
/// called closure gets no such help and would need every type written out).
fn condition_call(condition: &Callable, params: &Params) -> TokenStream {
    let names = &params.names;
    let span = condition.span();
    match condition {
        Callable::Path(path) => quote_spanned!(span=> (#path)(#(&#names),*)),
        Callable::Closure(closure) => {
            // Spanned to the closure (not mixed-site) so that an arity or type mismatch is
            // reported at the closure; the fn lives in its own block, so it shadows nothing.
            let helper = Ident::new("__redisx_condition", span);
            let tys: Vec<Ident> = (0..names.len()).map(|i| format_ident!("__A{i}")).collect();
            let vals: Vec<Ident> = (0..names.len()).map(|i| format_ident!("__a{i}")).collect();
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

/// The `unless` argument of `run`/`run_result`.
fn unless_arg(unless: Option<&Callable>, krate: &TokenStream) -> TokenStream {
    match unless {
        None => quote!(#krate::__private::never),
        Some(Callable::Closure(closure)) => closure.to_token_stream(),
        Some(Callable::Path(path)) => {
            let value = local("__redisx_v");
            quote_spanned!(path.span()=> |#value| (#path)(#value))
        }
    }
}

/// Builds the new body of the function.
fn expand(func: &Func, model: &Model) -> TokenStream {
    let Paths { krate, runtime } = &model.paths;
    let (spec, spec_item) = model.spec.static_item(krate);
    let call = local("__redisx_call");
    let mut body = spec_item;

    let mut enabled = match &model.condition {
        None => quote!(true),
        Some(condition) => {
            let enabled = local("__redisx_enabled");
            let value = condition_call(condition, &model.params);
            body.extend(quote!(let #enabled: bool = #value;));
            enabled.into_token_stream()
        }
    };

    let key = if let Some(template) = &model.key {
        template.to_token_stream()
    } else {
        // Arguments that cannot be hashed make the call run uncached (`args_hash` is `None`):
        // a shared placeholder key would hand one call's value to another.
        let hash = local("__redisx_args_hash");
        let names = &model.params.names;
        body.extend(quote! {
            let #hash = #krate::__private::args_hash(&(#(&#names,)*));
        });
        enabled = if model.condition.is_some() {
            quote!(#enabled && #hash.is_some())
        } else {
            quote!(#hash.is_some())
        };
        let name = LitStr::new(&model.spec.name, Span::call_site());
        if model.params.receiver {
            quote! {
                ::core::format_args!("{}::{}::{}:{:016x}", ::core::module_path!(),
                    ::core::any::type_name::<Self>(), #name, #hash.unwrap_or_default())
            }
        } else {
            quote! {
                ::core::format_args!("{}::{}:{:016x}", ::core::module_path!(), #name,
                    #hash.unwrap_or_default())
            }
        }
    };
    let tags = &model.tags;
    // The L1 storage of the value type, picked by autoref specialization (an `Arc<U>` is
    // stored as the `Arc` itself); a type that cannot be named gets the general form.
    let erasure = if let Some(value) = func.value_type() {
        quote! {
            {
                #[allow(unused_imports)]
                use #krate::__private::{ProbeAny as _, ProbeArc as _};
                (&&#krate::__private::ErasureProbe::<#value>::new()).erasure()
            }
        }
    } else {
        quote!(#krate::__private::Erasure::boxed())
    };
    body.extend(quote! {
        let #call = #krate::__private::cached::<_>(
            &#spec, #runtime, #enabled, #key, &[#(#tags),*], #erasure);
    });

    let future = func.body_future();
    let unless = unless_arg(model.unless.as_ref(), krate);
    if model.spec.swr_ms.is_some() {
        body.extend(func.run_swr_call(&quote!(#future, #unless)));
    } else {
        body.extend(func.run_call(&quote!(#future, #unless)));
    }
    func.with_body(&body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The expansion, or the error messages.
    fn run(args: TokenStream, item: TokenStream) -> Result<TokenStream, Vec<String>> {
        build(args, item).map_err(|error| error.into_iter().map(|e| e.to_string()).collect())
    }

    fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
        run(args, item).expect_err("expected errors")
    }

    /// The body future with its return edge (see `Func::body_future`).
    fn future(ty: &TokenStream, block: &TokenStream) -> TokenStream {
        quote! {
            async move {
                #[allow(
                    unknown_lints,
                    unreachable_code,
                    clippy::diverging_sub_expression,
                    clippy::empty_loop,
                    clippy::let_unit_value,
                    clippy::let_with_type_underscore,
                    clippy::needless_return,
                    clippy::unreachable
                )]
                if false {
                    let __redisx_ret: #ty = loop {};
                    return __redisx_ret;
                }
                #block
            }
        }
    }

    /// The L1 erasure argument for the value type `value`.
    fn erasure(krate: &TokenStream, value: &TokenStream) -> TokenStream {
        quote! {
            {
                #[allow(unused_imports)]
                use #krate::__private::{ProbeAny as _, ProbeArc as _};
                (&&#krate::__private::ErasureProbe::<#value>::new()).erasure()
            }
        }
    }

    fn assert_expands(args: TokenStream, item: TokenStream, expected: &TokenStream) {
        assert_eq!(run(args, item).unwrap().to_string(), expected.to_string());
    }

    #[test]
    fn expands_contract_example() {
        let future = future(&quote!(Result<User, AppError>), &quote!({ load(id).await }));
        let erasure = erasure(&quote!(::redisx), &quote!(User));
        assert_expands(
            quote!(key = "user:{id}", ttl = "5m", tags = ["users", "user:{id}"]),
            quote!(
                async fn user(id: u64) -> Result<User, AppError> {
                    load(id).await
                }
            ),
            &quote! {
                async fn user(id: u64) -> Result<User, AppError> {
                    static __REDISX_SPEC: ::redisx::__private::CachedSpec =
                        ::redisx::__private::CachedSpec::new("user").ttl_ms(300000);
                    let __redisx_call = ::redisx::__private::cached::<_>(
                        &__REDISX_SPEC, ::core::option::Option::None, true,
                        ::core::format_args!("user:{}", id),
                        &[::core::format_args!("users"), ::core::format_args!("user:{}", id)],
                        #erasure);
                    __redisx_call.run_result(
                        #future,
                        ::redisx::__private::never).await
                }
            },
        );
    }

    #[test]
    fn expands_every_option() {
        let future = future(&quote!(Vec<u8>), &quote!({ self.go(q).await }));
        let erasure = erasure(&quote!(rx), &quote!(Vec<u8>));
        assert_expands(
            quote!(
                key = "{self.tenant}:{q.id}",
                ttl = "1h",
                l1_ttl = "30s",
                swr = "30s",
                stale_if_error = "1h",
                mode = "l1_only",
                codec = "json",
                unless = Vec::is_empty,
                condition = |q| q.id != 0,
                crate = "rx",
                runtime = &self.rx
            ),
            quote!(
                pub async fn find(self, q: Query) -> Vec<u8> {
                    self.go(q).await
                }
            ),
            &quote! {
                pub async fn find(self, q: Query) -> Vec<u8> {
                    static __REDISX_SPEC: rx::__private::CachedSpec =
                        rx::__private::CachedSpec::new("find").ttl_ms(3600000).l1_ttl_ms(30000)
                            .swr_ms(30000).stale_if_error_ms(3600000)
                            .mode(rx::__private::CacheMode::L1Only)
                            .codec(rx::__private::CodecKind::Json);
                    let __redisx_enabled: bool = {
                        fn __redisx_condition<__A0: ?::core::marker::Sized, __F: ::core::ops::FnOnce(&__A0) -> bool>(
                            f: __F, __a0: &__A0
                        ) -> bool {
                            f(__a0)
                        }
                        __redisx_condition(|q| q.id != 0, &q)
                    };
                    let __redisx_call = rx::__private::cached::<_>(
                        &__REDISX_SPEC,
                        ::core::option::Option::Some(
                            <_ as ::core::borrow::Borrow<rx::__private::RedisX>>::borrow(&(&self.rx))
                        ),
                        __redisx_enabled,
                        ::core::format_args!("{}:{}", self.tenant, q.id),
                        &[],
                        #erasure);
                    __redisx_call.run_swr(
                        #future,
                        |__redisx_v| (Vec::is_empty)(__redisx_v)).await
                }
            },
        );
    }

    #[test]
    fn expands_auto_key() {
        let future = future(&quote!(()), &quote!({}));
        let erasure = erasure(&quote!(::redisx), &quote!(()));
        assert_expands(
            quote!(),
            quote!(
                async fn f(a: u8, (b, _): (u8, u8)) {}
            ),
            &quote! {
                async fn f(a: u8, (b, _): (u8, u8)) {
                    static __REDISX_SPEC: ::redisx::__private::CachedSpec =
                        ::redisx::__private::CachedSpec::new("f");
                    let __redisx_args_hash = ::redisx::__private::args_hash(&(&a, &b,));
                    let __redisx_call = ::redisx::__private::cached::<_>(
                        &__REDISX_SPEC, ::core::option::Option::None,
                        __redisx_args_hash.is_some(),
                        ::core::format_args!("{}::{}:{:016x}", ::core::module_path!(), "f",
                            __redisx_args_hash.unwrap_or_default()),
                        &[],
                        #erasure);
                    __redisx_call.run(
                        #future,
                        ::redisx::__private::never).await
                }
            },
        );
        let method = run(
            quote!(),
            quote!(
                async fn g(&self) -> impl Sized {
                    1
                }
            ),
        )
        .unwrap()
        .to_string();
        assert!(
            method.contains(
                &quote!(::core::format_args!(
                    "{}::{}::{}:{:016x}",
                    ::core::module_path!(),
                    ::core::any::type_name::<Self>(),
                    "g",
                    __redisx_args_hash.unwrap_or_default()
                ))
                .to_string()
            )
        );
        assert!(method.contains(&quote!(args_hash(&())).to_string()));
        // `impl Trait` cannot annotate a `let`.
        assert!(
            method
                .contains(&quote!(.run(async move { 1 }, ::redisx::__private::never)).to_string())
        );
    }

    #[test]
    fn unknown_and_duplicate_arguments() {
        let item = quote!(
            async fn f(id: u64) -> u64 {
                id
            }
        );
        assert_eq!(
            errors(quote!(tll = "5m"), item.clone()),
            [
                "unknown argument `tll`; expected one of `key`, `ttl`, `l1_ttl`, `tags`, `swr`, `stale_if_error`, `mode`, `unless`, `condition`, `codec`, `crate`, `runtime`"
            ]
        );
        assert_eq!(
            errors(quote!(ttl = "5m", ttl = "1m"), item.clone()),
            ["`ttl` is given twice"]
        );
        assert_eq!(
            errors(
                quote!(crate = "a", crate = "b", runtime = x, runtime = y),
                item
            ),
            ["`crate` is given twice", "`runtime` is given twice"]
        );
    }

    #[test]
    fn every_error_is_reported_together() {
        assert_eq!(
            errors(
                quote!(
                    key = "user:{x}",
                    ttl = "5 minutes",
                    bogus = 1,
                    mode = "l3",
                    tags = [1]
                ),
                quote!(
                    fn f(id: u64) -> u64 {
                        id
                    }
                )
            ),
            [
                "invalid duration `5 minutes`; expected a number followed by `ms`, `s`, `m`, `h` or `d`, e.g. `\"30s\"`",
                "unknown argument `bogus`; expected one of `key`, `ttl`, `l1_ttl`, `tags`, `swr`, `stale_if_error`, `mode`, `unless`, `condition`, `codec`, `crate`, `runtime`",
                r#"unknown mode `l3`; expected one of `"l1_l2"`, `"l1_only"` or `"l2_only"`"#,
                r#"an entry of `tags` must be a string literal, e.g. `tags = ["users", "user:{id}"]`"#,
                "`#[cached]` requires an `async fn`",
                "unknown parameter `x` in key template; the function's only parameter is `id`",
            ]
        );
    }

    #[test]
    fn ttl_limits() {
        let item = quote!(
            async fn f() -> u8 {
                1
            }
        );
        assert_eq!(
            errors(quote!(ttl = "2d"), item.clone()),
            ["`ttl` of 2d exceeds the maximum of 24h"]
        );
        assert_eq!(
            errors(quote!(ttl = "0s"), item.clone()),
            ["`ttl` must be greater than zero"]
        );
        assert_eq!(
            errors(quote!(ttl = "5m", l1_ttl = "1h"), item.clone()),
            ["`l1_ttl` of 1h exceeds `ttl` of 5m; an L1 entry must not outlive its L2 entry"]
        );
        assert!(run(quote!(ttl = "5m", l1_ttl = "5m"), item.clone()).is_ok());
        assert!(run(quote!(l1_ttl = "1h"), item).is_ok());
    }

    #[test]
    fn value_shapes() {
        let item = quote!(
            async fn f(id: u64) -> u64 {
                id
            }
        );
        assert_eq!(
            errors(quote!(unless = "x", condition = 1), item.clone()),
            [
                "`unless` must be a function path or a closure, e.g. `unless = |value| value.is_empty()`",
                "`condition` must be a function path or a closure, e.g. `condition = |id| *id != 0`",
            ]
        );
        assert_eq!(
            errors(quote!(codec = Xml), item.clone()),
            ["unknown codec `Xml`; expected `Json` or `Bincode`"]
        );
        assert_eq!(
            errors(quote!(key = ""), item.clone()),
            ["`key` must not be empty"]
        );
        assert_eq!(
            errors(quote!(key), item.clone()),
            [r#"`key` needs a value, e.g. `key = "user:{id}"`"#]
        );
        assert_eq!(
            errors(quote!("user:{id}"), item),
            [r#"expected arguments of the form `name = value`, e.g. `key = "user:{id}"`"#]
        );
    }

    #[test]
    fn not_a_function() {
        assert_eq!(
            errors(
                quote!(),
                quote!(
                    struct S;
                )
            ),
            ["`#[cached]` can only be applied to an `async fn` with a body"]
        );
        assert_eq!(
            errors(
                quote!(tll = "1m"),
                quote!(
                    async fn f(&self);
                )
            ),
            [
                "unknown argument `tll`; expected one of `key`, `ttl`, `l1_ttl`, `tags`, `swr`, `stale_if_error`, `mode`, `unless`, `condition`, `codec`, `crate`, `runtime`",
                "`#[cached]` can only be applied to an `async fn` with a body",
            ]
        );
    }

    #[test]
    fn recovers_by_emitting_the_item() {
        let item = quote!(
            async fn f(id: u64) -> u64 {
                id
            }
        );
        let out = cached(quote!(tll = "5m"), item.clone()).to_string();
        assert!(out.starts_with(&item.to_string()));
        assert!(out.contains("compile_error"));
    }
}
