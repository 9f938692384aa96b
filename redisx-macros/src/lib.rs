//! Attribute macros of [redisx](https://docs.rs/redisx): `#[cached]`, `#[cache_evict]`,
//! `#[cache_put]`, `#[with_lock]`, `#[rate_limit]`, `#[idempotent]`, `#[stream_consumer]`, and
//! `#[redisx::test]`.
//!
//! Use them through the `redisx` crate (`use redisx::cached;`), never from this crate directly:
//! the expansions call `::redisx::__private`, and the `redisx` facade pins this crate to the
//! exact version of the runtime it was built for. The `redisx` documentation has compiling
//! examples; the examples here are shown as text because a proc-macro crate cannot depend on
//! the facade it expands to.
//!
//! Every attribute keeps the function's signature exactly as written and replaces only its body,
//! so the attributes work on free functions and on methods in `impl` blocks; the exception is
//! `#[stream_consumer]`, which keeps the whole function and registers it beside it, so it takes
//! free functions only. Arguments are checked
//! at compile time: unknown or repeated arguments, malformed durations, key templates naming a
//! parameter the function does not have, and a function that is not `async` are compile errors
//! pointing at the offending token.
//!
//! # Common arguments
//!
//! - `crate = "path"`: the path of the `redisx` crate when it is renamed or re-exported
//!   (default `::redisx`), e.g. `crate = "my_app::redisx"`.
//! - `runtime = expr`: the `RedisX` to use instead of the installed default; any expression
//!   whose value borrows as a `RedisX` (`RedisX`, `&RedisX`, `Arc<RedisX>`, ...), evaluated on
//!   every call, e.g. `runtime = &self.redisx`. Not for `#[stream_consumer]` (a consumer runs
//!   on the runtime that starts it) nor `#[redisx::test]` (which makes its own).
//!
//! # Key templates
//!
//! Keys and tags are string literals in which `{name}` is replaced by the `Display` of a
//! parameter: `"user:{id}"`, `"{req.user.id}"` (a field path), `"{self.tenant}:{id}"` (a field
//! of the receiver). `{{` and `}}` are literal braces. Each name is checked against the
//! function's parameters at compile time.
//!
//! # Durations
//!
//! Durations are string literals: a whole number followed by `ms`, `s`, `m`, `h` or `d`
//! (`"150ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`). Zero is an error. The macros check syntax
//! only: limits such as the longest `ttl` or the most tags per key are the runtime's
//! configuration (`CacheConfig::max_ttl`, `CacheConfig::max_tags_per_key`), and a call site over
//! them is reported by the runtime (it runs uncached and logs an error once).

// The layout: one driver (`driver::run`) runs every attribute: parse the arguments, parse the
// function, check `async`, validate, report every error, expand. The keywords and their
// readers (`args`), function and type inspection (`func`, `ty`), key templates, generated names
// and shared emitters (`names`, `emit`) are the toolkit; an attribute's module holds only what
// is its own (`cache/` for the cache's three).
mod args;
mod cache;
mod diag;
mod driver;
mod duration;
mod emit;
mod func;
mod idempotent;
mod key_template;
mod lock;
mod names;
mod params;
mod rate_limit;
mod stream_consumer;
mod testing;
mod ty;

use proc_macro::TokenStream;

