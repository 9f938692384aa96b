//! Webhook delivery: a `POST /webhooks` endpoint that accepts each provider event once (by the
//! provider's event id), hands it to a stream and answers 202 at once; a `#[stream_consumer]`
//! delivers it to a downstream system, retries a failure with backoff, and after the last retry
//! leaves it in the dead-letter stream, from where it is requeued once the fault is fixed.
//!
//! ```text
//! cargo run --example webhook
//! ```
//!
//! Uses the server in `REDIS_URL` when it is set, else one listening on `127.0.0.1:6379`, else
//! starts a throwaway `redis-server` from `PATH` (stopped at exit). It starts the consumer,
//! serves the app on a free loopback port and, as the provider, sends an event, redelivers it
//! (replayed: the same 202, published and delivered once), sends an event the downstream
//! refuses (retried, then dead-lettered with its error), fixes the downstream and requeues it
//! (delivered once, the DLQ empty), and sends a payload that is not an event (400, nothing
//! published).
//!
//! The pieces: [`redisx::http::IdempotencyLayer`] keyed on the `X-Event-Id` header (required)
//! records the 202 and replays it to every redelivery of the event, so the stream gets one
//! message per event; the handler only publishes (`rx.streams().publish`), so the provider's
//! timeout never depends on the downstream; [`deliver_webhook`] (`#[stream_consumer]` with
//! `start_id = "0"`, so the events accepted before any consumer ran are delivered too; started
//! by [`start_delivery`]) applies the event to the [`Downstream`], which applies each event id
//! once; an `Err` is retried after the backoff of [`streams_config`], and after
//! [`MAX_RETRIES`] retries the message goes to the DLQ with the error; `rx.streams().dlq_list`
//! shows it and `requeue` sends it again.

#[path = "support/client.rs"]
mod client;
#[path = "support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Router};
use redisx::http::{IdempotencyKey, IdempotencyLayer};
use redisx::idempotency::IdempotencyOptions;
use redisx::streams::{Backoff, ConsumerHandle, Message, StreamsConfig};
use redisx::{ConnectionConfig, RedisX, stream_consumer};
use serde::{Deserialize, Serialize};

/// The stream the endpoint publishes to and the consumer reads.
pub const STREAM: &str = "webhooks";

/// The consumer group that delivers the events downstream.
pub const GROUP: &str = "delivery";

/// The header carrying the provider's event id: the idempotency key.
pub const EVENT_ID: &str = "x-event-id";

/// Retries after the first attempt before the DLQ (the `max_retries` of [`deliver_webhook`]).
pub const MAX_RETRIES: u32 = 3;

/// The body the provider POSTs: `{"type": "invoice.paid", "data": {...}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// The event's type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The event's data, as the provider sent it.
    pub data: serde_json::Value,
}

/// An event as it travels on the stream: the body with the provider's event id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The provider's event id (the `X-Event-Id` header).
    pub id: String,
    /// The event's type.
    pub kind: String,
    /// The event's data.
    pub data: serde_json::Value,
}

/// The answer to an accepted event (202), replayed as it is to every redelivery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// The provider's event id.
    pub event: String,
    /// The id of the stream entry holding it.
    pub message: String,
}

/// One call of the downstream: which attempt it was and how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// The delivery attempt (from 1; a requeued message starts again at 1).
    pub attempt: u32,
    /// `None` when the event was applied, else why it was refused.
    pub error: Option<String>,
}

/// The downstream refused an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The event refused.
    pub event: String,
    /// Why.
    pub reason: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "downstream refused {}: {}", self.event, self.reason)
    }
}

impl std::error::Error for Refused {}

/// What the downstream holds and saw.
struct Books {
    /// Every call, by event id.
    calls: BTreeMap<String, Vec<Call>>,
    /// The events applied, in order: the downstream's effect (each id once: a repeat is
    /// acknowledged and ignored).
    applied: Vec<WebhookEvent>,
    /// The events it refuses for now, with the reason.
    refused: BTreeMap<String, String>,
}

/// A simulated downstream system (a CRM, a ledger), in process: it applies events once per
/// event id, refuses the events it was told to refuse (a fault) until repaired, and records
/// every call. The one instance is [`downstream()`].
pub struct Downstream {
    books: Mutex<Books>,
}

/// The downstream the consumer delivers to. A `#[stream_consumer]` is a free function with no
/// state of its own, so what it calls is reached globally, as a real service would reach its
/// HTTP client.
static DOWNSTREAM: Downstream = Downstream {
    books: Mutex::new(Books {
        calls: BTreeMap::new(),
        applied: Vec::new(),
        refused: BTreeMap::new(),
    }),
};

/// The downstream [`deliver_webhook`] applies events to.
pub fn downstream() -> &'static Downstream {
    &DOWNSTREAM
}

