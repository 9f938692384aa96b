//! [`IdempotencyLayer`]: a tower layer that runs a request carrying an `Idempotency-Key` once,
//! records its response, and replays it to duplicates (the idempotency plugin,
//! `rx.idempotency()`, underneath).
//!
//! A covered request (POST and PATCH by default) with the key header is checked with
//! [`Idempotency::check_and_lock`](crate::idempotency::Idempotency::check_and_lock): the first
//! runs the inner service under its claim, and its response (2xx–4xx by default) is recorded
//! for the record ttl; a duplicate with the same fingerprint gets that response back (status,
//! the allow-listed headers, body) with `Idempotency-Replayed: true`, also while the first
//! still runs (it waits up to the `wait` option). Refusals are `application/problem+json`
//! (RFC 9457) with a stable `code`:
//!
//! | status | `code` | when |
//! |---|---|---|
//! | 400 | `IDEMPOTENCY_KEY_MISSING` | no key and the layer [requires](IdempotencyLayer::required) one |
//! | 400 | `IDEMPOTENCY_KEY_INVALID` | the key is sent twice, empty, too long or not visible ASCII |
//! | 401 | `IDEMPOTENCY_TENANT_MISSING` | a [tenant](IdempotencyLayer::tenant) extractor finds none |
//! | 400 | `IDEMPOTENCY_BODY_UNREADABLE` | the body to fingerprint could not be read |
//! | 413 | `IDEMPOTENCY_BODY_TOO_LARGE` | the body to fingerprint is over [`max_request_body`](IdempotencyLayer::max_request_body) |
//! | 422 | `IDEMPOTENCY_FINGERPRINT_MISMATCH` | the key was used by a request with other content |
//! | 409 | `IDEMPOTENCY_IN_PROGRESS` (`"state": "processing"`) | the first request still runs after the wait |
//! | 409 | `IDEMPOTENCY_PREVIOUS_FAILED` (`"state": "failed"`) | the first request failed (a 5xx): until the lock ttl runs out, then a retry runs |
//! | 409 | `IDEMPOTENCY_RESPONSE_NOT_RECORDED` (`"state": "completed"`) | the first request completed, but its response was too large or streamed to be recorded |
//! | 503 | the Redis error's code | Redis is down and the plugin fails closed (its [`ErrorPolicy`](crate::idempotency::ErrorPolicy)); failing open, the request runs unprotected |
//!
//! Recorded responses are stored in the record's result as bincode 2 (standard configuration)
//! of a two-variant enum: `0`: a response, `(u16 status, Vec<(String, Vec<u8>)> headers,
//! Vec<u8> body)`, with the allow-listed headers only; `1`: a response that was not recorded,
//! `(u16 status, String reason)`, replayed as the 409 above.

mod keys;
mod service;
mod stored;

use std::sync::Arc;

use http::{HeaderName, Method, StatusCode};

use super::key::{KeyExtractor, RequestView};
use crate::idempotency::IdempotencyOptions;
use crate::runtime::RedisX;

pub use keys::IdempotencyKey;
pub use service::IdempotencyService;

/// The default name of the key header.
const DEFAULT_HEADER: &str = "idempotency-key";
/// The default longest key, in bytes.
const DEFAULT_MAX_KEY_LEN: usize = 255;
/// The default largest request body fingerprinted (1 MiB).
const DEFAULT_MAX_REQUEST_BODY: usize = 1024 * 1024;
/// The default largest response body recorded (1 MiB).
const DEFAULT_MAX_RESPONSE_BODY: usize = 1024 * 1024;
/// The headers a replay carries by default: those that describe the representation and where
/// the created resource is; never `Set-Cookie`, `Date` or hop-by-hop headers.
const DEFAULT_REPLAY_HEADERS: [&str; 7] = [
    "content-type",
    "content-language",
    "content-location",
    "location",
    "etag",
    "last-modified",
    "cache-control",
];

type KeyCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;
type FingerprintFn = Arc<dyn Fn(&RequestView<'_>, &[u8]) -> String + Send + Sync>;
type RecordIf = Arc<dyn Fn(StatusCode) -> bool + Send + Sync>;

/// How a request is fingerprinted.
#[derive(Clone)]
enum Fingerprinting {
    /// [`http_fingerprint`](crate::idempotency::http_fingerprint) of the method, the path, the
    /// body, and the query when `query`.
    Request { query: bool },
    /// Not at all: every request with a key matches its record.
    Off,
    /// The application's function.
    Custom(FingerprintFn),
}

impl std::fmt::Debug for Fingerprinting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Request { query } => f.debug_struct("Request").field("query", query).finish(),
            Self::Off => f.write_str("Off"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// The settings of one layer, shared by its services.
#[derive(Clone)]
struct Config {
    runtime: Option<RedisX>,
    header: HeaderName,
    required: bool,
    max_key_len: usize,
    key_check: Option<KeyCheck>,
    methods: Vec<Method>,
    fingerprint: Fingerprinting,
    max_request_body: usize,
    record_if: RecordIf,
    max_response_body: usize,
    replay_headers: Vec<HeaderName>,
    tenant: Option<KeyExtractor>,
    missing_tenant: StatusCode,
    key_prefix: String,
    options: IdempotencyOptions,
}

/// A tower [`Layer`](tower_layer::Layer) that makes requests with an `Idempotency-Key`
/// idempotent (feature `axum`).
///
/// A covered request (POST and PATCH by default, see [`methods`](Self::methods)) with the key
/// header runs once per key: its response is recorded and replayed to duplicates with
/// `Idempotency-Replayed: true`. Without the header a request passes through, as the original
/// toolkit does, unless the layer is [`required`](Self::required) (then 400). The key must be
/// 1–255 visible ASCII characters (see [`max_key_len`](Self::max_key_len) and
/// [`validate_key`](Self::validate_key)) and sent once.
///
/// Duplicates are matched by fingerprint (method, path and body, see
/// [`fingerprint_with`](Self::fingerprint_with)): another request with the same key gets 422.
/// The body is buffered to be fingerprinted (413 above
/// [`max_request_body`](Self::max_request_body)), then handed on whole. A response from 200
/// to 499 is recorded (see [`record_if`](Self::record_if)); any other (a 5xx) marks the
/// attempt failed: duplicates get 409 until the lock ttl runs out, then a retry runs. A
/// response body over [`max_response_body`](Self::max_response_body), or one streamed (no
/// known size), is served but not recorded: the record says so, and duplicates get 409, never
/// a truncated replay.
///
/// The record's key is the header's value, or `{tenant}:{value}` with a
/// [`tenant`](Self::tenant) extractor (see [`IdempotencyKey`]); the inner service finds it in
/// the request's extensions. An `#[idempotent]` function or an
/// [`Idempotency::run`](crate::idempotency::Idempotency::run) on the same key underneath runs
/// under the layer's claim, once, instead of waiting for it. Redis down answers 503 (without
/// internal details), unless the plugin fails open
/// ([`ErrorPolicy::FailOpen`](crate::idempotency::ErrorPolicy::FailOpen)): then the request
/// runs unprotected. The inner service may have any request and response body; the layer
/// answers with axum's.
///
/// ```no_run
/// use std::time::Duration;
/// use axum::{Router, routing::post};
/// use redisx_runtime::http::{IdempotencyLayer, KeyExtractor};
/// use redisx_runtime::idempotency::IdempotencyOptions;
///
/// # #[allow(dead_code)]
/// # fn app(rx: redisx_runtime::RedisX) -> Router {
/// Router::new()
///     .route("/payments", post(|body: String| async move { format!("charged {body}") }))
///     .route_layer(
///         IdempotencyLayer::new()
///             .runtime(rx)
///             .required(true)
///             .tenant(KeyExtractor::api_key())
///             .options(IdempotencyOptions::new().ttl(Duration::from_secs(48 * 3600))),
///     )
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct IdempotencyLayer {
    cfg: Arc<Config>,
}

impl std::fmt::Debug for IdempotencyLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdempotencyLayer")
            .field("header", &self.cfg.header)
            .field("required", &self.cfg.required)
            .field("methods", &self.cfg.methods)
            .field("fingerprint", &self.cfg.fingerprint)
            .field("tenant", &self.cfg.tenant)
            .field("options", &self.cfg.options)
            .finish_non_exhaustive()
    }
}

