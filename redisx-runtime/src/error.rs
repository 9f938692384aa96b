//! The one error type of redisx, with a stable [`ErrorCode`] per failure.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

/// The `Result` type of redisx.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A stable code for every failure redisx reports.
///
/// Codes are grouped in families (connection, operation, config, cache, lock, rate limit,
/// idempotency, stream); [`ErrorCode::family`] names the family and [`ErrorCode::as_str`] gives
/// the code as a stable string (`"CONN_TIMEOUT"`), suitable for logs, metrics and API responses.
///
/// ```
/// use redisx_runtime::ErrorCode;
/// assert_eq!(ErrorCode::ConnectionTimeout.as_str(), "CONN_TIMEOUT");
/// assert_eq!(ErrorCode::ConnectionTimeout.family(), "connection");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Connecting to Redis failed (refused, unreachable, handshake failed).
    ConnectionFailed,
    /// Connecting to Redis did not finish within the connect timeout.
    ConnectionTimeout,
    /// Redis rejected the credentials (`WRONGPASS`, `NOAUTH`, `NOPERM` on `AUTH`).
    ConnectionAuthFailed,
    /// The TLS handshake or TLS configuration failed.
    ConnectionTls,
    /// The connection is down; redisx is reconnecting in the background.
    ConnectionClosed,
    /// The server is too old for redisx (it needs Redis 7.0 or newer).
    ConnectionUnsupportedServer,
    /// A command did not answer within the command timeout.
    OperationTimeout,
    /// Redis answered a command with an error.
    OperationFailed,
    /// A Lua script failed.
    ScriptError,
    /// Redis is in read-only mode (a replica) or refuses writes.
    OperationReadOnly,
    /// Redis is out of memory (`OOM`).
    OperationOutOfMemory,
    /// The connection's ACL user may not run the command or touch one of its keys or
    /// channels (`NOPERM`).
    OperationNoPermission,
    /// A blocking or connection-state command (`BLPOP`, `SELECT`, `SUBSCRIBE`, `MULTI` sent
    /// alone, ...) was sent on the connection every plugin shares; it runs on a connection of
    /// its own instead ([`RedisX::dedicated_connection`](crate::RedisX::dedicated_connection)).
    OperationNeedsDedicatedConnection,
    /// A configuration value is invalid (bad URL, bad option).
    ConfigInvalid,
    /// `install()` was called while another runtime is installed.
    ConfigAlreadyInstalled,
    /// No runtime is installed and none was given.
    ConfigNotInstalled,
    /// A named client does not exist.
    ConfigUnknownClient,
    /// The runtime's background tasks (reconnect loop, invalidation listener) ran on a tokio
    /// runtime that has shut down, so it can no longer serve: build and use a `RedisX` within
    /// one tokio runtime (in tests, one per test, selected with `RedisX::scope`).
    ConfigRuntimeGone,
    /// A call varies by a context value its task does not set, a context name or value is
    /// malformed, or a key that does not vary names a context's keys (see
    /// [`context`](crate::context)).
    ConfigContextInvalid,
    /// A key is empty, too long or contains control characters.
    CacheKeyInvalid,
    /// A value could not be serialized.
    CacheSerialization,
    /// A stored value could not be deserialized (or had an unknown header).
    CacheDeserialization,
    /// The loader of a cache entry failed. Reserved: this version returns a loader's own
    /// error as it is, never this code.
    CacheLoaderFailed,
    /// Waiting for another instance to fill a cache entry timed out.
    CacheStampedeTimeout,
    /// Writing a cache entry failed.
    CacheSetFailed,
    /// Deleting a cache entry failed.
    CacheDeleteFailed,
    /// Invalidating a tag failed.
    CacheTagInvalidationFailed,
    /// A lock could not be acquired.
    LockAcquisitionFailed,
    /// A lock could not be acquired within the wait timeout.
    LockAcquisitionTimeout,
    /// A lock is held by another owner.
    LockNotOwned,
    /// Extending a lock failed. Reserved: this version reports an extension that found the
    /// lock gone as `LOCK_NOT_OWNED` (a body whose lock was lost ends with `LOCK_EXPIRED`)
    /// and a Redis failure with the connection's code.
    LockExtensionFailed,
    /// A lock expired while it was held.
    LockExpired,
    /// A lock key is empty, too long, holds control characters, or has braces that would
    /// split the lock from its fence counter across cluster slots.
    LockKeyInvalid,
    /// A rate limit was exceeded.
    RateLimitExceeded,
    /// A rate-limit script failed.
    RateLimitScriptError,
    /// A rate-limit key is empty, too long or holds control characters.
    RateLimitKeyInvalid,
    /// An idempotency key is invalid.
    IdempotencyKeyInvalid,
    /// A request with the same idempotency key is still being processed.
    IdempotencyInProgress,
    /// A previous request with the same idempotency key failed.
    IdempotencyPreviousFailed,
    /// The request does not match the fingerprint stored for its idempotency key.
    IdempotencyFingerprintMismatch,
    /// A stored idempotency record or result cannot be decoded (not written by redisx, or its
    /// type changed in a deploy); the call does not run again.
    IdempotencyRecordInvalid,
    /// A result or a fingerprinted argument could not be serialized.
    IdempotencySerialization,
    /// A stream name is empty, too long, holds control characters, or braces (its hash tag).
    StreamNameInvalid,
    /// Creating or reading a consumer group failed.
    StreamConsumerGroupError,
    /// Acknowledging a stream message failed.
    StreamAckFailed,
    /// Reading from a stream failed.
    StreamReadFailed,
    /// Publishing to a stream failed.
    StreamPublishFailed,
    /// An error that fits no other code.
    Internal,
}

