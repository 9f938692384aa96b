//! `#[stream_consumer]`: makes a free `async fn` the handler of a consumer group; leaves the
//! function as written and registers a `ConsumerSpec` beside it at link time (the one sibling
//! item the design allows), started by `rx.start_consumers()`.

use crate::args::read::{self, Duration};
use crate::args::{Arg, ArgParser, Keyword, Kw};
use crate::diag::Diag;
use crate::driver::{Attribute, Site};
use crate::duration::{self, DurationError};
use crate::emit::{self, SpecStatic};
use crate::func::{Func, Payload};
use crate::names::{CONSUMER_SPEC, STREAMS};
use crate::ty;
use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, LitStr};

const STREAM: Keyword<LitStr> = Keyword::new("stream", r#"stream = "orders""#, read::non_empty_str);
const GROUP: Keyword<LitStr> = Keyword::new("group", r#"group = "billing""#, read::non_empty_str);
const CONCURRENCY: Keyword<u64> = Keyword::new("concurrency", "concurrency = 8", at_least_one);
const MAX_RETRIES: Keyword<u64> = Keyword::new("max_retries", "max_retries = 5", max_retries);
const BATCH: Keyword<u64> = Keyword::new("batch", "batch = 10", at_least_one);
const BLOCK: Keyword<Duration> = Keyword::new("block", r#"block = "5s""#, read::duration);
const CLAIM_IDLE: Keyword<u64> = Keyword::new("claim_idle", r#"claim_idle = "30s""#, claim_idle);
const CONSUMER: Keyword<LitStr> =
    Keyword::new("consumer", r#"consumer = "billing-1""#, read::non_empty_str);
const START_ID: Keyword<LitStr> = Keyword::new("start_id", r#"start_id = "0""#, start_id);

/// The wrapper type a handler may take its payload in (`msg: Message<Order>`).
const MESSAGE: &str = "Message";

fn at_least_one(kw: Kw, expr: &Expr) -> syn::Result<u64> {
    read::integer(kw, expr, 1..=u64::from(u32::MAX))
}

fn max_retries(kw: Kw, expr: &Expr) -> syn::Result<u64> {
    read::integer(kw, expr, 0..=u64::from(u32::MAX))
}

/// `claim_idle = "30s"`: how long a message stays pending before another consumer reclaims
/// it; `claim_idle = "off"` turns automatic reclaim off (0 ms for the runtime).
fn claim_idle(kw: Kw, expr: &Expr) -> syn::Result<u64> {
    let Ok(lit) = read::lit_str(kw, expr) else {
        return Err(syn::Error::new(
            expr.span(),
            r#"`claim_idle` must be a duration or `"off"`, e.g. `claim_idle = "30s"` or `claim_idle = "off"`"#,
        ));
    };
    match lit.value().as_str() {
        "off" => Ok(0),
        text if duration::parse_ms(text) == Err(DurationError::Zero) => Err(syn::Error::new(
            lit.span(),
            r#"`claim_idle` must be greater than zero; `claim_idle = "off"` turns automatic reclaim off"#,
        )),
        _ => read::duration(kw, expr).map(|d| d.ms),
    }
}

/// `start_id = "0"`: where a group the consumer creates starts: `$` (new messages), `0` (the
/// whole stream) or a stream id (`1700000000000-0`, or its milliseconds alone).
fn start_id(kw: Kw, expr: &Expr) -> syn::Result<LitStr> {
    let lit = read::lit_str(kw, expr)?;
    let text = lit.value();
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let valid = text == "$"
        || match text.split_once('-') {
            Some((ms, seq)) => digits(ms) && digits(seq),
            None => digits(&text),
        };
    if valid {
        Ok(lit)
    } else {
        Err(syn::Error::new(
            lit.span(),
            r#"`start_id` must be `"$"` (new messages only), `"0"` (the whole stream) or a stream id such as `"1700000000000-0"`"#,
        ))
    }
}

pub(crate) struct StreamConsumer;

pub(crate) struct Args {
    stream: Arg<LitStr>,
    group: Arg<LitStr>,
    concurrency: Arg<u64>,
    max_retries: Arg<u64>,
    batch: Arg<u64>,
    block: Arg<Duration>,
    claim_idle: Arg<u64>,
    consumer: Arg<LitStr>,
    start_id: Arg<LitStr>,
}

pub(crate) struct Model {
    /// `ConsumerSpec::new(..)` and a setter per option given: the registration's entry.
    spec: SpecStatic,
}

impl Attribute for StreamConsumer {
    const NAME: &'static str = "stream_consumer";
    // A consumer runs on the runtime that starts it; `runtime` is refused with that reason.
    const RUNTIME: bool = false;
    type Args = Args;
    type Model = Model;

    fn keywords(args: &mut ArgParser) -> Args {
        let taken = Args {
            stream: args.take(&STREAM),
            group: args.take(&GROUP),
            concurrency: args.take(&CONCURRENCY),
            max_retries: args.take(&MAX_RETRIES),
            batch: args.take(&BATCH),
            block: args.take(&BLOCK),
            claim_idle: args.take(&CLAIM_IDLE),
            consumer: args.take(&CONSUMER),
            start_id: args.take(&START_ID),
        };
        args.refuse(
            "runtime",
            "`#[stream_consumer]` takes no `runtime`: a consumer runs on the runtime that starts it (`rx.start_consumers()`, or `rx.streams().start_registered(\"name\")`)",
        );
        taken
    }

    fn validate(args: Args, site: &Site, func: &Func, diag: &mut Diag) -> Option<Model> {
        let stream = site.required(diag, args.stream, "the `stream` to consume");
        let group = site.required(diag, args.group, "the consumer `group` to read in");
        let payload = payload(func, diag);
        let error = error_arg(func, diag);
        let (stream, group, payload, error) = (stream?, group?, payload?, error?);
        let krate = &site.paths.krate;
        // Each type argument is the user's own tokens, so an unmet bound (`ConsumerPayload`,
        // `ConsumerError`) is reported at the parameter's or the error's type.
        let (start, payload) = match payload {
            Payload::Wrapped(ty) => (quote!(start_message), ty),
            Payload::Bare(ty) => (quote!(start_payload), ty),
        };
        let (streams, spec_arg, handler) =
            (STREAMS.ident(), CONSUMER_SPEC.ident(), &func.sig.ident);
        let start = quote! {
            |#streams, #spec_arg| #krate::__private::#start::<#payload, _, _, #error>(
                #streams, #spec_arg, #handler
            )
        };
        let name = LitStr::new(&func.name(), handler.span());
        let mut spec = SpecStatic::new(
            quote!(#krate::__private::ConsumerSpec),
            &quote!(#stream, #group, ::core::module_path!(), #name, #start),
        );
        let count = |arg: &Arg<u64>| arg.get().map(|n| Literal::u64_unsuffixed(*n));
        spec.set_some("concurrency", count(&args.concurrency));
        spec.set_some("max_retries", count(&args.max_retries));
        spec.set_some("batch", count(&args.batch));
        spec.set_ms("block_ms", args.block.get().map(|d| d.ms));
        spec.set_ms("claim_idle_ms", args.claim_idle.into_value());
        spec.set_some("consumer", args.consumer.into_value());
        spec.set_some("start_id", args.start_id.into_value());
        Some(Model { spec })
    }

    fn expand(model: Model, site: &Site, func: &Func) -> TokenStream {
        // A function compiled out by a `#[cfg]` written below the attribute takes its
        // registration with it.
        let cfgs = func
            .outer_attrs()
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"));
        let function = func.as_written();
        let registration = emit::registration(&site.paths.krate, model.spec.value());
        quote! {
            #function
            #(#cfgs)*
            #registration
        }
    }
}

// The messages about the signature.
const METHOD: &str = "a `#[stream_consumer]` function must be a free function, not a method: its link-time registration, an item beside the function, needs a path to it (move the handler out of the `impl` block)";
const GENERIC: &str = "a `#[stream_consumer]` function cannot be generic: it is registered once, with one payload type";
const IMPL_TRAIT: &str = "a `#[stream_consumer]` function cannot take `impl Trait`: name the payload type, e.g. `msg: Message<Order>`";
const NOT_RESULT: &str = "`#[stream_consumer]` requires a function returning `Result<(), E>` with `E: Display`: `Ok(())` acknowledges the message, an `Err` is retried and then sent to the dead-letter stream with its text";
const NOT_UNIT: &str = "a `#[stream_consumer]` function must return `Result<(), E>`: a message has no reply, so the `Ok` value must be `()`";

/// "a `#[stream_consumer]` function takes {what}: the message (`msg: Message<Order>`) or its
/// payload (`order: Order`)".
fn one_parameter(what: &str) -> String {
    format!(
        "a `#[stream_consumer]` function takes {what}: the message (`msg: Message<Order>`) or its payload (`order: Order`)"
    )
}

/// The one parameter's payload: `Message<T>` gives `T` to `start_message`, any other type is
/// the payload itself. A receiver, generics, `impl Trait`, and zero or several parameters are
/// errors: the registration names the function by its path and one payload type.
fn payload<'a>(func: &'a Func, diag: &mut Diag) -> Option<Payload<'a>> {
    let sig = &func.sig;
    let mut ok = true;
    if let Some(param) = sig.generics.params.first() {
        ok = false;
        diag.error(param.span(), GENERIC);
    }
    let mut typed = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => {
                ok = false;
                diag.error(receiver.self_token.span, METHOD);
            }
            FnArg::Typed(param) => typed.push(param),
        }
    }
    match typed.as_slice() {
        [param] if ty::has_impl(&param.ty) => diag.error(param.ty.span(), IMPL_TRAIT),
        [_] if ok => return func.payload(MESSAGE),
        [] if ok => diag.error(sig.paren_token.span.join(), one_parameter("one parameter")),
        [_, extra, ..] => diag.error(extra.span(), one_parameter("exactly one parameter")),
        _ => {}
    }
    None
}

/// The start's `E` argument: the `E` of the `Result<(), E>` the function must return, as the
/// user wrote it, or `_` when it cannot be named (`anyhow::Result<()>`, `impl Display`); `None`
/// after an error at the return type (a type that is not a `Result`, at the function's name
/// without one) or at a `T` that is not `()`.
fn error_arg(func: &Func, diag: &mut Diag) -> Option<TokenStream> {
    let Some(result) = func.result() else {
        let span = func
            .return_type()
            .map_or(func.sig.ident.span(), Spanned::span);
        diag.error(span, NOT_RESULT);
        return None;
    };
    if let Some(ok) = result.ok.filter(|_| !result.is_unit()) {
        diag.error(ok.span(), NOT_UNIT);
        return None;
    }
    Some(
        func.error_type()
            .map_or_else(|| quote!(_), ToTokens::to_token_stream),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver;

    fn run(args: TokenStream, item: TokenStream) -> Result<String, Vec<String>> {
        driver::expand_text::<StreamConsumer>(args, item)
    }

    fn on_order() -> TokenStream {
        quote!(
            async fn on_order(msg: Message<Order>) -> Result<(), AppError> {
                Ok(())
            }
        )
    }

    fn errors(args: TokenStream, item: TokenStream) -> Vec<String> {
        run(args, item).unwrap_err()
    }

    #[test]
    fn expands_with_every_option() {
        let out = run(
            quote!(
                stream = "orders",
                group = "billing",
                concurrency = 8,
                max_retries = 5,
                batch = 10,
                block = "5s",
                claim_idle = "30s",
                consumer = "billing-1"
            ),
            on_order(),
        )
        .unwrap();
        let expected = quote! {
            async fn on_order(msg: Message<Order>) -> Result<(), AppError> {
                Ok(())
            }
            ::redisx::__private::inventory::submit! {
                ::redisx::__private::ConsumerSpec::new(
                    "orders",
                    "billing",
                    ::core::module_path!(),
                    "on_order",
                    |__redisx_streams, __redisx_spec|
                        ::redisx::__private::start_message::<Order, _, _, AppError>(
                            __redisx_streams, __redisx_spec, on_order
                        )
                )
                .concurrency(8).max_retries(5).batch(10).block_ms(5000).claim_idle_ms(30000)
                .consumer("billing-1")
            }
        };
        assert_eq!(out, expected.to_string());
    }

    #[test]
    fn a_payload_parameter_and_no_options() {
        let out = run(
            quote!(
                stream = "orders",
                group = "billing",
                crate = "rx",
                claim_idle = "off"
            ),
            quote!(
                #[cfg(feature = "billing")]
                pub async fn r#on(order: Order) -> anyhow::Result<()> {
                    Ok(())
                }
            ),
        )
        .unwrap();
        let expected = quote! {
            #[cfg(feature = "billing")]
            rx::__private::inventory::submit! {
                rx::__private::ConsumerSpec::new(
                    "orders",
                    "billing",
                    ::core::module_path!(),
                    "on",
                    |__redisx_streams, __redisx_spec|
                        rx::__private::start_payload::<Order, _, _, _>(
                            __redisx_streams, __redisx_spec, r#on
                        )
                )
                .claim_idle_ms(0)
            }
        };
        assert!(out.starts_with("# [cfg (feature = \"billing\")] pub async fn r#on"));
        assert!(out.ends_with(&expected.to_string()), "{out}");
    }

    #[test]
    fn argument_errors() {
        assert_eq!(
            errors(quote!(concurrency = 8), on_order()),
            [
                r#"`#[stream_consumer]` needs the `stream` to consume, e.g. `#[stream_consumer(stream = "orders")]`"#,
                r#"`#[stream_consumer]` needs the consumer `group` to read in, e.g. `#[stream_consumer(group = "billing")]`"#,
            ]
        );
        assert_eq!(
            errors(
                quote!(
                    stream = "",
                    group = "g",
                    concurrency = 0,
                    max_retries = -1,
                    batch = "10",
                    block = "0s",
                    claim_idle = "0s",
                    consumer = 1,
                    runtime = &rx
                ),
                on_order()
            ),
            [
                "`stream` must not be empty",
                "`concurrency` must be from 1 to 4294967295; `0` is out of range",
                "`max_retries` must be from 0 to 4294967295; `-1` is out of range",
                "`batch` must be a whole number from 1 to 4294967295, e.g. `batch = 10`",
                "`block` must be greater than zero",
                r#"`claim_idle` must be greater than zero; `claim_idle = "off"` turns automatic reclaim off"#,
                r#"`consumer` must be a string literal, e.g. `consumer = "billing-1"`"#,
                r#"`#[stream_consumer]` takes no `runtime`: a consumer runs on the runtime that starts it (`rx.start_consumers()`, or `rx.streams().start_registered("name")`)"#,
            ]
        );
        assert_eq!(
            errors(
                quote!(stream = "s", group = "g", claim_idle = 0, queue = "q"),
                on_order()
            ),
            [
                r#"`claim_idle` must be a duration or `"off"`, e.g. `claim_idle = "30s"` or `claim_idle = "off"`"#,
                "unknown argument `queue`; expected one of `stream`, `group`, `concurrency`, `max_retries`, `batch`, `block`, `claim_idle`, `consumer`, `start_id`, `crate`",
            ]
        );
        let out = run(
            quote!(stream = "s", group = "g", max_retries = 0),
            on_order(),
        );
        assert!(out.unwrap().contains(". max_retries (0)"));
    }

    #[test]
    fn signature_errors() {
        // A function from its signature, with a body.
        let item = |sig: &str| {
            format!("{sig} {{ Ok(()) }}")
                .parse::<TokenStream>()
                .unwrap()
        };
        let run_sig = |sig: &str| run(quote!(stream = "s", group = "g"), item(sig));
        let (one, exactly_one) = (
            one_parameter("one parameter"),
            one_parameter("exactly one parameter"),
        );
        let cases = [
            ("async fn f() -> Result<(), E>", vec![one.as_str()]),
            (
                "async fn f(a: A, b: B, c: C) -> Result<(), E>",
                vec![exactly_one.as_str()],
            ),
            ("async fn f(&self, a: A) -> Result<(), E>", vec![METHOD]),
            ("async fn f(self) -> Result<(), E>", vec![METHOD]),
            (
                "async fn f<T>(m: Message<T>) -> Result<(), E>",
                vec![GENERIC],
            ),
            (
                "async fn f(m: impl Payload) -> Result<(), E>",
                vec![IMPL_TRAIT],
            ),
            ("async fn f(m: M)", vec![NOT_RESULT]),
            ("async fn f(m: M) -> Option<()>", vec![NOT_RESULT]),
            (
                "fn f(m: M) -> Result<u8, E>",
                vec!["`#[stream_consumer]` requires an `async fn`", NOT_UNIT],
            ),
        ];
        for (sig, expected) in cases {
            assert_eq!(run_sig(sig).unwrap_err(), expected, "{sig}");
        }
        // `Result<(), impl Display>` and `anyhow::Result<()>` leave `E` to inference.
        for sig in [
            "async fn f(m: M) -> Result<(), impl Display>",
            "async fn f(m: M) -> anyhow::Result<()>",
        ] {
            let out = run_sig(sig).unwrap();
            assert!(out.contains("start_payload :: < M , _ , _ , _ >"), "{out}");
        }
    }
}