/// Caches the result of an `async fn` in the two-tier cache (L1 in process, L2 in Redis).
///
/// On a call, the key is rendered from the arguments; a fresh entry is returned without running
/// the function, otherwise the function runs once (concurrent callers of the same key share the
/// load) and its value is stored. On a function returning `Result<T, E>` (any type whose last
/// path segment is `Result`), only `Ok` values are cached and errors pass through untouched;
/// on any other return type every value is cached. Cache errors fail open: the function runs
/// and the caller never sees a Redis error. The returned value must be
/// `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`. When a load fails while
/// other callers wait on it, an error that is `Clone + Send + Sync + 'static` is shared with
/// them (no new load); with any other error they load one at a time.
///
/// # Arguments
///
/// All are optional.
///
/// - `key = "user:{id}"`: the key template (see the crate docs). Without it, the key is the
///   function's path plus a stable hash of its serialized arguments, built by the runtime (the
///   receiver is not hashed; a method's key includes the `Self` type), so every argument must
///   then be `Serialize`.
/// - `ttl = "5m"`: how long the entry lives in Redis (default: the runtime's `CacheConfig`,
///   whose `max_ttl` also bounds it: a longer one makes the call run uncached, reported once).
/// - `l1_ttl = "30s"`: how long the entry lives in the in-process L1; at most `ttl`.
/// - `tags = ["users", "user:{id}"]`: tag templates (as many as the runtime's
///   `CacheConfig::max_tags_per_key` allows); invalidating a tag drops every entry carrying
///   it.
/// - `swr = "30s"`: stale-while-revalidate window: after `ttl`, a stale value is served for this
///   long while one refresh runs in the background; the function's future must then be
///   `Send + 'static` (it may run as that refresh). A function without `swr` reloads a stale
///   value in the foreground, even when the runtime's `CacheConfig` sets an SWR window.
/// - `stale_if_error = "1h"`: when the function fails within this window after expiry, the
///   stale value is served instead of the error.
/// - `mode = "l1_l2"`: where entries live: `"l1_l2"` (default), `"l1_only"` or `"l2_only"`.
/// - `unless = path_or_closure`: called with `&T` (the `Ok` value for a `Result`) after the
///   function ran; `true` means the value is returned but not cached.
/// - `condition = path_or_closure`: called with a reference to each argument (not the
///   receiver) before anything else; `false` bypasses the cache for this call.
/// - `codec = Json`: the codec of stored values: `Bincode` (default) or `Json` (also
///   `"bincode"` / `"json"`).
/// - `vary_by = ["tenant"]`: the key and every tag vary by these values of the task's context
///   (`redisx::context`): `_ctx:tenant=acme:` goes in front of each; without them the function
///   runs uncached.
/// - `crate = "path"`, `runtime = expr`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::cached;
///
/// #[cached(key = "user:{id}", ttl = "5m", tags = ["users", "user:{id}"])]
/// async fn user(id: u64) -> Result<User, AppError> {
///     db::load_user(id).await
/// }
///
/// impl Repo {
///     #[cached(key = "{self.tenant}:order:{id}", ttl = "30s", unless = |o: &Order| o.is_open())]
///     async fn order(&self, id: u64) -> Order { self.load(id).await }
/// }
/// ```
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<cache::cached::Cached>(args.into(), item.into()).into()
}

/// Evicts cache entries (by key and/or by tag) when an `async fn` runs.
///
/// By default the entries are evicted after the function returned; on a function returning
/// `Result<T, E>` only after an `Ok`. With `when = "before"` they are evicted before the body
/// runs, whatever it returns.
///
/// # Arguments
///
/// At least one of `keys` and `tags` is required.
///
/// - `keys = ["user:{id}"]`: key templates (see the crate docs) of entries to delete.
/// - `tags = ["users", "user:{id}"]`: tag templates; every entry carrying one is deleted.
/// - `when = "after"`: `"after"` (default) or `"before"`.
/// - `vary_by = ["tenant"]`: every key and tag to evict varies by these values of the task's
///   context (`redisx::context`): it evicts in the current context only; without them nothing
///   is evicted.
/// - `crate = "path"`, `runtime = expr`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::cache_evict;
///
/// #[cache_evict(keys = ["user:{id}"], tags = ["users"])]
/// async fn delete_user(id: u64) -> Result<(), AppError> {
///     db::delete_user(id).await
/// }
/// ```
#[proc_macro_attribute]
pub fn cache_evict(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<cache::cache_evict::CacheEvict>(args.into(), item.into()).into()
}

/// Always runs an `async fn` and writes its result to the cache under `key`, for the readers
/// that use `#[cached]` with the same key.
///
/// On a function returning `Result<T, E>` only `Ok` values are written. The value must be
/// `Serialize + DeserializeOwned + Clone + Send + Sync + 'static`.
///
/// # Arguments
///
/// - `key = "user:{user.id}"` (required): the key template (see the crate docs).
/// - `ttl = "5m"`: how long the entry lives in Redis (default: the runtime's `CacheConfig`,
///   whose `max_ttl` also bounds it).
/// - `tags = ["users"]`: tag templates (bounded by the runtime's
///   `CacheConfig::max_tags_per_key`).
/// - `codec = Json`: `Bincode` (default) or `Json`; use the codec the readers use.
/// - `vary_by = ["tenant"]`: the key and every tag vary by these values of the task's context
///   (`redisx::context`); without them the value is not written.
/// - `crate = "path"`, `runtime = expr`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::cache_put;
///
/// #[cache_put(key = "user:{user.id}", ttl = "5m", tags = ["users"])]
/// async fn save_user(user: User) -> Result<User, AppError> {
///     db::save_user(user).await
/// }
/// ```
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<cache::cache_put::CachePut>(args.into(), item.into()).into()
}

