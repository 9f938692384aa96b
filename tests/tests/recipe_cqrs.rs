//! The CQRS invalidation recipe (`examples/cqrs.rs`, its `Instance`, `Store` and `EventLog` as
//! they are): two instances of the service (two runtimes on one Redis under one key prefix,
//! each with its own L1, each serving its axum app on a loopback socket) over one store. A
//! write on one instance is read on both once its event is handled; after the event is handled
//! and acknowledged, both serve the new value from their caches (one load in all), and entries
//! the event does not name stay cached; each event is handled once across the instances; an
//! event for an unknown product is handled like any other, a malformed one goes to the DLQ at
//! once; a cached 404 turns into the product once it is created; a read in flight during a
//! change does not cache what it read before the change.

// The example's `main` (and what only it uses) is not called here, and its `pub` items are
// public to the example's readers, not from this crate.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/cqrs.rs"]
mod cqrs;

use std::collections::BTreeSet;
use std::time::Duration;

use cqrs::{
    EVENT_ID, EVENTS, EventLog, GROUP, Handled, Instance, Product, ProductChanged, ProductUpdate,
    Store,
};
use redisx::{ConnectionConfig, RedisX};
use redisx_tests::http::{client, serve};
use redisx_tests::streams::consumed;
use redisx_tests::{RedisServer, eventually, unique_prefix};

/// How long an event may take to be handled, or an eviction to reach an instance: generous.
const WITHIN: Duration = Duration::from_secs(5);

/// How often the waits check.
const POLL: Duration = Duration::from_millis(5);

/// Two instances of the service over one store, and their HTTP base URLs.
struct Service {
    a: Instance,
    b: Instance,
    store: Store,
    log: EventLog,
    url_a: String,
    url_b: String,
}

impl Service {
    /// Instances `a` and `b` on `server` under one prefix of `test`'s own, over a store of
    /// product 1 (Coffee, 450) and product 2 (Tea, 300), each serving its app.
    async fn start(server: &RedisServer, test: &str) -> Self {
        let prefix = unique_prefix(test);
        let store = Store::new([Product::new(1, "Coffee", 450), Product::new(2, "Tea", 300)]);
        let log = EventLog::default();
        let mut instances = Vec::new();
        for name in ["a", "b"] {
            let rx = RedisX::builder()
                .client(
                    "default",
                    ConnectionConfig::from_url(&server.url()).unwrap(),
                )
                .key_prefix(prefix.clone())
                .build()
                .await
                .unwrap();
            instances.push(
                Instance::start(name, rx, store.clone(), &log)
                    .await
                    .unwrap(),
            );
        }
        let (b, a) = (instances.pop().unwrap(), instances.pop().unwrap());
        let (url_a, url_b) = (serve(a.app()).await, serve(b.app()).await);
        Self {
            a,
            b,
            store,
            log,
            url_a,
            url_b,
        }
    }

    /// Waits until the event `event_id` is handled (by either instance) and acknowledged (no
    /// entry of the group pending); returns how it was handled.
    async fn settled(&self, event_id: &str) -> Handled {
        let handled = self
            .log
            .wait_for(event_id, WITHIN)
            .await
            .expect("the event is handled");
        let streams = self.a.rx().streams().clone();
        let acked = eventually(WITHIN, POLL, || {
            let streams = streams.clone();
            async move { streams.pending(EVENTS, GROUP).await.unwrap().count == 0 }
        })
        .await;
        assert!(acked, "the event is acknowledged");
        handled
    }

    async fn shutdown(self) {
        self.a.rx().shutdown().await;
        self.b.rx().shutdown().await;
    }
}

/// Whether the instances' consumers count `n` messages handled with success in all (their
/// metric is counted just after the handler returns: waited for).
async fn successes(svc: &Service, n: u64) -> bool {
    let (a, b) = (svc.a.rx().clone(), svc.b.rx().clone());
    let counted = eventually(WITHIN, POLL, || {
        let sum = consumed(&a, "success") + consumed(&b, "success");
        async move { sum == n }
    })
    .await;
    counted && consumed(&a, "success") + consumed(&b, "success") == n
}

