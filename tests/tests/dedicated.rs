//! Dedicated connections (`rx.dedicated_connection()`) when their server goes away: they do
//! not reconnect (their state, such as the selected database or an open transaction, would be
//! lost without a word), so every call on a lost one fails with `CONN_CLOSED` saying to open a
//! new one, and a new one works once the server is back.

use std::time::Duration;

use redisx::{ConnectionConfig, ErrorCode, RedisX};
use redisx_tests::{RedisServer, eventually};

/// A runtime whose shared connection comes back quickly after a restart.
async fn build(server: &RedisServer) -> RedisX {
    let cfg = ConnectionConfig::from_url(&server.url())
        .unwrap()
        .reconnect(
            redisx::ReconnectPolicy::default()
                .initial(Duration::from_millis(50))
                .max(Duration::from_millis(200)),
        );
    RedisX::builder()
        .client("default", cfg)
        .build()
        .await
        .expect("connects")
}

fn assert_closed(err: &redisx::Error) {
    assert_eq!(err.code(), ErrorCode::ConnectionClosed, "{err:#}");
    assert!(
        err.to_string().contains("rx.dedicated_connection()"),
        "the error says what to do: {err}"
    );
}

/// A command on a dedicated connection whose server was killed fails with `CONN_CLOSED`, and
/// so does every later one, even once the server is back (a silent reconnect would run them
/// in database 0 instead of the one selected); a new dedicated connection works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_dedicated_connection_stays_closed_and_a_new_one_works() {
    let mut server = RedisServer::start_owned();
    let rx = build(&server).await;
    let mut conn = rx
        .dedicated_connection()
        .await
        .expect("a dedicated connection");
    let () = conn.query(redis::cmd("SELECT").arg(3)).await.unwrap();
    server.kill();
    let err = conn.query::<String>(&redis::cmd("PING")).await.unwrap_err();
    assert_closed(&err);
    server.start_again();
    let err = conn.query::<String>(&redis::cmd("PING")).await.unwrap_err();
    assert_closed(&err);
    let err = conn
        .query_pipeline::<(String,)>(redis::pipe().cmd("PING"))
        .await
        .unwrap_err();
    assert_closed(&err);

    let mut fresh = rx
        .dedicated_connection()
        .await
        .expect("a new dedicated connection once the server is back");
    let pong: String = fresh.query(&redis::cmd("PING")).await.unwrap();
    assert_eq!(pong, "PONG");
    rx.shutdown().await;
}

/// A blocking command in flight when the server dies ends with `CONN_CLOSED` (not after its
/// own 30 s timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocking_read_in_flight_ends_with_conn_closed_when_the_server_dies() {
    let mut server = RedisServer::start_owned();
    let rx = build(&server).await;
    let mut conn = rx
        .dedicated_connection()
        .await
        .expect("a dedicated connection");
    let blpop = tokio::spawn(async move {
        conn.query::<Option<(String, String)>>(redis::cmd("BLPOP").arg("jobs").arg(30))
            .await
    });
    let client = rx.client();
    let blocked = eventually(Duration::from_secs(2), Duration::from_millis(5), || {
        let client = client.clone();
        async move {
            let info: String = client
                .query(redis::cmd("INFO").arg("clients"))
                .await
                .unwrap_or_default();
            info.lines().any(|l| l.trim() == "blocked_clients:1")
        }
    })
    .await;
    assert!(blocked, "the BLPOP never reached the server");
    server.kill();
    let err = tokio::time::timeout(Duration::from_secs(10), blpop)
        .await
        .expect("the BLPOP ends when the connection is lost")
        .unwrap()
        .unwrap_err();
    assert_closed(&err);
    rx.shutdown().await;
}
