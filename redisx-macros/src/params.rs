//! The names a function binds from its parameters: what key templates and parameter lists
//! (`fingerprint = [req]`) are checked against.

use crate::diag::Diag;
use syn::ext::IdentExt;
use syn::{FnArg, Ident, Pat, Signature};

/// The names a function binds from its arguments.
pub(crate) struct Params {
    /// Whether the function has a `self` receiver.
    pub(crate) receiver: bool,
    /// Every identifier bound by the non-receiver parameters, in order (`(a, b): (u8, u8)`
    /// binds `a` and `b`; `_` binds nothing).
    pub(crate) names: Vec<Ident>,
}

impl Params {
    /// The names `sig` binds.
    pub(crate) fn of(sig: &Signature) -> Self {
        let mut params = Params {
            receiver: false,
            names: Vec::new(),
        };
        for input in &sig.inputs {
            match input {
                FnArg::Receiver(_) => params.receiver = true,
                FnArg::Typed(typed) => bindings(&typed.pat, &mut params.names),
            }
        }
        params
    }

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

    /// Keeps the names in `list` (the value of keyword `kw`, e.g. `fingerprint = [req]`) that
    /// are parameters (or `self` in a method), each spanned as the user wrote it; every other
    /// name is an error at that name.
    pub(crate) fn check_names(&self, kw: &str, list: Vec<Ident>, diag: &mut Diag) -> Vec<Ident> {
        list.into_iter()
            .filter(|name| {
                let known = (name == "self" && self.receiver)
                    || self.find(&name.unraw().to_string()).is_some();
                if !known {
                    diag.error(
                        name.span(),
                        format!(
                            "unknown parameter `{}` in `{kw}`; {}",
                            name.unraw(),
                            self.describe()
                        ),
                    );
                }
                known
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::messages;
    use crate::func::Func;
    use proc_macro2::{Span, TokenStream};
    use quote::quote;

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
    fn checks_named_parameters() {
        let f = func(quote!(
            async fn charge(&self, req: Req, r#type: u8) {}
        ));
        let mut diag = Diag::default();
        let list = vec![
            Ident::new("req", Span::call_site()),
            Ident::new("reqq", Span::call_site()),
            Ident::new_raw("type", Span::call_site()),
            Ident::new("self", Span::call_site()),
        ];
        let kept = f.params().check_names("fingerprint", list, &mut diag);
        assert_eq!(
            kept.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["req", "r#type", "self"]
        );
        assert_eq!(
            messages(diag.finish()),
            [
                "unknown parameter `reqq` in `fingerprint`; the function's parameters are `self`, `req`, `type`"
            ]
        );
        let free = func(quote!(
            async fn f(id: u64) {}
        ));
        let mut diag = Diag::default();
        let list = vec![Ident::new("self", Span::call_site())];
        assert!(
            free.params()
                .check_names("fingerprint", list, &mut diag)
                .is_empty()
        );
        assert_eq!(
            messages(diag.finish()),
            ["unknown parameter `self` in `fingerprint`; the function's only parameter is `id`"]
        );
    }
}