impl Downstream {
    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `event` (delivery attempt `attempt`): refused while the event is marked
    /// refused; a repeat of an applied event succeeds without applying it again. The check sits
    /// with the effect, as in a real downstream that takes the event id as its idempotency key
    /// (or a unique constraint): a repeat is caught whenever it comes, also after a crash
    /// between the effect and the acknowledgement of its message.
    pub fn apply(&self, event: &WebhookEvent, attempt: u32) -> Result<(), Refused> {
        let mut books = self.books();
        let refused = books.refused.get(&event.id).map(|reason| Refused {
            event: event.id.clone(),
            reason: reason.clone(),
        });
        books.calls.entry(event.id.clone()).or_default().push(Call {
            attempt,
            error: refused.as_ref().map(ToString::to_string),
        });
        if let Some(refused) = refused {
            return Err(refused);
        }
        if !books.applied.iter().any(|e| e.id == event.id) {
            books.applied.push(event.clone());
        }
        Ok(())
    }

    /// From now on refuses the event `id` with `reason` (the fault), until [`repair`](Self::repair).
    pub fn refuse(&self, id: &str, reason: &str) {
        self.books()
            .refused
            .insert(id.to_owned(), reason.to_owned());
    }

    /// Accepts the event `id` again (the fault fixed).
    pub fn repair(&self, id: &str) {
        self.books().refused.remove(id);
    }

    /// Every call made for the event `id`, in order.
    pub fn calls(&self, id: &str) -> Vec<Call> {
        self.books().calls.get(id).cloned().unwrap_or_default()
    }

    /// The event `id` as applied, if it was.
    pub fn applied(&self, id: &str) -> Option<WebhookEvent> {
        self.books().applied.iter().find(|e| e.id == id).cloned()
    }

    /// How many times the event `id` was applied (its effect ran).
    pub fn times_applied(&self, id: &str) -> usize {
        self.books().applied.iter().filter(|e| e.id == id).count()
    }
}

/// Delivers one event downstream. `Ok` acknowledges the message; an `Err` is retried after the
/// backoff, and after [`MAX_RETRIES`] retries the message goes to the DLQ with the error's text.
/// The first consumer to start creates the group at `0`, the start of the stream, so the
/// events accepted before any consumer ran (a first deploy) are delivered too.
///
/// Delivery is at least once: a message whose consumer died before acknowledging it is
/// delivered again, and the endpoint publishes an event twice if it died between its publish
/// and the record of its 202. The downstream's own check by event id makes that harmless.
/// Wrapping the call in `#[idempotent]` (or `rx.idempotency().run`) here would not: an `Err`
/// marks its key failed for the lock ttl (30 s), so the retries 100 ms later would get
/// `IDEMPOTENCY_PREVIOUS_FAILED` instead of reaching the downstream, and an effect followed by
/// a crash before its record is stored would run again.
#[stream_consumer(
    stream = "webhooks",
    group = "delivery",
    concurrency = 4,
    max_retries = 3,
    start_id = "0"
)]
pub async fn deliver_webhook(msg: Message<WebhookEvent>) -> Result<(), Refused> {
    downstream().apply(msg.payload(), msg.attempt())
}

/// The streams settings of the recipe: retries 100 ms apart, doubling up to 1 s (the default,
/// 1 s doubling to 30 s, suits a real downstream better; this one keeps the demo short).
pub fn streams_config() -> StreamsConfig {
    StreamsConfig::default().backoff(Backoff {
        initial: Duration::from_millis(100),
        multiplier: 2.0,
        max: Duration::from_secs(1),
    })
}

/// Starts [`deliver_webhook`] on `rx` (creating its group at the start of the stream if
/// missing); `rx.shutdown()` (or the handle's `stop()`) drains it.
pub async fn start_delivery(rx: &RedisX) -> redisx::Result<ConsumerHandle> {
    rx.streams().start_registered("deliver_webhook").await
}

/// The service: `POST /webhooks` (a JSON [`WebhookBody`], a required `X-Event-Id` header)
/// publishes a [`WebhookEvent`] to [`STREAM`] and answers 202 with a JSON [`Accepted`].
/// Records are kept under `webhook:{event id}` for 3 days, as long as providers redeliver.
pub fn app(rx: RedisX) -> Router {
    let layer = IdempotencyLayer::new()
        .runtime(rx.clone())
        .header(HeaderName::from_static(EVENT_ID))
        .required(true)
        .key_prefix("webhook:")
        .options(IdempotencyOptions::new().ttl(Duration::from_secs(3 * 24 * 3600)));
    Router::new()
        .route("/webhooks", post(receive))
        .route_layer(layer)
        .with_state(rx)
}

