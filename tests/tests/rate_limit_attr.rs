//! `#[rate_limit]` end to end against real Redis: the body runs while admitted and not after,
//! the denial comes back as `RATE_LIMIT_EXCEEDED` with its decision, costs, policies, the
//! config's default limit, methods, and failing closed without a runtime. The suite runs on a
//! standalone server and on the cluster.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use redisx::rate_limit::{Limit, RateLimitConfig};
use redisx::testing::{Deployment, Topology};
use redisx::{Error, ErrorCode, RedisX, RedisXBuilder, rate_limit};
use redisx_tests::rate_limit::test_runtime;

/// The calls of `login` whose body ran, by the key prefix of the runtime in scope (`""` with
/// none): tests that run at the same time count their own.
static LOGINS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// How many `login` bodies ran under the runtime with the key prefix `prefix`.
fn logins(prefix: &str) -> usize {
    let logins = LOGINS.lock().unwrap();
    logins.get(prefix).copied().unwrap_or(0)
}

#[rate_limit(
    key = "login:{ip}",
    limit = 3,
    window = "1m",
    algorithm = "fixed_window"
)]
async fn login(ip: &str) -> Result<String, Error> {
    let prefix = RedisX::current().map(|rx| rx.key_prefix().to_owned());
    *LOGINS
        .lock()
        .unwrap()
        .entry(prefix.unwrap_or_default())
        .or_default() += 1;
    Ok(format!("session for {ip}"))
}

async fn the_body_runs_while_admitted_and_a_denial_is_an_error(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "the_body_runs_while_admitted", |b| b).await;
    rx.scope(async {
        for _ in 0..3 {
            assert!(login("10.0.0.1").await.is_ok());
        }
        let before = logins(rx.key_prefix());
        let e = login("10.0.0.1").await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::RateLimitExceeded, "{e:#}");
        assert_eq!(logins(rx.key_prefix()), before, "the body did not run");
        let d = e
            .rate_limit_decision()
            .expect("the decision travels with the error");
        assert!(!d.allowed);
        assert_eq!((d.limit, d.remaining, d.current), (3, 0, 3));
        assert!(d.retry_after > Duration::ZERO);
        // Another key has its own quota.
        assert!(login("10.0.0.2").await.is_ok());
    })
    .await;
    rx.shutdown().await;
}

#[rate_limit(key = "upload:{user}", limit = 10, window = "1m", cost = 4)]
async fn upload(user: u64) -> Result<u64, Error> {
    Ok(user)
}

async fn a_cost_spends_several_points(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "a_cost_spends_several_points", |b| b).await;
    rx.scope(async {
        assert!(upload(1).await.is_ok());
        assert!(upload(1).await.is_ok());
        let e = upload(1).await.unwrap_err();
        assert_eq!(e.rate_limit_decision().unwrap().remaining, 2);
        // The default algorithm (sliding window) under the attribute's limit and window.
        let limit = Limit::sliding_window(10, Duration::from_secs(60));
        let s = rx.rate_limiter().state("upload:1", &limit).await.unwrap();
        assert_eq!(s.current, 8);
    })
    .await;
    rx.shutdown().await;
}

fn with_policies(builder: RedisXBuilder) -> RedisXBuilder {
    builder.rate_limit(
        RateLimitConfig::default()
            .default_limit(Limit::fixed_window(2, Duration::from_secs(60)))
            .policy(
                "exports",
                [
                    Limit::fixed_window(2, Duration::from_secs(60)),
                    Limit::sliding_window(100, Duration::from_secs(3600)),
                ],
            ),
    )
}

#[rate_limit(key = "export:{tenant}", policy = "exports")]
async fn export(tenant: u64) -> Result<u64, Error> {
    Ok(tenant)
}

#[rate_limit(key = "search:{user}")]
async fn search(user: u64) -> Result<u64, Error> {
    Ok(user)
}

async fn a_policy_and_the_default_limit_come_from_the_config(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "a_policy_and_the_default_limit", with_policies).await;
    rx.scope(async {
        assert!(export(7).await.is_ok());
        assert!(export(7).await.is_ok());
        let e = export(7).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::RateLimitExceeded);
        // All or nothing: the hourly limit counted only the two admitted calls.
        let hourly = rx
            .rate_limiter()
            .state_policy("exports", "export:7")
            .await
            .unwrap();
        assert_eq!(
            hourly.remaining, 0,
            "the deciding limit is the exhausted one"
        );
        // The config's default limit: 2 per minute.
        assert!(search(1).await.is_ok());
        assert!(search(1).await.is_ok());
        assert_eq!(
            search(1).await.unwrap_err().code(),
            ErrorCode::RateLimitExceeded
        );
    })
    .await;
    rx.shutdown().await;
}

#[rate_limit(key = "unknown:{id}", policy = "nope")]
async fn unknown_policy(id: u64) -> Result<u64, Error> {
    Ok(id)
}

async fn an_unknown_policy_is_a_config_error_and_the_body_does_not_run(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "an_unknown_policy", |b| b).await;
    rx.scope(async {
        let e = unknown_policy(1).await.unwrap_err();
        assert_eq!(e.code(), ErrorCode::ConfigInvalid, "{e:#}");
    })
    .await;
    rx.shutdown().await;
}

struct Api {
    rx: RedisX,
}

impl Api {
    #[rate_limit(key = "api:{id}", runtime = &self.rx, limit = 1, window = "1m", algorithm = "gcra")]
    async fn call(&self, id: u64) -> Result<u64, Error> {
        Ok(id)
    }
}

async fn methods_use_their_own_runtime(topology: Topology) {
    let deployment = Deployment::start(topology);
    let rx = test_runtime(&deployment, "methods_use_their_own_runtime", |b| b).await;
    // Outside any scope: the method uses the runtime it names.
    let api = Api { rx: rx.clone() };
    assert_eq!(api.call(5).await.unwrap(), 5);
    assert_eq!(
        api.call(5).await.unwrap_err().code(),
        ErrorCode::RateLimitExceeded
    );
    rx.shutdown().await;
}

redisx_tests::on_topologies!(
    the_body_runs_while_admitted_and_a_denial_is_an_error,
    a_cost_spends_several_points,
    a_policy_and_the_default_limit_come_from_the_config,
    an_unknown_policy_is_a_config_error_and_the_body_does_not_run,
    methods_use_their_own_runtime,
);

#[tokio::test]
async fn without_a_runtime_the_call_fails_closed() {
    assert!(RedisX::current().is_none());
    let before = logins("");
    let e = login("10.9.9.9").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ConfigNotInstalled, "{e:#}");
    assert_eq!(logins(""), before, "the body did not run");
}
