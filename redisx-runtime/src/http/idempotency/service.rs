//! [`IdempotencyService`]: reads and checks a request's key, fingerprints its body, then runs
//! the inner service under the key's claim and records its response, or replays or refuses.

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::BoxError;
use axum::body::{Body, Bytes, HttpBody};
use http::header::CONTENT_LENGTH;
use http::request::Parts;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, LengthLimitError, Limited};

use super::keys::{self, Header};
use super::stored::{self, Buffered, Stored};
use super::{Config, Fingerprinting, IdempotencyKey};
use crate::error::{Error, ErrorCode, Result};
use crate::http::future::ResponseFuture;
use crate::http::key::RequestView;
use crate::http::response::{problem_body, problem_response, status_of};
use crate::idempotency::{Check, Claim, Idempotency, http_fingerprint};
use crate::runtime::RedisX;

/// The fingerprint of every request when fingerprints are not validated.
const UNCHECKED: &str = "unchecked";

/// The service of an [`IdempotencyLayer`](super::IdempotencyLayer).
///
/// ```
/// use axum::{Router, routing::post};
/// use tower_layer::Layer as _;
/// use redisx_runtime::http::IdempotencyLayer;
///
/// let router: Router = Router::new().route("/orders", post(|| async { "created" }));
/// // What `Router::layer` does with the layer; the service answers with axum's body.
/// let service = IdempotencyLayer::new().layer(router);
/// # let _ = service;
/// ```
#[derive(Clone)]
pub struct IdempotencyService<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S> IdempotencyService<S> {
    pub(super) fn new(inner: S, cfg: Arc<Config>) -> Self {
        Self { inner, cfg }
    }
}

impl<S> std::fmt::Debug for IdempotencyService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyService").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for IdempotencyService<S>
where
    S: tower_service::Service<Request<Body>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: HttpBody<Data = Bytes> + Send + 'static,
    ReqBody::Error: Into<BoxError>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<Body>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        ResponseFuture::new(Box::pin(serve(cfg, inner, req.map(Body::new))))
    }
}

/// One request through the layer.
async fn serve<S, ResBody>(
    cfg: Arc<Config>,
    inner: S,
    req: Request<Body>,
) -> std::result::Result<Response<Body>, S::Error>
where
    S: tower_service::Service<Request<Body>, Response = Response<ResBody>>,
    S::Error: Send,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    if !cfg.methods.contains(req.method()) {
        return pass(inner, req).await;
    }
    let value = match keys::read(&cfg, req.headers()) {
        Header::Key(v) => v.to_owned(),
        Header::Missing if !cfg.required => return pass(inner, req).await,
        Header::Missing => {
            let detail = format!("This request needs an `{}` header.", cfg.header);
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_KEY_MISSING",
                Some(&detail),
                None,
            ));
        }
        Header::Repeated => {
            let detail = format!("The `{}` header must be sent once.", cfg.header);
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_KEY_INVALID",
                Some(&detail),
                None,
            ));
        }
        Header::Invalid => {
            let detail = format!(
                "The `{}` header must be an accepted key of 1 to {} visible ASCII characters.",
                cfg.header, cfg.max_key_len
            );
            return Ok(refusal(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_KEY_INVALID",
                Some(&detail),
                None,
            ));
        }
    };
    let (mut parts, body) = req.into_parts();
    let tenant = match &cfg.tenant {
        None => None,
        Some(extractor) => match extractor.extract(&view(&parts)) {
            Some(t) => Some(t),
            None => {
                return Ok(refusal(
                    cfg.missing_tenant,
                    "IDEMPOTENCY_TENANT_MISSING",
                    None,
                    None,
                ));
            }
        },
    };
    let idem = match cfg.runtime() {
        Ok(rx) => rx.idempotency().clone(),
        Err(e) => return Ok(error_response(&e)),
    };
    let key = keys::record_key(&cfg.key_prefix, tenant.as_deref(), &value);
    let full = idem.full_key(&key);
    parts.extensions.insert(IdempotencyKey {
        key: key.clone(),
        value,
        tenant,
    });
    if crate::idempotency::already_claimed(&full) {
        // A layer around this one holds the key: its claim covers this request.
        return pass(inner, Request::from_parts(parts, body)).await;
    }
    let (fp, body) = match fingerprint(&cfg, &parts, body).await {
        Ok(fb) => fb,
        Err(refused) => return Ok(refused),
    };
    let req = Request::from_parts(parts, body);
    match idem.check(&key, &fp, &cfg.options, true).await {
        Ok(Check::New(claim)) => run(&cfg, &idem, claim, full, inner, req).await,
        Ok(Check::Replay(r)) => Ok(replay(&key, r.result())),
        Err(e) if idem.inner.fails_open(&e) => pass(inner, req).await,
        Err(e) => Ok(error_response(&e)),
    }
}