/// GETs `url`: the status and the body.
async fn get(c: &reqwest::Client, url: &str) -> (u16, String) {
    let res = c.get(url).send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// GETs `{base}/products/{id}`: the product, `None` on a 404.
async fn get_product(c: &reqwest::Client, base: &str, id: u64) -> Option<Product> {
    match get(c, &format!("{base}/products/{id}")).await {
        (200, body) => Some(serde_json::from_str(&body).unwrap()),
        (404, _) => None,
        (status, body) => panic!("GET /products/{id}: {status} {body}"),
    }
}

/// GETs `{base}/products`.
async fn get_list(c: &reqwest::Client, base: &str) -> Vec<Product> {
    let (status, body) = get(c, &format!("{base}/products")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// PUTs `update` to `{base}/products/{id}`: the product written and the event's id.
async fn put(
    c: &reqwest::Client,
    base: &str,
    id: u64,
    update: &ProductUpdate,
) -> (Product, String) {
    let res = c
        .put(format!("{base}/products/{id}"))
        .body(serde_json::to_string(update).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let event_id = res.headers()[EVENT_ID].to_str().unwrap().to_owned();
    (
        serde_json::from_str(&res.text().await.unwrap()).unwrap(),
        event_id,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_instance_is_read_on_both_over_http() {
    let server = RedisServer::start();
    let svc = Service::start(&server, "recipe_cqrs_http").await;
    let c = client();
    for base in [&svc.url_a, &svc.url_b] {
        assert_eq!(
            get_product(&c, base, 1).await,
            Some(Product::new(1, "Coffee", 450))
        );
    }
    assert_eq!(get_list(&c, &svc.url_b).await[0].price_cents, 450);
    assert_eq!(svc.store.reads_of(1), 1, "b read a's load from Redis");

    let (written, event_id) = put(&c, &svc.url_a, 1, &ProductUpdate::new("Coffee", 500)).await;
    assert_eq!(written, Product::new(1, "Coffee", 500));
    assert!(!event_id.is_empty());

    let (c2, url_a, url_b) = (c.clone(), svc.url_a.clone(), svc.url_b.clone());
    let consistent = eventually(WITHIN, POLL, || {
        let (c, url_a, url_b) = (c2.clone(), url_a.clone(), url_b.clone());
        async move {
            let new = Some(Product::new(1, "Coffee", 500));
            get_product(&c, &url_a, 1).await == new
                && get_product(&c, &url_b, 1).await == new
                && get_list(&c, &url_a).await[0].price_cents == 500
                && get_list(&c, &url_b).await[0].price_cents == 500
        }
    })
    .await;
    assert!(
        consistent,
        "both instances read the new price, item and list"
    );
    let handled = svc.settled(&event_id).await;
    assert_eq!(handled.product, 1);
    // Settled: every read from now on is the new price, on either instance.
    for base in [&svc.url_a, &svc.url_b, &svc.url_a, &svc.url_b] {
        assert_eq!(get_product(&c, base, 1).await.unwrap().price_cents, 500);
    }
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_the_event_is_handled_both_instances_serve_the_new_value_from_their_caches() {
    let server = RedisServer::start();
    let svc = Service::start(&server, "recipe_cqrs_caches").await;
    let (a, b, store) = (&svc.a, &svc.b, &svc.store);
    for i in [a, b] {
        assert_eq!(i.product(1).await.unwrap().price_cents, 450);
        assert_eq!(i.product(2).await.unwrap().price_cents, 300);
        assert_eq!(i.products().await.len(), 2);
    }
    assert_eq!(
        (store.reads_of(1), store.reads_of(2), store.list_reads()),
        (1, 1, 1)
    );
    assert_eq!((a.rx().cache().l1_len(), b.rx().cache().l1_len()), (3, 3));

    let (_, event_id) = a
        .change(1, ProductUpdate::new("Coffee", 500))
        .await
        .unwrap();
    let handled = svc.settled(&event_id).await;
    assert_eq!((handled.product, handled.removed), (1, 2), "item and list");
    // The handling instance dropped its L1 copies at once; the other's eviction comes over
    // pub/sub. Both keep product 2.
    let (ca, cb) = (a.rx().cache().clone(), b.rx().cache().clone());
    let evicted = eventually(WITHIN, POLL, || {
        let both = ca.l1_len() == 1 && cb.l1_len() == 1;
        async move { both }
    })
    .await;
    assert!(evicted, "both L1s dropped product 1 and the list");

    let (sa, sb) = (ca.stats(), cb.stats());
    assert_eq!(a.product(1).await.unwrap().price_cents, 500);
    assert_eq!(b.product(1).await.unwrap().price_cents, 500);
    assert_eq!(store.reads_of(1), 2, "one load across both instances");
    assert_eq!(ca.stats().loads - sa.loads, 1, "a loaded it");
    assert_eq!(cb.stats().loads - sb.loads, 0, "b did not load");
    assert_eq!(
        cb.stats().l2_hits - sb.l2_hits,
        1,
        "b read a's load from Redis"
    );
    for i in [a, b] {
        assert_eq!(i.product(1).await.unwrap().price_cents, 500);
        assert_eq!(i.product(2).await.unwrap().price_cents, 300);
    }
    assert_eq!(store.reads_of(1), 2, "then both from L1");
    assert_eq!(store.reads_of(2), 1, "product 2 stayed cached");
    assert_eq!(ca.stats().l1_hits - sa.l1_hits, 2);
    assert_eq!(cb.stats().l1_hits - sb.l1_hits, 2);
    for i in [a, b] {
        assert_eq!(i.products().await[0].price_cents, 500);
    }
    assert_eq!(
        store.list_reads(),
        2,
        "the list was dropped too, and loaded once"
    );
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_handled_once_across_the_instances() {
    let server = RedisServer::start();
    let svc = Service::start(&server, "recipe_cqrs_once").await;
    let (mut published, mut last) = (BTreeSet::new(), String::new());
    for n in 0..20u64 {
        let (writer, id) = if n % 2 == 0 { (&svc.a, 1) } else { (&svc.b, 2) };
        let (_, event_id) = writer
            .change(id, ProductUpdate::new("P", 1000 + n))
            .await
            .unwrap();
        published.insert(event_id.clone());
        last = event_id;
    }
    assert!(svc.log.wait_len(20, WITHIN).await, "20 events handled");
    assert_eq!(svc.settled(&last).await.product, 2);
    let handled = svc.log.all();
    let ids: BTreeSet<String> = handled.iter().map(|h| h.event_id.clone()).collect();
    assert_eq!(handled.len(), 20, "no event handled twice: {handled:?}");
    assert_eq!(ids, published);
    assert!(successes(&svc, 20).await, "the consumers' own count");
    let groups = svc.a.rx().streams().groups(EVENTS).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!((groups[0].name.as_str(), groups[0].consumers), (GROUP, 2));
    for i in [&svc.a, &svc.b] {
        assert_eq!(i.product(1).await.unwrap().price_cents, 1018);
        assert_eq!(i.product(2).await.unwrap().price_cents, 1019);
    }
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_product_is_handled_and_a_malformed_event_goes_to_the_dlq() {
    let server = RedisServer::start();
    let svc = Service::start(&server, "recipe_cqrs_unknown").await;
    let (a, b, store) = (&svc.a, &svc.b, &svc.store);
    for i in [a, b] {
        i.product(1).await.unwrap();
        i.products().await;
    }
    let streams = a.rx().streams().clone();

    // Another producer's event for a product the store never had: handled, no error.
    let unknown = ProductChanged {
        id: 999,
        price_cents: 1,
    };
    let event_id = streams.publish(EVENTS, &unknown).await.unwrap();
    let handled = svc.settled(&event_id).await;
    assert_eq!(
        (handled.product, handled.removed),
        (999, 1),
        "the list only"
    );
    assert_eq!(streams.dlq_len(EVENTS).await.unwrap(), 0);
    assert!(successes(&svc, 1).await);
    for i in [a, b] {
        assert_eq!(i.product(999).await, None);
        assert_eq!(i.product(1).await.unwrap().price_cents, 450);
    }
    assert_eq!(store.reads_of(1), 1, "product 1 stayed cached");

    // Not a `ProductChanged`: to the DLQ at once, with the decode error; nothing handled.
    let bad_id = streams
        .publish(EVENTS, &serde_json::json!({ "sku": "X-1" }))
        .await
        .unwrap();
    let dlq = streams.clone();
    let dead = eventually(WITHIN, POLL, || {
        let dlq = dlq.clone();
        async move { dlq.dlq_len(EVENTS).await.unwrap() == 1 }
    })
    .await;
    assert!(dead, "the malformed event is dead-lettered");
    let letters = streams.dlq_list(EVENTS, 10).await.unwrap();
    assert_eq!(letters[0].original_id.as_deref(), Some(bad_id.as_str()));
    assert_eq!(letters[0].attempts, 1, "no retries");
    let error = letters[0].error.clone().unwrap_or_default();
    assert!(
        error.contains("does not decode") && error.contains("ProductChanged"),
        "{error}"
    );
    assert_eq!(svc.log.all().len(), 1, "the handler never saw it");

    // The consumers go on.
    let (_, next) = b
        .change(1, ProductUpdate::new("Coffee", 475))
        .await
        .unwrap();
    assert_eq!(svc.settled(&next).await.product, 1);
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_404_turns_into_the_product_once_it_is_created() {
    let server = RedisServer::start();
    let svc = Service::start(&server, "recipe_cqrs_404").await;
    let c = client();
    for base in [&svc.url_a, &svc.url_b, &svc.url_a, &svc.url_b] {
        assert_eq!(get_product(&c, base, 9).await, None);
    }
    assert_eq!(svc.store.reads_of(9), 1, "the 404 is cached, in Redis too");

    let (created, event_id) = put(&c, &svc.url_b, 9, &ProductUpdate::new("Juice", 380)).await;
    assert_eq!(created, Product::new(9, "Juice", 380));
    svc.settled(&event_id).await;
    let (c2, url_a, url_b) = (c.clone(), svc.url_a.clone(), svc.url_b.clone());
    let found = eventually(WITHIN, POLL, || {
        let (c, url_a, url_b) = (c2.clone(), url_a.clone(), url_b.clone());
        let want = Some(created.clone());
        async move {
            get_product(&c, &url_a, 9).await == want && get_product(&c, &url_b, 9).await == want
        }
    })
    .await;
    assert!(found, "both instances serve the new product");

    // Bad input is a 400, not a panic.
    let (status, _) = get(&c, &format!("{}/products/nine", svc.url_a)).await;
    assert_eq!(status, 400);
    let res = c
        .put(format!("{}/products/9", svc.url_a))
        .body("{\"price_cents\": \"free\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(svc.log.all().len(), 1, "no event for a refused write");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_in_flight_during_a_change_does_not_cache_the_old_value() {
    let server = RedisServer::start();
    let svc = Service::start(&server, "recipe_cqrs_in_flight").await;
    let c = client();
    let store = &svc.store;
    assert_eq!(
        get_product(&c, &svc.url_b, 2).await.unwrap().price_cents,
        300
    );
    let (_, first) = put(&c, &svc.url_a, 2, &ProductUpdate::new("Tea", 320)).await;
    svc.settled(&first).await;
    let cache_b = svc.b.rx().cache().clone();
    let evicted = eventually(WITHIN, POLL, || {
        let empty = cache_b.l1_len() == 0;
        async move { empty }
    })
    .await;
    assert!(evicted, "b's L1 dropped product 2");

    // The reload after that event takes its snapshot (320), then waits.
    let hold = store.hold_reads().await;
    let (c2, url_b) = (c.clone(), svc.url_b.clone());
    let slow = tokio::spawn(async move { get_product(&c2, &url_b, 2).await });
    let s = store.clone();
    let reading = eventually(WITHIN, POLL, || {
        let started = s.reads_of(2) == 2;
        async move { started }
    })
    .await;
    assert!(reading, "the reload took its snapshot");

    // The next change lands and is handled while it is in flight. Its tag invalidation finds
    // the reload's key (redisx indexed it under its tags when the reload took its lock) and
    // deletes that lock, so the reload's value is not written back.
    let (_, second) = put(&c, &svc.url_a, 2, &ProductUpdate::new("Tea", 350)).await;
    svc.settled(&second).await;
    drop(hold);
    let old = slow.await.unwrap().unwrap();
    assert_eq!(old.price_cents, 320, "it started before the change");

    // What it read was not cached: the instances load the new price, once.
    for base in [&svc.url_b, &svc.url_a, &svc.url_b] {
        assert_eq!(get_product(&c, base, 2).await.unwrap().price_cents, 350);
    }
    assert_eq!(store.reads_of(2), 3);
    svc.shutdown().await;
}
