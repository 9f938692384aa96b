//! The annotated function: parsed without touching its body, analysed (parameters, receiver,
//! return type) and re-emitted with its signature exactly as written and a new body.

use crate::diag::Diag;
use crate::names::RET;
use crate::params::Params;
use crate::ty::{self, ResultType};
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, TokenStreamExt, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, ReturnType, Signature, Type, Visibility, braced, token};

/// A function item (free or in an `impl` block). The body is kept as raw tokens: it is never
/// inspected, only moved.
pub(crate) struct Func {
    outer_attrs: Vec<Attribute>,
    vis: Visibility,
    pub(crate) sig: Signature,
    brace: token::Brace,
    inner_attrs: Vec<Attribute>,
    body: TokenStream,
}

impl Parse for Func {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let outer_attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let content;
        let brace = braced!(content in input);
        let inner_attrs = content.call(Attribute::parse_inner)?;
        let body = content.parse()?;
        Ok(Self {
            outer_attrs,
            vis,
            sig,
            brace,
            inner_attrs,
            body,
        })
    }
}

/// Parses the annotated item; anything but a function with a body is an error at `#[attr]`.
pub(crate) fn parse(item: TokenStream, attr: &str) -> syn::Result<Func> {
    syn::parse2(item).map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            format!("`#[{attr}]` can only be applied to an `async fn` with a body"),
        )
    })
}

/// How a handler takes its payload: `Message<T>` or `T` itself.
#[derive(Clone, Copy)]
pub(crate) enum Payload<'a> {
    /// `Wrapper<T>`: holds `T`.
    Wrapped(&'a Type),
    /// `T`.
    Bare(&'a Type),
}

/// The lints the return edge of [`Func::body_future`] may trigger (it is never taken, returns
/// a diverging value, and may be of type `()`), allowed on the edge alone.
fn edge_lints(span: Span) -> TokenStream {
    quote_spanned! {span=>
        #[allow(
            unknown_lints,
            unreachable_code,
            clippy::diverging_sub_expression,
            clippy::empty_loop,
            clippy::let_unit_value,
            clippy::let_with_type_underscore,
            clippy::needless_return,
            clippy::unreachable
        )]
    }
}

impl Func {
    /// Records "`#[attr]` requires an `async fn`" (at the `fn` token) when it is not one.
    pub(crate) fn require_async(&self, attr: &str, diag: &mut Diag) {
        if self.sig.asyncness.is_none() {
            diag.error(
                self.sig.fn_token.span,
                format!("`#[{attr}]` requires an `async fn`"),
            );
        }
    }

    pub(crate) fn name(&self) -> String {
        self.sig.ident.unraw().to_string()
    }

    pub(crate) fn params(&self) -> Params {
        Params::of(&self.sig)
    }

