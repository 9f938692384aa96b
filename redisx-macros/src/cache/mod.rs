//! The cache's attributes (`#[cached]`, `#[cache_put]`, `#[cache_evict]`) and what they share:
//! the `tags` and `codec` keywords, the `CachedSpec` static, and the
//! `__redisx_call.run*(..).await` that runs the body.

pub(crate) mod cache_evict;
pub(crate) mod cache_put;
pub(crate) mod cached;

use crate::args::read::{self, Duration};
use crate::args::{Arg, Keyword, Kw};
use crate::emit::SpecStatic;
use crate::func::Func;
use crate::names::CALL;
use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::{Expr, Ident, LitStr};

/// `tags = ["users", "user:{id}"]`: tag templates. How many a key may carry is the runtime's
/// policy (`CacheConfig::max_tags_per_key`).
pub(crate) const TAGS: Keyword<Vec<LitStr>> = Keyword::new(
    "tags",
    r#"tags = ["users", "user:{id}"]"#,
    read::template_list,
);

/// `codec = Json`: the codec of stored values.
pub(crate) const CODEC: Keyword<Codec> = Keyword::new("codec", "codec = Json", codec);

/// The codec of stored values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Codec {
    Bincode,
    Json,
}

/// `codec = Json`, `codec = Bincode`, `codec = "json"` or `codec = "bincode"`.
fn codec(kw: Kw, expr: &Expr) -> syn::Result<Codec> {
    read::choice(
        kw,
        kw.name,
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

/// `static __REDISX_SPEC: CachedSpec = CachedSpec::new(::core::module_path!(), "name")` with
/// the `ttl` and `codec` of `#[cached]` and `#[cache_put]`, for the attribute to add its own
/// setters to. The runtime builds the automatic key and its messages from the module path and
/// the name.
pub(crate) fn cached_spec(
    krate: &TokenStream,
    func: &Func,
    ttl: &Arg<Duration>,
    codec: &Arg<Codec>,
) -> SpecStatic {
    let name = LitStr::new(&func.name(), Span::call_site());
    let mut spec = SpecStatic::new(
        quote!(#krate::__private::CachedSpec),
        &quote!(::core::module_path!(), #name),
    );
    spec.set_ms("ttl_ms", ttl.get().map(|d| d.ms));
    spec.set_some("codec", codec.get().map(|codec| codec.tokens(krate)));
    spec
}

/// `__redisx_call.run(args).await`: `run_result` for a `Result` return type, with `_swr`
/// appended when the body may run in the background (stale-while-revalidate).
///
/// The whole call is spanned to the produced value's type (the `T` of `Result<T, E>`, else
/// the return type), with mixed-site hygiene: the runtime puts the value's bounds
/// (`Cacheable`) on these methods, and every obligation the call and its `.await` raise then
/// points at that type with the same message, so rustc shows a value that cannot be cached
/// once, there, instead of at the attribute. (The tokens must share one hygiene context: a
/// span joined from tokens of different contexts falls back to the attribute.)
pub(crate) fn run_call(func: &Func, swr: bool, args: &TokenStream) -> TokenStream {
    let base = if func.result().is_some() {
        "run_result"
    } else {
        "run"
    };
    let name = if swr {
        format!("{base}_swr")
    } else {
        base.to_owned()
    };
    let span = Span::mixed_site().located_at(func.value_span());
    let call = CALL.at(span);
    let run = Ident::new(&name, span);
    quote_spanned!(span=> #call.#run(#args).await)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{ArgParser, TTL};
    use crate::diag::messages;
    use quote::ToTokens;

    fn expr(tokens: TokenStream) -> Expr {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn codecs() {
        let kw = CODEC.kw;
        assert_eq!(codec(kw, &expr(quote!(Json))).unwrap(), Codec::Json);
        assert_eq!(
            codec(kw, &expr(quote!(redisx::Bincode))).unwrap(),
            Codec::Bincode
        );
        assert_eq!(codec(kw, &expr(quote!("json"))).unwrap(), Codec::Json);
        assert_eq!(codec(kw, &expr(quote!("bincode"))).unwrap(), Codec::Bincode);
        assert_eq!(
            messages(codec(kw, &expr(quote!(Xml)))),
            ["unknown codec `Xml`; expected `Json` or `Bincode`"]
        );
        assert_eq!(
            messages(codec(kw, &expr(quote!(1)))),
            ["`codec` must be `Json` or `Bincode`, e.g. `codec = Json`"]
        );
        assert_eq!(
            Codec::Json.tokens(&quote!(rx)).to_string(),
            "rx :: __private :: CodecKind :: Json"
        );
    }

    fn func(tokens: TokenStream) -> Func {
        syn::parse2(tokens).unwrap()
    }

    #[test]
    fn run_methods() {
        let run = |tokens, swr| run_call(&func(tokens), swr, &quote!(f)).to_string();
        assert_eq!(
            run(
                quote!(
                    async fn f() -> Result<u8, E> {}
                ),
                false
            ),
            "__redisx_call . run_result (f) . await"
        );
        assert_eq!(
            run(
                quote!(
                    async fn f() -> io::Result<u8> {}
                ),
                true
            ),
            "__redisx_call . run_result_swr (f) . await"
        );
        assert_eq!(
            run(
                quote!(
                    async fn f() -> Option<u8> {}
                ),
                false
            ),
            "__redisx_call . run (f) . await"
        );
        assert_eq!(
            run(
                quote!(
                    async fn f() {}
                ),
                true
            ),
            "__redisx_call . run_swr (f) . await"
        );
    }

    #[test]
    fn spec_names_module_and_function() {
        let spec = |args| {
            let mut args = ArgParser::new(args);
            let (ttl, codec) = (args.take(&TTL), args.take(&CODEC));
            let f = func(quote!(
                async fn r#type() {}
            ));
            cached_spec(&quote!(::redisx), &f, &ttl, &codec)
                .to_token_stream()
                .to_string()
        };
        assert_eq!(
            spec(quote!()),
            quote!(
                static __REDISX_SPEC: ::redisx::__private::CachedSpec =
                    ::redisx::__private::CachedSpec::new(::core::module_path!(), "type");
            )
            .to_string()
        );
        assert_eq!(
            spec(quote!(codec = Json, ttl = "2d")),
            quote!(
                static __REDISX_SPEC: ::redisx::__private::CachedSpec =
                    ::redisx::__private::CachedSpec::new(::core::module_path!(), "type")
                        .ttl_ms(172800000)
                        .codec(::redisx::__private::CodecKind::Json);
            )
            .to_string()
        );
    }
}
