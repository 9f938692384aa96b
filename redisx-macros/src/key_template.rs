//! Key templates: `"user:{id}"`, `"{req.user.id}"`, `"{self.tenant}:{id}"`.
//!
//! A template becomes `::core::format_args!("user:{}", id)`: the placeholders turn into explicit
//! format arguments, spanned to the string literal, so a parameter that is not `Display`
//! is reported at the template (the way thiserror rewrites `#[error("{var}")]`). Every
//! placeholder's root must be a parameter of the function (or `self` in a method); this is
//! checked here, at compile time. `{{` and `}}` stand for literal braces.

use crate::diag::Diag;
use crate::params::Params;
use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};
use syn::{Ident, LitStr, Member, Token};

/// One `{root.member.member}` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Placeholder {
    pub(crate) root: String,
    pub(crate) members: Vec<String>,
}

impl Placeholder {
    /// `root.member.member`, as written.
    fn path(&self) -> String {
        let mut path = self.root.clone();
        for member in &self.members {
            path.push('.');
            path.push_str(member);
        }
        path
    }
}

/// A template split into a format string (placeholders replaced by `{}`) and its placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Parsed {
    pub(crate) format: String,
    pub(crate) placeholders: Vec<Placeholder>,
}

/// Why a template's syntax was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyntaxError {
    /// `{}`.
    Empty,
    /// A `{` without its `}`.
    Unclosed,
    /// A `}` that closes nothing.
    UnmatchedClose,
    /// Anything else between braces (`{id:?}`, `{ id }`, `{0}`, `{a-b}`).
    Invalid(String),
}

impl SyntaxError {
    fn message(&self) -> String {
        match self {
            SyntaxError::Empty => {
                "empty `{}` in key template; name a parameter inside the braces, e.g. `{id}`"
                    .to_owned()
            }
            SyntaxError::Unclosed => {
                "unclosed `{` in key template; write `{{` for a literal brace".to_owned()
            }
            SyntaxError::UnmatchedClose => {
                "unmatched `}` in key template; write `}}` for a literal brace".to_owned()
            }
            SyntaxError::Invalid(inner) => format!(
                "invalid placeholder `{{{inner}}}` in key template; expected a parameter such as `{{id}}` or a field path such as `{{req.user.id}}`"
            ),
        }
    }
}

fn is_ident(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
        && chars.all(|c| c == '_' || c.is_alphanumeric())
}

fn is_index(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_digit())
}

fn placeholder(inner: &str) -> Result<Placeholder, SyntaxError> {
    if inner.is_empty() {
        return Err(SyntaxError::Empty);
    }
    let mut parts = inner.split('.');
    let root = parts.next().unwrap_or_default();
    let members: Vec<String> = parts.map(str::to_owned).collect();
    if !is_ident(root) || !members.iter().all(|m| is_ident(m) || is_index(m)) {
        return Err(SyntaxError::Invalid(inner.to_owned()));
    }
    Ok(Placeholder {
        root: root.to_owned(),
        members,
    })
}

/// Splits `text` into a format string and placeholders.
pub(crate) fn parse(text: &str) -> Result<Parsed, SyntaxError> {
    let mut format = String::with_capacity(text.len());
    let mut placeholders = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(['{', '}']) {
        format.push_str(&rest[..at]);
        let brace = &rest[at..=at];
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix(brace) {
            // `{{` or `}}`: a literal brace, kept escaped for `format_args!`.
            format.push_str(brace);
            format.push_str(brace);
            rest = after;
        } else if brace == "}" {
            return Err(SyntaxError::UnmatchedClose);
        } else {
            let end = rest.find('}').ok_or(SyntaxError::Unclosed)?;
            placeholders.push(placeholder(&rest[..end])?);
            format.push_str("{}");
            rest = &rest[end + 1..];
        }
    }
    format.push_str(rest);
    Ok(Parsed {
        format,
        placeholders,
    })
}

/// A checked template, ready to expand to `::core::format_args!(..)`.
#[derive(Debug)]
pub(crate) struct Template {
    span: Span,
    format: String,
    args: Vec<TokenStream>,
}

