//! [`RateLimitLayer`]: a tower layer that checks a rate limit before the inner service runs,
//! answers 429 (problem+json, `Retry-After`) when denied, and sets the limit headers on every
//! checked response.

use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, HeaderName};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};

use super::key::{KeyExtractor, RequestView};
use super::response::{RefusalBody, denied_message, problem, status_of};
use crate::error::Result;
use crate::rate_limit::{Decision, Limit};
use crate::runtime::RedisX;

/// Which headers a checked response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderStyle {
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset` (unix seconds), as the
    /// original toolkit (default).
    #[default]
    Legacy,
    /// `RateLimit-Policy` and `RateLimit` structured fields of
    /// draft-ietf-httpapi-ratelimit-headers-09 (`t` is the seconds until the quota is whole).
    Draft,
    /// Both.
    Both,
    /// None (a denial still carries `Retry-After`).
    Off,
}

/// What is checked: one limit, a named policy, or the config's default limit.
#[derive(Clone, Debug)]
enum Limits {
    One(Limit),
    Policy(String),
    Default,
}

type Skip = Arc<dyn Fn(&RequestView<'_>) -> bool + Send + Sync>;
type Message = Arc<dyn Fn(&Decision) -> String + Send + Sync>;

/// The checks of one layer, shared by its services.
#[derive(Clone)]
struct Config {
    limits: Limits,
    runtime: Option<RedisX>,
    key: KeyExtractor,
    cost: u64,
    skip: Option<Skip>,
    headers: HeaderStyle,
    legacy_names: [HeaderName; 3],
    message: Option<Message>,
    missing_key: StatusCode,
}

/// A tower [`Layer`](tower_layer::Layer) that rate-limits requests (feature `axum`).
///
/// Each request is keyed ([`KeyExtractor`], default: the peer address) and checked against
/// the layer's limit; a denied request gets 429 with `Retry-After` and an
/// `application/problem+json` body (`limit`, `remaining`, `reset`, `retry_after` members), an
/// admitted one goes on and its response gets the limit headers ([`HeaderStyle`]). A request
/// without its key (no API key, no user) gets 401 (see
/// [`missing_key_status`](Self::missing_key_status)), never a shared bucket. Redis down
/// answers 503 without internal details, unless the limiter fails open
/// ([`ErrorPolicy::FailOpen`](crate::rate_limit::ErrorPolicy::FailOpen)). The layer serves any
/// service whose response body is a [`RefusalBody`] (axum's; tonic's with the `tonic`
/// feature): gRPC requests (`content-type: application/grpc`) are answered with `grpc-status`
/// 8 (`RESOURCE_EXHAUSTED`), 16 (`UNAUTHENTICATED`) or 14 (`UNAVAILABLE`). A request is
/// checked once per limit and key even when two layers with the same limit wrap it (a router
/// layer and a route layer), or `#[rate_limit]` with that limit runs inside.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use redisx_runtime::http::{KeyExtractor, RateLimitLayer};
/// use redisx_runtime::rate_limit::Limit;
///
/// # #[allow(dead_code)]
/// # async fn serve(rx: redisx_runtime::RedisX, listener: tokio::net::TcpListener) {
/// let app: Router = Router::new()
///     .route("/login", get(|| async { "welcome" }))
///     .layer(
///         RateLimitLayer::new(Limit::sliding_window(5, Duration::from_secs(60)))
///             .runtime(rx)
///             .key(KeyExtractor::client_ip(["10.0.0.0/8".parse().unwrap()])),
///     );
/// # let _ = (app, listener);
/// // axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct RateLimitLayer {
    cfg: Arc<Config>,
}

impl std::fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("limits", &self.cfg.limits)
            .field("key", &self.cfg.key)
            .field("cost", &self.cfg.cost)
            .field("headers", &self.cfg.headers)
            .finish_non_exhaustive()
    }
}

impl RateLimitLayer {
    fn with(limits: Limits) -> Self {
        Self {
            cfg: Arc::new(Config {
                limits,
                runtime: None,
                key: KeyExtractor::default(),
                cost: 1,
                skip: None,
                headers: HeaderStyle::default(),
                legacy_names: [
                    HeaderName::from_static("x-ratelimit-limit"),
                    HeaderName::from_static("x-ratelimit-remaining"),
                    HeaderName::from_static("x-ratelimit-reset"),
                ],
                message: None,
                missing_key: StatusCode::UNAUTHORIZED,
            }),
        }
    }

