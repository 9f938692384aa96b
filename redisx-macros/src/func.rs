//! The annotated function: parsed without touching its body, analysed (parameters, receiver,
//! return type) and re-emitted with its signature exactly as written and a new body.

use crate::diag::Diag;
use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, TokenStreamExt, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, FnArg, Ident, Pat, ReturnType, Signature, Type, Visibility, braced, token};

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

/// The names a function binds from its arguments.
pub(crate) struct Params {
    /// Whether the function has a `self` receiver.
    pub(crate) receiver: bool,
    /// Every identifier bound by the non-receiver parameters, in order (`(a, b): (u8, u8)`
    /// binds `a` and `b`; `_` binds nothing).
    pub(crate) names: Vec<Ident>,
}

impl Params {
    /// The parameter called `name`, if any.
    pub(crate) fn find(&self, name: &str) -> Option<&Ident> {
        self.names.iter().find(|ident| ident.unraw() == name)
    }

    /// "the function's parameters are `a`, `b`" or "the function has no parameters".
    pub(crate) fn describe(&self) -> String {
        let mut names: Vec<String> = Vec::new();
        if self.receiver {
            names.push("`self`".to_owned());
        }
        names.extend(
            self.names
                .iter()
                .map(|ident| format!("`{}`", ident.unraw())),
        );
        match names.len() {
            0 => "the function has no parameters".to_owned(),
            1 => format!("the function's only parameter is {}", names[0]),
            _ => format!("the function's parameters are {}", names.join(", ")),
        }
    }
}

fn bindings(pat: &Pat, out: &mut Vec<Ident>) {
    match pat {
        Pat::Ident(pat) => {
            out.push(pat.ident.clone());
            if let Some((_, sub)) = &pat.subpat {
                bindings(sub, out);
            }
        }
        Pat::Tuple(pat) => pat.elems.iter().for_each(|pat| bindings(pat, out)),
        Pat::TupleStruct(pat) => pat.elems.iter().for_each(|pat| bindings(pat, out)),
        Pat::Slice(pat) => pat.elems.iter().for_each(|pat| bindings(pat, out)),
        Pat::Struct(pat) => pat
            .fields
            .iter()
            .for_each(|field| bindings(&field.pat, out)),
        Pat::Reference(pat) => bindings(&pat.pat, out),
        Pat::Type(pat) => bindings(&pat.pat, out),
        Pat::Paren(pat) => bindings(&pat.pat, out),
        _ => {}
    }
}

/// How the function returns.
pub(crate) enum Output<'a> {
    /// No return type.
    Unit,
    /// `-> Ty`.
    Type {
        ty: &'a Type,
        /// The type mentions `impl Trait`, so it cannot annotate a `let`.
        has_impl: bool,
    },
}

/// The last path segment is `Result` (`Result<T, E>`, `io::Result<T>`, ...). An alias with
/// another name (`AppResult<T>`) is not recognised: the check is syntactic.
fn is_result(ty: &Type) -> bool {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Result"),
        Type::Group(group) => is_result(&group.elem),
        Type::Paren(paren) => is_result(&paren.elem),
        _ => false,
    }
}

/// The `T` of `Result<T, ..>` (the first type argument of the last segment).
fn result_ok_type(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Path(path) if path.qself.is_none() => {
            let segment = path.path.segments.last()?;
            let syn::PathArguments::AngleBracketed(args) = &segment.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                syn::GenericArgument::Type(t) => Some(t),
                _ => None,
            })
        }
        Type::Group(group) => result_ok_type(&group.elem),
        Type::Paren(paren) => result_ok_type(&paren.elem),
        _ => None,
    }
}

fn has_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => has_impl(group.stream()),
        TokenTree::Punct(_) | TokenTree::Literal(_) => false,
    })
}