/// `POST /webhooks`: runs once per event id, under the layer's claim. (A real endpoint checks
/// the provider's signature first.) A body that is not an event is a 400, recorded like any
/// 4xx: a redelivery of the same bytes gets the same answer.
async fn receive(
    State(rx): State<RedisX>,
    Extension(key): Extension<IdempotencyKey>,
    body: String,
) -> Response {
    let body: WebhookBody = match serde_json::from_str(&body) {
        Ok(body) => body,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("not a webhook event: {e}")).into_response();
        }
    };
    let event = WebhookEvent {
        id: key.value().to_owned(),
        kind: body.kind,
        data: body.data,
    };
    // A failed publish is a 5xx: not recorded, so the provider's next redelivery runs again.
    match rx.streams().publish(STREAM, &event).await {
        Ok(message) => {
            let accepted = Accepted {
                event: event.id,
                message,
            };
            match serde_json::to_string(&accepted) {
                Ok(json) => (
                    StatusCode::ACCEPTED,
                    [(CONTENT_TYPE, "application/json")],
                    json,
                )
                    .into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

/// An event body as JSON text.
fn event_body(kind: &str, data: serde_json::Value) -> Result<String, serde_json::Error> {
    serde_json::to_string(&WebhookBody {
        kind: kind.to_owned(),
        data,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (url, _server) = server::find_or_start_redis()?; // `_server` stops a throwaway server
    let rx = RedisX::builder()
        .client("default", ConnectionConfig::from_url(&url)?)
        .key_prefix("webhook-example:")
        .streams(streams_config())
        .build()
        .await?;
    // Start fresh when run again on the same server.
    for id in ["evt_1001", "evt_1002", "evt_1003"] {
        rx.idempotency().delete(&format!("webhook:{id}")).await?;
    }
    rx.streams().purge_dlq(STREAM).await?;

    let _delivery = start_delivery(&rx).await?; // stopped by `rx.shutdown()`
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}/webhooks", listener.local_addr()?);
    let service = app(rx.clone());
    tokio::spawn(async move { axum::serve(listener, service).await });
    println!("--> serving POST {base}, delivering with the consumer group `{GROUP}`");

    // reqwest is built without a TLS provider of its own; plain HTTP needs one all the same.
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let c = reqwest::Client::builder().no_proxy().build()?;
    let sink = downstream();

    // An event, then the provider's redelivery of it (it missed our answer, say).
    let paid = event_body(
        "invoice.paid",
        serde_json::json!({"invoice": "in_1", "amount": 4200}),
    )?;
    let (status, replayed, body) =
        client::post(&c, &base, (EVENT_ID, "evt_1001"), paid.clone()).await?;
    println!("--> event evt_1001:        {status} replayed={replayed} {body}");
    let (status, replayed, body) =
        client::post(&c, &base, (EVENT_ID, "evt_1001"), paid.clone()).await?;
    println!("--> redelivered evt_1001:  {status} replayed={replayed} {body}");
    client::wait_for("evt_1001 to be delivered", || async {
        Ok(sink.applied("evt_1001").is_some())
    })
    .await?;
    println!(
        "--> downstream calls for evt_1001: {:?} (published and delivered once)",
        sink.calls("evt_1001")
    );

    // An event the downstream refuses: retried, then dead-lettered.
    sink.refuse("evt_1002", "customer cus_42 is not synced yet");
    let refunded = event_body(
        "charge.refunded",
        serde_json::json!({"charge": "ch_7", "customer": "cus_42"}),
    )?;
    let (status, replayed, body) =
        client::post(&c, &base, (EVENT_ID, "evt_1002"), refunded.clone()).await?;
    println!("--> event evt_1002:        {status} replayed={replayed} {body}");
    client::wait_for("evt_1002 to reach the DLQ", || async {
        Ok(rx.streams().dlq_len(STREAM).await? == 1)
    })
    .await?;
    let attempts: Vec<u32> = sink.calls("evt_1002").iter().map(|c| c.attempt).collect();
    println!("--> downstream refused evt_1002 at attempts {attempts:?}");
    let dead = rx
        .streams()
        .dlq_list(STREAM, 10)
        .await?
        .pop()
        .ok_or("the DLQ is empty")?;
    let payload: WebhookEvent = dead.payload()?;
    println!(
        "--> DLQ entry {}: event {} ({}) after {} attempts, error {:?}",
        dead.id, payload.id, payload.kind, dead.attempts, dead.error
    );

    // The fault is fixed: requeue it.
    sink.repair("evt_1002");
    let requeued = rx.streams().requeue(STREAM, &dead.id).await?;
    println!("--> fixed downstream, requeued as {requeued:?}");
    client::wait_for("evt_1002 to be delivered", || async {
        Ok(sink.applied("evt_1002").is_some())
    })
    .await?;
    let last = sink.calls("evt_1002").pop();
    println!(
        "--> delivered evt_1002: {last:?}; DLQ entries left: {}",
        rx.streams().dlq_len(STREAM).await?
    );

    // Not an event: refused before anything is published.
    let before = rx.streams().len(STREAM).await?;
    let (status, _, body) =
        client::post(&c, &base, (EVENT_ID, "evt_1003"), "{\"kind\":".to_owned()).await?;
    println!(
        "--> malformed evt_1003:    {status} {body} (stream entries {before} -> {})",
        rx.streams().len(STREAM).await?
    );
    rx.shutdown().await;
    Ok(())
}