    /// The type of the first parameter that is not the receiver, read as `wrapper<T>` or `T`.
    pub(crate) fn payload(&self, wrapper: &str) -> Option<Payload<'_>> {
        let ty = self.sig.inputs.iter().find_map(|input| match input {
            FnArg::Typed(typed) => Some(&*typed.ty),
            FnArg::Receiver(_) => None,
        })?;
        Some(ty::wrapped(ty, wrapper).map_or(Payload::Bare(ty), Payload::Wrapped))
    }

    /// The declared return type; `None` without one.
    pub(crate) fn return_type(&self) -> Option<&Type> {
        match &self.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(ty),
        }
    }

    /// The return type's parts when it is a `Result` (see [`ty::result`]).
    pub(crate) fn result(&self) -> Option<ResultType<'_>> {
        self.return_type().and_then(ty::result)
    }

    /// The `E` of a `Result<T, E>` return type, when it can be named: written as the second
    /// argument, and no `impl Trait` anywhere in the return type.
    pub(crate) fn error_type(&self) -> Option<&Type> {
        self.return_type()
            .filter(|ty| !ty::has_impl(ty))
            .and_then(ty::result)
            .and_then(|result| result.err)
    }

    /// The type of the value a call produces: `T` of a `Result<T, E>` return type, else the
    /// return type (`()` without one). `None` when it cannot be named (`impl Trait`).
    pub(crate) fn value_type(&self) -> Option<TokenStream> {
        match self.return_type() {
            None => Some(quote!(())),
            Some(ty) if ty::has_impl(ty) => None,
            Some(ty) => match ty::result(ty) {
                Some(result) => result.ok.map(ToTokens::to_token_stream),
                None => Some(ty.to_token_stream()),
            },
        }
    }

    /// Where a message about the produced value points: the `T` of a `Result<T, E>`, else the
    /// return type, else the function's name.
    pub(crate) fn value_span(&self) -> Span {
        match self.return_type() {
            None => self.sig.ident.span(),
            Some(ty) => ty::result(ty).and_then(|r| r.ok).unwrap_or(ty).span(),
        }
    }

    /// The return type as a [`ResultType`]; otherwise records, at the return type (at the name
    /// without one), that `#[attr]` requires `Result<T, E>` with `E: From<redisx::Error>`.
    pub(crate) fn require_result(&self, attr: &str, diag: &mut Diag) -> Option<ResultType<'_>> {
        let result = self.result();
        if result.is_none() {
            let span = self
                .return_type()
                .map_or(self.sig.ident.span(), Spanned::span);
            diag.error(
                span,
                format!(
                    "`#[{attr}]` requires a function returning `Result<T, E>` with `E: From<redisx::Error>`"
                ),
            );
        }
        result
    }

    /// The original body as a future whose output is the declared return type:
    /// `async move { <edge> <body> }`, in the body's own braces.
    ///
    /// The body's statements stay last and untouched; before them, a never-taken `return` of a
    /// value of the declared type (the "return edge" of tracing-attributes, spanned to the
    /// return type) fixes the block's output type first, so `return` and `?` in the body
    /// resolve against the declared type and a mismatch is reported at the user's expression
    /// with "return type inferred to be `T` here" pointing at the signature. Nothing follows
    /// the body, so a body that diverges (`todo!()`, a `loop` left only by `return`) gives no
    /// "unreachable expression" warning, and the `allow` covers only the edge, never the user's
    /// code. The body is not wrapped in a block of its own: a one-line body (`{ Ok(id) }`)
    /// would then warn of unnecessary braces (tracing#1831). A return type with `impl Trait`
    /// cannot be written in a `let`, so it gets no edge.
    pub(crate) fn body_future(&self) -> TokenStream {
        let edge = match self.return_type() {
            Some(ty) if ty::has_impl(ty) => None,
            Some(ty) => Some((ty.to_token_stream(), ty.span())),
            None => Some((quote!(()), self.sig.ident.span())),
        };
        let mut future = quote_spanned!(self.brace.span.open()=> async move);
        self.brace.surround(&mut future, |tokens| {
            if let Some((ty, span)) = edge {
                let ret = RET.at(span);
                let lints = edge_lints(span);
                tokens.extend(quote_spanned! {span=>
                    #lints
                    if false {
                        let #ret: #ty = loop {};
                        return #ret;
                    }
                });
            }
            self.body.to_tokens(tokens);
        });
        future
    }

    /// The attributes written on the function (`#[ignore]`, doc comments, ...).
    pub(crate) fn outer_attrs(&self) -> &[Attribute] {
        &self.outer_attrs
    }

    /// The function as written, without its outer attributes and named `ident`.
    pub(crate) fn renamed(&self, ident: syn::Ident) -> TokenStream {
        let mut sig = self.sig.clone();
        sig.ident = ident;
        let mut tokens = TokenStream::new();
        self.vis.to_tokens(&mut tokens);
        sig.to_tokens(&mut tokens);
        self.brace.surround(&mut tokens, |tokens| {
            tokens.append_all(&self.inner_attrs);
            self.body.to_tokens(tokens);
        });
        tokens
    }

    /// The function exactly as written: for an attribute that leaves it alone and emits an
    /// item beside it (a registration).
    pub(crate) fn as_written(&self) -> TokenStream {
        self.with_body(&self.body)
    }

    /// The function with its attributes and signature as written and `body` as its body.
    pub(crate) fn with_body(&self, body: &TokenStream) -> TokenStream {
        let mut tokens = TokenStream::new();
        tokens.append_all(&self.outer_attrs);
        self.vis.to_tokens(&mut tokens);
        self.sig.to_tokens(&mut tokens);
        self.brace.surround(&mut tokens, |tokens| {
            tokens.append_all(&self.inner_attrs);
            body.to_tokens(tokens);
        });
        tokens
    }
}