/// A generated local (`__redisx_call`, ...): `Span::mixed_site()` keeps it apart from every name
/// in the user's code.
pub(crate) fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
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
        let mut params = Params {
            receiver: false,
            names: Vec::new(),
        };
        for input in &self.sig.inputs {
            match input {
                FnArg::Receiver(_) => params.receiver = true,
                FnArg::Typed(typed) => bindings(&typed.pat, &mut params.names),
            }
        }
        params
    }

    pub(crate) fn output(&self) -> Output<'_> {
        match &self.sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => Output::Type {
                ty,
                has_impl: has_impl(ty.to_token_stream()),
            },
        }
    }

    /// The type of the cached value: `T` of a `Result<T, E>` return type, else the return type
    /// (`()` without one). `None` when it cannot be named (`impl Trait`).
    pub(crate) fn value_type(&self) -> Option<TokenStream> {
        match self.output() {
            Output::Unit => Some(quote!(())),
            Output::Type { has_impl: true, .. } => None,
            Output::Type { ty, .. } if is_result(ty) => {
                result_ok_type(ty).map(ToTokens::to_token_stream)
            }
            Output::Type { ty, .. } => Some(ty.to_token_stream()),
        }
    }

    /// The return type's span, or the function name's when there is none.
    fn output_span(&self) -> Span {
        match &self.sig.output {
            ReturnType::Type(_, ty) => ty.span(),
            ReturnType::Default => self.sig.ident.span(),
        }
    }

    /// `run_result` for a `Result` return type, else `run`.
    pub(crate) fn run_method(&self) -> Ident {
        let name = match &self.sig.output {
            ReturnType::Type(_, ty) if is_result(ty) => "run_result",
            _ => "run",
        };
        Ident::new(name, self.output_span())
    }

    /// `__redisx_call.run(args).await` (or `run_result`). The method name is spanned to the
    /// return type, so an unmet bound on the returned value (not `Serialize`, ...) shows the
    /// return type as "required by a bound introduced by this call".
    pub(crate) fn run_call(&self, args: &TokenStream) -> TokenStream {
        let call = local("__redisx_call");
        let run = self.run_method();
        quote!(#call.#run(#args).await)
    }

    /// Like [`Func::run_call`], with `_swr` appended to the method name: the variant whose body
    /// may run in the background (stale-while-revalidate), so it must be `Send + 'static`.
    pub(crate) fn run_swr_call(&self, args: &TokenStream) -> TokenStream {
        let call = local("__redisx_call");
        let base = self.run_method();
        let run = Ident::new(&format!("{base}_swr"), base.span());
        quote!(#call.#run(#args).await)
    }

    /// The original body as a future whose output is the declared return type.
    ///
    /// The body stays last and untouched; before it, a never-taken `return` of a value of the
    /// declared type (the "return edge" of tracing-attributes, spanned to the return type)
    /// fixes the block's output type first, so `return` and `?` in the body resolve against
    /// the declared type and a mismatch is reported at the user's expression with "return type
    /// inferred to be `T` here" pointing at the signature. Nothing follows the body, so a body
    /// that diverges (`todo!()`, a `loop` left only by `return`) gives no "unreachable
    /// expression" warning, and the `allow` covers only the edge, never the user's code.
    /// A return type with `impl Trait` cannot be written in a `let`, so it gets no edge.
    pub(crate) fn body_future(&self) -> TokenStream {
        let mut block = TokenStream::new();
        self.brace
            .surround(&mut block, |tokens| self.body.to_tokens(tokens));
        let (ty, span) = match self.output() {
            Output::Type { has_impl: true, .. } => return quote!(async move #block),
            Output::Type { ty, .. } => (ty.to_token_stream(), ty.span()),
            Output::Unit => (quote!(()), self.sig.ident.span()),
        };
        let ret = Ident::new("__redisx_ret", Span::mixed_site().located_at(span));
        quote_spanned! {span=>
            async move {
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
                if false {
                    let #ret: #ty = loop {};
                    return #ret;
                }
                #block
            }
        }
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

/// Parses the annotated item; anything but a function with a body is an error at `#[attr]`.
pub(crate) fn parse(item: TokenStream, attr: &str) -> syn::Result<Func> {
    syn::parse2(item).map_err(|_| {
        syn::Error::new(
            Span::call_site(),
            format!("`#[{attr}]` can only be applied to an `async fn` with a body"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn func(tokens: TokenStream) -> Func {
        syn::parse2(tokens).unwrap()
    }

    fn names(params: &Params) -> Vec<String> {
        params.names.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn params_and_patterns() {
        let f = func(quote!(
            async fn f(
                &self,
                a: u8,
                mut b: u8,
                (c, _): (u8, u8),
                _: u8,
                Point { x, y: r#type }: Point,
            ) {
            }
        ));
        let params = f.params();
        assert!(params.receiver);
        assert_eq!(names(&params), ["a", "b", "c", "x", "r#type"]);
        assert!(params.find("type").is_some());
        assert_eq!(
            params.describe(),
            "the function's parameters are `self`, `a`, `b`, `c`, `x`, `type`"
        );
        assert_eq!(
            func(quote!(
                fn f() {}
            ))
            .params()
            .describe(),
            "the function has no parameters"
        );
        assert_eq!(
            func(quote!(
                fn f(id: u64) {}
            ))
            .params()
            .describe(),
            "the function's only parameter is `id`"
        );
    }

    #[test]
    fn outputs() {
        let kind = |tokens| {
            let f = func(tokens);
            match (f.output(), f.run_method().to_string().as_str()) {
                (Output::Unit, "run") => "unit",
                (
                    Output::Type {
                        has_impl: false, ..
                    },
                    "run_result",
                ) => "result",
                (
                    Output::Type {
                        has_impl: false, ..
                    },
                    "run",
                ) => "plain",
                (Output::Type { has_impl: true, .. }, "run") => "impl",
                _ => "unexpected",
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
            quote!(async move {
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
                if false {
                    let __redisx_ret: T = loop {};
                    return __redisx_ret;
                }
                { x }
            })
            .to_string()
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
