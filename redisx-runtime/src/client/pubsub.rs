//! Publish/subscribe connections ([`PubSub`]): a connection of its own per subscriber, named
//! like the client's connections.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use redis::aio::MultiplexedConnection;
use redis::{Msg, PushInfo, PushKind, ToRedisArgs};
use tokio::sync::mpsc;

use super::Client;
use super::driver::connection_config;
use crate::error::Result;
use crate::runtime::RedisX;

/// What `CLIENT SETNAME` appends to the client name on a pub/sub connection.
const PUBSUB_ROLE: &str = "pubsub";

/// A publish/subscribe connection of its own, opened by [`Client::pubsub`] with the client's
/// configuration: what `SUBSCRIBE` and `PSUBSCRIBE` need.
///
/// It speaks RESP3 whatever [`ConnectionConfig::resp3`](crate::ConnectionConfig::resp3) says
/// (messages arrive as pushes, so the connection can also run `CLIENT SETNAME` and carry the
/// client's name with `:pubsub` appended; redisx needs Redis 7, which speaks RESP3). The
/// messages are the same [`redis::Msg`] either way. Subscribing is bounded by the command
/// timeout; messages are not commands, so they are not instrumented. It does not reconnect:
/// the message stream ends when the connection is lost (subscribe again on a new one).
///
/// On a cluster config it is a cluster connection of its own speaking RESP3, which redis-rs's
/// cluster pub/sub needs: a classic `PUBLISH` reaches every node of a cluster, so the node
/// it subscribes on does not matter; the stream ends when that node's connection is lost. On a
/// sentinel config it subscribes on the current master and ends when the sentinels switch
/// the master.
///
/// ```no_run
/// use futures_util::StreamExt;
///
/// # #[allow(dead_code)]
/// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
/// let mut pubsub = rx.pubsub().await?;
/// pubsub.subscribe(&["orders", "refunds"]).await?;
/// while let Some(msg) = pubsub.on_message().next().await {
///     let payload: String = msg.get_payload()?;
///     println!("{}: {payload}", msg.get_channel_name());
/// }
/// // Here the connection is lost.
/// # Ok(()) }
/// ```
pub struct PubSub {
    client: Client,
    conn: PubSubConn,
    messages: Messages,
}

/// The connection under a [`PubSub`]: one server's, or a cluster connection (which sends the
/// subscriptions to a node of its choice; a classic `PUBLISH` reaches every node).
enum PubSubConn {
    Single(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// Calls the same method on either connection.
macro_rules! on_conn {
    ($conn:expr, $method:ident($arg:expr)) => {
        match $conn {
            PubSubConn::Single(c) => c.$method($arg).await,
            PubSubConn::Cluster(c) => c.$method($arg).await,
        }
    };
}

impl std::fmt::Debug for PubSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PubSub")
            .field("client", &self.client.name())
            .finish_non_exhaustive()
    }
}

impl PubSub {
    /// The client this connection was opened for.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Subscribes to one or more channels (`SUBSCRIBE`).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.subscribe("events").await?;
    /// # Ok(()) }
    /// ```
    pub async fn subscribe(&mut self, channels: impl ToRedisArgs) -> Result<()> {
        let r = on_conn!(&mut self.conn, subscribe(channels));
        r.map_err(|e| self.client.command_error(e))
    }

    /// Unsubscribes from one or more channels (`UNSUBSCRIBE`).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.subscribe("events").await?;
    /// pubsub.unsubscribe("events").await?;
    /// # Ok(()) }
    /// ```
    pub async fn unsubscribe(&mut self, channels: impl ToRedisArgs) -> Result<()> {
        let r = on_conn!(&mut self.conn, unsubscribe(channels));
        r.map_err(|e| self.client.command_error(e))
    }