/// What [`Func::body_future`] emits for return type `ty` and body statements `body`, written
/// out once for the tests of every expansion.
#[cfg(test)]
pub(crate) fn expected_future(ty: &TokenStream, body: &TokenStream) -> TokenStream {
    let lints = edge_lints(Span::call_site());
    quote! {
        async move {
            #lints
            if false {
                let __redisx_ret: #ty = loop {};
                return __redisx_ret;
            }
            #body
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(tokens: TokenStream) -> Func {
        syn::parse2(tokens).unwrap()
    }

    fn text(tokens: Option<impl ToTokens>) -> Option<String> {
        tokens.map(|t| t.to_token_stream().to_string())
    }

    #[test]
    fn outputs() {
        let kind = |tokens| {
            let f = func(tokens);
            match (f.return_type(), f.result().is_some()) {
                (None, _) => "unit",
                (Some(ty), _) if ty::has_impl(ty) => "impl",
                (Some(_), true) => "result",
                (Some(_), false) => "plain",
            }
        };
        assert_eq!(
            kind(quote!(
                async fn f() {}
            )),
            "unit"
        );
        assert_eq!(
            kind(quote!(
                async fn f() -> () {}
            )),
            "plain"
        );
        assert_eq!(
            kind(quote!(
                async fn f() -> Result<u8, E> {}
            )),
            "result"
        );
        assert_eq!(
            kind(quote!(
                async fn f() -> std::io::Result<u8> {}
            )),
            "result"
        );
        assert_eq!(
            kind(quote!(
                async fn f() -> Option<Result<u8, E>> {}
            )),
            "plain"
        );
        assert_eq!(
            kind(quote!(
                async fn f() -> Vec<impl Display> {}
            )),
            "impl"
        );
    }

    #[test]
    fn value_and_error_types() {
        let types = |tokens| {
            let f = func(tokens);
            (text(f.value_type()), text(f.error_type()))
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            types(quote!(
                async fn f() -> Result<User, AppError> {}
            )),
            (some("User"), some("AppError"))
        );
        assert_eq!(
            types(quote!(
                async fn f() -> io::Result<User> {}
            )),
            (some("User"), None)
        );
        assert_eq!(
            types(quote!(
                async fn f() -> Result<impl Display, E> {}
            )),
            (None, None)
        );
        assert_eq!(
            types(quote!(
                async fn f() -> u8 {}
            )),
            (some("u8"), None)
        );
        assert_eq!(
            types(quote!(
                async fn f() {}
            )),
            (some("()"), None)
        );
    }

    #[test]
    fn requires_result() {
        let check = |tokens| {
            let f = func(tokens);
            let mut diag = Diag::default();
            let unit = f
                .require_result("with_lock", &mut diag)
                .map(|r| r.is_unit());
            (unit, diag.finish().err().map(|e| e.to_string()))
        };
        let message = "`#[with_lock]` requires a function returning `Result<T, E>` with `E: From<redisx::Error>`";
        assert_eq!(
            check(quote!(
                async fn f() -> Result<(), E> {}
            )),
            (Some(true), None)
        );
        assert_eq!(
            check(quote!(
                async fn f() -> anyhow::Result<u8> {}
            )),
            (Some(false), None)
        );
        assert_eq!(
            check(quote!(
                async fn f() -> u8 {}
            )),
            (None, Some(message.to_owned()))
        );
        assert_eq!(
            check(quote!(
                async fn f() {}
            )),
            (None, Some(message.to_owned()))
        );
    }

    #[test]
    fn payloads() {
        let payload = |tokens| match func(tokens).payload("Message") {
            Some(Payload::Wrapped(ty)) => format!("wrapped {}", ty.to_token_stream()),
            Some(Payload::Bare(ty)) => format!("bare {}", ty.to_token_stream()),
            None => "none".to_owned(),
        };
        assert_eq!(
            payload(quote!(
                async fn on(msg: Message<Order>) {}
            )),
            "wrapped Order"
        );
        assert_eq!(
            payload(quote!(
                async fn on(&self, order: Order, n: u8) {}
            )),
            "bare Order"
        );
        assert_eq!(
            payload(quote!(
                async fn on(&self) {}
            )),
            "none"
        );
    }

    #[test]
    fn keeps_attributes_and_signature() {
        let f = func(quote! {
            #[doc = "outer"]
            pub(crate) async fn f<T: Clone>(x: T) -> T where T: Send { #![allow(unused)] x }
        });
        assert_eq!(
            f.with_body(&quote!(body)).to_string(),
            quote! {
                #[doc = "outer"]
                pub(crate) async fn f<T: Clone>(x: T) -> T where T: Send { #![allow(unused)] body }
            }
            .to_string()
        );
        assert_eq!(
            f.body_future().to_string(),
            expected_future(&quote!(T), &quote!(x)).to_string()
        );
    }

    #[test]
    fn not_a_function() {
        let error = parse(
            quote!(
                struct S;
            ),
            "cached",
        )
        .err()
        .unwrap();
        assert_eq!(
            error.to_string(),
            "`#[cached]` can only be applied to an `async fn` with a body"
        );
    }
}
