//! What a type says, read syntactically: `impl Trait` inside it, the `T` and `E` of a
//! `Result<T, E>`, the `T` of a wrapper such as `Message<T>`. Aliases under another name
//! (`AppResult<T>`) are not recognised: a macro sees tokens, not types.

use proc_macro2::{TokenStream, TokenTree};
use quote::ToTokens;
use syn::{GenericArgument, PathArguments, PathSegment, Type};

/// The type mentions `impl Trait` somewhere, so it cannot be written in a `let` or a turbofish.
pub(crate) fn has_impl(ty: &Type) -> bool {
    fn walk(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => walk(group.stream()),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        })
    }
    walk(ty.to_token_stream())
}

/// Looks through the invisible groups and parentheses around a type.
fn unwrap_parens(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// The last segment of a plain path type (`a::b::C<..>` gives `C<..>`).
fn last_segment(ty: &Type) -> Option<&PathSegment> {
    match unwrap_parens(ty) {
        Type::Path(path) if path.qself.is_none() => path.path.segments.last(),
        _ => None,
    }
}

/// The type arguments of the last segment, in order (lifetimes and constants skipped).
fn type_args(segment: &PathSegment) -> Vec<&Type> {
    let PathArguments::AngleBracketed(args) = &segment.arguments else {
        return Vec::new();
    };
    args.args
        .iter()
        .filter_map(|arg| match arg {
            GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect()
}

/// The parts of a type whose last path segment is `Result` (`Result<T, E>`,
/// `std::io::Result<T>`, ...).
#[derive(Clone, Copy)]
pub(crate) struct ResultType<'a> {
    /// `T`; `None` for a bare `Result` alias without arguments.
    pub(crate) ok: Option<&'a Type>,
    /// `E`, when written: the second type argument (`io::Result<T>` has none).
    pub(crate) err: Option<&'a Type>,
}

/// `Some` when the last segment of `ty` is `Result`.
pub(crate) fn result(ty: &Type) -> Option<ResultType<'_>> {
    let segment = last_segment(ty).filter(|segment| segment.ident == "Result")?;
    let args = type_args(segment);
    Some(ResultType {
        ok: args.first().copied(),
        err: args.get(1).copied(),
    })
}

impl<'a> ResultType<'a> {
    /// `Result<(), E>`.
    pub(crate) fn is_unit(&self) -> bool {
        self.ok.is_some_and(
            |ok| matches!(unwrap_parens(ok), Type::Tuple(tuple) if tuple.elems.is_empty()),
        )
    }

    /// The `T` of `Result<Option<T>, E>`.
    pub(crate) fn ok_option(&self) -> Option<&'a Type> {
        self.ok.and_then(|ok| wrapped(ok, "Option"))
    }
}

/// The `T` of `Wrapper<T>` when the last segment of `ty` is `wrapper` with one type argument
/// (`Message<Order>` gives `Order`, `redisx::Message<Order>` too).
pub(crate) fn wrapped<'a>(ty: &'a Type, wrapper: &str) -> Option<&'a Type> {
    let segment = last_segment(ty).filter(|segment| segment.ident == wrapper)?;
    match type_args(segment).as_slice() {
        [inner] => Some(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn ty(tokens: TokenStream) -> Type {
        syn::parse2(tokens).unwrap()
    }

    fn text(ty: Option<&Type>) -> Option<String> {
        ty.map(|ty| ty.to_token_stream().to_string())
    }

    #[test]
    fn impl_trait() {
        assert!(has_impl(&ty(quote!(impl Display))));
        assert!(has_impl(&ty(quote!(Vec<Box<impl Display>>))));
        assert!(!has_impl(&ty(quote!(Vec<Box<dyn Display>>))));
    }

    #[test]
    fn results() {
        let parts = |tokens| {
            let ty = ty(tokens);
            result(&ty).map(|r| (text(r.ok), text(r.err)))
        };
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(parts(quote!(Result<u8, E>)), Some((some("u8"), some("E"))));
        assert_eq!(
            parts(quote!(std::result::Result<Vec<u8>, my::Error>)),
            Some((some("Vec < u8 >"), some("my :: Error")))
        );
        assert_eq!(parts(quote!(io::Result<u8>)), Some((some("u8"), None)));
        assert_eq!(
            parts(quote!((Result<u8, E>))),
            Some((some("u8"), some("E")))
        );
        assert_eq!(parts(quote!(Result)), Some((None, None)));
        assert_eq!(parts(quote!(Option<Result<u8, E>>)), None);
        assert_eq!(parts(quote!(AppResult<u8>)), None);
        assert_eq!(parts(quote!(<T as Tr>::Result)), None);
    }

    #[test]
    fn result_shapes() {
        let shapes = |tokens| {
            let ty = ty(tokens);
            let r = result(&ty).unwrap();
            (r.is_unit(), text(r.ok_option()))
        };
        assert_eq!(shapes(quote!(Result<(), E>)), (true, None));
        assert_eq!(shapes(quote!(Result<((),), E>)), (false, None));
        assert_eq!(
            shapes(quote!(Result<Option<Receipt>, E>)),
            (false, Some("Receipt".to_owned()))
        );
        assert_eq!(
            shapes(quote!(Result<std::option::Option<u8>, E>)),
            (false, Some("u8".to_owned()))
        );
        assert_eq!(shapes(quote!(Result<u8, E>)), (false, None));
    }

    #[test]
    fn wrappers() {
        assert_eq!(
            text(wrapped(&ty(quote!(Message<Order>)), "Message")),
            Some("Order".to_owned())
        );
        assert_eq!(
            text(wrapped(&ty(quote!(redisx::Message<Vec<u8>>)), "Message")),
            Some("Vec < u8 >".to_owned())
        );
        assert_eq!(text(wrapped(&ty(quote!(Order)), "Message")), None);
        assert_eq!(text(wrapped(&ty(quote!(Message)), "Message")), None);
        assert_eq!(text(wrapped(&ty(quote!(&Message<u8>)), "Message")), None);
    }
}