/// Parses `lit` and resolves every placeholder against `params`.
pub(crate) fn resolve(lit: &LitStr, params: &Params) -> syn::Result<Template> {
    let span = lit.span();
    let parsed = parse(&lit.value()).map_err(|error| syn::Error::new(span, error.message()))?;
    let mut diag = Diag::default();
    let mut args = Vec::with_capacity(parsed.placeholders.len());
    for placeholder in &parsed.placeholders {
        let mut arg = TokenStream::new();
        if placeholder.root == "self" && params.receiver {
            <Token![self]>::default().to_tokens(&mut arg);
            arg = respan(arg, span);
        } else if let Some(param) = params.find(&placeholder.root) {
            let mut ident: Ident = param.clone();
            ident.set_span(span);
            ident.to_tokens(&mut arg);
        } else {
            diag.error(
                span,
                format!(
                    "unknown parameter `{}` in key template; {}",
                    placeholder.root,
                    params.describe()
                ),
            );
            continue;
        }
        for member in &placeholder.members {
            match syn::parse_str::<Member>(member) {
                Ok(mut member) => {
                    match &mut member {
                        Member::Named(ident) => ident.set_span(span),
                        Member::Unnamed(index) => index.span = span,
                    }
                    <Token![.]>::default().to_tokens(&mut arg);
                    arg = respan(arg, span);
                    member.to_tokens(&mut arg);
                }
                Err(_) => diag.error(
                    span,
                    format!(
                        "`{member}` is not a field name, in key template placeholder `{{{}}}`",
                        placeholder.path()
                    ),
                ),
            }
        }
        args.push(arg);
    }
    diag.finish()?;
    Ok(Template {
        span,
        format: parsed.format,
        args,
    })
}

/// Resolves a template argument (`key = ".."`; `None` when it was absent or rejected),
/// recording the error.
pub(crate) fn resolve_arg(
    lit: Option<LitStr>,
    params: &Params,
    diag: &mut Diag,
) -> Option<Template> {
    lit.and_then(|lit| diag.ok(resolve(&lit, params)))
}

/// Resolves every template of a list argument (`keys = [..]`, `tags = [..]`; `None` when it
/// was absent or rejected), recording each error; the templates that failed are left out.
pub(crate) fn resolve_all(
    lits: Option<Vec<LitStr>>,
    params: &Params,
    diag: &mut Diag,
) -> Vec<Template> {
    lits.unwrap_or_default()
        .iter()
        .filter_map(|lit| diag.ok(resolve(lit, params)))
        .collect()
}

fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            token.set_span(span);
            token
        })
        .collect()
}