impl ErrorCode {
    /// The stable string form of the code, e.g. `"CACHE_KEY_INVALID"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionFailed => "CONN_FAILED",
            Self::ConnectionTimeout => "CONN_TIMEOUT",
            Self::ConnectionAuthFailed => "CONN_AUTH_FAILED",
            Self::ConnectionTls => "CONN_TLS_ERROR",
            Self::ConnectionUnsupportedServer => "CONN_UNSUPPORTED_SERVER",
            Self::ConnectionClosed => "CONN_CLOSED",
            Self::OperationTimeout => "OP_TIMEOUT",
            Self::OperationFailed => "OP_FAILED",
            Self::ScriptError => "OP_SCRIPT_ERROR",
            Self::OperationReadOnly => "OP_READONLY",
            Self::OperationOutOfMemory => "OP_OUT_OF_MEMORY",
            Self::OperationNoPermission => "OP_NO_PERMISSION",
            Self::OperationNeedsDedicatedConnection => "OP_NEEDS_DEDICATED_CONNECTION",
            Self::ConfigInvalid => "CFG_INVALID",
            Self::ConfigAlreadyInstalled => "CFG_ALREADY_INSTALLED",
            Self::ConfigNotInstalled => "CFG_NOT_INSTALLED",
            Self::ConfigUnknownClient => "CFG_UNKNOWN_CLIENT",
            Self::ConfigRuntimeGone => "CFG_RUNTIME_GONE",
            Self::ConfigContextInvalid => "CFG_CONTEXT_INVALID",
            Self::CacheKeyInvalid => "CACHE_KEY_INVALID",
            Self::CacheSerialization => "CACHE_SERIALIZATION_FAILED",
            Self::CacheDeserialization => "CACHE_DESERIALIZATION_FAILED",
            Self::CacheLoaderFailed => "CACHE_LOADER_FAILED",
            Self::CacheStampedeTimeout => "CACHE_STAMPEDE_TIMEOUT",
            Self::CacheSetFailed => "CACHE_SET_FAILED",
            Self::CacheDeleteFailed => "CACHE_DELETE_FAILED",
            Self::CacheTagInvalidationFailed => "CACHE_TAG_INVALIDATION_FAILED",
            Self::LockAcquisitionFailed => "LOCK_ACQUISITION_FAILED",
            Self::LockAcquisitionTimeout => "LOCK_ACQUISITION_TIMEOUT",
            Self::LockNotOwned => "LOCK_NOT_OWNED",
            Self::LockExtensionFailed => "LOCK_EXTENSION_FAILED",
            Self::LockExpired => "LOCK_EXPIRED",
            Self::LockKeyInvalid => "LOCK_KEY_INVALID",
            Self::RateLimitExceeded => "RATE_LIMIT_EXCEEDED",
            Self::RateLimitScriptError => "RATE_LIMIT_SCRIPT_ERROR",
            Self::RateLimitKeyInvalid => "RATE_LIMIT_KEY_INVALID",
            Self::IdempotencyKeyInvalid => "IDEMPOTENCY_KEY_INVALID",
            Self::IdempotencyInProgress => "IDEMPOTENCY_IN_PROGRESS",
            Self::IdempotencyPreviousFailed => "IDEMPOTENCY_PREVIOUS_FAILED",
            Self::IdempotencyFingerprintMismatch => "IDEMPOTENCY_FINGERPRINT_MISMATCH",
            Self::IdempotencyRecordInvalid => "IDEMPOTENCY_RECORD_INVALID",
            Self::IdempotencySerialization => "IDEMPOTENCY_SERIALIZATION",
            Self::StreamNameInvalid => "STREAM_NAME_INVALID",
            Self::StreamConsumerGroupError => "STREAM_CONSUMER_GROUP_ERROR",
            Self::StreamAckFailed => "STREAM_ACK_FAILED",
            Self::StreamReadFailed => "STREAM_READ_FAILED",
            Self::StreamPublishFailed => "STREAM_PUBLISH_FAILED",
            Self::Internal => "INTERNAL",
        }
    }

    /// The family of the code: `"connection"`, `"operation"`, `"config"`, `"cache"`, `"lock"`,
    /// `"rate_limit"`, `"idempotency"`, `"stream"` or `"internal"`.
    pub const fn family(self) -> &'static str {
        match self {
            Self::ConnectionFailed
            | Self::ConnectionTimeout
            | Self::ConnectionAuthFailed
            | Self::ConnectionTls
            | Self::ConnectionClosed
            | Self::ConnectionUnsupportedServer => "connection",
            Self::OperationTimeout
            | Self::OperationFailed
            | Self::ScriptError
            | Self::OperationReadOnly
            | Self::OperationOutOfMemory
            | Self::OperationNoPermission
            | Self::OperationNeedsDedicatedConnection => "operation",
            Self::ConfigInvalid
            | Self::ConfigAlreadyInstalled
            | Self::ConfigNotInstalled
            | Self::ConfigUnknownClient
            | Self::ConfigRuntimeGone
            | Self::ConfigContextInvalid => "config",
            Self::CacheKeyInvalid
            | Self::CacheSerialization
            | Self::CacheDeserialization
            | Self::CacheLoaderFailed
            | Self::CacheStampedeTimeout
            | Self::CacheSetFailed
            | Self::CacheDeleteFailed
            | Self::CacheTagInvalidationFailed => "cache",
            Self::LockAcquisitionFailed
            | Self::LockAcquisitionTimeout
            | Self::LockNotOwned
            | Self::LockExtensionFailed
            | Self::LockExpired
            | Self::LockKeyInvalid => "lock",
            Self::RateLimitExceeded | Self::RateLimitScriptError | Self::RateLimitKeyInvalid => {
                "rate_limit"
            }
            Self::IdempotencyKeyInvalid
            | Self::IdempotencyInProgress
            | Self::IdempotencyPreviousFailed
            | Self::IdempotencyFingerprintMismatch
            | Self::IdempotencyRecordInvalid
            | Self::IdempotencySerialization => "idempotency",
            Self::StreamNameInvalid
            | Self::StreamConsumerGroupError
            | Self::StreamAckFailed
            | Self::StreamReadFailed
            | Self::StreamPublishFailed => "stream",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every fallible redisx call: a stable [`ErrorCode`], a message, the context it
/// happened in (client, command, key) and the underlying cause.
///
/// `Display` shows the code, the message and the context; the cause (a Redis error, an I/O
/// error) is not repeated there but returned by [`source`](std::error::Error::source), so
/// that a report walking the chain (`anyhow`'s `{:#}`, `tracing`'s error fields, `eyre`)
/// prints each cause once. The alternate form, `{:#}`, appends the causes itself, for a
/// one-line log of the whole story.
///
/// ```
/// use redisx_runtime::{Error, ErrorCode};
/// let err = Error::new(ErrorCode::CacheKeyInvalid, "key is empty").with_context("key", "");
/// assert_eq!(err.code(), ErrorCode::CacheKeyInvalid);
/// assert!(!err.is_retryable());
/// assert_eq!(err.to_string(), "CACHE_KEY_INVALID: key is empty (key=``)");
///
/// let io = std::io::Error::other("connection reset");
/// let err = Error::new(ErrorCode::ConnectionFailed, "the connection failed").with_source(io);
/// assert_eq!(err.to_string(), "CONN_FAILED: the connection failed");
/// assert_eq!(format!("{err:#}"), "CONN_FAILED: the connection failed: connection reset");
/// ```
///
/// Cloning is cheap (an `Arc` inside), so one failure can be handed to every caller that
/// waited on it (see [`Cache::get_or_load`](crate::Cache::get_or_load)).
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

#[derive(Clone)]
struct Inner {
    code: ErrorCode,
    message: Cow<'static, str>,
    context: Vec<(&'static str, String)>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
    /// The source is a `redis::RedisError` that only wraps its own source under the same text
    /// (a server reply, an I/O error): `source()` then skips it, so a report walking the chain
    /// prints that text once. [`Error::redis_error`] still reaches it.
    transparent_source: bool,
    /// The denied decision of a [`Error::rate_limited`] error.
    decision: Option<Box<crate::rate_limit::Decision>>,
}

impl Error {
    /// A new error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                code,
                message: message.into(),
                context: Vec::new(),
                source: None,
                transparent_source: false,
                decision: None,
            }),
        }
    }

    /// A denied rate limit as an error, [`ErrorCode::RateLimitExceeded`] (what
    /// `#[rate_limit]` returns, through `E: From<Error>`); the decision stays readable with
    /// [`rate_limit_decision`](Self::rate_limit_decision).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use redisx_runtime::{Error, ErrorCode};
    /// use redisx_runtime::rate_limit::Limit;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let limit = Limit::sliding_window(5, Duration::from_secs(60));
    /// let d = rx.rate_limiter().check("login:10.0.0.1", &limit).await?;
    /// if !d.allowed {
    ///     let e = Error::rate_limited(d);
    ///     assert_eq!(e.code(), ErrorCode::RateLimitExceeded);
    ///     println!("retry in {:?}", e.rate_limit_decision().unwrap().retry_after);
    ///     return Err(e);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn rate_limited(decision: crate::rate_limit::Decision) -> Self {
        let secs = decision.retry_after_secs();
        let mut e = Self::new(
            ErrorCode::RateLimitExceeded,
            format!("rate limit exceeded; try again in {secs} seconds"),
        )
        .with_context("limit", decision.limit.to_string())
        .with_context("remaining", decision.remaining.to_string());
        Arc::make_mut(&mut e.inner).decision = Some(Box::new(decision));
        e
    }

    /// The denied decision of an error made by [`rate_limited`](Self::rate_limited).
    pub fn rate_limit_decision(&self) -> Option<&crate::rate_limit::Decision> {
        self.inner.decision.as_deref()
    }

    /// Adds a piece of context (`client`, `command`, `key`, ...), shown in `Display`.
    #[must_use]
    pub fn with_context(mut self, name: &'static str, value: impl Into<String>) -> Self {
        Arc::make_mut(&mut self.inner)
            .context
            .push((name, value.into()));
        self
    }

    /// Sets the underlying cause, returned by [`std::error::Error::source`].
    #[must_use]
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        let inner = Arc::make_mut(&mut self.inner);
        inner.source = Some(Arc::new(source));
        inner.transparent_source = false;
        self
    }

    /// Sets a Redis error as the cause. A `RedisError` that shows exactly its own source's
    /// text is skipped by `source()` (see [`Error::redis_error`]).
    #[must_use]
    pub(crate) fn with_redis_source(self, err: redis::RedisError) -> Self {
        let transparent = err
            .source()
            .is_some_and(|inner| inner.to_string() == err.to_string());
        let mut this = self.with_source(err);
        Arc::make_mut(&mut this.inner).transparent_source = transparent;
        this
    }

    /// The Redis error behind this one, if any (a server's error reply, an I/O failure, a
    /// timeout), for matching on its kind or server code.
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) {
    /// let err = rx.client().query::<i64>(redis::cmd("INCR").arg("a-string")).await.unwrap_err();
    /// if let Some(e) = err.redis_error() {
    ///     println!("Redis said {:?}: {}", e.code(), e.detail().unwrap_or_default());
    /// }
    /// # }
    /// ```
    pub fn redis_error(&self) -> Option<&redis::RedisError> {
        self.inner
            .source
            .as_ref()
            .and_then(|s| s.downcast_ref::<redis::RedisError>())
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        self.inner.code
    }

    /// The message, without code or context.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The context pairs attached to this error, in the order they were added.
    pub fn context(&self) -> &[(&'static str, String)] {
        &self.inner.context
    }

    /// The value of one context entry, if present.
    pub fn context_value(&self, name: &str) -> Option<&str> {
        self.inner
            .context
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether retrying the same call later may succeed: connection problems, timeouts,
    /// a busy or loading server, a stampede wait that timed out, a lock or idempotency key
    /// held by someone else.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.inner.code,
            ErrorCode::ConnectionFailed
                | ErrorCode::ConnectionTimeout
                | ErrorCode::ConnectionClosed
                | ErrorCode::OperationTimeout
                | ErrorCode::OperationReadOnly
                | ErrorCode::CacheStampedeTimeout
                | ErrorCode::LockAcquisitionFailed
                | ErrorCode::LockAcquisitionTimeout
                | ErrorCode::RateLimitExceeded
                | ErrorCode::IdempotencyInProgress
        ) || self.redis_error().is_some_and(|e| {
            matches!(
                e.kind(),
                redis::ErrorKind::Server(
                    redis::ServerErrorKind::BusyLoading | redis::ServerErrorKind::TryAgain
                )
            )
        })
    }

    /// Builds an error from a Redis error, classifying it into a code. The message says what
    /// kind of failure it was; the Redis error's own text stays with the source.
    pub(crate) fn from_redis(err: redis::RedisError) -> Self {
        let code = classify(&err);
        Self::new(code, redis_message(&err)).with_redis_source(err)
    }
}

