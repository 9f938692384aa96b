//! Error responses: the HTTP status of every [`ErrorCode`], `application/problem+json` bodies
//! (RFC 9457) without internal details, and `IntoResponse` for [`Error`].

use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

use crate::error::{Error, ErrorCode};
use crate::rate_limit::Decision;

/// The HTTP status an error answers with.
///
/// | codes | status |
/// |---|---|
/// | `RATE_LIMIT_EXCEEDED` | 429 |
/// | connection errors, `OP_TIMEOUT`, `OP_FAILED`, `OP_READONLY`, `OP_OUT_OF_MEMORY`, `CFG_RUNTIME_GONE`, `CACHE_STAMPEDE_TIMEOUT` | 503 |
/// | invalid keys (`*_KEY_INVALID`) | 400 |
/// | `IDEMPOTENCY_IN_PROGRESS`, `IDEMPOTENCY_PREVIOUS_FAILED`, lock errors | 409 |
/// | `IDEMPOTENCY_FINGERPRINT_MISMATCH` | 422 |
/// | everything else (configuration, scripts, codecs, idempotency records, streams, `INTERNAL`) | 500 |
///
/// ```
/// use redisx_runtime::ErrorCode;
/// use redisx_runtime::http::status_of;
///
/// assert_eq!(status_of(ErrorCode::RateLimitExceeded).as_u16(), 429);
/// assert_eq!(status_of(ErrorCode::ConnectionFailed).as_u16(), 503);
/// ```
pub fn status_of(code: ErrorCode) -> StatusCode {
    use ErrorCode as C;
    match code {
        C::RateLimitExceeded => StatusCode::TOO_MANY_REQUESTS,
        C::ConnectionFailed
        | C::ConnectionTimeout
        | C::ConnectionAuthFailed
        | C::ConnectionTls
        | C::ConnectionUnsupportedServer
        | C::ConnectionClosed
        | C::OperationTimeout
        | C::OperationFailed
        | C::OperationReadOnly
        | C::OperationOutOfMemory
        | C::ConfigRuntimeGone
        | C::CacheStampedeTimeout => StatusCode::SERVICE_UNAVAILABLE,
        C::CacheKeyInvalid
        | C::LockKeyInvalid
        | C::RateLimitKeyInvalid
        | C::IdempotencyKeyInvalid
        | C::StreamNameInvalid => StatusCode::BAD_REQUEST,
        C::IdempotencyInProgress
        | C::IdempotencyPreviousFailed
        | C::LockAcquisitionFailed
        | C::LockAcquisitionTimeout
        | C::LockNotOwned
        | C::LockExtensionFailed
        | C::LockExpired => StatusCode::CONFLICT,
        C::IdempotencyFingerprintMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        C::ScriptError
        | C::OperationNoPermission
        | C::OperationNeedsDedicatedConnection
        | C::ConfigInvalid
        | C::ConfigAlreadyInstalled
        | C::ConfigNotInstalled
        | C::ConfigUnknownClient
        | C::ConfigContextInvalid
        | C::CacheSerialization
        | C::CacheDeserialization
        | C::CacheLoaderFailed
        | C::CacheSetFailed
        | C::CacheDeleteFailed
        | C::CacheTagInvalidationFailed
        | C::RateLimitScriptError
        | C::IdempotencyRecordInvalid
        | C::IdempotencySerialization
        | C::StreamConsumerGroupError
        | C::StreamAckFailed
        | C::StreamReadFailed
        | C::StreamPublishFailed
        | C::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A response body the rate-limit layer can write its refusals in: axum's (and so hyper's
/// `String`-built bodies), `String`, and tonic's (feature `tonic`). Implement it for another
/// body type to put the layer in front of its service.
///
/// ```
/// use redisx_runtime::http::RefusalBody;
///
/// let body: String = RefusalBody::refusal(r#"{"status":429}"#.to_owned());
/// assert!(body.contains("429"));
/// ```
pub trait RefusalBody: Sized {
    /// A body holding `text` (empty for a gRPC refusal, whose status travels in headers).
    fn refusal(text: String) -> Self;
}

impl RefusalBody for axum::body::Body {
    fn refusal(text: String) -> Self {
        Self::from(text)
    }
}

impl RefusalBody for String {
    fn refusal(text: String) -> Self {
        text
    }
}

#[cfg(feature = "tonic")]
impl RefusalBody for tonic::body::Body {
    fn refusal(text: String) -> Self {
        if text.is_empty() {
            Self::empty()
        } else {
            Self::new(text)
        }
    }
}

/// The default message of a denial.
pub(crate) fn denied_message(d: &Decision) -> String {
    format!(
        "Rate limit exceeded. Try again in {} seconds.",
        d.retry_after_secs()
    )
}

/// A problem+json response: `status`, a public `detail` (never an internal message), the
/// stable `code`, and for a denial its decision's members and `Retry-After`.
pub(crate) fn problem<B: RefusalBody>(
    status: StatusCode,
    code: &str,
    detail: Option<&str>,
    decision: Option<&Decision>,
) -> Response<B> {
    let mut body = problem_body(status, code, detail);
    if let Some(d) = decision {
        body["limit"] = d.limit.into();
        body["remaining"] = d.remaining.into();
        body["reset"] = d.reset_unix_secs().into();
        body["retry_after"] = d.retry_after_secs().into();
    }
    let mut res = problem_response(status, &body);
    if let Some(d) = decision {
        res.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(d.retry_after_secs()));
    }
    res
}

/// The members of every problem body: `type` (`about:blank`), `title` (the status's reason),
/// `status`, the stable `code`, and `detail` when given (public text only).
pub(crate) fn problem_body(
    status: StatusCode,
    code: &str,
    detail: Option<&str>,
) -> serde_json::Value {
    let mut body = serde_json::json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "code": code,
    });
    if let Some(detail) = detail {
        body["detail"] = detail.into();
    }
    body
}

/// A response with `status` and `body` as `application/problem+json`.
pub(crate) fn problem_response<B: RefusalBody>(
    status: StatusCode,
    body: &serde_json::Value,
) -> Response<B> {
    let mut res = Response::new(B::refusal(body.to_string()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    res
}

/// The response of an error: its status ([`status_of`]) and a problem+json body with its code
/// (for a denial, the decision and `Retry-After`), never its internal message.
impl axum::response::IntoResponse for Error {
    fn into_response(self) -> axum::response::Response {
        let status = status_of(self.code());
        let decision = self.rate_limit_decision();
        let detail = decision.map(denied_message);
        problem(status, self.code().as_str(), detail.as_deref(), decision)
    }
}
