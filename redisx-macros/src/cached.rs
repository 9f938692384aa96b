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
use syn::{Ident, LitStr};

/// What `#[cached]` accepts, in the order messages list it.
const ACCEPTED: &[Kw] = &[
    KEY, TTL, L1_TTL, TAGS, SWR, STALE_IF_ERROR, MODE, UNLESS, CONDITION, CODEC, CRATE, RUNTIME,
];

/// The entry point behind `#[cached]`.
pub(crate) fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    diag::or_item_with_errors(item.clone(), build(args, item))
}

fn build(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut diag = Diag::default();
    let args = Args::parse(args, &mut diag);
    let func = func::parse(item, "cached")?;
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
        let Some(raw) = diag.ok(args::parse_raw(tokens, KEY.example)) else {
            return args;
        };
        for arg in &raw {
            if args.key.matches(arg) {
                args.key.set(diag, arg, args::key);
            } else if args.ttl.matches(arg) {
                args.ttl.set(diag, arg, args::ttl);
            } else if args.l1_ttl.matches(arg) {
                args.l1_ttl.set(diag, arg, args::ttl);
            } else if args.tags.matches(arg) {
                args.tags.set(diag, arg, |kw, expr| args::lit_str_list(kw, expr, true));
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
                diag.push(args::unknown(&arg.name, ACCEPTED));
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
        if let (Some(l1_ttl), Some(ttl)) = (args.l1_ttl.get(), args.ttl.get()) {
            if l1_ttl.ms > ttl.ms {
                diag.error(
                    l1_ttl.span,
                    format!(
                        "`l1_ttl` of {} exceeds `ttl` of {}; an L1 entry must not outlive its L2 entry",
                        l1_ttl.text, ttl.text
                    ),
                );
            }
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

/// `(f)(&a, &b)` for a path (argument coercions apply); for a closure, a call through a local
/// generic fn so the closure's parameter types are inferred from the arguments (an immediately
/// called closure gets no such help and would need every type written out).
pub(crate) fn condition_call(condition: &Callable, params: &Params) -> TokenStream {
    let names = &params.names;
    let span = condition.span();
    match condition {
        Callable::Path(path) => quote_spanned!(span=> (#path)(#(&#names),*)),
        Callable::Closure(closure) => {
            let helper = local("__redisx_condition");
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
            quote_spanned!(path.span=> |#value| (#path)(#value))
        }
    }
}

trait PathSpan {
    fn span(&self) -> Span;
}

/// Builds the new body of the function.
fn expand(func: &Func, model: &Model) -> TokenStream {
    let Paths { krate, runtime } = &model.paths;
    let (spec, spec_item) = model.spec.static_item(krate);
    let call = local("__redisx_call");
    let mut body = spec_item;

    let enabled = match &model.condition {
        None => quote!(true),
        Some(condition) => {
            let enabled = local("__redisx_enabled");
            let value = condition_call(condition, &model.params);
            body.extend(quote!(let #enabled: bool = #value;));
            enabled.into_token_stream()
        }
    };

    let key = match &model.key {
        Some(template) => template.to_token_stream(),
        None => {
            let hash = local("__redisx_args_hash");
            let names = &model.params.names;
            body.extend(quote! {
                let #hash = #krate::__private::args_hash(&(#(&#names,)*));
            });
            let name = LitStr::new(&model.spec.name, Span::call_site());
            if model.params.receiver {
                quote! {
                    ::core::format_args!("{}::{}::{}:{:016x}", ::core::module_path!(),
                        ::core::any::type_name::<Self>(), #name, #hash)
                }
            } else {
                quote! {
                    ::core::format_args!("{}::{}:{:016x}", ::core::module_path!(), #name, #hash)
                }
            }
        }
    };
    let tags = &model.tags;
    body.extend(quote! {
        let #call = #krate::__private::cached::<_>(
            &#spec, #runtime, #enabled, #key, &[#(#tags),*]);
    });

    let run = func.run_method();
    let future = func.body_future();
    let unless = unless_arg(model.unless.as_ref(), krate);
    body.extend(quote!(#call.#run(#future, #unless).await));
    func.with_body(&body)
}
