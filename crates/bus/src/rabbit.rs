//! RabbitMQ through lapin.
//!
//! One connection per process, re-established with backoff whenever it drops. Publishes go
//! through one confirm channel and wait for the broker's confirm; requests go through a second
//! confirm channel that also consumes RabbitMQ's direct reply-to pseudo-queue, so a process has
//! one reply consumer however many requests it has in flight. Each consumer has its own channel
//! (its prefetch is per channel) and re-subscribes after a reconnect. Shared queues are quorum
//! queues: durable, and they count deliveries (`x-delivery-count`), which the delivery limit
//! needs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::message::{Replies, Settler as AnySettler};
use crate::{
    Delivery, Destination, Error, Exchange, Limits, Message, PendingReply, QueueKind, Subscription,
};
use disco_proto::Secret;
use disco_proto::route::{DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE};

/// RabbitMQ's direct reply-to pseudo-queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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

/// Exponential backoff from 100 ms to 5 s.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(100))
    }

    fn next(&mut self) -> Duration {
        let delay = self.0;
        self.0 = (self.0 * 2).min(Duration::from_secs(5));
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
    /// The routing key is a queue name: declare the queue and publish again.
    DeclareQueue,
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
        declare_shared(&channel, DEAD_LETTER_EXCHANGE).await?;
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
    async fn send(
        &self,
        via: Via,
        exchange: &str,
        routing_key: &str,
        message: &Message,
        if_unroutable: IfUnroutable,
    ) -> Result<(), Error> {
        let mut backoff = Backoff::new();
        let mut declared = false;
        loop {
            let channel = match via {
                Via::Publisher => self.publisher().await?,
                Via::Requester => self.requester().await?,
            };
            let outcome = async {
                channel
                    .basic_publish(
                        exchange.into(),
                        routing_key.into(),
                        BasicPublishOptions {
                            mandatory: if_unroutable != IfUnroutable::Drop,
                            ..BasicPublishOptions::default()
                        },
                        &message.body,
                        properties_of(message),
                    )
                    .await?
                    .await
            }
            .await;
            match outcome {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Ack(Some(_returned)))
                    if if_unroutable == IfUnroutable::DeclareQueue && !declared =>
                {
                    declare_shared(&channel, routing_key).await?;
                    declared = true;
                }
                Ok(Confirmation::Ack(Some(_returned))) => {
                    return Err(Error::Unroutable(routing_key.to_owned()));
                }
                Ok(Confirmation::Nack(_)) => {
                    let delay = backoff.next();
                    warn!(routing_key, ?delay, "rabbitmq refused a message, retrying");
                    self.pause(delay).await?;
                }
                Err(error) => {
                    let delay = backoff.next();
                    warn!(
                        error = &error as &dyn std::error::Error,
                        routing_key,
                        ?delay,
                        "publish failed, retrying"
                    );
                    self.pause(delay).await?;
                }
            }
        }
    }

    pub(crate) async fn publish(
        &self,
        destination: &Destination,
        message: Message,
    ) -> Result<(), Error> {
        match destination {
            Destination::Event(key) => {
                self.send(
                    Via::Publisher,
                    EVENTS_EXCHANGE,
                    key,
                    &message,
                    IfUnroutable::Refuse,
                )
                .await
            }
            Destination::Queue(queue) => {
                self.send(
                    Via::Publisher,
                    "",
                    queue,
                    &message,
                    IfUnroutable::DeclareQueue,
                )
                .await
            }
        }
    }

    pub(crate) async fn request(
        &self,
        destination: &Destination,
        mut message: Message,
    ) -> Result<PendingReply, Error> {
        let (id, pending) = self.replies.register();
        message.correlation_id = Some(id);
        message.reply_to = Some(DIRECT_REPLY_TO.to_owned());
        match destination {
            Destination::Event(key) => {
                self.send(
                    Via::Requester,
                    EVENTS_EXCHANGE,
                    key,
                    &message,
                    IfUnroutable::Refuse,
                )
                .await?
            }
            Destination::Queue(queue) => {
                self.send(
                    Via::Requester,
                    "",
                    queue,
                    &message,
                    IfUnroutable::DeclareQueue,
                )
                .await?
            }
        }
        Ok(pending)
    }

    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        subscription: Subscription,
    ) -> Result<Consumer, Error> {
        let live = self.start_consuming(&subscription).await?;
        Ok(Consumer {
            broker: Arc::clone(self),
            subscription,
            live: Some(live),
        })
    }

    async fn start_consuming(&self, subscription: &Subscription) -> Result<Live, Error> {
        let channel = self.open_channel().await?;
        channel
            .basic_qos(subscription.prefetch.max(1), BasicQosOptions::default())
            .await?;
        let queue = match &subscription.queue {
            QueueKind::Shared(name) => {
                declare_shared(&channel, name).await?;
                name.clone()
            }
            QueueKind::Private => channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?
                .name()
                .to_string(),
        };
        for binding in &subscription.bindings {
            let exchange = match binding.exchange {
                Exchange::Events => EVENTS_EXCHANGE,
                Exchange::DeadLetters => DEAD_LETTER_EXCHANGE,
            };
            channel
                .queue_bind(
                    queue.as_str().into(),
                    exchange.into(),
                    binding.pattern.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let stream = channel
            .basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(Live {
            channel,
            stream,
            queue,
        })
    }

    /// The next message of a shared queue, if it has one now (AMQP `basic.get`).
    pub(crate) async fn get(self: &Arc<Self>, name: &str) -> Result<Option<Delivery>, Error> {
        let channel = self.open_channel().await?;
        declare_shared(&channel, name).await?;
        let Some(got) = channel
            .basic_get(name.into(), lapin::options::BasicGetOptions::default())
            .await?
        else {
            channel.close(200, "empty".into()).await?;
            return Ok(None);
        };
        let delivery = got.delivery;
        let count = delivery_count(&delivery);
        let settler = Settler {
            acker: delivery.acker.clone(),
            _channel: channel,
            broker: Arc::clone(self),
        };
        Ok(Some(Delivery::new(
            message_of(&delivery.properties, delivery.data),
            delivery.routing_key.to_string(),
            name.to_owned(),
            count,
            AnySettler::Rabbit(settler),
        )))
    }

    /// Holds the lock `name` across every process on this broker: the holder is the one
    /// exclusive consumer of the queue `disco.lock.<name>`. The broker releases it when the
    /// holder's channel closes, so a holder that dies gives it back by dying.
    pub(crate) async fn lock(&self, name: &str) -> Result<(Channel, lapin::Consumer), Error> {
        let queue = format!("disco.lock.{name}");
        let mut backoff = Backoff::new();
        loop {
            let channel = self.open_channel().await?;
            let durable = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            let declared = channel
                .queue_declare(queue.as_str().into(), durable, FieldTable::default())
                .await?;
            if declared.consumer_count() > 0 {
                // Held: wait without provoking a refusal (which closes the channel, noisily).
                channel.close(200, "lock busy".into()).await?;
                self.pause(Duration::from_millis(100)).await?;
                continue;
            }
            let exclusive = BasicConsumeOptions {
                exclusive: true,
                ..BasicConsumeOptions::default()
            };
            match channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    exclusive,
                    FieldTable::default(),
                )
                .await
            {
                Ok(consumer) => return Ok((channel, consumer)),
                // ACCESS_REFUSED: someone else holds it. The broker closed this channel.
                Err(_) => {
                    let delay = backoff.next().min(Duration::from_millis(250));
                    self.pause(delay).await?;
                }
            }
        }
    }

    pub(crate) async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let channel = self.open_channel().await?;
        channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
        channel.close(200, "queue deleted".into()).await?;
        Ok(())
    }

    pub(crate) async fn close(&self) {
        self.closed.cancel();
        self.replies.fail_all();
        let connection = self.slot().take();
        if let Some(connection) = connection
            && let Err(error) = connection.close(200, "bye".into()).await
        {
            debug!(
                error = &error as &dyn std::error::Error,
                "closing the rabbitmq connection"
            );
        }
    }
}

