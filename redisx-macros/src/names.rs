//! The names the expansions introduce, in one place.
//!
//! A generated local is an [`Ident`] with `Span::mixed_site()` (async-trait's convention), so a
//! user parameter called `key`, `cache` or even `__redisx_call` never collides with it, and a
//! user name never captures it.

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::Ident;

/// A generated local name; tokenizes as its mixed-site [`Ident`].
#[derive(Clone, Copy)]
pub(crate) struct Local(&'static str);

/// The call-site value an attribute's runtime function returns (`let __redisx_call = ..`).
pub(crate) const CALL: Local = Local("__redisx_call");
/// The never-read value of the return edge (see `Func::body_future`).
pub(crate) const RET: Local = Local("__redisx_ret");
/// The compile-time options of a call site (`static __REDISX_SPEC: .. = ..;`).
pub(crate) const SPEC: Local = Local("__REDISX_SPEC");
/// The `bool` a `condition` evaluated to.
pub(crate) const ENABLED: Local = Local("__redisx_enabled");
/// The value an `unless` path is called with.
pub(crate) const VALUE: Local = Local("__redisx_v");
/// The `Fingerprint` an `#[idempotent]` call builds from its arguments.
pub(crate) const FP: Local = Local("__redisx_fp");

/// The `&Streams` and `&ConsumerSpec` a `#[stream_consumer]` registration's start is called
/// with.
pub(crate) const STREAMS: Local = Local("__redisx_streams");
pub(crate) const CONSUMER_SPEC: Local = Local("__redisx_spec");

/// The local fn through which a `condition` closure is called. It is spanned to the closure
/// (not mixed-site) so that an arity or type mismatch is reported there; it lives in its own
/// block, so it shadows nothing.
pub(crate) const CONDITION_FN: &str = "__redisx_condition";
/// The prefixes of that fn's generic parameters and arguments (`__A0`, `__a0`, ...).
pub(crate) const CONDITION_TYPE: &str = "__A";
pub(crate) const CONDITION_ARG: &str = "__a";

impl Local {
    pub(crate) fn ident(self) -> Ident {
        Ident::new(self.0, Span::mixed_site())
    }

    /// The name with mixed-site hygiene, located at `span` for messages.
    pub(crate) fn at(self, span: Span) -> Ident {
        Ident::new(self.0, Span::mixed_site().located_at(span))
    }
}

impl ToTokens for Local {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        self.ident().to_tokens(tokens);
    }
}

#[cfg(test)]
mod tests {
    use super::{CALL, SPEC};
    use quote::quote;

    #[test]
    fn tokenizes_as_the_name() {
        assert_eq!(
            quote!(let #CALL = &#SPEC;).to_string(),
            "let __redisx_call = & __REDISX_SPEC ;"
        );
        assert_eq!(CALL.ident(), "__redisx_call");
    }
}
