//! The futures of the HTTP services (axum naming).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The response future of a [`RateLimitService`](super::RateLimitService) and of an
/// [`IdempotencyService`](super::IdempotencyService).
pub struct ResponseFuture<R, E> {
    inner: Pin<Box<dyn Future<Output = Result<R, E>> + Send>>,
}

impl<R, E> ResponseFuture<R, E> {
    pub(crate) fn new(inner: Pin<Box<dyn Future<Output = Result<R, E>> + Send>>) -> Self {
        Self { inner }
    }
}

impl<R, E> std::fmt::Debug for ResponseFuture<R, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<R, E> Future for ResponseFuture<R, E> {
    type Output = Result<R, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}