/// Declares a shared queue: durable, quorum (replicated, and it counts deliveries).
async fn declare_shared(channel: &Channel, name: &str) -> Result<(), Error> {
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
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

fn properties_of(message: &Message) -> BasicProperties {
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if !message.headers.is_empty() {
        let mut headers = FieldTable::default();
        for (name, value) in &message.headers {
            headers.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        properties = properties.with_headers(headers);
    }
    if let Some(id) = &message.correlation_id {
        properties = properties.with_correlation_id(id.as_str().into());
    }
    if let Some(reply_to) = &message.reply_to {
        properties = properties.with_reply_to(reply_to.as_str().into());
    }
    if let Some(after) = message.expires_after {
        properties = properties.with_expiration(after.as_millis().to_string().into());
    }
    properties
}

fn message_of(properties: &BasicProperties, body: Vec<u8>) -> Message {
    let mut headers = BTreeMap::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                _ => continue,
            };
            headers.insert(name.to_string(), text);
        }
    }
    Message {
        body: body.into(),
        headers,
        correlation_id: properties
            .correlation_id()
            .as_ref()
            .map(ToString::to_string),
        reply_to: properties.reply_to().as_ref().map(ToString::to_string),
        // What is left of it does not matter once delivered.
        expires_after: None,
    }
}

