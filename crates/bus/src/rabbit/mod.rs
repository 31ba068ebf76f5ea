//! RabbitMQ through lapin.
//!
//! One connection per process, re-established with backoff whenever it drops. Publishes go
//! through one confirm channel and wait for the broker's confirm; requests go through a second
//! confirm channel that also consumes RabbitMQ's direct reply-to pseudo-queue, so a process has
//! one reply consumer however many requests it has in flight. Each consumer has its own channel
//! (its prefetch is per channel) and re-subscribes after a reconnect. Shared queues are quorum
//! queues: durable, and they count deliveries (`x-delivery-count`), which the delivery limit
//! needs.
//!
//! # Map
//! - here: the connection and its channels, reconnects, the topology (exchanges, shared
//!   queues).
//! - `publish`: confirmed publishes and requests; `consume`: consumers and settling
//!   deliveries; `lock`: locks across processes; `codec`: messages to and from AMQP.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod codec;
mod consume;
mod lock;
mod publish;

pub(crate) use consume::Consumer;

use crate::message::Replies;
use crate::{Error, Limits, Shape};
use codec::message_of;
use disco_proto::Secret;
use disco_proto::route::{DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE};

/// RabbitMQ's direct reply-to pseudo-queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How to reach RabbitMQ.
#[derive(Clone, Debug)]
pub struct RabbitConfig {
    url: Secret,
    /// Shown in RabbitMQ's connection list, so ops can tell processes apart.
    pub connection_name: String,
    /// Limits shared with the in-memory broker.
    pub limits: Limits,
}

impl RabbitConfig {
    /// Checks the URL (`amqp://user:password@host:port/vhost`); the error never repeats it, as
    /// it holds a password.
    pub fn new(url: Secret, connection_name: impl Into<String>) -> Result<Self, Error> {
        let valid = url.expose().starts_with("amqp://") || url.expose().starts_with("amqps://");
        if !valid || url.expose().parse::<lapin::uri::AMQPUri>().is_err() {
            return Err(Error::InvalidUrl(
                "expected amqp://user:password@host:port/vhost".to_owned(),
            ));
        }
        Ok(Self {
            url,
            connection_name: connection_name.into(),
            limits: Limits::default(),
        })
    }
}

/// Exponential backoff from 100 ms to 1 s. The ceiling is what a process waits at most, once the
/// broker answers again, before it carries messages again: an attempt against a broker that is
/// down costs a refused TCP connection, so retrying every second costs nothing worth saving.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(1));
        delay
    }
}

pub(crate) struct Broker {
    config: RabbitConfig,
    /// The current connection, if any; replaced when it drops.
    connection: Mutex<Option<Arc<Connection>>>,
    /// Held while reconnecting, so one task reconnects and the others wait for it.
    reconnecting: tokio::sync::Mutex<()>,
    publisher: tokio::sync::Mutex<Option<Channel>>,
    requester: tokio::sync::Mutex<Option<Channel>>,
    replies: Arc<Replies>,
    closed: CancellationToken,
}

#[derive(Clone, Copy)]
enum Via {
    Publisher,
    Requester,
}

/// What to do when the broker finds no queue for a message.
#[derive(Clone, Copy, PartialEq, Eq)]
enum IfUnroutable {
    /// Fail with [`Error::Unroutable`].
    Refuse,
    /// The routing key is a queue name: declare the queue (of this shape) and publish again.
    DeclareQueue(Shape),
    /// Drop it. Only for replies, which RabbitMQ drops anyway when their requester is gone.
    /// (Seen with RabbitMQ 3.10: a mandatory reply to a requester that was still waiting came
    /// back unroutable, so replies cannot be mandatory.)
    Drop,
}

impl Broker {
    pub(crate) async fn connect(config: RabbitConfig) -> Result<Arc<Self>, Error> {
        let broker = Arc::new(Self {
            config,
            connection: Mutex::new(None),
            reconnecting: tokio::sync::Mutex::new(()),
            publisher: tokio::sync::Mutex::new(None),
            requester: tokio::sync::Mutex::new(None),
            replies: Replies::new(),
            closed: CancellationToken::new(),
        });
        let connection = broker.connect_once().await?;
        *broker.slot() = Some(Arc::new(connection));
        tokio::spawn(Self::keep_connected(Arc::downgrade(&broker)));
        Ok(broker)
    }