    /// Checks `limit`.
    pub fn new(limit: Limit) -> Self {
        Self::with(Limits::One(limit))
    }

    /// Checks the named policy of the runtime's `RateLimitConfig` (all its limits, all or
    /// nothing).
    pub fn policy(name: &str) -> Self {
        Self::with(Limits::Policy(name.to_owned()))
    }

    /// Checks the runtime's default limit.
    pub fn default_limit() -> Self {
        Self::with(Limits::Default)
    }

    /// The settings to change: this layer's own (copied first if a clone shares them).
    fn cfg(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.cfg)
    }

    /// The runtime to check with (default: the scope's or the installed one, per request).
    pub fn runtime(mut self, rx: RedisX) -> Self {
        self.cfg().runtime = Some(rx);
        self
    }

    /// The key of a request (default [`KeyExtractor::peer_ip`]).
    pub fn key(mut self, key: KeyExtractor) -> Self {
        self.cfg().key = key;
        self
    }

    /// The points a request costs (default 1).
    pub fn cost(mut self, cost: u64) -> Self {
        self.cfg().cost = cost;
        self
    }

    /// Requests for which `skip` is true are not checked (health checks, say).
    pub fn skip(mut self, skip: impl Fn(&RequestView<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.cfg().skip = Some(Arc::new(skip));
        self
    }

    /// The headers of checked responses (default [`HeaderStyle::Legacy`]).
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.cfg().headers = style;
        self
    }

    /// The names of the legacy headers (default `X-RateLimit-Limit`, `-Remaining`, `-Reset`).
    pub fn legacy_header_names(
        mut self,
        limit: HeaderName,
        remaining: HeaderName,
        reset: HeaderName,
    ) -> Self {
        self.cfg().legacy_names = [limit, remaining, reset];
        self
    }

    /// The `detail` of a denial's body, from its decision (default: "Rate limit exceeded. Try
    /// again in N seconds."). Per route: give the route its own layer (`route_layer`).
    pub fn message(
        mut self,
        message: impl Fn(&Decision) -> String + Send + Sync + 'static,
    ) -> Self {
        self.cfg().message = Some(Arc::new(message));
        self
    }

    /// The status of a request without its key (default 401; 500 when a missing user means a
    /// misconfigured auth layer).
    pub fn missing_key_status(mut self, status: StatusCode) -> Self {
        self.cfg().missing_key = status;
        self
    }
}

impl<S> tower_layer::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            cfg: self.cfg.clone(),
        }
    }
}

/// The service of a [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimitService<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S> std::fmt::Debug for RateLimitService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitService").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> tower_service::Service<Request<ReqBody>> for RateLimitService<S>
where
    S: tower_service::Service<Request<ReqBody>, Response = Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: RefusalBody + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = super::future::ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<std::result::Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let cfg = self.cfg.clone();
        let fut: Pin<Box<dyn Future<Output = _> + Send>> = Box::pin(async move {
            let view = RequestView {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                extensions: req.extensions(),
            };
            if cfg.skip.as_ref().is_some_and(|skip| skip(&view)) {
                return inner.call(req).await;
            }
            let grpc = is_grpc(req.headers());
            let Some(key) = cfg.key.extract(&view) else {
                return Ok(refuse(
                    grpc,
                    cfg.missing_key,
                    "RATE_LIMIT_KEY_MISSING",
                    None,
                ));
            };
            let decision = match cfg.check(&key).await {
                Ok(None) => return inner.call(req).await,
                Ok(Some(d)) => d,
                Err(e) => {
                    let status = status_of(e.code());
                    return Ok(refuse(grpc, status, e.code().as_str(), None));
                }
            };
            if !decision.0.allowed {
                let detail = cfg
                    .message
                    .as_ref()
                    .map_or_else(|| denied_message(&decision.0), |m| m(&decision.0));
                let mut res = refuse(
                    grpc,
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMIT_EXCEEDED",
                    Some((&decision.0, detail.as_str())),
                );
                cfg.set_headers(res.headers_mut(), &decision.0);
                return Ok(res);
            }
            let (decision, mark) = decision;
            // A layer or `#[rate_limit]` underneath sees what was checked, and does not charge
            // it again.
            let mut res = crate::rate_limit::CHECKED
                .scope(crate::rate_limit::marks_with(mark), inner.call(req))
                .await?;
            cfg.set_headers(res.headers_mut(), &decision);
            Ok(res)
        });
        super::future::ResponseFuture::new(fut)
    }
}

