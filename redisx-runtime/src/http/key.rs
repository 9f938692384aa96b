//! Which key a request is counted under ([`KeyExtractor`]); every kind is namespaced (`ip:`,
//! `user:`, `apikey:`, `header:`, `global:`), so a user id never shares a bucket with an
//! address.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::{Arc, Once};

use axum::extract::ConnectInfo;
use http::header::AUTHORIZATION;
use http::{Extensions, HeaderMap, HeaderName, Method, Uri};

use super::client_ip::{self, Cidr};

/// What a key extractor, a skip predicate or a custom key sees of a request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestView<'a> {
    /// The method.
    pub method: &'a Method,
    /// The URI.
    pub uri: &'a Uri,
    /// The headers.
    pub headers: &'a HeaderMap,
    /// The extensions (`ConnectInfo`, what an auth layer put there).
    pub extensions: &'a Extensions,
}

type Custom = Arc<dyn Fn(&RequestView<'_>) -> Option<String> + Send + Sync>;

#[derive(Clone)]
enum Kind {
    PeerIp,
    ClientIp(Arc<[Cidr]>),
    Header(HeaderName),
    ApiKey,
    User(Custom),
    Global(String),
    Custom(Custom),
}

/// Which key a request is counted under.
///
/// ```
/// use redisx_runtime::http::KeyExtractor;
///
/// let by_peer = KeyExtractor::peer_ip(); // the default
/// let behind_proxy = KeyExtractor::client_ip(["10.0.0.0/8".parse()?]);
/// let by_api_key = KeyExtractor::api_key();
/// let by_user = KeyExtractor::user::<u64>(); // an extension an auth layer inserted
/// # let _ = (by_peer, behind_proxy, by_api_key, by_user);
/// # Ok::<(), redisx_runtime::Error>(())
/// ```
#[derive(Clone)]
pub struct KeyExtractor(Kind);

impl std::fmt::Debug for KeyExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.0 {
            Kind::PeerIp => "peer_ip",
            Kind::ClientIp(_) => "client_ip",
            Kind::Header(_) => "header",
            Kind::ApiKey => "api_key",
            Kind::User(_) => "user",
            Kind::Global(_) => "global",
            Kind::Custom(_) => "custom",
        };
        f.debug_tuple("KeyExtractor").field(&kind).finish()
    }
}

impl Default for KeyExtractor {
    fn default() -> Self {
        Self::peer_ip()
    }
}

/// Logs once that requests come without `ConnectInfo`.
static NO_PEER: Once = Once::new();

impl KeyExtractor {
    /// `ip:{peer address}`, from axum's `ConnectInfo<SocketAddr>` (serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`). A request without it is keyed
    /// `ip:unknown`, and that is logged once.
    pub fn peer_ip() -> Self {
        Self(Kind::PeerIp)
    }

    /// `ip:{client address}`: the peer, unless it is one of the `trusted` proxies; then the
    /// rightmost address of `Forwarded` (else `X-Forwarded-For`, else `X-Real-IP`) that is not
    /// a trusted proxy, so a made-up leading entry is never taken as the client (when every
    /// hop is trusted, the leftmost).
    pub fn client_ip(trusted: impl IntoIterator<Item = Cidr>) -> Self {
        Self(Kind::ClientIp(trusted.into_iter().collect()))
    }

    /// `header:{name}:{value}` of the header `name`; a request without it is refused (401 by
    /// default), never counted in a shared bucket.
    pub fn header(name: HeaderName) -> Self {
        Self(Kind::Header(name))
    }

    /// `apikey:{value}` of `X-API-Key`, else of `Authorization`; a request without either is
    /// refused (401 by default).
    pub fn api_key() -> Self {
        Self(Kind::ApiKey)
    }

    /// `user:{id}` of the request extension `T` (what an authentication layer inserted); a
    /// request without it is refused (401 by default).
    pub fn user<T: Display + Send + Sync + 'static>() -> Self {
        Self(Kind::User(Arc::new(|r: &RequestView<'_>| {
            r.extensions.get::<T>().map(ToString::to_string)
        })))
    }

    /// `global:{name}`: one bucket for every request.
    pub fn global(name: &str) -> Self {
        Self(Kind::Global(name.to_owned()))
    }

    /// The key `f` returns, as it is (name its kind yourself, e.g. `tenant:42`); `None`
    /// refuses the request (401 by default).
    pub fn custom(f: impl Fn(&RequestView<'_>) -> Option<String> + Send + Sync + 'static) -> Self {
        Self(Kind::Custom(Arc::new(f)))
    }

    /// The request's key; `None` when it has none (a missing header, user or custom key).
    pub(crate) fn extract(&self, r: &RequestView<'_>) -> Option<String> {
        let peer = || {
            r.extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
        };
        match &self.0 {
            Kind::PeerIp => Some(match peer() {
                Some(ip) => format!("ip:{ip}"),
                None => no_peer(),
            }),
            Kind::ClientIp(trusted) => Some(match peer() {
                Some(ip) => format!("ip:{}", client_ip::client(ip, r.headers, trusted).key()),
                None => no_peer(),
            }),
            Kind::Header(name) => header(r.headers, name).map(|v| format!("header:{name}:{v}")),
            Kind::ApiKey => header(r.headers, &HeaderName::from_static("x-api-key"))
                .or_else(|| header(r.headers, &AUTHORIZATION))
                .map(|v| format!("apikey:{v}")),
            Kind::User(f) => f(r).map(|id| format!("user:{id}")),
            Kind::Global(name) => Some(format!("global:{name}")),
            Kind::Custom(f) => f(r),
        }
    }
}

/// A non-empty header value as text.
fn header(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    (!v.is_empty()).then(|| v.to_owned())
}

fn no_peer() -> String {
    NO_PEER.call_once(|| {
        tracing::warn!(target: "redisx::rate_limit", "requests reach the rate limit layer without ConnectInfo<SocketAddr>: they are all counted as `ip:unknown`; serve with `into_make_service_with_connect_info::<SocketAddr>()`");
    });
    "ip:unknown".to_owned()
}
