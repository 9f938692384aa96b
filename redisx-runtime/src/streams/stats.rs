//! What the streams plugin counts: its Prometheus metrics (registered by the plugin in the
//! runtime's registry) and its spans (`stream.publish`, `stream.process`, target
//! `redisx::streams`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `redisx_stream_messages_published_total` | counter | `stream` |
//! | `redisx_stream_messages_consumed_total` | counter | `stream`, `group`, `status` (`success` / `retry` / `dead_letter` / `decode_error`) |
//! | `redisx_stream_processing_duration_seconds` | histogram | `stream`, `group` |
//! | `redisx_stream_publish_duration_seconds` | histogram | `stream` |
//! | `redisx_stream_lag` | gauge | `stream`, `group` |
//! | `redisx_stream_dlq_length` | gauge | `stream` |
//! | `redisx_stream_in_flight` | gauge | |
//! | `redisx_stream_trimmed_pending_total` | counter | `stream`, `group` |
//!
//! `stream` is the stream's name as given (not its key). Each running consumer refreshes its
//! group's lag and its stream's DLQ length every 10 s (and soon after it dead-letters a
//! message); reading the lag (`lag`, `groups`, `info`) sets it too.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::metrics::SharedRegistry;

/// The buckets of the duration histograms: 0.5 ms to 60 s.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StreamLabels {
    pub(crate) stream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct GroupLabels {
    pub(crate) stream: String,
    pub(crate) group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ConsumedLabels {
    pub(crate) stream: String,
    pub(crate) group: String,
    pub(crate) status: &'static str,
}

/// One consumer's metric handles (no label lookup per message).
pub(crate) struct GroupMetrics {
    pub(crate) processing: Histogram,
    consumed: [Counter; 4],
}

impl GroupMetrics {
    /// Counts one delivery's outcome.
    pub(crate) fn consumed(&self, status: Consumed) {
        self.consumed[status as usize].inc();
    }
}

/// How a delivery ended (`status` of `redisx_stream_messages_consumed_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Consumed {
    Success,
    Retry,
    DeadLetter,
    DecodeError,
}

impl Consumed {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
            Self::DecodeError => "decode_error",
        }
    }
}

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// The plugin's metric families.
pub(crate) struct StreamMetrics {
    pub(crate) published: Family<StreamLabels, Counter>,
    pub(crate) consumed: Family<ConsumedLabels, Counter>,
    pub(crate) processing: Family<GroupLabels, Histogram, fn() -> Histogram>,
    pub(crate) publish_duration: Family<StreamLabels, Histogram, fn() -> Histogram>,
    pub(crate) lag: Family<GroupLabels, Gauge>,
    pub(crate) dlq_length: Family<StreamLabels, Gauge>,
    pub(crate) in_flight: Gauge,
    pub(crate) trimmed_pending: Family<GroupLabels, Counter>,
}

impl StreamMetrics {
    /// Registers the metrics in `registry`, under `redisx_`.
    pub(crate) fn register(registry: &SharedRegistry) -> Self {
        let m = Self {
            published: Family::default(),
            consumed: Family::default(),
            processing: Family::new_with_constructor(histogram),
            publish_duration: Family::new_with_constructor(histogram),
            lag: Family::default(),
            dlq_length: Family::default(),
            in_flight: Gauge::default(),
            trimmed_pending: Family::default(),
        };
        let mut reg = registry
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = reg.sub_registry_with_prefix("redisx");
        r.register(
            "stream_messages_published",
            "Messages published, by stream",
            m.published.clone(),
        );
        r.register(
            "stream_messages_consumed",
            "Deliveries handled, by stream, group and outcome (success, retry: scheduled again, dead_letter: out of retries or rejected, decode_error: undecodable, to the DLQ at once)",
            m.consumed.clone(),
        );
        r.register(
            "stream_processing_duration_seconds",
            "Time a handler took, by stream and group",
            m.processing.clone(),
        );
        r.register(
            "stream_publish_duration_seconds",
            "Time a publish took (the round trip), by stream",
            m.publish_duration.clone(),
        );
        r.register(
            "stream_lag",
            "Entries not yet delivered to the group (XINFO GROUPS lag), by stream and group, as last read (by its consumers every 10 s)",
            m.lag.clone(),
        );
        r.register(
            "stream_dlq_length",
            "Entries in the stream's dead-letter stream (XLEN), as last read (by `dlq_len`, and by its consumers every 10 s and after a dead letter)",
            m.dlq_length.clone(),
        );
        r.register(
            "stream_in_flight",
            "Handlers running in this process",
            m.in_flight.clone(),
        );
        r.register(
            "stream_trimmed_pending",
            "Pending entries removed by a stream's cap before they were acknowledged (recorded in the DLQ as lost)",
            m.trimmed_pending.clone(),
        );
        m
    }

    /// The metric handles of one consumer's stream and group, resolved once.
    pub(crate) fn group(&self, stream: &str, group: &str) -> GroupMetrics {
        let labels = GroupLabels {
            stream: stream.to_owned(),
            group: group.to_owned(),
        };
        let consumed = [
            Consumed::Success,
            Consumed::Retry,
            Consumed::DeadLetter,
            Consumed::DecodeError,
        ]
        .map(|status| {
            self.consumed.get_or_create_owned(&ConsumedLabels {
                stream: stream.to_owned(),
                group: group.to_owned(),
                status: status.as_str(),
            })
        });
        GroupMetrics {
            processing: self.processing.get_or_create_owned(&labels),
            consumed,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use prometheus_client::registry::Registry;

    use super::*;

    #[test]
    fn the_metrics_are_exported_under_their_names() {
        let registry: SharedRegistry = Arc::new(Mutex::new(Registry::default()));
        let m = StreamMetrics::register(&registry);
        m.group("orders", "billing").consumed(Consumed::Retry);
        m.published
            .get_or_create(&StreamLabels {
                stream: "orders".to_owned(),
            })
            .inc();
        m.in_flight.inc();
        m.dlq_length
            .get_or_create(&StreamLabels {
                stream: "orders".to_owned(),
            })
            .set(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry.lock().unwrap()).unwrap();
        for line in [
            "redisx_stream_messages_consumed_total{stream=\"orders\",group=\"billing\",status=\"retry\"} 1",
            "redisx_stream_messages_published_total{stream=\"orders\"} 1",
            "redisx_stream_in_flight 1",
            "redisx_stream_dlq_length{stream=\"orders\"} 3",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
