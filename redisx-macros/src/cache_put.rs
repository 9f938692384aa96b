//! `#[cache_put]`: parse the arguments ([`Args`]), validate them against the function
//! ([`Model`]), then [`expand`] into one `__private::cache_put(..)` call around the original
//! body.

use crate::args::{
    self, CODEC, CRATE, Codec, Common, Duration, KEY, Kw, Once, Paths, RUNTIME, TAGS, TTL,
};
use crate::cached::Spec;
use crate::diag::{self, Diag};
use crate::func::{self, Func, local};
use crate::key_template::{self, Template};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitStr;

/// What `#[cache_put]` accepts, in the order messages list it.
const ACCEPTED: &[Kw] = &[KEY, TTL, TAGS, CODEC, CRATE, RUNTIME];

/// The entry point behind `#[cache_put]`.
pub(crate) fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    diag::or_item_with_errors(item.clone(), build(args, item))
}

fn build(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut diag = Diag::default();
    let args = Args::parse(args, &mut diag);
    let func = match func::parse(item, "cache_put") {
        Ok(func) => func,
        Err(error) => return Err(diag.fail(error)),
    };
    func.require_async("cache_put", &mut diag);
    let model = Model::validate(args, &func, &mut diag);
    diag.finish()?;
    // `validate` returns `None` only after recording an error, so this is always `Some`.
    model
        .map(|model| expand(&func, &model))
        .ok_or_else(|| syn::Error::new(Span::call_site(), MISSING_KEY))
}

const MISSING_KEY: &str =
    r#"`#[cache_put]` needs the `key` to write, e.g. `#[cache_put(key = "user:{id}")]`"#;

struct Args {
    key: Once<LitStr>,
    ttl: Once<Duration>,
    tags: Once<Vec<LitStr>>,
    codec: Once<Codec>,
    common: Common,
}

impl Args {
    fn parse(tokens: TokenStream, diag: &mut Diag) -> Self {
        let mut args = Self {
            key: Once::new(KEY),
            ttl: Once::new(TTL),
            tags: Once::new(TAGS),
            codec: Once::new(CODEC),
            common: Common::default(),
        };
        for arg in &args.common.parse_raw(diag, tokens, KEY.example) {
            if args.key.matches(arg) {
                args.key.set(diag, arg, args::key);
            } else if args.ttl.matches(arg) {
                args.ttl.set(diag, arg, args::ttl);
            } else if args.tags.matches(arg) {
                args.tags
                    .set(diag, arg, |kw, expr| args::lit_str_list(kw, expr, true));
            } else if args.codec.matches(arg) {
                args.codec.set(diag, arg, args::codec);
            } else if !args.common.accept(diag, arg) {
                args.common.reject(diag, arg, ACCEPTED);
            }
        }
        args
    }
}

struct Model {
    paths: Paths,
    spec: Spec,
    key: Template,
    tags: Vec<Template>,
}

impl Model {
    /// `None` when an error was recorded.
    fn validate(args: Args, func: &Func, diag: &mut Diag) -> Option<Self> {
        let params = func.params();
        if !args.key.is_given() && !args.common.incomplete() {
            diag.error(Span::call_site(), MISSING_KEY);
        }
        let key = args
            .key
            .into_value()
            .and_then(|lit| diag.ok(key_template::resolve(&lit, &params)));
        let tags: Vec<Template> = args
            .tags
            .into_value()
            .unwrap_or_default()
            .iter()
            .filter_map(|lit| diag.ok(key_template::resolve(lit, &params)))
            .collect();
        let mut spec = Spec::new(func.name());
        spec.ttl_ms = args.ttl.get().map(|d| d.ms);
        spec.codec = args.codec.get().copied();
        Some(Model {
            paths: args.common.build(),
            spec,
            key: key?,
            tags,
        })
    }
}

fn expand(func: &Func, model: &Model) -> TokenStream {
    let Paths { krate, runtime } = &model.paths;
    let (spec, spec_item) = model.spec.static_item(krate);
    let call = local("__redisx_call");
    let key = &model.key;
    let tags = &model.tags;
    let run = func.run_call(&func.body_future());
    func.with_body(&quote! {
        #spec_item
        let #call = #krate::__private::cache_put::<_>(
            &#spec, #runtime, #key, &[#(#tags),*]);
        #run
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        build(args, item)
            .map(|tokens| tokens.to_string())
            .map_err(|error| error.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn expands() {
        let out = run(
            quote!(
                key = "user:{user.id}",
                ttl = "5m",
                tags = ["users"],
                codec = Json
            ),
            quote!(
                async fn save(user: User) -> Result<User, E> {
                    Ok(user)
                }
            ),
        )
        .unwrap();
        let head = quote! {
            static __REDISX_SPEC: ::redisx::__private::CachedSpec =
                ::redisx::__private::CachedSpec::new("save").ttl_ms(300000)
                    .codec(::redisx::__private::CodecKind::Json);
            let __redisx_call = ::redisx::__private::cache_put::<_>(
                &__REDISX_SPEC, ::core::option::Option::None,
                ::core::format_args!("user:{}", user.id), &[::core::format_args!("users")]);
        };
        assert!(out.contains(&head.to_string()), "{out}");
        assert!(
            out.contains("__redisx_call . run_result (async move"),
            "{out}"
        );
    }

    #[test]
    fn errors() {
        let item = quote!(
            async fn f(id: u64) -> u64 {
                id
            }
        );
        assert_eq!(
            run(quote!(ttl = "5m"), item.clone()).unwrap_err(),
            [MISSING_KEY]
        );
        assert_eq!(
            run(
                quote!(key = "a", ttl = "25h", mode = "l1_only"),
                item.clone()
            )
            .unwrap_err(),
            [
                "`ttl` of 25h exceeds the maximum of 24h",
                "unknown argument `mode`; expected one of `key`, `ttl`, `tags`, `codec`, `crate`, `runtime`"
            ]
        );
        assert_eq!(
            run(quote!(key = "{nope}"), item).unwrap_err(),
            ["unknown parameter `nope` in key template; the function's only parameter is `id`"]
        );
        assert_eq!(
            run(
                quote!(key = "a"),
                quote!(
                    fn f() -> u8 {
                        1
                    }
                )
            )
            .unwrap_err(),
            ["`#[cache_put]` requires an `async fn`"]
        );
    }
}
