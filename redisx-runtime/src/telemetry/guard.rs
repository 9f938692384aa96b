//! [`OtlpGuard`] and the process-wide list of live providers that
//! [`RedisX::shutdown`](crate::RedisX::shutdown) flushes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use opentelemetry_sdk::trace::SdkTracerProvider;

use crate::{Error, ErrorCode, Result};

/// Keeps the exporter of an [`OtlpBuilder::build`](super::OtlpBuilder::build) running; dropping
/// it (or [`shutdown`](Self::shutdown)) sends the spans still queued and stops the exporter. Keep
/// it for the life of the program, e.g. as a local of `main`.
///
/// Flushing and shutting down block the calling thread until the collector answered or the
/// export timeout passed; from async code, prefer [`RedisX::shutdown`](crate::RedisX::shutdown)
/// (which flushes off the async threads) and drop the guard last.
#[must_use = "dropping the guard stops the exporter"]
#[derive(Debug)]
pub struct OtlpGuard {
    provider: Option<SdkTracerProvider>,
    id: u64,
}

impl OtlpGuard {
    /// Sends the spans queued so far, waiting for the collector's answer.
    ///
    /// ```no_run
    /// # fn main() -> redisx_runtime::Result<()> {
    /// # let (_layer, guard) = redisx_runtime::telemetry::otlp().build::<tracing_subscriber::Registry>()?;
    /// guard.flush()?;
    /// # Ok(()) }
    /// ```
    pub fn flush(&self) -> Result<()> {
        match &self.provider {
            Some(provider) => provider.force_flush().map_err(export_error),
            None => Ok(()),
        }
    }

    /// The tracer provider behind the layer: for other instrumentation of the process to
    /// share (e.g. `opentelemetry::global::set_tracer_provider`, which this crate never
    /// calls).
    ///
    /// ```no_run
    /// # fn main() -> redisx_runtime::Result<()> {
    /// # let (_layer, guard) = redisx_runtime::telemetry::otlp().build::<tracing_subscriber::Registry>()?;
    /// redisx_runtime::telemetry::opentelemetry::global::set_tracer_provider(guard.provider().clone());
    /// # Ok(()) }
    /// ```
    ///
    /// # Panics
    /// Never: the provider is only taken by `shutdown`, which consumes the guard.
    pub fn provider(&self) -> &SdkTracerProvider {
        self.provider
            .as_ref()
            .expect("the provider lives as long as its guard")
    }

    /// Sends what is queued, then stops the exporter; spans ended afterwards are dropped.
    /// Dropping the guard does the same, ignoring errors.
    ///
    /// ```no_run
    /// # fn main() -> redisx_runtime::Result<()> {
    /// # let (_layer, guard) = redisx_runtime::telemetry::otlp().build::<tracing_subscriber::Registry>()?;
    /// guard.shutdown()?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let Some(provider) = self.provider.take() else {
            return Ok(());
        };
        registered().retain(|(id, _)| *id != self.id);
        provider.shutdown().map_err(export_error)
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        // The exporter already reported why (through its own `tracing` events).
        let _ = self.stop();
    }
}

fn export_error(e: opentelemetry_sdk::error::OTelSdkError) -> Error {
    Error::new(ErrorCode::OperationFailed, "the OTLP exporter failed").with_source(e)
}

/// Registers `provider` for [`flush_registered`] and returns the guard that unregisters it.
pub(super) fn register(provider: SdkTracerProvider) -> OtlpGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    registered().push((id, provider.clone()));
    OtlpGuard {
        provider: Some(provider),
        id,
    }
}

/// Every provider built by [`OtlpBuilder::build`](super::OtlpBuilder::build) whose guard is
/// alive, by guard id: what [`RedisX::shutdown`](crate::RedisX::shutdown) flushes.
static REGISTERED: Mutex<Vec<(u64, SdkTracerProvider)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn registered() -> MutexGuard<'static, Vec<(u64, SdkTracerProvider)>> {
    // The list stays consistent whatever panicked while it was held (a push or a retain).
    REGISTERED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Flushes every registered provider, on a blocking thread (a flush waits for the collector).
pub(crate) async fn flush_registered() {
    let providers: Vec<SdkTracerProvider> = registered().iter().map(|(_, p)| p.clone()).collect();
    if providers.is_empty() {
        return;
    }
    let flushed = tokio::task::spawn_blocking(move || {
        for provider in providers {
            if let Err(e) = provider.force_flush() {
                tracing::warn!(target: "redisx", error = %format_args!("{e:#}"), "the OTLP exporter did not flush");
            }
        }
    })
    .await;
    if flushed.is_err() {
        tracing::warn!(target: "redisx", "the OTLP flush panicked");
    }
}
