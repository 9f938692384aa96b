//! Items every attribute's expansion may need, emitted in one shape: the spec static (the
//! compile-time options of a call site) and the one sibling item the design allows, a
//! link-time registration.

use crate::names::SPEC;
use proc_macro2::{Literal, Span, TokenStream};
use quote::{ToTokens, format_ident, quote};

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

    /// Appends `.setter(ms)` (an unsuffixed literal) when there is a number of milliseconds.
    pub(crate) fn set_ms(&mut self, setter: &str, ms: Option<u64>) {
        self.set_some(setter, ms.map(Literal::u64_unsuffixed));
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

/// The one item an expansion may emit beside the function: a link-time registration of
/// `entry` (a constant expression, e.g. `ConsumerSpec::new(..)` naming the function), collected
/// by the runtime at startup through `inventory`. Only free functions can have a sibling
/// item; an attribute that registers must reject methods.
#[cfg_attr(not(test), expect(dead_code, reason = "used by #[stream_consumer]"))]
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
