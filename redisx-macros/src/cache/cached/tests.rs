use super::*;
use crate::driver;
use crate::func::expected_future as future;

/// The expansion, or the error messages.
fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
    driver::expand_text::<Cached>(args, item)
}

fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
    run(args, item).expect_err("expected errors")
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

/// The error-sharing argument for the error type `error`.
fn sharing(krate: &TokenStream, error: &TokenStream) -> TokenStream {
    quote! {
        {
            #[allow(unused_imports)]
            use #krate::__private::{ShareClone as _, ShareKnown as _};
            (&&#krate::__private::ErrorProbe::<#error>::new()).sharing()
        }
    }
}

fn assert_expands(args: TokenStream, item: TokenStream, expected: &TokenStream) {
    assert_eq!(run(args, item).unwrap(), expected.to_string());
}

#[test]
fn expands_contract_example() {
    let future = future(&quote!(Result<User, AppError>), &quote!(load(id).await));
    let erasure = erasure(&quote!(::redisx), &quote!(User));
    let sharing = sharing(&quote!(::redisx), &quote!(AppError));
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
                    ::redisx::__private::CachedSpec::new(::core::module_path!(), "user")
                        .ttl_ms(300000);
                let __redisx_call = ::redisx::__private::cached::<_>(
                    &__REDISX_SPEC, ::core::option::Option::None, true,
                    ::redisx::__private::template_key(::core::format_args!("user:{}", id)),
                    &[::core::format_args!("users"), ::core::format_args!("user:{}", id)],
                    #erasure);
                __redisx_call.run_result(
                    #future,
                    ::redisx::__private::never,
                    #sharing).await
            }
        },
    );
}

