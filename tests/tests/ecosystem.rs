//! redisx with the crates a Rust service already uses, against real `redis-server` processes:
//! `redis::AsyncCommands`, pipelines and scripts through a redisx `Client` (instrumented like
//! `Client::query`), users' own Lua surviving `SCRIPT FLUSH`, the blocking and
//! connection-state commands the shared connection refuses and a dedicated connection runs,
//! pub/sub on a connection of its own, and how `redisx::Error` shows its cause.

use std::time::Duration;

use futures_util::StreamExt as _;
use redisx::redis::{self, AsyncCommands as _, Script};
use redisx::{Client, ErrorCode, RedisX};
use redisx_tests::{RedisServer, raw_connection, unique_prefix};

async fn build(url: &str, test: &str) -> RedisX {
    RedisX::builder()
        .client(
            "default",
            redisx::ConnectionConfig::from_url(url).expect("a valid URL"),
        )
        .key_prefix(unique_prefix(test))
        .build()
        .await
        .expect("the runtime builds")
}

/// The value of one sample line of the Prometheus text, by its exact series.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn commands_ok(rx: &RedisX, command: &str) -> f64 {
    let series =
        format!(r#"redisx_commands_total{{command="{command}",client="default",status="ok"}}"#);
    sample(&rx.metrics_text(), &series).unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commands_run_through_the_instrumented_path() {
    let server = RedisServer::start();
    let rx = build(&server.url(), "eco_async_commands").await;
    let key = format!("{}greeting", unique_prefix("eco_async_commands"));
    let visits = format!("{key}:visits");

    let () = rx
        .client()
        .set_ex(&key, "hello", 60)
        .await
        .expect("SETEX through the client");
    let got: String = rx
        .client()
        .clone()
        .get::<_, String>(&key)
        .await
        .expect("GET");
    assert_eq!(got, "hello");

    let mut client: Client = rx.client();
    let (again, n): (String, i64) = redis::pipe()
        .get(&key)
        .incr(&visits, 1)
        .query_async(&mut client)
        .await
        .expect("a pipeline through the client");
    assert_eq!((again.as_str(), n), ("hello", 1));

    assert!(commands_ok(&rx, "SETEX") >= 1.0, "{}", rx.metrics_text());
    assert!(commands_ok(&rx, "GET") >= 1.0, "{}", rx.metrics_text());
    assert!(commands_ok(&rx, "PIPELINE") >= 1.0, "{}", rx.metrics_text());
    let text = rx.metrics_text();
    assert!(
        text.contains(r#"redisx_command_duration_seconds_count{command="SETEX",client="default"}"#),
        "{text}"
    );

    // A server error comes back as the redis error it is.
    let () = client.set(&key, "not a number").await.expect("SET");
    let err = client.incr::<_, _, i64>(&key, 1).await.unwrap_err();
    assert!(err.to_string().contains("not an integer"), "{err}");
    let text = rx.metrics_text();
    assert!(
        text.contains(r#"redisx_commands_total{command="INCRBY",client="default",status="error"}"#),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_script_survives_script_flush() {
    // Flushing the script cache affects the whole server: a server of its own.
    let server = RedisServer::start_owned();
    let rx = build(&server.url(), "eco_script").await;
    let key = format!("{}counter", unique_prefix("eco_script"));
    let script = Script::new(
        "local n = redis.call('INCRBY', KEYS[1], ARGV[1]) \
         if n > tonumber(ARGV[2]) then redis.call('SET', KEYS[1], ARGV[2]) return tonumber(ARGV[2]) end \
         return n",
    );
    let client = rx.client();
    let n: i64 = client
        .run_script(&script, &[&key], &[4, 10])
        .await
        .expect("the script runs");
    assert_eq!(n, 4);

    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw_connection(&server.url()).await)
        .await
        .expect("SCRIPT FLUSH");
    let n: i64 = client
        .run_script(&script, &[&key], &[4, 10])
        .await
        .expect("the script is reloaded after NOSCRIPT");
    assert_eq!(n, 8);

    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw_connection(&server.url()).await)
        .await
        .expect("SCRIPT FLUSH");
    let n: i64 = client
        .invoke_script(script.key(&key).arg(4).arg(10))
        .await
        .expect("a prepared invocation is reloaded after NOSCRIPT too");
    assert_eq!(n, 10);

    // `redis::Script` itself, through the client as a `ConnectionLike`.
    let mut conn = client.clone();
    let n: i64 = script
        .key(&key)
        .arg(1)
        .arg(100)
        .invoke_async(&mut conn)
        .await
        .expect("Script::invoke_async through the client");
    assert_eq!(n, 11);
    assert!(commands_ok(&rx, "EVALSHA") >= 4.0, "{}", rx.metrics_text());
}

/// The commands the shared connection refuses, each with its canonical name.
fn refused_commands(key: &str) -> Vec<(&'static str, redis::Cmd)> {
    let c = |name: &str| redis::cmd(name);
    vec![
        ("BLPOP", c("blpop").arg(key).arg(0.01).clone()),
        ("BRPOP", c("BRPOP").arg(key).arg(0.01).clone()),
        (
            "BLMOVE",
            c("BLMOVE")
                .arg(key)
                .arg(key)
                .arg("LEFT")
                .arg("RIGHT")
                .arg(0.01)
                .clone(),
        ),
        (
            "BRPOPLPUSH",
            c("BRPOPLPUSH").arg(key).arg(key).arg(0.01).clone(),
        ),
        ("BZPOPMIN", c("BZPOPMIN").arg(key).arg(0.01).clone()),
        ("BZPOPMAX", c("BZPOPMAX").arg(key).arg(0.01).clone()),
        (
            "BLMPOP",
            c("BLMPOP").arg(0.01).arg(1).arg(key).arg("LEFT").clone(),
        ),
        (
            "BZMPOP",
            c("BZMPOP").arg(0.01).arg(1).arg(key).arg("MIN").clone(),
        ),
        (
            "XREAD",
            c("XREAD")
                .arg("BLOCK")
                .arg(10)
                .arg("STREAMS")
                .arg(key)
                .arg("$")
                .clone(),
        ),
        (
            "XREADGROUP",
            c("XREADGROUP")
                .arg("GROUP")
                .arg("g")
                .arg("c")
                .arg("BLOCK")
                .arg(10)
                .arg("STREAMS")
                .arg(key)
                .arg(">")
                .clone(),
        ),
        ("WAIT", c("WAIT").arg(0).arg(10).clone()),
        ("WAITAOF", c("WAITAOF").arg(0).arg(0).arg(10).clone()),
        ("SUBSCRIBE", c("SUBSCRIBE").arg(key).clone()),
        ("PSUBSCRIBE", c("psubscribe").arg(key).clone()),
        ("SSUBSCRIBE", c("SSUBSCRIBE").arg(key).clone()),
        ("MONITOR", c("MONITOR")),
        ("SELECT", c("SELECT").arg(1).clone()),
        ("MULTI", c("MULTI")),
        ("EXEC", c("EXEC")),
        ("DISCARD", c("DISCARD")),
        ("WATCH", c("WATCH").arg(key).clone()),
        ("CLIENT", c("CLIENT").arg("REPLY").arg("OFF").clone()),
        ("RESET", c("RESET")),
        ("QUIT", c("QUIT")),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_and_state_commands_are_refused_on_the_shared_connection() {
    let server = RedisServer::start();
    let rx = build(&server.url(), "eco_refused").await;
    let key = format!("{}list", unique_prefix("eco_refused"));
    let mut client = rx.client();
    for (name, cmd) in refused_commands(&key) {
        let err = client.query::<redis::Value>(&cmd).await.unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::OperationNeedsDedicatedConnection,
            "{name}: {err}"
        );
        assert!(
            err.message().contains(&format!("`{name}`")),
            "{name}: {err}"
        );
        let way_out = if matches!(name, "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "MONITOR") {
            "rx.pubsub()"
        } else {
            "rx.dedicated_connection()"
        };
        assert!(err.message().contains(way_out), "{name}: {err}");

        // The same through `redis` itself (the client as a `ConnectionLike`).
        let err = cmd
            .query_async::<redis::Value>(&mut client)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), redis::ErrorKind::Client, "{name}: {err}");
        assert!(err.to_string().contains(way_out), "{name}: {err}");

        // And inside a plain pipeline.
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone());
        let err = client
            .query_pipeline::<redis::Value>(&pipe)
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            ErrorCode::OperationNeedsDedicatedConnection,
            "{name}: {err}"
        );
    }
    // Nothing reached the server: the shared connection is as it was.
    let pong: String = client.query(&redis::cmd("PING")).await.expect("PING");
    assert_eq!(pong, "PONG");
    // Non-blocking forms of the same families are fine.
    let read: Option<redis::Value> = client
        .query(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(1)
                .arg("STREAMS")
                .arg(&key)
                .arg("0"),
        )
        .await
        .expect("XREAD without BLOCK");
    assert!(read.is_none());
    let _: String = client
        .query(redis::cmd("client").arg("SETNAME").arg("eco"))
        .await
        .expect("CLIENT SETNAME");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_atomic_pipeline_runs_on_the_shared_connection() {
    let server = RedisServer::start();
    let rx = build(&server.url(), "eco_atomic").await;
    let key = format!("{}n", unique_prefix("eco_atomic"));
    let list = format!("{key}:list");
    let mut client = rx.client();
    let (set, n): (bool, i64) = redis::pipe()
        .atomic()
        .set(&key, 1)
        .incr(&key, 41)
        .query_async(&mut client)
        .await
        .expect("an atomic pipeline through the ConnectionLike impl");
    assert_eq!((set, n), (true, 42));
    // Inside MULTI, a blocking pop does not block: allowed in an atomic pipeline.
    let (pushed, popped): (i64, Option<(String, String)>) = client
        .query_pipeline(
            redis::pipe()
                .atomic()
                .rpush(&list, "job")
                .cmd("BLPOP")
                .arg(&list)
                .arg(1),
        )
        .await
        .expect("an atomic pipeline through query_pipeline");
    assert_eq!(pushed, 1);
    assert_eq!(popped, Some((list.clone(), "job".to_owned())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dedicated_connection_runs_what_the_shared_one_refuses() {
    let server = RedisServer::start_owned();
    let rx = build(&server.url(), "eco_dedicated").await;
    let prefix = unique_prefix("eco_dedicated");
    let list = format!("{prefix}list");
    let mut conn = rx
        .dedicated_connection()
        .await
        .expect("a dedicated connection");

    // A blocking pop with a short timeout: nothing there.
    let popped: Option<(String, String)> = conn
        .query(redis::cmd("BLPOP").arg(&list).arg(0.05))
        .await
        .expect("BLPOP on the dedicated connection");
    assert_eq!(popped, None);
    // Through `redis::AsyncCommands` as well, with an element to pop.
    let () = rx.client().rpush(&list, "job").await.expect("RPUSH");
    let popped: Option<(String, String)> =
        conn.blpop(&list, 0.05).await.expect("AsyncCommands::blpop");
    assert_eq!(popped, Some((list.clone(), "job".to_owned())));
    assert!(commands_ok(&rx, "BLPOP") >= 2.0, "{}", rx.metrics_text());
    every_refused_command_reaches_the_server(&rx, &list).await;
}

/// Sends every command the shared connection refuses on a dedicated connection: each reaches
/// the server, but for the subscriber ones and `CLIENT REPLY`, which need another kind.
async fn every_refused_command_reaches_the_server(rx: &RedisX, list: &str) {
    let mut conn = rx
        .dedicated_connection()
        .await
        .expect("a dedicated connection");
    for (name, cmd) in refused_commands(list) {
        if matches!(name, "SELECT" | "QUIT") {
            continue; // they change this connection: below, on connections of their own
        }
        // A group for XREADGROUP (the list is gone: BLPOP emptied it).
        if name == "XREADGROUP" {
            let _: () = conn
                .query(
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(list)
                        .arg("g")
                        .arg("$")
                        .arg("MKSTREAM"),
                )
                .await
                .expect("XGROUP CREATE");
        }
        let result = conn.query::<redis::Value>(&cmd).await;
        match name {
            // A subscriber, a monitor and `CLIENT REPLY` need connections of another kind.
            "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "MONITOR" | "CLIENT" => {
                let err = result.unwrap_err();
                assert_eq!(
                    err.code(),
                    ErrorCode::OperationNeedsDedicatedConnection,
                    "{name}: {err}"
                );
            }
            // Without MULTI, Redis itself says so: the command reached the server.
            "EXEC" | "DISCARD" => {
                let err = result.unwrap_err();
                assert!(
                    format!("{err:#}").contains("without MULTI"),
                    "{name}: {err:#}"
                );
            }
            // Redis 7.2 added WAITAOF: an older server answers "unknown command", which
            // shows the command reached it.
            "WAITAOF" => {
                if let Err(e) = result {
                    assert_ne!(
                        e.code(),
                        ErrorCode::OperationNeedsDedicatedConnection,
                        "{name}: {e}"
                    );
                }
            }
            _ => {
                result.unwrap_or_else(|e| panic!("{name} on the dedicated connection: {e}"));
                if name == "MULTI" {
                    let _: () = conn.query(&redis::cmd("DISCARD")).await.expect("DISCARD");
                }
            }
        }
    }
    // QUIT closes this connection (and only this one).
    let mut quitting = rx
        .dedicated_connection()
        .await
        .expect("a dedicated connection");
    let _: () = quitting.query(&redis::cmd("QUIT")).await.expect("QUIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_select_run_on_dedicated_connections() {
    let server = RedisServer::start_owned();
    let rx = build(&server.url(), "eco_transaction").await;
    let prefix = unique_prefix("eco_transaction");
    let mut conn = rx
        .dedicated_connection()
        .await
        .expect("a dedicated connection");

    // A transaction sent command by command.
    let balance = format!("{prefix}balance");
    let _: () = conn
        .query(redis::cmd("WATCH").arg(&balance))
        .await
        .expect("WATCH");
    let _: () = conn.query(&redis::cmd("MULTI")).await.expect("MULTI");
    let queued: String = conn
        .query(redis::cmd("SET").arg(&balance).arg(7))
        .await
        .expect("SET");
    assert_eq!(queued, "QUEUED");
    let done: Option<Vec<String>> = conn.query(&redis::cmd("EXEC")).await.expect("EXEC");
    assert_eq!(done, Some(vec!["OK".to_owned()]));

    // SELECT changes this connection only.
    let mut other_db = rx
        .dedicated_connection()
        .await
        .expect("a second dedicated connection");
    let _: () = other_db
        .query(redis::cmd("SELECT").arg(1))
        .await
        .expect("SELECT");
    let _: () = other_db
        .query(redis::cmd("SET").arg(&balance).arg(99))
        .await
        .expect("SET in db 1");
    let shared: i64 = rx
        .client()
        .query(redis::cmd("GET").arg(&balance))
        .await
        .expect("GET on the shared connection");
    assert_eq!(shared, 7, "the shared connection stayed on db 0");

    // Instrumented like the client: the same metric series, under the client's name.
    assert!(commands_ok(&rx, "MULTI") >= 1.0, "{}", rx.metrics_text());
    assert!(commands_ok(&rx, "SELECT") >= 1.0, "{}", rx.metrics_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_run_on_a_pubsub_connection_of_their_own() {
    let server = RedisServer::start();
    let rx = build(&server.url(), "eco_pubsub").await;
    let channel = format!("{}events", unique_prefix("eco_pubsub"));
    let mut pubsub = rx.pubsub().await.expect("a pubsub connection");
    pubsub.subscribe(&channel).await.expect("SUBSCRIBE");
    let _: i64 = rx
        .client()
        .query(redis::cmd("PUBLISH").arg(&channel).arg("hello"))
        .await
        .expect("PUBLISH on the shared connection");
    let msg = tokio::time::timeout(Duration::from_secs(10), pubsub.on_message().next())
        .await
        .expect("the message arrives")
        .expect("the stream is open");
    let payload: String = msg.get_payload().expect("a string payload");
    assert_eq!(payload, "hello");
}

/// `{:#}` in `anyhow` prints an error and then each cause: the Redis error's text must come
/// once, from the cause, not again from the redisx message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrapped_redis_error_shows_its_text_once() {
    let server = RedisServer::start();
    let rx = build(&server.url(), "eco_display").await;
    let key = format!("{}text", unique_prefix("eco_display"));
    let client = rx.client();
    let _: () = client
        .query(redis::cmd("SET").arg(&key).arg("not a number"))
        .await
        .expect("SET");
    let err = client
        .query::<i64>(redis::cmd("INCR").arg(&key))
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::OperationFailed, "{err}");
    let redis_error = err.redis_error().expect("the Redis error is kept");
    assert_eq!(redis_error.code(), Some("ERR"), "{redis_error:?}");
    let source = std::error::Error::source(&err).expect("the cause is reachable");
    assert!(source.to_string().contains("not an integer"), "{source}");

    // What anyhow's `{:#}` prints: the error, then each cause.
    let mut chain = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        chain = format!("{chain}: {c}");
        cause = c.source();
    }
    assert_eq!(chain.matches("not an integer").count(), 1, "{chain}");
    assert!(!err.to_string().contains("not an integer"), "{err}");
    assert!(err.to_string().contains("command=`INCR`"), "{err}");
    // The alternate form tells the whole story on one line, each part once.
    assert_eq!(format!("{err:#}"), chain);
}

/// A cached type that changed shape (here: gained a `skip_serializing_if` field, which bincode
/// cannot decode) is a miss on each read, counted once per read as corrupt, never an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_whose_type_changed_shape_is_a_miss() {
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct Old {
        id: u64,
        name: String,
    }
    #[derive(Clone, serde::Serialize, serde::Deserialize)]
    struct New {
        id: u64,
        #[serde(skip_serializing_if = "Option::is_none")]
        nickname: Option<String>,
        name: String,
    }
    let server = RedisServer::start();
    let prefix = unique_prefix("eco_shape");
    let writer =
        redisx_tests::runtime(&server.url(), &prefix, redisx::CacheConfig::default()).await;
    let reader =
        redisx_tests::runtime(&server.url(), &prefix, redisx::CacheConfig::default()).await;
    for i in 0..3 {
        let old = Old {
            id: i,
            name: "ada".into(),
        };
        writer
            .cache()
            .set(&format!("user:{i}"), &old, None)
            .await
            .expect("set");
        let read: Option<New> = reader
            .cache()
            .get(&format!("user:{i}"))
            .await
            .expect("an undecodable entry is no error");
        assert!(read.is_none(), "a changed shape is a miss");
    }
    assert_eq!(reader.cache().stats().corrupt_entries, 3);
}