    /// Reconnects as soon as the connection drops, not only when a publish or a consumer next
    /// needs it, so readiness comes back by itself after an outage.
    async fn keep_connected(broker: std::sync::Weak<Self>) {
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let Some(broker) = broker.upgrade() else {
                return;
            };
            if broker.closed.is_cancelled() {
                return;
            }
            if broker.healthy().is_none() {
                // Errors are logged inside; Closed ends the loop on the next turn.
                let _ = broker.connection().await;
            }
        }
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Connection>>> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn healthy(&self) -> Option<Arc<Connection>> {
        self.slot()
            .as_ref()
            .filter(|connection| connection.status().connected())
            .cloned()
    }

    pub(crate) fn is_connected(&self) -> bool {
        !self.closed.is_cancelled() && self.healthy().is_some()
    }

    /// Connects and declares the topology every process relies on.
    async fn connect_once(&self) -> Result<Connection, Error> {
        let properties = ConnectionProperties::default()
            .with_connection_name(self.config.connection_name.clone().into());
        let connection = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(self.config.url.expose(), properties),
        )
        .await
        .map_err(|_| {
            Error::Broker(lapin::Error::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        })??;
        let channel = connection.create_channel().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                EVENTS_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                DEAD_LETTER_EXCHANGE.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        let channel = declare_dead_letters(&connection, channel).await?;
        channel
            .queue_bind(
                DEAD_LETTER_EXCHANGE.into(),
                DEAD_LETTER_EXCHANGE.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.close(200, "topology declared".into()).await?;
        info!(name = %self.config.connection_name, "connected to rabbitmq");
        Ok(connection)
    }

    /// A live connection, reconnecting (with backoff, for as long as it takes) if needed.
    async fn connection(&self) -> Result<Arc<Connection>, Error> {
        if let Some(connection) = self.healthy() {
            return Ok(connection);
        }
        let _reconnecting = self.reconnecting.lock().await;
        let mut backoff = Backoff::new();
        loop {
            if self.closed.is_cancelled() {
                return Err(Error::Closed);
            }
            if let Some(connection) = self.healthy() {
                return Ok(connection);
            }
            match self.connect_once().await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    *self.slot() = Some(Arc::clone(&connection));
                    return Ok(connection);
                }
                Err(error) => {
                    let delay = backoff.next();
                    warn!(
                        error = &error as &dyn std::error::Error,
                        ?delay,
                        "rabbitmq unreachable, retrying"
                    );
                    self.pause(delay).await?;
                }
            }
        }
    }

    /// Sleeps, unless the bus closes first.
    async fn pause(&self, delay: Duration) -> Result<(), Error> {
        tokio::select! {
            () = tokio::time::sleep(delay) => Ok(()),
            () = self.closed.cancelled() => Err(Error::Closed),
        }
    }

    async fn open_channel(&self) -> Result<Channel, Error> {
        let mut backoff = Backoff::new();
        loop {
            let connection = self.connection().await?;
            match connection.create_channel().await {
                Ok(channel) => return Ok(channel),
                Err(error) => {
                    let delay = backoff.next();
                    warn!(
                        error = &error as &dyn std::error::Error,
                        ?delay,
                        "could not open a channel, retrying"
                    );
                    self.pause(delay).await?;
                }
            }
        }
    }

    async fn publisher(&self) -> Result<Channel, Error> {
        let mut slot = self.publisher.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        let channel = self.open_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// The channel that sends requests and receives their answers.
    async fn requester(&self) -> Result<Channel, Error> {
        let mut slot = self.requester.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        if slot.take().is_some() {
            // Answers to requests sent on the old channel can no longer arrive. (A request
            // registered while this happens fails too, with a retryable error.)
            self.replies.fail_all();
        }
        let channel = self.open_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut answers = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let replies = Arc::clone(&self.replies);
        tokio::spawn(async move {
            while let Some(Ok(answer)) = answers.next().await {
                if !replies.resolve(message_of(&answer.properties, answer.data)) {
                    debug!("dropped a reply nobody waits for");
                }
            }
        });
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Publishes and waits for the confirm, through reconnects. A queue destination that does
    /// not exist yet is declared and the message sent again.
    pub(crate) async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let channel = self.open_channel().await?;
        channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
        channel.close(200, "queue deleted".into()).await?;
        Ok(())
    }

    pub(crate) async fn purge(&self, name: &str) -> Result<u32, Error> {
        let channel = self.open_channel().await?;
        declare_shared(&channel, name, Shape::Shared).await?;
        let removed = channel
            .queue_purge(name.into(), QueuePurgeOptions::default())
            .await?;
        channel.close(200, "queue purged".into()).await?;
        Ok(removed)
    }

    pub(crate) async fn close(&self) {
        self.closed.cancel();
        self.replies.fail_all();
        let Some(connection) = self.slot().take() else {
            return;
        };
        // Bounded: a connection whose I/O thread is gone never answers (seen once, a replay
        // that had done its work and hung on exit), and the broker drops what is left of a
        // connection that goes without closing.
        match tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "bye".into())).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(
                error = &error as &dyn std::error::Error,
                "closing the rabbitmq connection"
            ),
            Err(_) => warn!("rabbitmq did not answer the close in {CLOSE_TIMEOUT:?}; leaving"),
        }
    }
}

