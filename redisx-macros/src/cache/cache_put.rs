//! `#[cache_put]`: always runs the body and writes its value under `key`; expands into one
//! `__private::cache_put(..)` call around the original body.

use super::{CODEC, Codec, TAGS, cached_spec, run_call};
use crate::args::read::Duration;
use crate::args::{Arg, ArgParser, KEY, Paths, TTL, VARY_BY};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::emit::SpecStatic;
use crate::func::Func;
use crate::key_template::{self, Template};
use crate::names::CALL;
use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::LitStr;

/// `#[cache_put]`.
pub(crate) struct CachePut;

pub(crate) struct Args {
    key: Arg<LitStr>,
    vary_by: Arg<Vec<LitStr>>,
    ttl: Arg<Duration>,
    tags: Arg<Vec<LitStr>>,
    codec: Arg<Codec>,
}

pub(crate) struct Model {
    spec: SpecStatic,
    key: Template,
    tags: Vec<Template>,
}

impl Attribute for CachePut {
    const NAME: &'static str = "cache_put";
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        Args {
            key: args.take(&KEY),
            ttl: args.take(&TTL),
            tags: args.take(&TAGS),
            codec: args.take(&CODEC),
            vary_by: args.take(&VARY_BY),
        }
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let params = func.params();
        let key = site.required(diag, args.key, "the `key` to write");
        let key = key_template::resolve_arg(key, &params, diag);
        let tags = key_template::resolve_all(args.tags.into_value(), &params, diag);
        let mut spec = cached_spec(&site.paths.krate, func, &args.ttl, &args.codec);
        spec.set_vary_by(args.vary_by.into_value());
        Some(Model {
            spec,
            key: key?,
            tags,
        })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let Paths { krate, runtime } = &site.paths;
        let Model { spec, key, tags } = model;
        let spec_ref = SpecStatic::reference();
        let run = run_call(func, false, &func.body_future());
        let mut body = spec.to_token_stream();
        body.extend(quote! {
            let #CALL = #krate::__private::cache_put::<_>(
                #spec_ref, #runtime, #key, &[#(#tags),*]);
            #run
        });
        func.with_body(&body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    const MISSING_KEY: &str =
        r#"`#[cache_put]` needs the `key` to write, e.g. `#[cache_put(key = "user:{id}")]`"#;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        driver::expand_text::<CachePut>(args, item)
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
                ::redisx::__private::CachedSpec::new(::core::module_path!(), "save")
                    .ttl_ms(300000)
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
        // A misspelled `key` is reported once, as unknown, not also as missing.
        assert_eq!(
            run(quote!(kye = "a"), item.clone()).unwrap_err(),
            [
                "unknown argument `kye`; expected one of `key`, `ttl`, `tags`, `codec`, `vary_by`, `crate`, `runtime`"
            ]
        );
        assert_eq!(
            run(
                quote!(key = "a", ttl = "25h", mode = "l1_only"),
                item.clone()
            )
            .unwrap_err(),
            [
                "unknown argument `mode`; expected one of `key`, `ttl`, `tags`, `codec`, `vary_by`, `crate`, `runtime`"
            ]
        );
        assert_eq!(
            run(quote!(key = "{nope}"), item.clone()).unwrap_err(),
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

    #[test]
    fn limits_are_the_runtimes() {
        let item = quote!(
            async fn f(id: u64) -> u64 {
                id
            }
        );
        let out = run(
            quote!(
                key = "a",
                ttl = "25h",
                tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
            ),
            item,
        )
        .unwrap();
        assert!(out.contains(". ttl_ms (90000000)"), "{out}");
        assert_eq!(out.matches("format_args").count(), 12, "{out}");
    }
}