/// Makes an `async fn` a test with a Redis runtime of its own (facade feature `test-util`).
///
/// The function becomes a `#[test]` that runs on a current-thread tokio runtime and calls
/// `redisx::testing::block_on`: a fresh `RedisX` on a key prefix of its own, on the server
/// `REDISX_TEST_URL` names or else one `redis-server` started for the test binary, set as the
/// scope of the test's task (`#[cached]` and friends use it without `runtime = ...`). The keys
/// under the prefix are deleted when the body ends, also when it panics. The function takes the
/// runtime as its one parameter (`rx: redisx::RedisX`) or none, and returns `()` or a
/// `Result` like any test; other attributes on it (`#[ignore]`, `#[should_panic]`) stay.
///
/// # Arguments
///
/// All are optional.
///
/// - `config = path`: a `fn(redisx::RedisXBuilder) -> redisx::RedisXBuilder` that customises
///   the runtime (its cache, plugins); the key prefix is still the test's own.
/// - `keep_keys = true`: leave the keys in Redis for a look after the test (the prefix is
///   printed).
/// - `crate = "path"`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::{RedisX, cached};
///
/// #[cached(key = "user:{id}", ttl = "5m")]
/// async fn user(id: u64) -> String { format!("user-{id}") }
///
/// #[redisx::test]
/// async fn a_second_call_hits(rx: RedisX) {
///     user(1).await;
///     user(1).await;
///     assert_eq!(rx.cache().stats().l1_hits, 1);
/// }
/// ```
#[proc_macro_attribute]
pub fn test(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<testing::Test>(args.into(), item.into()).into()
}

/// Runs an `async fn` under a distributed lock (`rx.locks()`); sugar over
/// `Locks::with_lock_using` (`Locks::try_with_lock_using` with `on_busy = "skip"`).
///
/// The key is rendered from the arguments; the call waits for the lock as its options say,
/// runs the body while holding it (renewed in the background unless `auto_renew = false`) and
/// releases it, whatever the body returns. The function must return `Result<T, E>` with
/// `E: From<redisx::Error>`: a lock that cannot be had, no runtime, or Redis down is an error
/// and the body never runs (locks fail closed). Inside the body,
/// `redisx::lock::fencing_token()` returns the lock's fencing token.
///
/// # Arguments
///
/// - `key = "order:{id}"` (required): the key template (see the crate docs).
/// - `ttl = "30s"`: the lock's ttl (default and maximum: the runtime's `LockConfig`).
/// - `wait = "5s"`: keep trying for this long (instead of a number of `retries`).
/// - `retries = 3`: attempts after the first.
/// - `retry = "exponential"`: `"fixed"`, `"linear"` or `"exponential"`, shaped by
///   `retry_delay = "100ms"` (the fixed delay, the linear step, the first exponential delay)
///   and `retry_max = "3s"` (the cap).
/// - `auto_renew = false`: no renewal; the lock lapses after `ttl`.
/// - `on_lost = "cancel"` (default): a lock lost while the body runs drops the body at its
///   next `.await` and the call returns `Err(LOCK_EXPIRED)`; `"continue"` lets it finish.
/// - `on_busy = "error"` (default): wait, then `Err(LOCK_ACQUISITION_TIMEOUT)`; `"skip"`: one
///   attempt, and `Ok(())` / `Ok(None)` without running the body when the lock is held
///   elsewhere (for `Result<(), E>` and `Result<Option<T>, E>` only).
/// - `vary_by = ["tenant"]`: the key varies by these values of the task's context
///   (`redisx::context`); without them the call fails with `CFG_CONTEXT_INVALID` and the body
///   does not run.
/// - `crate = "path"`, `runtime = expr`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::with_lock;
///
/// #[with_lock(key = "order:{id}", ttl = "30s", wait = "5s")]
/// async fn settle(id: u64) -> Result<Receipt, AppError> {
///     let fence = redisx::lock::fencing_token().expect("under the lock");
///     payments::charge(id, fence).await
/// }
///
/// #[with_lock(key = "cron:hourly", on_busy = "skip")]
/// async fn hourly() -> Result<(), AppError> { jobs::run().await }
/// ```
#[proc_macro_attribute]
pub fn with_lock(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<lock::WithLock>(args.into(), item.into()).into()
}