    /// Subscribes to the channels matching one or more glob patterns (`PSUBSCRIBE`).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.psubscribe("orders:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn psubscribe(&mut self, patterns: impl ToRedisArgs) -> Result<()> {
        let r = on_conn!(&mut self.conn, psubscribe(patterns));
        r.map_err(|e| self.client.command_error(e))
    }

    /// Unsubscribes from one or more patterns (`PUNSUBSCRIBE`).
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.psubscribe("orders:*").await?;
    /// pubsub.punsubscribe("orders:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn punsubscribe(&mut self, patterns: impl ToRedisArgs) -> Result<()> {
        let r = on_conn!(&mut self.conn, punsubscribe(patterns));
        r.map_err(|e| self.client.command_error(e))
    }

    /// The messages of the subscribed channels and patterns, in order; the stream ends when
    /// the connection is lost. Subscribing again needs the connection back: take it with
    /// [`into_on_message`](Self::into_on_message) instead to keep the stream on its own.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.subscribe("events").await?;
    /// if let Some(msg) = pubsub.on_message().next().await {
    ///     let payload: Vec<u8> = msg.get_payload()?;
    ///     # let _ = payload;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn on_message(&mut self) -> impl Stream<Item = Msg> + Send + '_ {
        &mut self.messages
    }

    /// The message stream of [`on_message`](Self::on_message), owning the connection: it
    /// stays subscribed while the stream lives.
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.subscribe("events").await?;
    /// let mut messages = pubsub.into_on_message();
    /// tokio::spawn(async move {
    ///     while let Some(msg) = messages.next().await {
    ///         println!("{:?}", msg.get_payload::<String>());
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn into_on_message(self) -> impl Stream<Item = Msg> + Send + 'static {
        OwnedMessages {
            _conn: self.conn,
            messages: self.messages,
        }
    }
}

/// The pushes the connection forwards, read as messages; subscription confirmations are
/// skipped, and the connection's own `Disconnection` push ends the stream.
struct Messages {
    receiver: mpsc::UnboundedReceiver<PushInfo>,
    ended: bool,
}

impl Stream for Messages {
    type Item = Msg;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        while !self.ended {
            match self.receiver.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(None) => self.ended = true,
                Poll::Ready(Some(push)) if push.kind == PushKind::Disconnection => {
                    self.ended = true;
                }
                Poll::Ready(Some(push)) => {
                    if let Some(msg) = Msg::from_push_info(push) {
                        return Poll::Ready(Some(msg));
                    }
                }
            }
        }
        Poll::Ready(None)
    }
}

/// [`Messages`] with the connection they come from, kept open while the stream lives.
struct OwnedMessages {
    _conn: PubSubConn,
    messages: Messages,
}

impl Stream for OwnedMessages {
    type Item = Msg;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Msg>> {
        Pin::new(&mut self.messages).poll_next(cx)
    }
}

impl Client {
    /// Opens a [`PubSub`] connection of its own with this client's configuration (server,
    /// TLS, user, database, connect timeout, its client name with `:pubsub` appended).
    ///
    /// ```no_run
    /// use futures_util::StreamExt;
    ///
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.named_client("events")?.pubsub().await?;
    /// pubsub.subscribe("events").await?;
    /// if let Some(msg) = pubsub.on_message().next().await {
    ///     let payload: String = msg.get_payload()?;
    ///     println!("{payload}");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn pubsub(&self) -> Result<PubSub> {
        let cfg = self.config().clone().resp3(true);
        let (sender, receiver) = mpsc::unbounded_channel();
        let conn = if cfg.is_cluster() {
            PubSubConn::Cluster(
                super::cluster::connect(self.name(), &cfg, Some(cfg.command_timeout), Some(sender))
                    .await?,
            )
        } else {
            if let Some(switches) = self.switches() {
                end_on_switch(switches, sender.clone());
            }
            let client = super::sentinel::node_client(self.name(), &cfg).await?;
            let config = connection_config(&cfg, Some(cfg.command_timeout)).set_push_sender(sender);
            PubSubConn::Single(
                self.connecting(async {
                    let mut conn = client
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?;
                    cfg.init_connection(&mut conn, Some(PUBSUB_ROLE)).await?;
                    Ok::<_, redis::RedisError>(conn)
                })
                .await?,
            )
        };
        Ok(PubSub {
            client: self.clone(),
            conn,
            messages: Messages {
                receiver,
                ended: false,
            },
        })
    }
}

/// Ends the message stream (as a lost connection does) at the next master switch, so the
/// subscriber reconnects to the new master; stops when the stream is dropped.
fn end_on_switch(
    mut switches: tokio::sync::watch::Receiver<u64>,
    sender: mpsc::UnboundedSender<PushInfo>,
) {
    switches.mark_unchanged();
    tokio::spawn(async move {
        tokio::select! {
            changed = switches.changed() => if changed.is_ok() {
                let _ = sender.send(PushInfo { kind: PushKind::Disconnection, data: Vec::new() });
            },
            () = sender.closed() => {}
        }
    });
}

impl RedisX {
    /// Opens a [`PubSub`] connection to the default client's server; see [`Client::pubsub`].
    ///
    /// ```no_run
    /// # #[allow(dead_code)]
    /// # async fn demo(rx: redisx_runtime::RedisX) -> redisx_runtime::Result<()> {
    /// let mut pubsub = rx.pubsub().await?;
    /// pubsub.psubscribe("orders:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn pubsub(&self) -> Result<PubSub> {
        self.try_client()?.pubsub().await
    }
}
