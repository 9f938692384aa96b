//! `#[redisx::test]`: a `#[test]` around `redisx::testing::block_on`, which gives the body a
//! fresh runtime on a key prefix of its own and cleans up after it.

use crate::args::read;
use crate::args::{Arg, ArgParser, Keyword};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::func::Func;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, LitStr, Path, Type};

/// `config = path`: a `fn(RedisXBuilder) -> RedisXBuilder` that customises the test runtime.
const CONFIG: Keyword<Path> = Keyword::new("config", "config = test_config", read::path);
/// `keep_keys = true`: leave the test's keys in Redis.
const KEEP_KEYS: Keyword<bool> = Keyword::new("keep_keys", "keep_keys = true", read::boolean);

pub(crate) struct Test;

pub(crate) struct Model {
    config: Option<Path>,
    keep_keys: bool,
    /// The type of the parameter that takes the runtime (`rx: RedisX`), if any.
    runtime_param: Option<Type>,
}

impl Attribute for Test {
    const NAME: &'static str = "redisx::test";
    const RUNTIME: bool = false;
    type Args = (Arg<Path>, Arg<bool>);
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Self::Args {
        (args.take(&CONFIG), args.take(&KEEP_KEYS))
    }

    fn validate(
        (config, keep_keys): Self::Args,
        _: &Site,
        func: &Func,
        diag: &mut Diag,
    ) -> Option<Model> {
        let sig = &func.sig;
        if let Some(param) = sig.generics.params.first() {
            diag.error(
                param.span(),
                "a `#[redisx::test]` function cannot be generic",
            );
        }
        let mut typed = 0;
        let mut runtime_param = None;
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(receiver) => diag.error(
                    receiver.span(),
                    "a `#[redisx::test]` function is a free function: it cannot take `self`",
                ),
                FnArg::Typed(param) => {
                    typed += 1;
                    if typed == 1 {
                        runtime_param = Some((*param.ty).clone());
                    } else if typed == 2 {
                        diag.error(
                            param.span(),
                            "a `#[redisx::test]` function takes at most one parameter, the test's runtime (`rx: redisx::RedisX`)",
                        );
                    }
                }
            }
        }
        for attr in func.outer_attrs() {
            let path = attr.path();
            if path.is_ident("test") || path.segments.last().is_some_and(|s| s.ident == "test") {
                diag.error(
                    path.span(),
                    "`#[redisx::test]` already makes the function a test: remove this attribute",
                );
            }
        }
        Some(Model {
            config: config.into_value(),
            keep_keys: keep_keys.into_value().unwrap_or(false),
            runtime_param,
        })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let krate = &site.paths.krate;
        let name = &func.sig.ident;
        let inner = format_ident!("__redisx_test_{}", func.name(), span = name.span());
        let label = LitStr::new(&func.name(), Span::call_site());
        let output = &func.sig.output;
        let attrs = func.outer_attrs();
        let user_fn = func.renamed(inner.clone());
        let config = model
            .config
            .as_ref()
            .map(|path| quote_spanned!(path.span()=> .config(#path)));
        let keep = model.keep_keys.then(|| quote!(.keep_keys(true)));
        let call = if model.runtime_param.is_some() {
            quote!(|__redisx_rx| #inner(__redisx_rx))
        } else {
            quote!(|_| #inner())
        };
        // The `#[test]` function is compiled only by `cargo test`; these checks of the
        // arguments' types are compiled always, so every build reports them at the user's
        // tokens.
        let config_check = model.config.as_ref().map(|path| {
            quote_spanned! {path.span()=>
                let _: fn(#krate::RedisXBuilder) -> #krate::RedisXBuilder = #path;
            }
        });
        let param_check = model.runtime_param.as_ref().map(|ty| {
            quote_spanned! {ty.span()=>
                #[allow(dead_code)]
                fn __redisx_runtime_param(rx: #krate::RedisX) -> #ty {
                    rx
                }
            }
        });
        quote! {
            #[doc(hidden)]
            // A test body need not await anything.
            #[allow(dead_code, non_snake_case, clippy::unused_async)]
            #user_fn

            const _: () = {
                #config_check
                #param_check
            };

            #(#attrs)*
            #[::core::prelude::v1::test]
            fn #name() #output {
                #krate::testing::block_on(
                    #krate::testing::TestOptions::new(#label) #config #keep,
                    #call,
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::expand_text;

    fn messages(args: TokenStream, item: TokenStream) -> Vec<String> {
        expand_text::<Test>(args, item).unwrap_err()
    }

    #[test]
    fn expands_to_a_test_around_block_on() {
        let out = expand_text::<Test>(
            quote!(config = setup, keep_keys = true),
            quote!(
                #[ignore]
                async fn login(rx: RedisX) {}
            ),
        )
        .unwrap();
        assert!(
            out.contains("async fn __redisx_test_login (rx : RedisX)"),
            "{out}"
        );
        assert!(
            out.contains("# [ignore] # [:: core :: prelude :: v1 :: test] fn login ()"),
            "{out}"
        );
        assert!(out.contains(":: redisx :: testing :: TestOptions :: new (\"login\") . config (setup) . keep_keys (true)"), "{out}");
        assert!(
            out.contains("| __redisx_rx | __redisx_test_login (__redisx_rx)"),
            "{out}"
        );
    }

    #[test]
    fn a_function_without_the_runtime_gets_none() {
        let out = expand_text::<Test>(
            quote!(),
            quote!(
                async fn plain() -> Result<(), String> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        assert!(out.contains("| _ | __redisx_test_plain ()"), "{out}");
        assert!(
            out.contains("fn plain () -> Result < () , String >"),
            "{out}"
        );
    }

    #[test]
    fn rejects_what_cannot_be_a_test() {
        assert_eq!(
            messages(
                quote!(runtime = rx),
                quote!(
                    async fn t(a: RedisX, b: u8) {}
                )
            ),
            [
                "unknown argument `runtime`; expected one of `config`, `keep_keys`, `crate`",
                "a `#[redisx::test]` function takes at most one parameter, the test's runtime (`rx: redisx::RedisX`)",
            ]
        );
        assert_eq!(
            messages(
                quote!(keep_keys = "yes"),
                quote!(
                    #[tokio::test]
                    fn t() {}
                )
            ),
            [
                "`keep_keys` must be `true` or `false`, e.g. `keep_keys = true`",
                "`#[redisx::test]` requires an `async fn`",
                "`#[redisx::test]` already makes the function a test: remove this attribute",
            ]
        );
        assert_eq!(
            messages(
                quote!(config = "setup"),
                quote!(
                    async fn t<T>() {}
                )
            ),
            [
                "`config` must be a path to a function, e.g. `config = test_config`",
                "a `#[redisx::test]` function cannot be generic",
            ]
        );
    }
}