impl ToTokens for Template {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        let format = LitStr::new(&self.format, self.span);
        let args = &self.args;
        tokens.extend(quote_spanned! {self.span=>
            ::core::format_args!(#format #(, #args)*)
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::messages;
    use quote::quote;

    fn ph(root: &str, members: &[&str]) -> Placeholder {
        Placeholder {
            root: root.to_owned(),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    #[test]
    fn plain_and_placeholders() {
        assert_eq!(
            parse("users").unwrap(),
            Parsed {
                format: "users".into(),
                placeholders: vec![]
            }
        );
        assert_eq!(
            parse("user:{id}").unwrap(),
            Parsed {
                format: "user:{}".into(),
                placeholders: vec![ph("id", &[])]
            }
        );
        assert_eq!(
            parse("{req.user.id}:{pair.0}-{_x}{é}").unwrap(),
            Parsed {
                format: "{}:{}-{}{}".into(),
                placeholders: vec![
                    ph("req", &["user", "id"]),
                    ph("pair", &["0"]),
                    ph("_x", &[]),
                    ph("é", &[])
                ]
            }
        );
    }

    #[test]
    fn escapes() {
        assert_eq!(parse("{{id}}").unwrap().format, "{{id}}");
        assert!(parse("{{id}}").unwrap().placeholders.is_empty());
        assert_eq!(parse("a{{{id}}}b").unwrap().format, "a{{{}}}b");
        assert_eq!(parse("}}{{").unwrap().format, "}}{{");
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(parse("user:{}"), Err(SyntaxError::Empty));
        assert_eq!(parse("user:{id"), Err(SyntaxError::Unclosed));
        assert_eq!(parse("user:id}"), Err(SyntaxError::UnmatchedClose));
        assert_eq!(parse("{}}"), Err(SyntaxError::Empty));
        for bad in [
            "id:?", " id", "id ", "0", "a-b", "a.", ".a", "a..b", "a{b", "a.b c", "a.0x",
        ] {
            assert_eq!(
                parse(&format!("{{{bad}}}")),
                Err(SyntaxError::Invalid(bad.to_owned())),
                "{bad:?}"
            );
        }
        assert_eq!(
            SyntaxError::Invalid("id:?".into()).message(),
            "invalid placeholder `{id:?}` in key template; expected a parameter such as `{id}` or a field path such as `{req.user.id}`"
        );
    }

    fn params(receiver: bool, names: &[&str]) -> Params {
        Params {
            receiver,
            names: names
                .iter()
                .map(|n| Ident::new(n, Span::call_site()))
                .collect(),
        }
    }

    fn expand(text: &str, params: &Params) -> Result<String, Vec<String>> {
        let lit = LitStr::new(text, Span::call_site());
        resolve(&lit, params)
            .map(|t| t.to_token_stream().to_string())
            .map_err(|e| messages::<()>(Err(e)))
    }

    #[test]
    fn resolves_params_fields_and_self() {
        assert_eq!(
            expand("user:{id}", &params(false, &["id"])).unwrap(),
            quote!(::core::format_args!("user:{}", id)).to_string()
        );
        assert_eq!(
            expand("{req.user.id}/{t.0}", &params(false, &["req", "t"])).unwrap(),
            quote!(::core::format_args!("{}/{}", req.user.id, t.0)).to_string()
        );
        assert_eq!(
            expand("{self.tenant}:{id}", &params(true, &["id"])).unwrap(),
            quote!(::core::format_args!("{}:{}", self.tenant, id)).to_string()
        );
        assert_eq!(
            expand("users", &params(false, &[])).unwrap(),
            quote!(::core::format_args!("users")).to_string()
        );
        assert_eq!(
            expand("{{{id}}}", &params(false, &["id"])).unwrap(),
            quote!(::core::format_args!("{{{}}}", id)).to_string()
        );
    }

    #[test]
    fn resolves_lists_reporting_every_error() {
        let lits: Vec<LitStr> = ["users", "user:{id}", "{x}", "{}"]
            .iter()
            .map(|text| LitStr::new(text, Span::call_site()))
            .collect();
        let mut diag = Diag::default();
        let params = params(false, &["id"]);
        let templates = resolve_all(Some(lits), &params, &mut diag);
        assert!(resolve_all(None, &params, &mut diag).is_empty());
        assert!(resolve_arg(None, &params, &mut diag).is_none());
        assert_eq!(
            templates
                .iter()
                .map(|t| t.to_token_stream().to_string())
                .collect::<Vec<_>>(),
            [
                quote!(::core::format_args!("users")).to_string(),
                quote!(::core::format_args!("user:{}", id)).to_string()
            ]
        );
        assert_eq!(
            messages(diag.finish()),
            [
                "unknown parameter `x` in key template; the function's only parameter is `id`",
                "empty `{}` in key template; name a parameter inside the braces, e.g. `{id}`"
            ]
        );
    }

    #[test]
    fn unknown_parameters() {
        assert_eq!(
            expand("user:{x}", &params(false, &["a", "b"])).unwrap_err(),
            ["unknown parameter `x` in key template; the function's parameters are `a`, `b`"]
        );
        assert_eq!(
            expand("{x}:{y}:{a}", &params(false, &["a"])).unwrap_err(),
            [
                "unknown parameter `x` in key template; the function's only parameter is `a`",
                "unknown parameter `y` in key template; the function's only parameter is `a`"
            ]
        );
        assert_eq!(
            expand("{self.id}", &params(false, &[])).unwrap_err(),
            ["unknown parameter `self` in key template; the function has no parameters"]
        );
        assert_eq!(
            expand("{a.type}", &params(false, &["a"])).unwrap_err(),
            ["`type` is not a field name, in key template placeholder `{a.type}`"]
        );
        assert_eq!(
            expand("{}", &params(false, &["a"])).unwrap_err(),
            ["empty `{}` in key template; name a parameter inside the braces, e.g. `{id}`"]
        );
    }
}
