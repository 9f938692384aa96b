//! Recorded responses: buffering a response body up to the limit (or passing it on untouched
//! when it is too large or streamed), the stored encoding, and the replay.
//!
//! The record's result is bincode 2 (standard configuration: little-endian, variable-length
//! integers) of [`Stored`]: variant `0`, a response, `(u16 status, Vec<(String, Vec<u8>)>
//! headers, Vec<u8> body)` with the allow-listed headers only; variant `1`, a response that was
//! not recorded, `(u16 status, String reason)`.

use std::borrow::Cow;

use axum::body::{Body, Bytes, HttpBody as _};
use futures_util::StreamExt as _;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt as _, BodyStream, StreamBody};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorCode, Result};

/// The header a replayed response carries (`true`).
const REPLAYED: &str = "idempotency-replayed";

/// What the record of a completed request holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) enum Stored<'a> {
    /// The response: its status, its allow-listed headers, its body.
    Response {
        status: u16,
        headers: Vec<(String, Vec<u8>)>,
        body: Cow<'a, [u8]>,
    },
    /// A response that was served but not recorded (too large, streamed): its status and why.
    NotRecorded { status: u16, reason: String },
}

impl Stored<'_> {
    /// Its bytes, for the record.
    pub(super) fn encode(&self) -> Result<Vec<u8>> {
        bincode::serde::encode_to_vec(self, bincode::config::standard()).map_err(|e| {
            Error::new(
                ErrorCode::IdempotencySerialization,
                "a response cannot be encoded for its idempotency record",
            )
            .with_source(e)
        })
    }
}

impl Stored<'static> {
    /// A record's bytes; `IDEMPOTENCY_RECORD_INVALID` when they are not a recorded response
    /// (the key was used by another writer, e.g. `Idempotency::run`).
    pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<Self> {
        match bincode::serde::decode_from_slice(bytes, bincode::config::standard()) {
            Ok((stored, read)) if read == bytes.len() => Ok(stored),
            Ok(_) => Err(invalid(key, None)),
            Err(e) => Err(invalid(key, Some(e))),
        }
    }
}

fn invalid(key: &str, source: Option<bincode::error::DecodeError>) -> Error {
    let e = Error::new(
        ErrorCode::IdempotencyRecordInvalid,
        "the idempotency record does not hold a recorded HTTP response (was the key used outside the HTTP layer?)",
    )
    .with_context("key", key.to_owned());
    match source {
        Some(s) => e.with_source(s),
        None => e,
    }
}

/// The allow-listed headers of a response, for its record.
pub(super) fn headers_to_store(
    headers: &HeaderMap,
    allowed: &[HeaderName],
) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(name, _)| allowed.contains(name))
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect()
}

/// A replay of a recorded response: its status, its stored headers, its body, and
/// `Idempotency-Replayed: true`; for a response that was not recorded, why it was not.
pub(super) fn replay(stored: Stored<'static>) -> std::result::Result<Response<Body>, String> {
    let (status, headers, body) = match stored {
        Stored::Response {
            status,
            headers,
            body,
        } => (status, headers, body),
        Stored::NotRecorded { reason, .. } => return Err(reason),
    };
    let mut res = Response::new(Body::from(body.into_owned()));
    *res.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let h = res.headers_mut();
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&value),
        ) {
            h.append(name, value);
        }
    }
    h.insert(
        HeaderName::from_static(REPLAYED),
        HeaderValue::from_static("true"),
    );
    Ok(res)
}

/// A response body read for its record.
pub(super) enum Buffered {
    /// All of it, within the limit.
    Whole(Bytes),
    /// Not recorded: the body to serve as it is (what was read, then the rest), and why.
    Unrecorded(Body, &'static str),
}

/// Reads `body` whole when it fits in `limit` bytes; a body without a known size (streamed),
/// one announced or found larger, or one with trailers, is handed back to be served as it is
/// (never cut).
pub(super) async fn buffer(
    mut body: Body,
    limit: usize,
) -> std::result::Result<Buffered, axum::Error> {
    let limit = u64::try_from(limit).unwrap_or(u64::MAX);
    match body.size_hint().upper() {
        None => return Ok(Buffered::Unrecorded(body, "streaming")),
        Some(n) if n > limit => return Ok(Buffered::Unrecorded(body, "too_large")),
        Some(_) => {}
    }
    let mut frames = Vec::new();
    let mut len: u64 = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        let why = match frame.data_ref() {
            Some(data) => {
                len = len.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
                (len > limit).then_some("too_large")
            }
            None => Some("trailers"),
        };
        frames.push(frame);
        if let Some(why) = why {
            // Serve what was read, then the rest.
            let read = futures_util::stream::iter(frames.into_iter().map(Ok));
            let rest = read.chain(BodyStream::new(body));
            return Ok(Buffered::Unrecorded(Body::new(StreamBody::new(rest)), why));
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    for frame in &frames {
        if let Some(data) = frame.data_ref() {
            bytes.extend_from_slice(data);
        }
    }
    Ok(Buffered::Whole(Bytes::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_round_trips_and_replays_with_its_headers() {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("set-cookie", HeaderValue::from_static("session=secret"));
        h.insert("location", HeaderValue::from_static("/orders/1"));
        let allowed = [
            HeaderName::from_static("content-type"),
            HeaderName::from_static("location"),
        ];
        let stored = Stored::Response {
            status: 201,
            headers: headers_to_store(&h, &allowed),
            body: Cow::Borrowed(b"{\"id\":1}"),
        };
        let bytes = stored.encode().unwrap();
        let back = Stored::decode("k", &bytes).unwrap();
        let res = replay(back).unwrap();
        assert_eq!(res.status(), StatusCode::CREATED);
        assert_eq!(res.headers()["location"], "/orders/1");
        assert_eq!(res.headers()["idempotency-replayed"], "true");
        assert!(res.headers().get("set-cookie").is_none());
    }

    #[test]
    fn a_not_recorded_response_and_foreign_bytes_do_not_replay() {
        let stored = Stored::NotRecorded {
            status: 200,
            reason: "too_large".to_owned(),
        };
        let back = Stored::decode("k", &stored.encode().unwrap()).unwrap();
        assert_eq!(replay(back).unwrap_err(), "too_large");
        let err = Stored::decode("k", b"{\"json\":\"from run\"}").unwrap_err();
        assert_eq!(err.code(), ErrorCode::IdempotencyRecordInvalid);
    }

    #[tokio::test]
    async fn bodies_over_the_limit_or_streamed_are_served_whole_and_not_recorded() {
        let Buffered::Whole(b) = buffer(Body::from("0123456789"), 10).await.unwrap() else {
            panic!("fits");
        };
        assert_eq!(&b[..], b"0123456789");
        let Buffered::Unrecorded(body, why) = buffer(Body::from("0123456789"), 9).await.unwrap()
        else {
            panic!("too large");
        };
        assert_eq!(why, "too_large");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"0123456789");
        let chunks = futures_util::stream::iter(["01", "23", "45"].map(Ok::<_, std::io::Error>));
        let Buffered::Unrecorded(body, why) = buffer(Body::from_stream(chunks), 100).await.unwrap()
        else {
            panic!("streamed");
        };
        assert_eq!(why, "streaming");
        assert_eq!(&body.collect().await.unwrap().to_bytes()[..], b"012345");
    }
}