#[test]
fn expands_every_option() {
    let future = future(&quote!(Vec<u8>), &quote!(self.go(q).await));
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
                    rx::__private::CachedSpec::new(::core::module_path!(), "find")
                        .ttl_ms(3600000)
                        .codec(rx::__private::CodecKind::Json)
                        .l1_ttl_ms(30000)
                        .swr_ms(30000).stale_if_error_ms(3600000)
                        .mode(rx::__private::CacheMode::L1Only);
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
                    rx::__private::template_key(::core::format_args!("{}:{}", self.tenant, q.id)),
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
    let future = future(&quote!(()), &quote!());
    let erasure = erasure(&quote!(::redisx), &quote!(()));
    assert_expands(
        quote!(),
        quote!(
            async fn f(a: u8, (b, _): (u8, u8)) {}
        ),
        &quote! {
            async fn f(a: u8, (b, _): (u8, u8)) {
                static __REDISX_SPEC: ::redisx::__private::CachedSpec =
                    ::redisx::__private::CachedSpec::new(::core::module_path!(), "f");
                let __redisx_call = ::redisx::__private::cached::<_>(
                    &__REDISX_SPEC, ::core::option::Option::None, true,
                    ::redisx::__private::auto_key(::core::option::Option::None, &(&a, &b,)),
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
    .unwrap();
    assert!(
        method.contains(
            &quote!(::redisx::__private::auto_key(
                ::core::option::Option::Some(::core::any::type_name::<Self>()),
                &()
            ))
            .to_string()
        ),
        "{method}"
    );
    // `impl Trait` cannot annotate a `let` nor be probed.
    assert!(
        method.contains(&quote!(::redisx::__private::Erasure::boxed()).to_string()),
        "{method}"
    );
    assert!(
        method.contains(&quote!(.run(async move { 1 }, ::redisx::__private::never)).to_string()),
        "{method}"
    );
}

#[test]
fn expands_a_method_with_swr_and_a_result() {
    let out = run(
        quote!(swr = "30s", condition = Self::worth_it),
        quote!(
            async fn load(self, id: u64) -> Result<Arc<Item>, Error> {
                self.fetch(id).await
            }
        ),
    )
    .unwrap();
    let expected = [
        quote!(let __redisx_enabled: bool = (Self::worth_it)(&id);).to_string(),
        quote!(::redisx::__private::auto_key(
            ::core::option::Option::Some(::core::any::type_name::<Self>()),
            &(&id,)
        ))
        .to_string(),
        erasure(&quote!(::redisx), &quote!(Arc<Item>)).to_string(),
        sharing(&quote!(::redisx), &quote!(Error)).to_string(),
        "__redisx_call . run_result_swr (async move".to_owned(),
    ];
    for part in expected {
        assert!(out.contains(&part), "{part} in {out}");
    }
}

#[test]
fn errors_that_cannot_be_named_are_shared_by_known_type() {
    for item in [
        quote!(
            async fn f() -> io::Result<u8> {
                Ok(1)
            }
        ),
        quote!(
            async fn f() -> Result<u8, impl Error> {
                Ok(1)
            }
        ),
    ] {
        let out = run(quote!(key = "k"), item).unwrap();
        assert!(
            out.contains(&quote!(::redisx::__private::ErrorSharing::known()).to_string()),
            "{out}"
        );
        assert!(!out.contains("ErrorProbe"), "{out}");
    }
    let plain = run(
        quote!(key = "k"),
        quote!(
            async fn f() -> u8 {
                1
            }
        ),
    )
    .unwrap();
    assert!(!plain.contains("Share") && !plain.contains("ErrorProbe"));
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
            "unknown argument `tll`; expected one of `key`, `ttl`, `l1_ttl`, `tags`, `swr`, `stale_if_error`, `mode`, `unless`, `condition`, `codec`, `vary_by`, `crate`, `runtime`"
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
            "unknown argument `bogus`; expected one of `key`, `ttl`, `l1_ttl`, `tags`, `swr`, `stale_if_error`, `mode`, `unless`, `condition`, `codec`, `vary_by`, `crate`, `runtime`",
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
        errors(quote!(ttl = "0s"), item.clone()),
        ["`ttl` must be greater than zero"]
    );
    assert_eq!(
        errors(quote!(ttl = "5m", l1_ttl = "1h"), item.clone()),
        ["`l1_ttl` of 1h exceeds `ttl` of 5m; an L1 entry must not outlive its L2 entry"]
    );
    assert!(run(quote!(ttl = "5m", l1_ttl = "5m"), item.clone()).is_ok());
    assert!(run(quote!(l1_ttl = "1h"), item.clone()).is_ok());
    // The runtime's config bounds a ttl and the tags of a key; the macro passes them on.
    let long = run(quote!(ttl = "2d", l1_ttl = "25h"), item.clone()).unwrap();
    assert!(
        long.contains(". ttl_ms (172800000) . l1_ttl_ms (90000000)"),
        "{long}"
    );
    let eleven = run(
        quote!(
            key = "k",
            tags = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"]
        ),
        item,
    )
    .unwrap();
    assert_eq!(eleven.matches("format_args").count(), 12, "{eleven}");
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
fn callables() {
    let expr = |tokens| syn::parse2::<Expr>(tokens).unwrap();
    assert!(matches!(
        callable(UNLESS.kw, &expr(quote!(Vec::is_empty))),
        Ok(Callable::Path(_))
    ));
    assert!(matches!(
        callable(UNLESS.kw, &expr(quote!(|v| v.is_empty()))),
        Ok(Callable::Closure(_))
    ));
    assert_eq!(
        callable(UNLESS.kw, &expr(quote!("is_empty")))
            .err()
            .map(|e| e.to_string()),
        Some(
            "`unless` must be a function path or a closure, e.g. `unless = |value| value.is_empty()`"
                .to_owned()
        )
    );
}

#[test]
fn swr_needs_owned_arguments() {
    assert_eq!(
        errors(
            quote!(swr = "30s"),
            quote!(
                async fn f(&self, name: &str) -> u8 {
                    1
                }
            )
        ),
        [
            "`swr` refreshes in the background, so the function cannot borrow `self`; take `self` by value (e.g. a cheap `Clone` handle) or drop `swr`",
            "`swr` refreshes in the background, so the function's parameters must be owned; take this argument by value or drop `swr`",
        ]
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
            "unknown argument `tll`; expected one of `key`, `ttl`, `l1_ttl`, `tags`, `swr`, `stale_if_error`, `mode`, `unless`, `condition`, `codec`, `vary_by`, `crate`, `runtime`",
            "`#[cached]` can only be applied to an `async fn` with a body",
        ]
    );
}
