//! An error accumulator: every mistake found while parsing and validating is collected and
//! reported together, so one run of the compiler shows all of them.

use proc_macro2::{Span, TokenStream};
use std::fmt::Display;

/// The expansion, or on error the user's item unchanged followed by the errors (tokio-macros'
/// `token_stream_with_error`): the function still exists, so one mistake gives one message and
/// not a cascade of "cannot find function" errors at every caller.
pub(crate) fn or_item_with_errors(
    item: TokenStream,
    expansion: syn::Result<TokenStream>,
) -> TokenStream {
    match expansion {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut tokens = item;
            tokens.extend(error.into_compile_error());
            tokens
        }
    }
}

/// Collects `syn::Error`s; [`Diag::finish`] combines them into one.
#[derive(Default)]
pub(crate) struct Diag {
    errors: Option<syn::Error>,
}

impl Diag {
    /// Records an error built from a span and a message.
    pub(crate) fn error(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// Records an error (which may itself hold several).
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.errors {
            Some(errors) => errors.combine(error),
            None => self.errors = Some(error),
        }
    }

    /// Records the error of `result`, if any, and returns its value.
    pub(crate) fn ok<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        result.map_err(|error| self.push(error)).ok()
    }

    /// Every recorded error followed by `last`, combined into one: for a failure that ends
    /// the analysis early.
    pub(crate) fn fail(self, last: syn::Error) -> syn::Error {
        match self.errors {
            Some(mut errors) => {
                errors.combine(last);
                errors
            }
            None => last,
        }
    }

    /// `Ok(())` when nothing was recorded, else every error combined into one.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.errors.map_or(Ok(()), Err)
    }
}

/// The messages of `result`'s errors, in order; none when it is `Ok`.
#[cfg(test)]
pub(crate) fn messages<T>(result: syn::Result<T>) -> Vec<String> {
    match result {
        Ok(_) => Vec::new(),
        Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Diag, messages};
    use proc_macro2::Span;

    #[test]
    fn empty_is_ok() {
        assert!(Diag::default().finish().is_ok());
    }

    #[test]
    fn keeps_every_error_in_order() {
        let mut diag = Diag::default();
        diag.error(Span::call_site(), "first");
        assert_eq!(
            diag.ok::<u8>(Err(syn::Error::new(Span::call_site(), "second"))),
            None
        );
        assert_eq!(diag.ok(Ok(7)), Some(7));
        assert_eq!(messages(diag.finish()), ["first", "second"]);
    }
}
