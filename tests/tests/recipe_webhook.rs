//! The webhook recipe (`examples/webhook.rs`, its `app`, `#[stream_consumer]` and downstream
//! as they are) through a real axum server on a loopback socket, a real HTTP client and a Redis
//! server of its own per test: a redelivered event (same event id) is replayed and published
//! and delivered once; an event the downstream refuses is retried and lands in the DLQ after
//! the last retry, with its payload and error; requeued once the fault is fixed it is delivered
//! exactly once and the DLQ is empty; an event published twice (the endpoint died before
//! recording its 202) is delivered twice and applied once; events accepted before any consumer
//! ran are delivered when one starts; a body that is not an event, or no event id, is a 4xx
//! and publishes nothing.
//!
//! The downstream is the example's one static instance, shared by the tests of this binary:
//! each test uses event ids of its own.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/webhook.rs"]
mod webhook;

use std::time::Duration;

use redisx::idempotency::Status;
use redisx::{ConnectionConfig, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::idempotency_http::{header, problem, replayed};
use redisx_tests::{RedisServer, eventually, unique_prefix};
use webhook::{
    Accepted, Call, EVENT_ID, GROUP, MAX_RETRIES, STREAM, WebhookBody, WebhookEvent, app,
    downstream, start_delivery, streams_config,
};

/// A runtime on `server` under a prefix of the test's own, with the recipe's streams settings.
async fn runtime(server: &RedisServer, test: &str) -> RedisX {
    RedisX::builder()
        .client(
            "default",
            ConnectionConfig::from_url(&server.url()).unwrap(),
        )
        .key_prefix(unique_prefix(test))
        .streams(streams_config())
        .build()
        .await
        .unwrap()
}

/// The JSON body of an event.
fn body(kind: &str, n: u64) -> String {
    serde_json::to_string(&WebhookBody {
        kind: kind.to_owned(),
        data: serde_json::json!({ "n": n }),
    })
    .unwrap()
}

/// POSTs `body` to `url` as the event `id`.
async fn post_event(c: &reqwest::Client, url: &str, id: &str, body: &str) -> reqwest::Response {
    c.post(url)
        .header(EVENT_ID, id)
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The 202 of an accepted event, checked, and its body as text.
async fn accepted(res: reqwest::Response) -> (Accepted, String) {
    assert_eq!(res.status(), 202);
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/json")
    );
    let text = res.text().await.unwrap();
    (serde_json::from_str(&text).unwrap(), text)
}

fn within() -> Duration {
    Duration::from_secs(5)
}

fn poll() -> Duration {
    Duration::from_millis(10)
}

/// Waits until the group has read every entry of the stream and acknowledged it (nothing left
/// to deliver: what the downstream saw is then final).
async fn drained(rx: &RedisX) -> bool {
    eventually(within(), poll(), || async {
        let streams = rx.streams();
        let lag = streams.lag(STREAM, GROUP).await.unwrap();
        let pending = streams.pending(STREAM, GROUP).await.unwrap().count;
        lag == Some(0) && pending == 0
    })
    .await
}

/// Waits until the DLQ holds `n` entries.
async fn dlq_holds(rx: &RedisX, n: u64) -> bool {
    eventually(within(), poll(), || async {
        rx.streams().dlq_len(STREAM).await.unwrap() == n
    })
    .await
}

/// A successful call of the given attempt.
fn ok(attempt: u32) -> Call {
    Call {
        attempt,
        error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_is_replayed_and_delivered_once() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_webhook_replay").await;
    let delivery = start_delivery(&rx).await.unwrap();
    let url = format!("{}/webhooks", serve(app(rx.clone())).await);
    let c = client();
    let id = "evt_replay_1";

    let first = post_event(&c, &url, id, &body("invoice.paid", 1)).await;
    assert!(!replayed(&first));
    let (first, first_text) = accepted(first).await;
    assert_eq!(first.event, id);
    let applied = eventually(within(), poll(), || async {
        downstream().applied(id).is_some()
    })
    .await;
    assert!(applied, "the event is delivered");

    // The provider missed our answer and redelivers: the same 202, nothing published.
    let again = post_event(&c, &url, id, &body("invoice.paid", 1)).await;
    assert!(replayed(&again), "the redelivery is a replay");
    let (_, again_text) = accepted(again).await;
    assert_eq!(
        again_text, first_text,
        "the same answer, the same message id"
    );
    assert_eq!(rx.streams().len(STREAM).await.unwrap(), 1, "published once");
    assert!(drained(&rx).await, "the group read and acknowledged it all");
    assert_eq!(downstream().calls(id), [ok(1)], "delivered once");
    assert_eq!(downstream().times_applied(id), 1);
    assert_eq!(
        downstream().applied(id),
        Some(WebhookEvent {
            id: id.to_owned(),
            kind: "invoice.paid".to_owned(),
            data: serde_json::json!({ "n": 1 }),
        })
    );
    let record = rx
        .idempotency()
        .get(&format!("webhook:{id}"))
        .await
        .unwrap();
    assert_eq!(record.unwrap().status(), Status::Completed);

    // Another body under the same event id is refused; another event id is another event.
    let reused = post_event(&c, &url, id, &body("invoice.paid", 2)).await;
    assert_eq!(reused.status(), 422);
    assert_eq!(
        problem(reused).await["code"],
        "IDEMPOTENCY_FINGERPRINT_MISMATCH"
    );
    let other = post_event(&c, &url, "evt_replay_2", &body("invoice.paid", 1)).await;
    let (other, _) = accepted(other).await;
    assert_ne!(other.message, first.message);
    let applied = eventually(within(), poll(), || async {
        downstream().applied("evt_replay_2").is_some()
    })
    .await;
    assert!(applied);
    assert_eq!(rx.streams().len(STREAM).await.unwrap(), 2);
    assert!(drained(&rx).await);
    assert_eq!(downstream().calls(id), [ok(1)]);
    assert_eq!(downstream().calls("evt_replay_2"), [ok(1)]);
    delivery.stop().await;
    rx.shutdown().await;
}

/// Sends the event `id`, which the downstream refuses with `reason`, and waits until it is in
/// the DLQ; returns the 202's answer.
async fn dead_letter(
    rx: &RedisX,
    c: &reqwest::Client,
    url: &str,
    id: &str,
    reason: &str,
) -> Accepted {
    downstream().refuse(id, reason);
    let (accepted, _) = accepted(post_event(c, url, id, &body("charge.refunded", 7)).await).await;
    assert!(dlq_holds(rx, 1).await, "the event lands in the DLQ");
    assert!(drained(rx).await, "nothing left pending or undelivered");
    accepted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_event_is_retried_then_dead_lettered_with_its_error() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_webhook_dlq").await;
    let delivery = start_delivery(&rx).await.unwrap();
    let url = format!("{}/webhooks", serve(app(rx.clone())).await);
    let c = client();
    let id = "evt_dlq_1";

    let reason = "customer cus_42 is not synced yet";
    let first = dead_letter(&rx, &c, &url, id, reason).await;
    let error = format!("downstream refused {id}: {reason}");
    let calls = downstream().calls(id);
    let attempts: Vec<u32> = calls.iter().map(|c| c.attempt).collect();
    let all: Vec<u32> = (1..=MAX_RETRIES + 1).collect();
    assert_eq!(attempts, all, "the first attempt and every retry, no more");
    assert!(
        calls
            .iter()
            .all(|c| c.error.as_deref() == Some(error.as_str()))
    );
    assert_eq!(downstream().applied(id), None);

    let dead = rx.streams().dlq_list(STREAM, 10).await.unwrap();
    let [dead] = dead.as_slice() else {
        panic!("one dead letter: {dead:?}")
    };
    assert_eq!(dead.error.as_deref(), Some(error.as_str()));
    assert_eq!(dead.attempts, MAX_RETRIES + 1);
    assert_eq!(dead.original_stream.as_deref(), Some(STREAM));
    assert!(dead.failed_at.is_some());
    let payload: WebhookEvent = dead.payload().unwrap();
    assert_eq!(
        payload,
        WebhookEvent {
            id: id.to_owned(),
            kind: "charge.refunded".to_owned(),
            data: serde_json::json!({ "n": 7 }),
        }
    );
    assert!(dead.original_id.is_some());

    // The provider redelivers meanwhile: the same 202, not published again.
    let before = rx.streams().len(STREAM).await.unwrap();
    let again = post_event(&c, &url, id, &body("charge.refunded", 7)).await;
    assert!(replayed(&again));
    assert_eq!(accepted(again).await.0, first);
    assert_eq!(rx.streams().len(STREAM).await.unwrap(), before);
    delivery.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_event_is_delivered_once_after_the_fix() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_webhook_requeue").await;
    let delivery = start_delivery(&rx).await.unwrap();
    let url = format!("{}/webhooks", serve(app(rx.clone())).await);
    let c = client();
    let id = "evt_requeue_1";

    dead_letter(&rx, &c, &url, id, "downstream bug #12").await;
    let failed = downstream().calls(id).len();
    assert_eq!(failed, MAX_RETRIES as usize + 1);
    let dead = rx.streams().dlq_list(STREAM, 10).await.unwrap();
    let [dead] = dead.as_slice() else {
        panic!("one dead letter: {dead:?}")
    };

    // The fix is deployed: requeue the dead letter.
    downstream().repair(id);
    let requeued = rx.streams().requeue(STREAM, &dead.id).await.unwrap();
    assert!(requeued.is_some());
    let applied = eventually(within(), poll(), || async {
        downstream().applied(id).is_some()
    })
    .await;
    assert!(applied, "the requeued event is delivered");
    assert!(drained(&rx).await);
    let calls = downstream().calls(id);
    assert_eq!(calls[failed..], [ok(1)], "once, as a first attempt");
    assert_eq!(rx.streams().dlq_len(STREAM).await.unwrap(), 0);
    assert_eq!(downstream().applied(id).unwrap().id, id);

    // A second requeue of the same entry (a double click) finds nothing; a redelivery by the
    // provider replays; nothing runs again.
    assert_eq!(rx.streams().requeue(STREAM, &dead.id).await.unwrap(), None);
    let again = post_event(&c, &url, id, &body("charge.refunded", 7)).await;
    assert!(replayed(&again));
    assert!(drained(&rx).await);
    assert_eq!(downstream().calls(id).len(), failed + 1);
    assert_eq!(downstream().times_applied(id), 1);
    delivery.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_published_twice_is_delivered_twice_and_applied_once() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_webhook_twice").await;
    let delivery = start_delivery(&rx).await.unwrap();
    let url = format!("{}/webhooks", serve(app(rx.clone())).await);
    let c = client();
    let id = "evt_twice_1";

    let (first, _) = accepted(post_event(&c, &url, id, &body("invoice.paid", 3)).await).await;
    assert!(drained(&rx).await);
    assert_eq!(downstream().calls(id), [ok(1)]);

    // The instance died after publishing, before the record of its 202 was stored: no record,
    // so the provider's redelivery runs the endpoint again, which publishes the event again.
    assert!(
        rx.idempotency()
            .delete(&format!("webhook:{id}"))
            .await
            .unwrap()
    );
    let again = post_event(&c, &url, id, &body("invoice.paid", 3)).await;
    assert!(!replayed(&again), "nothing recorded to replay");
    let (second, _) = accepted(again).await;
    assert_ne!(second.message, first.message, "a second message");
    assert_eq!(rx.streams().len(STREAM).await.unwrap(), 2);

    // Both messages are delivered and acknowledged; the event is applied once.
    assert!(drained(&rx).await);
    assert_eq!(downstream().calls(id), [ok(1), ok(1)], "delivered twice");
    assert_eq!(downstream().times_applied(id), 1, "applied once");
    assert_eq!(rx.streams().dlq_len(STREAM).await.unwrap(), 0);
    delivery.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_accepted_before_any_consumer_ran_are_delivered_when_one_starts() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_webhook_backlog").await;
    let url = format!("{}/webhooks", serve(app(rx.clone())).await);
    let c = client();

    // No consumer, no group yet (a first deploy): the events are accepted all the same.
    let ids = ["evt_backlog_1", "evt_backlog_2", "evt_backlog_3"];
    for (n, id) in (0..).zip(ids) {
        accepted(post_event(&c, &url, id, &body("customer.created", n)).await).await;
    }
    assert_eq!(rx.streams().len(STREAM).await.unwrap(), 3);
    assert!(rx.streams().groups(STREAM).await.unwrap().is_empty());
    assert!(ids.iter().all(|id| downstream().calls(id).is_empty()));

    // The consumer creates its group at the start of the stream (`start_id = "0"`).
    let delivery = start_delivery(&rx).await.unwrap();
    assert!(drained(&rx).await, "the group starts at the beginning");
    for id in ids {
        assert_eq!(downstream().calls(id), [ok(1)], "{id}");
    }
    delivery.stop().await;
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_payload_or_a_missing_event_id_is_refused_and_publishes_nothing() {
    let server = RedisServer::start();
    let rx = runtime(&server, "recipe_webhook_bad").await;
    let url = format!("{}/webhooks", serve(app(rx.clone())).await);
    let c = client();

    let malformed = post_event(&c, &url, "evt_bad_1", "{\"type\":").await;
    assert_eq!(malformed.status(), 400);
    let text = malformed.text().await.unwrap();
    assert!(text.starts_with("not a webhook event: "), "{text}");
    let untyped = post_event(&c, &url, "evt_bad_2", "{\"data\":{}}").await;
    assert_eq!(untyped.status(), 400);
    let text = untyped.text().await.unwrap();
    assert!(text.contains("missing field `type`"), "{text}");
    // Recorded like any 4xx: the same bytes redelivered get the same answer.
    let again = post_event(&c, &url, "evt_bad_2", "{\"data\":{}}").await;
    assert_eq!(again.status(), 400);
    assert!(replayed(&again));

    let anonymous = c
        .post(&url)
        .body(body("invoice.paid", 1))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 400, "the event id is required");
    assert_eq!(problem(anonymous).await["code"], "IDEMPOTENCY_KEY_MISSING");
    assert_eq!(
        rx.streams().len(STREAM).await.unwrap(),
        0,
        "nothing published"
    );
    rx.shutdown().await;
}