/// What kind of failure a Redis error is, in words that do not repeat its own text.
fn redis_message(err: &redis::RedisError) -> &'static str {
    use redis::{ErrorKind, ServerErrorKind};
    if err.is_timeout() {
        return "no reply in time";
    }
    match err.kind() {
        ErrorKind::AuthenticationFailed => "authentication failed",
        ErrorKind::Server(ServerErrorKind::NoScript) => "the server does not know the script",
        ErrorKind::Server(_) | ErrorKind::Extension => "Redis answered the command with an error",
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            "the reply does not convert to the requested type"
        }
        ErrorKind::InvalidClientConfig => "the connection settings are invalid",
        ErrorKind::Io => "the connection failed",
        _ if err.is_connection_dropped() || err.is_connection_refusal() => "the connection failed",
        _ => "the Redis client failed",
    }
}

fn classify(err: &redis::RedisError) -> ErrorCode {
    use redis::{ErrorKind, ServerErrorKind};
    if err.is_timeout() {
        return ErrorCode::OperationTimeout;
    }
    match err.kind() {
        ErrorKind::AuthenticationFailed => ErrorCode::ConnectionAuthFailed,
        // A command the user may not run (at connect time, `connect_error` reads it as an
        // authentication failure).
        ErrorKind::Server(ServerErrorKind::NoPerm) => ErrorCode::OperationNoPermission,
        ErrorKind::Server(ServerErrorKind::NoScript) => ErrorCode::ScriptError,
        ErrorKind::Server(ServerErrorKind::ReadOnly) => ErrorCode::OperationReadOnly,
        ErrorKind::InvalidClientConfig => ErrorCode::ConfigInvalid,
        _ => match err.code() {
            Some("OOM") => ErrorCode::OperationOutOfMemory,
            Some("NOAUTH" | "WRONGPASS") => ErrorCode::ConnectionAuthFailed,
            Some(_) if err.to_string().contains("script") => ErrorCode::ScriptError,
            None if err.is_connection_refusal()
                || err.is_connection_dropped()
                || err.is_io_error()
                || err.is_unrecoverable_error() =>
            {
                ErrorCode::ConnectionFailed
            }
            _ => ErrorCode::OperationFailed,
        },
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.code, self.inner.message)?;
        if !self.inner.context.is_empty() {
            f.write_str(" (")?;
            for (i, (name, value)) in self.inner.context.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{name}=`{value}`")?;
            }
            f.write_str(")")?;
        }
        if f.alternate() {
            let mut cause = StdError::source(self);
            while let Some(c) = cause {
                write!(f, ": {c}")?;
                cause = c.source();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("code", &self.inner.code)
            .field("message", &self.inner.message)
            .field("context", &self.inner.context)
            .field("source", &self.inner.source)
            .finish()
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let source = self
            .inner
            .source
            .as_deref()
            .map(|s| s as &(dyn StdError + 'static))?;
        if self.inner.transparent_source {
            return source.source().or(Some(source));
        }
        Some(source)
    }
}

impl From<redis::RedisError> for Error {
    fn from(err: redis::RedisError) -> Self {
        Self::from_redis(err)
    }
}

/// Lets `std::io::Error` be the error type of a loader passed to
/// [`Cache::get_or_load`](crate::Cache::get_or_load).
impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cause's text, as a report walking `source()` prints it (anyhow's `{:#}`).
    fn chain(err: &Error) -> String {
        let mut out = err.to_string();
        let mut cause = StdError::source(err);
        while let Some(c) = cause {
            out = format!("{out}: {c}");
            cause = c.source();
        }
        out
    }

    #[test]
    fn a_redis_error_is_shown_once() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "peer went away");
        let err = Error::from_redis(redis::RedisError::from(io)).with_context("client", "main");
        assert_eq!(err.code(), ErrorCode::ConnectionFailed);
        assert_eq!(
            err.to_string(),
            "CONN_FAILED: the connection failed (client=`main`)"
        );
        assert_eq!(chain(&err).matches("peer went away").count(), 1, "{err:#}");
        assert_eq!(format!("{err:#}"), chain(&err));
        assert!(
            err.redis_error()
                .is_some_and(redis::RedisError::is_io_error)
        );
    }

    #[test]
    fn a_redis_error_with_its_own_text_stays_in_the_chain() {
        let redis_err = redis::RedisError::from((
            redis::ErrorKind::Client,
            "refused",
            "for a reason".to_owned(),
        ));
        let err = Error::from_redis(redis_err);
        let source = StdError::source(&err).expect("a source");
        assert!(source.is::<redis::RedisError>());
        assert_eq!(chain(&err).matches("for a reason").count(), 1, "{err:#}");
    }
}