/// The inner service's response, unprotected.
async fn pass<S, ResBody>(
    mut inner: S,
    req: Request<Body>,
) -> std::result::Result<Response<Body>, S::Error>
where
    S: tower_service::Service<Request<Body>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    Ok(inner.call(req).await?.map(Body::new))
}

/// The request's fingerprint, and its body (read whole to be fingerprinted); a refusal when
/// it is over the limit or cannot be read.
async fn fingerprint(
    cfg: &Config,
    parts: &Parts,
    body: Body,
) -> std::result::Result<(String, Body), Response<Body>> {
    let query = match &cfg.fingerprint {
        Fingerprinting::Off => return Ok((UNCHECKED.to_owned(), body)),
        Fingerprinting::Request { query } => *query,
        Fingerprinting::Custom(_) => false,
    };
    let too_large = || {
        let detail = format!("The request body is over {} bytes.", cfg.max_request_body);
        refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "IDEMPOTENCY_BODY_TOO_LARGE",
            Some(&detail),
            None,
        )
    };
    let announced = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(cfg.max_request_body).unwrap_or(u64::MAX)) {
        return Err(too_large());
    }
    let bytes = match Limited::new(body, cfg.max_request_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => return Err(too_large()),
        Err(_) => {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "IDEMPOTENCY_BODY_UNREADABLE",
                Some("The request body could not be read."),
                None,
            ));
        }
    };
    let fp = match &cfg.fingerprint {
        Fingerprinting::Custom(f) => f(&view(parts), &bytes),
        _ => http_fingerprint(
            parts.method.as_str(),
            parts.uri.path(),
            &bytes,
            parts.uri.query().filter(|_| query),
        ),
    };
    Ok((fp, Body::from(bytes)))
}

/// Runs the inner service under `claim` (an `Idempotency::run` or `#[idempotent]` on the same
/// key underneath runs under it), then records its response, or marks the attempt failed.
async fn run<S, ResBody>(
    cfg: &Config,
    idem: &Idempotency,
    claim: Claim,
    full: String,
    mut inner: S,
    req: Request<Body>,
) -> std::result::Result<Response<Body>, S::Error>
where
    S: tower_service::Service<Request<Body>, Response = Response<ResBody>>,
    S::Error: Send,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    let claimed = crate::idempotency::claimed_with(full);
    let res = match crate::idempotency::CLAIMED
        .scope(claimed, inner.call(req))
        .await
    {
        Ok(res) => res.map(Body::new),
        Err(e) => {
            logged(idem.fail(claim, "error").await);
            return Err(e);
        }
    };
    if !(cfg.record_if)(res.status()) {
        logged(idem.fail(claim, "server_error").await);
        return Ok(res);
    }
    let (parts, body) = res.into_parts();
    let status = parts.status.as_u16();
    let (record, body) = match stored::buffer(body, cfg.max_response_body).await {
        Ok(Buffered::Whole(bytes)) => {
            let record = Stored::Response {
                status,
                headers: stored::headers_to_store(&parts.headers, &cfg.replay_headers),
                body: Cow::Borrowed(&bytes),
            }
            .encode();
            (record, Body::from(bytes))
        }
        Ok(Buffered::Unrecorded(body, why)) => {
            tracing::warn!(target: "redisx::idempotency", status, reason = why, limit = cfg.max_response_body, "a response was served but not recorded (too large or streamed): duplicates of its idempotency key get 409 until the record expires");
            let record = Stored::NotRecorded {
                status,
                reason: why.to_owned(),
            }
            .encode();
            (record, body)
        }
        Err(e) => {
            tracing::warn!(target: "redisx::idempotency", error = %e, "a response body failed while it was read for its idempotency record; the attempt is marked failed");
            logged(idem.fail(claim, "response_error").await);
            return Ok(refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                ErrorCode::Internal.as_str(),
                None,
                None,
            ));
        }
    };
    match record {
        Ok(record) => logged(idem.complete(claim, &record).await),
        Err(e) => {
            tracing::error!(target: "redisx::idempotency", error = %format_args!("{e:#}"), "a response cannot be recorded; its idempotency key is marked failed");
            logged(idem.fail(claim, "unencodable_response").await);
        }
    }
    Ok(Response::from_parts(parts, body))
}

