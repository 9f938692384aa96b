//! `#[cache_evict]`: evicts keys and tags before or after the body runs; expands into one
//! `__private::cache_evict(..)` call around the original body.

use super::{TAGS, run_call};
use crate::args::read;
use crate::args::{Arg, ArgParser, Keyword, Kw, Paths, VARY_BY};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::func::Func;
use crate::key_template::{self, Template};
use crate::names::CALL;
use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, LitStr};

const KEYS: Keyword<Vec<LitStr>> =
    Keyword::new("keys", r#"keys = ["user:{id}"]"#, read::template_list);
const WHEN: Keyword<When> = Keyword::new("when", r#"when = "before""#, when);

/// `#[cache_evict]`.
pub(crate) struct CacheEvict;

/// Whether entries are evicted before or after the body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Before,
    After,
}

fn when(kw: Kw, expr: &Expr) -> syn::Result<When> {
    read::choice(
        kw,
        "`when` value",
        expr,
        &[("after", When::After), ("before", When::Before)],
        r#"`"after"` or `"before"`"#,
    )
}

pub(crate) struct Args {
    keys: Arg<Vec<LitStr>>,
    tags: Arg<Vec<LitStr>>,
    when: Arg<When>,
    vary_by: Arg<Vec<LitStr>>,
}

pub(crate) struct Model {
    when: When,
    vary_by: Vec<LitStr>,
    keys: Vec<Template>,
    tags: Vec<Template>,
}

impl Attribute for CacheEvict {
    const NAME: &'static str = "cache_evict";
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        Args {
            keys: args.take(&KEYS),
            tags: args.take(&TAGS),
            when: args.take(&WHEN),
            vary_by: args.take(&VARY_BY),
        }
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let params = func.params();
        // An invalid list was reported already; only a list that is absent or `[]` counts here.
        let present = |list: &Arg<Vec<LitStr>>| {
            list.is_invalid() || list.get().is_some_and(|l| !l.is_empty())
        };
        site.require(
            diag,
            present(&args.keys) || present(&args.tags),
            "`keys` or `tags` to evict",
            KEYS.kw.example,
        );
        let keys = key_template::resolve_all(args.keys.into_value(), &params, diag);
        let tags = key_template::resolve_all(args.tags.into_value(), &params, diag);
        Some(Model {
            when: args.when.get().copied().unwrap_or(When::After),
            vary_by: args.vary_by.into_value().unwrap_or_default(),
            keys,
            tags,
        })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        let Paths { krate, runtime } = &site.paths;
        let when = match model.when {
            When::Before => quote!(#krate::__private::EvictWhen::Before),
            When::After => quote!(#krate::__private::EvictWhen::After),
        };
        let Model {
            keys,
            tags,
            vary_by,
            ..
        } = model;
        let run = run_call(func, false, &func.body_future());
        func.with_body(&quote! {
            let #CALL = #krate::__private::cache_evict(
                #runtime, #when, &[#(#keys),*], &[#(#tags),*], &[#(#vary_by),*]);
            #run
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        driver::expand_text::<CacheEvict>(args, item)
    }

    #[test]
    fn expands() {
        let out = run(
            quote!(keys = ["user:{id}"], tags = ["users"], when = "before"),
            quote!(
                async fn delete(id: u64) -> Result<(), E> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        let call = quote! {
            let __redisx_call = ::redisx::__private::cache_evict(
                ::core::option::Option::None, ::redisx::__private::EvictWhen::Before,
                &[::core::format_args!("user:{}", id)], &[::core::format_args!("users")], &[]);
        };
        assert!(out.contains(&call.to_string()), "{out}");
        assert!(
            out.contains("__redisx_call . run_result (async move"),
            "{out}"
        );

        let out = run(
            quote!(tags = ["users"]),
            quote!(
                async fn reset() {}
            ),
        )
        .unwrap();
        assert!(
            out.contains("EvictWhen :: After , & [] , & [:: core :: format_args ! (\"users\")]"),
            "{out}"
        );
        assert!(out.contains("__redisx_call . run (async move"), "{out}");
    }

    #[test]
    fn errors() {
        let item = quote!(
            async fn f(id: u64) {}
        );
        assert_eq!(
            run(quote!(key = "user:{id}"), item.clone()).unwrap_err(),
            [
                "unknown argument `key`; expected one of `keys`, `tags`, `when`, `vary_by`, `crate`, `runtime`"
            ]
        );
        let missing = [
            r#"`#[cache_evict]` needs `keys` or `tags` to evict, e.g. `#[cache_evict(keys = ["user:{id}"])]`"#,
        ];
        assert_eq!(run(quote!(), item.clone()).unwrap_err(), missing);
        assert_eq!(
            run(quote!(keys = [], tags = []), item.clone()).unwrap_err(),
            missing
        );
        // An invalid list is reported once, not also as missing.
        assert_eq!(
            run(quote!(keys = "user:{id}"), item.clone()).unwrap_err(),
            [r#"`keys` must be an array of string literals, e.g. `keys = ["user:{id}"]`"#]
        );
        assert_eq!(
            run(quote!(keys = ["a"], when = "during"), item.clone()).unwrap_err(),
            [r#"unknown `when` value `during`; expected `"after"` or `"before"`"#]
        );
        assert_eq!(
            run(quote!(keys = ["{x}"]), item).unwrap_err(),
            ["unknown parameter `x` in key template; the function's only parameter is `id`"]
        );
        assert_eq!(
            run(
                quote!(keys = ["a"]),
                quote!(
                    fn f() {}
                )
            )
            .unwrap_err(),
            ["`#[cache_evict]` requires an `async fn`"]
        );
    }
}
