//! `#[cache_evict]`: parse the arguments ([`Args`]), validate them against the function
//! ([`Model`]), then [`expand`] into one `__private::cache_evict(..)` call around the original
//! body.

use crate::args::{self, CRATE, Common, KEYS, Kw, Once, Paths, RUNTIME, TAGS, WHEN};
use crate::diag::{self, Diag};
use crate::func::{self, Func, local};
use crate::key_template::{self, Template};
use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::LitStr;

/// What `#[cache_evict]` accepts, in the order messages list it.
const ACCEPTED: &[Kw] = &[KEYS, TAGS, WHEN, CRATE, RUNTIME];

/// The entry point behind `#[cache_evict]`.
pub(crate) fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    diag::or_item_with_errors(item.clone(), build(args, item))
}

fn build(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let mut diag = Diag::default();
    let args = Args::parse(args, &mut diag);
    let func = match func::parse(item, "cache_evict") {
        Ok(func) => func,
        Err(error) => return Err(diag.fail(error)),
    };
    func.require_async("cache_evict", &mut diag);
    let model = Model::validate(args, &func, &mut diag);
    diag.finish()?;
    Ok(expand(&func, &model))
}

/// Whether entries are evicted before or after the body runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum When {
    Before,
    After,
}

fn when(kw: Kw, expr: &syn::Expr) -> syn::Result<When> {
    args::choice_named(
        kw,
        "`when` value",
        expr,
        &[("after", When::After), ("before", When::Before)],
        r#"`"after"` or `"before"`"#,
    )
}

struct Args {
    keys: Once<Vec<LitStr>>,
    tags: Once<Vec<LitStr>>,
    when: Once<When>,
    common: Common,
}

impl Args {
    fn parse(tokens: TokenStream, diag: &mut Diag) -> Self {
        let mut args = Self {
            keys: Once::new(KEYS),
            tags: Once::new(TAGS),
            when: Once::new(WHEN),
            common: Common::default(),
        };
        for arg in &args.common.parse_raw(diag, tokens, KEYS.example) {
            if args.keys.matches(arg) {
                args.keys
                    .set(diag, arg, |kw, expr| args::lit_str_list(kw, expr, false));
            } else if args.tags.matches(arg) {
                args.tags
                    .set(diag, arg, |kw, expr| args::lit_str_list(kw, expr, false));
            } else if args.when.matches(arg) {
                args.when.set(diag, arg, when);
            } else if !args.common.accept(diag, arg) {
                args.common.reject(diag, arg, ACCEPTED);
            }
        }
        args
    }
}

struct Model {
    paths: Paths,
    when: When,
    keys: Vec<Template>,
    tags: Vec<Template>,
}

impl Model {
    fn validate(args: Args, func: &Func, diag: &mut Diag) -> Self {
        let params = func.params();
        let nothing = |list: &Once<Vec<LitStr>>| list.get().is_none_or(Vec::is_empty);
        // An invalid list was reported already; only a list that is absent or `[]` counts here.
        let invalid = |list: &Once<Vec<LitStr>>| list.is_given() && list.get().is_none();
        if nothing(&args.keys)
            && nothing(&args.tags)
            && !invalid(&args.keys)
            && !invalid(&args.tags)
            && !args.common.incomplete()
        {
            diag.error(
                Span::call_site(),
                r#"`#[cache_evict]` needs `keys` or `tags` to evict, e.g. `#[cache_evict(keys = ["user:{id}"])]`"#,
            );
        }
        let mut resolve = |list: Once<Vec<LitStr>>| -> Vec<Template> {
            list.into_value()
                .unwrap_or_default()
                .iter()
                .filter_map(|lit| diag.ok(key_template::resolve(lit, &params)))
                .collect()
        };
        let keys = resolve(args.keys);
        let tags = resolve(args.tags);
        Model {
            paths: args.common.build(),
            when: args.when.get().copied().unwrap_or(When::After),
            keys,
            tags,
        }
    }
}

fn expand(func: &Func, model: &Model) -> TokenStream {
    let Paths { krate, runtime } = &model.paths;
    let call = local("__redisx_call");
    let when = match model.when {
        When::Before => quote!(#krate::__private::EvictWhen::Before),
        When::After => quote!(#krate::__private::EvictWhen::After),
    };
    let keys = &model.keys;
    let tags = &model.tags;
    let run = func.run_call(&func.body_future());
    func.with_body(&quote! {
        let #call = #krate::__private::cache_evict(
            #runtime, #when, &[#(#keys),*], &[#(#tags),*]);
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
                &[::core::format_args!("user:{}", id)], &[::core::format_args!("users")]);
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
            ["unknown argument `key`; expected one of `keys`, `tags`, `when`, `crate`, `runtime`"]
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