impl Default for IdempotencyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl IdempotencyLayer {
    /// A layer with the defaults: the optional `Idempotency-Key` header of POST and PATCH
    /// requests, keys of 1–255 visible ASCII characters, fingerprints of the method, path and
    /// body (up to 1 MiB), responses from 200 to 499 recorded up to 1 MiB, no tenant, and the
    /// plugin's ttl, lock ttl and wait.
    pub fn new() -> Self {
        Self {
            cfg: Arc::new(Config {
                runtime: None,
                header: HeaderName::from_static(DEFAULT_HEADER),
                required: false,
                max_key_len: DEFAULT_MAX_KEY_LEN,
                key_check: None,
                methods: vec![Method::POST, Method::PATCH],
                fingerprint: Fingerprinting::Request { query: false },
                max_request_body: DEFAULT_MAX_REQUEST_BODY,
                record_if: Arc::new(|s: StatusCode| (200..500).contains(&s.as_u16())),
                max_response_body: DEFAULT_MAX_RESPONSE_BODY,
                replay_headers: DEFAULT_REPLAY_HEADERS
                    .into_iter()
                    .map(HeaderName::from_static)
                    .collect(),
                tenant: None,
                missing_tenant: StatusCode::UNAUTHORIZED,
                key_prefix: String::new(),
                options: IdempotencyOptions::new(),
            }),
        }
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

    /// The name of the key header (default `Idempotency-Key`).
    ///
    /// ```
    /// use axum::http::HeaderName;
    /// use redisx_runtime::http::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new().header(HeaderName::from_static("x-request-id"));
    /// # let _ = layer;
    /// ```
    pub fn header(mut self, name: HeaderName) -> Self {
        self.cfg().header = name;
        self
    }

    /// Whether a covered request without the key header is refused with 400
    /// (`IDEMPOTENCY_KEY_MISSING`); default `false`: it passes through unprotected, as the
    /// original toolkit does.
    pub fn required(mut self, required: bool) -> Self {
        self.cfg().required = required;
        self
    }

    /// The longest key accepted, in bytes (default 255); a longer one gets 400.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.cfg().max_key_len = bytes;
        self
    }

    /// Which keys are accepted (default: visible ASCII, `!` to `~`), besides being 1 to
    /// [`max_key_len`](Self::max_key_len) bytes; a refused key gets 400. The header's value
    /// is visible ASCII, spaces or tabs, else it is refused whatever the check says.
    ///
    /// ```
    /// use redisx_runtime::http::IdempotencyLayer;
    ///
    /// // UUIDs only.
    /// let layer = IdempotencyLayer::new().validate_key(|k| {
    ///     k.len() == 36 && k.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
    /// });
    /// # let _ = layer;
    /// ```
    pub fn validate_key(mut self, check: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.cfg().key_check = Some(Arc::new(check));
        self
    }