/// Runs an `async fn` only when a rate limit (`rx.rate_limiter()`) admits the call; sugar over
/// `RateLimiter::with_limit` (`RateLimiter::with_policy` with `policy`).
///
/// The key is rendered from the arguments and checked against the limit; on a denial the body
/// does not run and the call returns `Err(E::from(redisx::Error::rate_limited(decision)))`
/// (`RATE_LIMIT_EXCEEDED`, the decision readable with `rate_limit_decision()`). The function
/// must return `Result<T, E>` with `E: From<redisx::Error>`: no runtime, or Redis down under
/// the default fail-closed policy, is an error too and the body never runs.
///
/// # Arguments
///
/// - `key = "login:{ip}"` (required): the key template (see the crate docs).
/// - `limit = 5`, `window = "1m"`, `algorithm = "sliding_window"`: the limit (each one left
///   out comes from the runtime's default limit); algorithms: `"fixed_window"`,
///   `"sliding_window"`, `"sliding_counter"`, `"token_bucket"`, `"gcra"`.
/// - `policy = "login"`: a named policy of the runtime's `RateLimitConfig` instead (its limits
///   are all or nothing; not with `limit`, `window` or `algorithm`).
/// - `cost = 1`: the points one call costs.
/// - `vary_by = ["tenant"]`: the key varies by these values of the task's context
///   (`redisx::context`); without them the call fails with `CFG_CONTEXT_INVALID` and the body
///   does not run.
/// - `crate = "path"`, `runtime = expr`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::rate_limit;
///
/// #[rate_limit(key = "login:{ip}", limit = 5, window = "1m")]
/// async fn login(ip: IpAddr, form: Login) -> Result<Session, AppError> { auth::login(form).await }
///
/// #[rate_limit(key = "export:{tenant}", policy = "exports", cost = 10)]
/// async fn export(tenant: u64) -> Result<(), AppError> { exports::run(tenant).await }
/// ```
#[proc_macro_attribute]
pub fn rate_limit(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<rate_limit::RateLimit>(args.into(), item.into()).into()
}

/// Runs an `async fn` once per idempotency key and replays its outcome to every duplicate
/// (`rx.idempotency()`); sugar over `Idempotency::run` (`Idempotency::run_recording_errors`
/// with `record_errors = true`).
///
/// The key is rendered from the arguments, and the call's fingerprint computed from the
/// fingerprinted arguments (serialized). The first call with a key runs the body and records
/// its `Ok` value (as JSON, for `ttl`); a later call with the same key and fingerprint gets that
/// value back without running the body, and a duplicate that arrives while the first still
/// runs waits for it. The same key with another fingerprint is an error
/// (`IDEMPOTENCY_FINGERPRINT_MISMATCH`): the key was reused for another request. An `Err` is
/// not recorded unless `record_errors = true`: it marks the key failed for the lock ttl
/// (duplicates get `IDEMPOTENCY_PREVIOUS_FAILED`), then a retry runs the body again. The
/// function must return `Result<T, E>` with `E: From<redisx::Error>` (a refused duplicate, no
/// runtime, or Redis down under the default fail-closed policy is an error, and the body does
/// not run) and `T: Serialize + DeserializeOwned`; every fingerprinted argument must be
/// `Serialize`.
///
/// # Arguments
///
/// - `key = "payment:{req.idempotency_key}"` (required): the key template (see the crate
///   docs).
/// - `ttl = "24h"`: how long an outcome is kept and replayed (default: the runtime's
///   `IdempotencyConfig`, as for the two below).
/// - `lock_ttl = "30s"`: the lease of a running call, renewed while the body runs; a caller
///   that died leaves the key to one duplicate after it.
/// - `wait = "60s"`: how long a duplicate waits for the running call, then
///   `IDEMPOTENCY_IN_PROGRESS`.
/// - `fingerprint = [req]`: the parameters that identify a request, hashed with their names in
///   the order listed. Default: every parameter but the receiver, in order (a parameter
///   destructured by a pattern is left out); `fingerprint = []`: none, every call of a key is
///   the same request.
/// - `record_errors = true`: record and replay an `Err` too; `E` must then also be
///   `Serialize + DeserializeOwned`.
/// - `vary_by = ["tenant"]`: the key varies by these values of the task's context
///   (`redisx::context`); without them the call fails with `CFG_CONTEXT_INVALID` and the body
///   does not run.
/// - `crate = "path"`, `runtime = expr`: see the crate docs.
///
/// # Example
///
/// ```text
/// use redisx::idempotent;
///
/// #[idempotent(key = "payment:{req.idempotency_key}", ttl = "24h", fingerprint = [req])]
/// async fn charge(req: ChargeRequest, client: &PaymentClient) -> Result<Receipt, AppError> {
///     client.charge(&req).await
/// }
/// ```
#[proc_macro_attribute]
pub fn idempotent(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<idempotent::Idempotent>(args.into(), item.into()).into()
}

