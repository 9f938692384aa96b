//! Items every attribute's expansion may need, emitted in one shape: the spec static (the
//! compile-time options of a call site) and the one sibling item the design allows, a
//! link-time registration.

use crate::args::Paths;
use crate::driver::Site;
use crate::func::Func;
use crate::key_template::Template;
use crate::names::{CALL, SPEC};
use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Ident;
use syn::spanned::Spanned;

/// `static __REDISX_SPEC: #ty = #ty::new(..).setter(value)...;`: a call site's options, built
/// in a `const` context once (the runtime's spec types have `const fn` builders), read by
/// every call through `&__REDISX_SPEC` ([`SpecStatic::reference`]).
pub(crate) struct SpecStatic {
    ty: TokenStream,
    value: TokenStream,
}

impl SpecStatic {
    /// `ty::new(args)`, e.g. `#krate::__private::CachedSpec` and
    /// `::core::module_path!(), "user"`.
    pub(crate) fn new(ty: TokenStream, args: &TokenStream) -> Self {
        let value = quote!(#ty::new(#args));
        Self { ty, value }
    }

    /// Appends `.setter(value)`.
    pub(crate) fn set(&mut self, setter: &str, value: impl ToTokens) {
        let setter = format_ident!("{setter}", span = Span::call_site());
        self.value.extend(quote!(.#setter(#value)));
    }

    /// Appends `.setter(value)` when there is a value.
    /// `.setter()`: a setter without an argument.
    pub(crate) fn set_unit(&mut self, setter: &str) {
        let setter = format_ident!("{setter}", span = Span::call_site());
        self.value.extend(quote!(.#setter()));
    }

    pub(crate) fn set_some(&mut self, setter: &str, value: Option<impl ToTokens>) {
        if let Some(value) = value {
            self.set(setter, value);
        }
    }

    /// Appends `.vary_by(&["tenant", ..])` when context names were given.
    pub(crate) fn set_vary_by(&mut self, names: Option<Vec<syn::LitStr>>) {
        if let Some(names) = names.filter(|n| !n.is_empty()) {
            self.set("vary_by", quote!(&[#(#names),*]));
        }
    }

    /// Appends `.setter(ms)` (an unsuffixed literal) when there is a number of milliseconds.
    pub(crate) fn set_ms(&mut self, setter: &str, ms: Option<u64>) {
        self.set_some(setter, ms.map(Literal::u64_unsuffixed));
    }

    /// The value alone, `ty::new(..).setter(value)...`, for a spec that is not a static of
    /// its own (a registration's entry, see [`registration`]).
    pub(crate) fn value(&self) -> &TokenStream {
        &self.value
    }

    /// `&__REDISX_SPEC`.
    pub(crate) fn reference() -> TokenStream {
        quote!(&#SPEC)
    }
}

impl ToTokens for SpecStatic {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let Self { ty, value } = self;
        tokens.extend(quote!(static #SPEC: #ty = #value;));
    }
}

/// The body of a fallible attribute (`#[with_lock]`, `#[rate_limit]`): the spec static, then
/// `let __redisx_call = #krate::__private::#entry(&__REDISX_SPEC, #runtime, #key);` and
/// `__redisx_call.#method(async move { original body }).await`. The call is spanned at the
/// function's error type, so a type without `From<redisx::Error>` is reported there, once.
pub(crate) fn fallible_call(
    func: &Func,
    site: &Site,
    spec: &SpecStatic,
    entry: &str,
    key: &Template,
    method: &str,
) -> TokenStream {
    let at = func
        .error_type()
        .map_or_else(|| func.value_span(), Spanned::span);
    let key = key.to_token_stream();
    fallible_call_with(func, site, spec, entry, &key, method, at)
}

/// [`fallible_call`] with any `args` after the spec and the runtime (e.g. `#key,
/// #fingerprint`), the `.#method(..).await` spanned `at` a token of the user's:
/// every unmet bound of the method is reported there, once. (A bound of an `async fn` is
/// checked at the call and again at its `.await`, so spanning one type argument elsewhere,
/// with a turbofish, reports its mistakes twice.)
pub(crate) fn fallible_call_with(
    func: &Func,
    site: &Site,
    spec: &SpecStatic,
    entry: &str,
    args: &TokenStream,
    method: &str,
    at: Span,
) -> TokenStream {
    let Paths { krate, runtime } = &site.paths;
    let spec_ref = SpecStatic::reference();
    let span = Span::mixed_site().located_at(at);
    let call = CALL.at(span);
    let entry = Ident::new(entry, Span::call_site());
    let method = Ident::new(method, span);
    let body = func.body_future();
    let run = quote_spanned!(span=> #call.#method(#body).await);
    func.with_body(&quote! {
        #spec
        let #call = #krate::__private::#entry(#spec_ref, #runtime, #args);
        #run
    })
}

/// The one item an expansion may emit beside the function: a link-time registration of
/// `entry` (a constant expression, e.g. `ConsumerSpec::new(..)` naming the function), collected
/// by the runtime at startup through `inventory`. Only free functions can have a sibling
/// item; an attribute that registers must reject methods.
pub(crate) fn registration(krate: &TokenStream, entry: &TokenStream) -> TokenStream {
    quote! {
        #krate::__private::inventory::submit! { #entry }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_static() {
        let mut spec = SpecStatic::new(
            quote!(::redisx::__private::LockSpec),
            &quote!(::core::module_path!(), "settle"),
        );
        spec.set_ms("ttl_ms", Some(30_000));
        spec.set_ms("wait_ms", None);
        spec.set_some("fair", Some(quote!(true)));
        spec.set_some("mode", None::<TokenStream>);
        assert_eq!(
            spec.to_token_stream().to_string(),
            quote! {
                static __REDISX_SPEC: ::redisx::__private::LockSpec =
                    ::redisx::__private::LockSpec::new(::core::module_path!(), "settle")
                        .ttl_ms(30000).fair(true);
            }
            .to_string()
        );
        assert_eq!(SpecStatic::reference().to_string(), "& __REDISX_SPEC");
    }

    #[test]
    fn registration_item() {
        assert_eq!(
            registration(
                &quote!(::redisx),
                &quote!(::redisx::__private::ConsumerSpec::new("orders", on_order))
            )
            .to_string(),
            quote! {
                ::redisx::__private::inventory::submit! {
                    ::redisx::__private::ConsumerSpec::new("orders", on_order)
                }
            }
            .to_string()
        );
    }
}