/// What `disco.dead` keeps at most: dead letters are for ops to read and replay, not an
/// archive, and must not fill the broker's disk when a bug dead-letters everything.
pub(crate) const DEAD_LETTERS_MAX: i64 = 100_000;
/// The most bytes `disco.dead` keeps (the oldest go first).
pub(crate) const DEAD_LETTERS_MAX_BYTES: i64 = 256 * 1024 * 1024;
/// How long a dead letter is kept: long enough to replay after a weekend, no longer (they hold
/// message text and interaction tokens, which expire after 15 minutes anyway).
pub(crate) const DEAD_LETTERS_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Declares `disco.dead`, bounded in count, bytes and age. A queue declared by an earlier
/// version without bounds cannot be changed by declaring it (RabbitMQ refuses different
/// arguments and closes the channel): it is used as it is, with a warning saying how to bound
/// it with a policy. Returns a usable channel.
async fn declare_dead_letters(connection: &Connection, channel: Channel) -> Result<Channel, Error> {
    let ttl = i64::try_from(DEAD_LETTERS_TTL.as_millis()).unwrap_or(i64::MAX);
    let arguments = quorum(&[
        ("x-max-length", DEAD_LETTERS_MAX),
        ("x-max-length-bytes", DEAD_LETTERS_MAX_BYTES),
        ("x-message-ttl", ttl),
    ]);
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    match channel
        .queue_declare(DEAD_LETTER_EXCHANGE.into(), durable, arguments)
        .await
    {
        Ok(_) => Ok(channel),
        Err(error) => {
            // PRECONDITION_FAILED closed the channel; anything else fails again here.
            let channel = connection.create_channel().await?;
            declare_existing(&channel, DEAD_LETTER_EXCHANGE)
                .await
                .map_err(|_| Error::from(error))?;
            warn!(
                "{DEAD_LETTER_EXCHANGE} exists without bounds (declared by an earlier version): bound it with the policy in deploy/README.md"
            );
            Ok(channel)
        }
    }
}

/// Checks that queue `name` exists, whatever its arguments (a passive declare).
async fn declare_existing(channel: &Channel, name: &str) -> Result<(), Error> {
    let passive = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(name.into(), passive, FieldTable::default())
        .await?;
    Ok(())
}

/// A quorum queue's arguments (durable, replicated, and it counts deliveries), with `bounds`
/// (`x-max-length`, `x-message-ttl`, ...): past a length bound the oldest message is dropped.
fn quorum(bounds: &[(&str, i64)]) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    for (name, value) in bounds {
        arguments.insert((*name).into(), AMQPValue::LongLongInt(*value));
    }
    if !bounds.is_empty() {
        arguments.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
    }
    arguments
}

/// Declares a shared queue: durable, quorum (replicated, and it counts deliveries).
pub(super) async fn declare_shared(
    channel: &Channel,
    name: &str,
    shape: Shape,
) -> Result<(), Error> {
    if name == DEAD_LETTER_EXCHANGE {
        // Declared with its bounds on connecting; declared here without them, RabbitMQ would
        // refuse the difference.
        return declare_existing(channel, name).await;
    }
    let arguments = match shape {
        Shape::Shared => quorum(&[]),
        // Room for one: a new message drops the one before it.
        Shape::Latest => quorum(&[("x-max-length", 1)]),
    };
    channel
        .queue_declare(
            name.into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            arguments,
        )
        .await?;
    Ok(())
}