impl Config {
    /// Checks the request's key, unless a layer around this one checked the same limit and
    /// key (`Ok(None)`): the decision and the mark of what was checked.
    async fn check(&self, key: &str) -> Result<Option<(Decision, String)>> {
        let rx = match &self.runtime {
            Some(rx) => rx.clone(),
            None => RedisX::current().ok_or_else(|| {
                crate::error::Error::new(
                    crate::error::ErrorCode::ConfigNotInstalled,
                    "the rate limit layer found no redisx runtime (give it one with `.runtime(rx)`, or install one)",
                )
            })?,
        };
        let limiter = rx.rate_limiter();
        let default;
        let (limit, policy) = match &self.limits {
            Limits::One(l) => (Some(l), None),
            Limits::Policy(p) => (None, Some(p.as_str())),
            Limits::Default => {
                default = limiter.config().default_limit_value().clone();
                (Some(&default), None)
            }
        };
        let mark = crate::rate_limit::mark(limit, policy, key);
        if crate::rate_limit::already_checked(&mark) {
            return Ok(None);
        }
        let d = match (limit, policy) {
            (_, Some(p)) => limiter.check_policy(p, key, self.cost).await?,
            (Some(l), None) => limiter.check_cost(key, l, self.cost).await?,
            (None, None) => unreachable!("a layer checks a limit or a policy"),
        };
        Ok(Some((d, mark)))
    }

    /// The limit headers of `d`.
    fn set_headers(&self, h: &mut HeaderMap, d: &Decision) {
        let legacy = matches!(self.headers, HeaderStyle::Legacy | HeaderStyle::Both);
        let draft = matches!(self.headers, HeaderStyle::Draft | HeaderStyle::Both);
        if legacy {
            let [limit, remaining, reset] = &self.legacy_names;
            h.insert(limit.clone(), HeaderValue::from(d.limit));
            h.insert(remaining.clone(), HeaderValue::from(d.remaining));
            h.insert(reset.clone(), HeaderValue::from(d.reset_unix_secs()));
        }
        if draft {
            let name = match &self.limits {
                Limits::Policy(p) => p.as_str(),
                _ => "default",
            };
            let mut policy = format!("\"{name}\";q={}", d.limit);
            if let Limits::One(l) = &self.limits {
                let _ = write!(policy, ";w={}", l.window().as_secs().max(1));
            }
            let left = d
                .reset
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            let t = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            let now = format!("\"{name}\";r={};t={t}", d.remaining);
            for (n, v) in [("ratelimit-policy", policy), ("ratelimit", now)] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(HeaderName::from_static(n), v);
                }
            }
        }
    }
}

fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

/// A refusal: problem+json over HTTP; over gRPC a trailers-only response with its status
/// (`RESOURCE_EXHAUSTED` for a denial, `UNAUTHENTICATED` for a missing key, `UNAVAILABLE`
/// otherwise).
fn refuse<B: RefusalBody>(
    grpc: bool,
    status: StatusCode,
    code: &str,
    denied: Option<(&Decision, &str)>,
) -> Response<B> {
    if !grpc {
        return problem(status, code, denied.map(|(_, m)| m), denied.map(|(d, _)| d));
    }
    let grpc_status = match status {
        StatusCode::TOO_MANY_REQUESTS => "8",
        StatusCode::UNAUTHORIZED => "16",
        _ => "14",
    };
    let mut res = Response::new(B::refusal(String::new()));
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    h.insert("grpc-status", HeaderValue::from_static(grpc_status));
    if let Some(v) = denied.and_then(|(_, m)| HeaderValue::from_str(m).ok()) {
        h.insert("grpc-message", v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_clone_configured_afterwards_keeps_the_original_untouched() {
        let layer = RateLimitLayer::new(Limit::fixed_window(1, Duration::from_secs(1)));
        let copy = layer.clone().cost(3).headers(HeaderStyle::Off);
        assert_eq!(
            (layer.cfg.cost, layer.cfg.headers),
            (1, HeaderStyle::Legacy)
        );
        assert_eq!((copy.cfg.cost, copy.cfg.headers), (3, HeaderStyle::Off));
    }
}