/// Makes an `async fn` the handler of a consumer group of a Redis stream (`rx.streams()`);
/// sugar over `Streams::consumer`.
///
/// The function stays exactly as written (call it directly in tests); beside it, a link-time
/// registration names its stream, group and options. `rx.start_consumers()` starts every
/// registered consumer of the program, `rx.streams().start_registered("on_order")` one of them
/// (by name, or by path `module::on_order` when several share a name); the runtime's shutdown
/// stops them. The function takes one parameter, the delivered message (`msg: Message<Order>`,
/// `redisx::streams::Message`: payload, entry id, attempt, `ack()`, `reject(..)`) or its payload
/// alone (`order: Order`); the payload must be `serde::Deserialize` (`DeserializeOwned + Send +
/// 'static`). It returns `Result<(), E>` with `E: Display + Send + 'static`: `Ok(())`
/// acknowledges the message, an `Err` is retried (up to `max_retries`), then sent to the
/// stream's dead-letter stream with the error's text. The future must be `Send + 'static`.
///
/// Registration needs a path to the function, so it must be a free function (in a module or a
/// block): a method (with `self`) is a compile error, and an associated function in an `impl`
/// block is not supported (call it from a free function instead). A `#[cfg]` written on the
/// function applies to its registration too.
///
/// # Arguments
///
/// - `stream = "orders"` (required): the stream's name (its key is under the app prefix).
/// - `group = "billing"` (required): the consumer group, created when missing
///   (`XGROUP CREATE .. MKSTREAM`).
/// - `concurrency = 8`: how many handlers run at once (default 1).
/// - `max_retries = 5`: retries after the first attempt, then the DLQ (default 3; 0: none).
/// - `batch = 10`: the most messages one read asks for (default 10).
/// - `block = "5s"`: how long one read blocks waiting for messages (default 5 s).
/// - `claim_idle = "30s"`: how long a message stays pending on a consumer that stopped before
///   another claims it (default 30 s); `claim_idle = "off"` turns automatic reclaim off (a
///   zero duration is an error, as everywhere).
/// - `consumer = "billing-1"`: this process's consumer name in the group (default
///   `{hostname}-{pid}`, with `-2`, `-3`, .. in the second, third, .. runtime of the process).
/// - `start_id = "0"`: where the group starts when this consumer creates it: `"$"` (default,
///   messages published from then on), `"0"` (the whole stream, e.g. events accepted before
///   any consumer ran) or a stream id.
///
/// The defaults are those of the runtime's `ConsumerOptions`; an option left out is not set.
/// - `crate = "path"`: see the crate docs. There is no `runtime = expr`: a consumer runs on the
///   runtime that starts it.
///
/// # Example
///
/// ```text
/// use redisx::stream_consumer;
/// use redisx::streams::Message;
///
/// #[stream_consumer(stream = "orders", group = "billing", concurrency = 8, max_retries = 5)]
/// async fn on_order(msg: Message<Order>) -> Result<(), AppError> {
///     billing::charge(msg.payload()).await
/// }
///
/// #[stream_consumer(stream = "orders", group = "mailer", claim_idle = "off")]
/// async fn confirm(order: Order) -> Result<(), AppError> { mail::confirm(&order).await }
///
/// // at startup, once the runtime is built:
/// let consumers = rx.start_consumers().await?;
/// ```
#[proc_macro_attribute]
pub fn stream_consumer(args: TokenStream, item: TokenStream) -> TokenStream {
    driver::run::<stream_consumer::StreamConsumer>(args.into(), item.into()).into()
}