/// Quorum queues count earlier deliveries in `x-delivery-count`; other queues only say
/// whether the message was delivered before.
fn delivery_count(delivery: &lapin::message::Delivery) -> u32 {
    let counted = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(|value| match value {
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
            _ => None,
        });
    counted.unwrap_or(u32::from(delivery.redelivered))
}

struct Live {
    channel: Channel,
    stream: lapin::Consumer,
    queue: String,
}

pub(crate) struct Consumer {
    broker: Arc<Broker>,
    subscription: Subscription,
    live: Option<Live>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rabbit::Consumer")
            .field("subscription", &self.subscription)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        let mut backoff = Backoff::new();
        loop {
            if self.broker.closed.is_cancelled() {
                return None;
            }
            let live = match &mut self.live {
                Some(live) => live,
                None => match self.broker.start_consuming(&self.subscription).await {
                    Ok(live) => {
                        info!(queue = %live.queue, "consuming again after a broker outage");
                        self.live.insert(live)
                    }
                    Err(Error::Closed) => return None,
                    Err(error) => {
                        let delay = backoff.next();
                        warn!(
                            error = &error as &dyn std::error::Error,
                            ?delay,
                            "could not resume consuming, retrying"
                        );
                        self.broker.pause(delay).await.ok()?;
                        continue;
                    }
                },
            };
            let item = tokio::select! {
                item = live.stream.next() => item,
                () = self.broker.closed.cancelled() => return None,
            };
            let delivery = match item {
                Some(Ok(delivery)) => delivery,
                Some(Err(error)) => {
                    warn!(error = &error as &dyn std::error::Error, queue = %live.queue, "consumer lost its channel, resubscribing");
                    self.live = None;
                    continue;
                }
                None => {
                    warn!(queue = %live.queue, "the broker cancelled the consumer, resubscribing");
                    self.live = None;
                    continue;
                }
            };
            let count = delivery_count(&delivery);
            let settler = Settler {
                acker: delivery.acker.clone(),
                _channel: live.channel.clone(),
                broker: Arc::clone(&self.broker),
            };
            let delivery = Delivery::new(
                message_of(&delivery.properties, delivery.data),
                delivery.routing_key.to_string(),
                live.queue.clone(),
                count,
                AnySettler::Rabbit(settler),
            );
            let limit = self.broker.config.limits.max_deliveries;
            if count >= limit {
                let reason = format!("delivered {count} times without being settled");
                warn!(queue = %delivery.queue, %reason, "dead-lettering a message");
                if let Err(error) = delivery.dead_letter(&reason).await {
                    warn!(
                        error = &error as &dyn std::error::Error,
                        "could not dead-letter a message; it stays queued"
                    );
                }
                continue;
            }
            return Some(delivery);
        }
    }
}

/// Settles one RabbitMQ delivery. Holds its channel open until then: the delivery tag only
/// means something on the channel it came from.
pub(crate) struct Settler {
    acker: lapin::Acker,
    _channel: Channel,
    broker: Arc<Broker>,
}

impl fmt::Debug for Settler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rabbit::Settler").finish_non_exhaustive()
    }
}

impl Settler {
    pub(crate) async fn ack(self) -> Result<(), Error> {
        self.acker.ack(BasicAckOptions::default()).await?;
        Ok(())
    }

    pub(crate) async fn requeue(self) -> Result<(), Error> {
        self.acker
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await?;
        Ok(())
    }

    /// Routes the dead letter by the name of the queue it came from.
    pub(crate) async fn dead_letter(self, dead: Message, origin_queue: &str) -> Result<(), Error> {
        self.broker
            .send(
                Via::Publisher,
                DEAD_LETTER_EXCHANGE,
                origin_queue,
                &dead,
                IfUnroutable::Refuse,
            )
            .await?;
        self.ack().await
    }

    pub(crate) async fn reply(&self, reply_to: &str, answer: Message) -> Result<(), Error> {
        self.broker
            .send(Via::Publisher, "", reply_to, &answer, IfUnroutable::Drop)
            .await
    }

    /// Dropped unsettled: give the message back now rather than when the channel closes.
    pub(crate) fn abandon(self) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = self.requeue().await {
                    debug!(
                        error = &error as &dyn std::error::Error,
                        "could not requeue an abandoned delivery"
                    );
                }
            });
        }
    }
}