    /// The methods covered (default POST and PATCH); other requests pass through.
    ///
    /// ```
    /// use axum::http::Method;
    /// use redisx_runtime::http::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new().methods([Method::POST, Method::PUT, Method::DELETE]);
    /// # let _ = layer;
    /// ```
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.cfg().methods = methods.into_iter().collect();
        self
    }

    /// Whether duplicates must have the request's fingerprint (default `true`: another
    /// request with the same key gets 422). `false`: any request with the key replays the
    /// record, and the body is neither buffered nor limited.
    pub fn validate_fingerprint(mut self, validate: bool) -> Self {
        let cfg = self.cfg();
        cfg.fingerprint = match (validate, &cfg.fingerprint) {
            (false, _) => Fingerprinting::Off,
            (true, Fingerprinting::Off) => Fingerprinting::Request { query: false },
            (true, other) => other.clone(),
        };
        self
    }

    /// Whether the query string is part of the default fingerprint (default `false`: the
    /// method, the path and the body, a JSON body canonicalized). Replaces a
    /// [`fingerprint_with`](Self::fingerprint_with) function.
    pub fn fingerprint_query(mut self, query: bool) -> Self {
        self.cfg().fingerprint = Fingerprinting::Request { query };
        self
    }

    /// The fingerprint of a request, from its parts and its body (buffered up to
    /// [`max_request_body`](Self::max_request_body)), instead of the default one.
    ///
    /// ```
    /// use redisx_runtime::http::IdempotencyLayer;
    /// use redisx_runtime::idempotency::http_fingerprint;
    ///
    /// // The tenant header is part of what a duplicate must repeat.
    /// let layer = IdempotencyLayer::new().fingerprint_with(|req, body| {
    ///     let tenant = req.headers.get("x-tenant").and_then(|v| v.to_str().ok()).unwrap_or("");
    ///     http_fingerprint(req.method.as_str(), &format!("{tenant}{}", req.uri.path()), body, None)
    /// });
    /// # let _ = layer;
    /// ```
    pub fn fingerprint_with(
        mut self,
        f: impl Fn(&RequestView<'_>, &[u8]) -> String + Send + Sync + 'static,
    ) -> Self {
        self.cfg().fingerprint = Fingerprinting::Custom(Arc::new(f));
        self
    }

    /// The largest request body fingerprinted, in bytes (default 1 MiB); a larger one gets
    /// 413 (`IDEMPOTENCY_BODY_TOO_LARGE`) without running.
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.cfg().max_request_body = bytes;
        self
    }

    /// Which responses are recorded and replayed (default: status 200 to 499); any other
    /// marks the attempt failed (`server_error`): duplicates get 409
    /// (`IDEMPOTENCY_PREVIOUS_FAILED`) until the lock ttl runs out, then a retry runs.
    ///
    /// ```
    /// use redisx_runtime::http::IdempotencyLayer;
    ///
    /// // A 4xx may be retried with the same key too.
    /// let layer = IdempotencyLayer::new().record_if(|status| status.is_success());
    /// # let _ = layer;
    /// ```
    pub fn record_if(mut self, f: impl Fn(StatusCode) -> bool + Send + Sync + 'static) -> Self {
        self.cfg().record_if = Arc::new(f);
        self
    }

    /// The largest response body recorded, in bytes (default 1 MiB). A larger one, or one
    /// streamed (without a known size), is served but not recorded: it is logged, and
    /// duplicates get 409 (`IDEMPOTENCY_RESPONSE_NOT_RECORDED`) for the record ttl.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.cfg().max_response_body = bytes;
        self
    }

    /// The response headers recorded and replayed (default `Content-Type`,
    /// `Content-Language`, `Content-Location`, `Location`, `ETag`, `Last-Modified`,
    /// `Cache-Control`); no other header is stored.
    ///
    /// ```
    /// use axum::http::{HeaderName, header};
    /// use redisx_runtime::http::IdempotencyLayer;
    ///
    /// let layer = IdempotencyLayer::new()
    ///     .replay_headers([header::CONTENT_TYPE, header::LOCATION, HeaderName::from_static("x-order-id")]);
    /// # let _ = layer;
    /// ```
    pub fn replay_headers(mut self, names: impl IntoIterator<Item = HeaderName>) -> Self {
        self.cfg().replay_headers = names.into_iter().collect();
        self
    }

    /// Scopes keys by the principal or tenant `tenant` finds (default: none, keys are
    /// global): the record key becomes `{tenant}:{value}`, the tenant percent-encoded so no
    /// tenant can name another one's keys. A request without a tenant gets 401 (see
    /// [`missing_tenant_status`](Self::missing_tenant_status)).
    ///
    /// ```
    /// use redisx_runtime::http::{IdempotencyLayer, KeyExtractor};
    ///
    /// // The user id an auth layer inserted: keys `user%3A42:{value}`.
    /// let layer = IdempotencyLayer::new().tenant(KeyExtractor::user::<u64>());
    /// # let _ = layer;
    /// ```
    pub fn tenant(mut self, tenant: KeyExtractor) -> Self {
        self.cfg().tenant = Some(tenant);
        self
    }

    /// The status of a request without its tenant (default 401; 500 when a missing tenant
    /// means a misconfigured auth layer).
    pub fn missing_tenant_status(mut self, status: StatusCode) -> Self {
        self.cfg().missing_tenant = status;
        self
    }

    /// A prefix of this layer's record keys (default none), to keep the keys of two layers
    /// apart: `{prefix}{value}` or `{prefix}{tenant}:{value}`, under the plugin's prefix.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        prefix.clone_into(&mut self.cfg().key_prefix);
        self
    }

    /// The record ttl, lock ttl and wait of this layer's requests (default: the plugin's
    /// config).
    ///
    /// ```
    /// use std::time::Duration;
    /// use redisx_runtime::http::IdempotencyLayer;
    /// use redisx_runtime::idempotency::IdempotencyOptions;
    ///
    /// let layer = IdempotencyLayer::new()
    ///     .options(IdempotencyOptions::new().lock_ttl(Duration::from_secs(10)).wait(Duration::from_secs(5)));
    /// # let _ = layer;
    /// ```
    pub fn options(mut self, options: IdempotencyOptions) -> Self {
        self.cfg().options = options;
        self
    }
}

impl<S> tower_layer::Layer<S> for IdempotencyLayer {
    type Service = IdempotencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        IdempotencyService::new(inner, self.cfg.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_configured_afterwards_keeps_the_original_untouched() {
        let layer = IdempotencyLayer::new();
        let copy = layer.clone().required(true).validate_fingerprint(false);
        assert!(!layer.cfg.required);
        assert!(matches!(
            layer.cfg.fingerprint,
            Fingerprinting::Request { query: false }
        ));
        assert!(copy.cfg.required);
        assert!(matches!(copy.cfg.fingerprint, Fingerprinting::Off));
        let back = copy.validate_fingerprint(true);
        assert!(matches!(
            back.cfg.fingerprint,
            Fingerprinting::Request { query: false }
        ));
    }

    #[test]
    fn the_defaults_record_2xx_to_4xx_of_post_and_patch() {
        let layer = IdempotencyLayer::new();
        let record = &layer.cfg.record_if;
        assert!(record(StatusCode::CREATED) && record(StatusCode::NOT_FOUND));
        assert!(record(StatusCode::MOVED_PERMANENTLY));
        assert!(!record(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!record(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(layer.cfg.methods, [Method::POST, Method::PATCH]);
        assert_eq!(layer.cfg.header.as_str(), "idempotency-key");
    }
}