/// Logs a store that failed after the response was made (the response is served anyway).
fn logged(stored: Result<bool>) {
    // `Ok(false)` (the claim was lost) is logged by the claim itself.
    if let Err(e) = stored {
        tracing::error!(target: "redisx::idempotency", error = %format_args!("{e:#}"), "a response was served but its idempotency record could not be stored; duplicates see the claim until its lease runs out, then one runs the request again");
    }
}

/// The replay of a recorded response, or the 409 of one that was not recorded.
fn replay(key: &str, bytes: &[u8]) -> Response<Body> {
    let stored = match Stored::decode(key, bytes) {
        Ok(stored) => stored,
        Err(e) => {
            tracing::error!(target: "redisx::idempotency", error = %format_args!("{e:#}"), "an idempotency record cannot be replayed as an HTTP response");
            return error_response(&e);
        }
    };
    stored::replay(stored).unwrap_or_else(|_| {
        refusal(
            StatusCode::CONFLICT,
            "IDEMPOTENCY_RESPONSE_NOT_RECORDED",
            Some("A request with this idempotency key completed, but its response was too large or streamed to be recorded, so it cannot be replayed."),
            Some("completed"),
        )
    })
}

/// The refusal of an error: its status, code and, for the idempotency errors, a public detail
/// and the key's state; never the internal message.
fn error_response(e: &Error) -> Response<Body> {
    let (detail, state) = match e.code() {
        ErrorCode::IdempotencyInProgress => (
            Some("A request with this idempotency key is still being processed; retry later."),
            Some("processing"),
        ),
        ErrorCode::IdempotencyPreviousFailed => (
            Some(
                "The last request with this idempotency key failed; it may be retried with this key once its record expires.",
            ),
            Some("failed"),
        ),
        ErrorCode::IdempotencyFingerprintMismatch => (
            Some("This idempotency key was already used by a request with other content."),
            None,
        ),
        ErrorCode::IdempotencyKeyInvalid => (Some("The idempotency key is not accepted."), None),
        _ => (None, None),
    };
    refusal(status_of(e.code()), e.code().as_str(), detail, state)
}

/// A problem+json refusal, with the key's `state` when given.
fn refusal(
    status: StatusCode,
    code: &str,
    detail: Option<&str>,
    state: Option<&str>,
) -> Response<Body> {
    let mut body = problem_body(status, code, detail);
    if let Some(state) = state {
        body["state"] = state.into();
    }
    problem_response(status, &body)
}

/// What the tenant extractor and a custom fingerprint see of a request.
fn view(parts: &Parts) -> RequestView<'_> {
    RequestView {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        extensions: &parts.extensions,
    }
}

impl Config {
    /// The layer's runtime, else the scope's or the installed one.
    fn runtime(&self) -> Result<RedisX> {
        match &self.runtime {
            Some(rx) => Ok(rx.clone()),
            None => RedisX::current().ok_or_else(|| {
                Error::new(
                    ErrorCode::ConfigNotInstalled,
                    "the idempotency layer found no redisx runtime (give it one with `.runtime(rx)`, or install one)",
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_state_and_hide_internal_messages() {
        let e = Error::new(ErrorCode::IdempotencyInProgress, "secret internal text");
        let res = error_response(&e);
        assert_eq!(res.status(), StatusCode::CONFLICT);
        assert_eq!(res.headers()["content-type"], "application/problem+json");
        let e = Error::new(ErrorCode::ConnectionFailed, "redis at 10.0.0.1 refused");
        assert_eq!(error_response(&e).status(), StatusCode::SERVICE_UNAVAILABLE);
        let e = Error::new(ErrorCode::IdempotencyFingerprintMismatch, "x");
        assert_eq!(
            error_response(&e).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
}
