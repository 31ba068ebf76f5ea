//! RabbitMQ through amqprs, on tokio's own reactor.
//!
//! One connection per process, re-established with backoff whenever it drops. Publishes go
//! through one confirm channel and wait for the broker's confirm; requests go through a second
//! confirm channel that also consumes RabbitMQ's direct reply-to pseudo-queue, so a process has
//! one reply consumer however many requests it has in flight. Each consumer has its own channel
//! (its prefetch is per channel) and re-subscribes after a reconnect. Shared queues are quorum
//! queues: durable, and they count deliveries (`x-delivery-count`), which the delivery limit
//! needs.
//!
//! amqprs answers a channel's synchronous methods (declare, bind, qos, consume) by method
//! name, so a channel runs one at a time: the shared publish channels only publish, and every
//! declare runs on a channel of its own. And a caller must not give up on such a call half-way
//! (see [`detached`]).
//!
//! # Map
//! - here: the connection and its channels, reconnects, the topology (exchanges, shared
//!   queues).
//! - `publish`: confirmed publishes and requests; `consume`: consumers and settling
//!   deliveries; `lock`: locks across processes; `codec`: messages to and from AMQP;
//!   `confirm`: a channel's publisher confirms and returns.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use amqprs::callbacks::ConnectionCallback;
use amqprs::channel::{
    BasicConsumeArguments, Channel, ExchangeDeclareArguments, ExchangeType, QueueBindArguments,
    QueueDeclareArguments, QueueDeleteArguments, QueuePurgeArguments,
};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Close, FieldTable, FieldValue};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

mod codec;
mod confirm;
mod consume;
mod lock;
mod publish;

pub(crate) use consume::Consumer;
pub(crate) use lock::Held;

use crate::message::Replies;
use crate::{Error, Limits, Shape};
use codec::message_of;
use confirm::Confirmed;
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
        arguments_of(url.expose())?;
        Ok(Self {
            url,
            connection_name: connection_name.into(),
            limits: Limits::default(),
        })
    }
}

/// Reads `amqp[s]://user:password@host[:port][/vhost]` as the AMQP URI spec says: user,
/// password and vhost percent-encoded (`/%2f` is the vhost `/`), port 5672 (5671 for amqps),
/// user and password `guest` when absent.
fn arguments_of(url: &str) -> Result<OpenConnectionArguments, Error> {
    let invalid = || Error::InvalidUrl("expected amqp://user:password@host:port/vhost".to_owned());
    let parsed = url::Url::parse(url).map_err(|_| invalid())?;
    let (tls, default_port) = match parsed.scheme() {
        "amqp" => (false, 5672),
        "amqps" => (true, 5671),
        _ => return Err(invalid()),
    };
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(invalid)?;
    // An IPv6 literal arrives in brackets; amqprs appends the port after a colon.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let decode = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|text| text.into_owned())
            .map_err(|_| invalid())
    };
    let user = match parsed.username() {
        "" => "guest".to_owned(),
        user => decode(user)?,
    };
    let password = match parsed.password() {
        None => "guest".to_owned(),
        Some(password) => decode(password)?,
    };
    let vhost = match parsed.path() {
        "" | "/" => "/".to_owned(),
        path => decode(&path[1..])?,
    };
    let mut arguments = OpenConnectionArguments::new(
        host,
        parsed.port().unwrap_or(default_port),
        &user,
        &password,
    );
    arguments.virtual_host(&vhost);
    if tls {
        arguments.tls_adaptor(tls_to(host)?);
    }
    Ok(arguments)
}

/// TLS to `host`, trusting the web's root CAs (Mozilla's), with ring: the one crypto provider
/// the build has.
fn tls_to(host: &str) -> Result<amqprs::tls::TlsAdaptor, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|_| Error::InvalidUrl("cannot set up TLS for amqps".to_owned()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    Ok(amqprs::tls::TlsAdaptor::new(connector, host.to_owned()))
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

/// Says why the broker closed the connection (it closes it when shutting down, or when a
/// client breaks the protocol).
struct ConnectionEvents;

#[async_trait::async_trait]
impl ConnectionCallback for ConnectionEvents {
    async fn close(&mut self, _: &Connection, close: Close) -> Result<(), amqprs::error::Error> {
        warn!(
            code = close.reply_code(),
            reason = %close.reply_text(),
            "rabbitmq closed the connection"
        );
        Ok(())
    }

    async fn blocked(&mut self, _: &Connection, reason: String) {
        warn!(%reason, "rabbitmq blocked publishing (a resource alarm)");
    }

    async fn unblocked(&mut self, _: &Connection) {
        info!("rabbitmq unblocked publishing");
    }

    async fn secret_updated(&mut self, _: &Connection) {}
}

pub(crate) struct Broker {
    config: RabbitConfig,
    /// The current connection, if any; replaced when it drops.
    connection: Mutex<Option<Connection>>,
    /// Held while reconnecting, so one task reconnects and the others wait for it.
    reconnecting: tokio::sync::Mutex<()>,
    publisher: tokio::sync::Mutex<Option<Confirmed>>,
    requester: tokio::sync::Mutex<Option<Confirmed>>,
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

/// Runs a call to amqprs that awaits the broker's answer (opening a connection or channel, a
/// declare, a consume) to its end, even if its caller stops waiting for it (a deadline, a
/// shutdown, a `select!`). amqprs registers where the answer goes with its connection's task
/// first, and that task panics when the caller has gone meanwhile, which ends the connection
/// and everything on it: seen in the chaos suite, a request's deadline cutting short the
/// opening of the requester's channel. What the call returns to nobody is dropped, and a
/// dropped connection or channel closes itself.
async fn detached<T, E>(
    call: impl Future<Output = Result<T, E>> + Send + 'static,
) -> Result<T, Error>
where
    T: Send + 'static,
    E: Into<Error> + Send + 'static,
{
    match tokio::spawn(call).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => Err(broker_error("a call to the broker client panicked")),
    }
}

/// An error of ours, in the broker's error type: a connect that timed out, a confirm lost with
/// its channel.
fn broker_error(what: &str) -> Error {
    Error::Broker(amqprs::error::Error::NetworkError(what.to_owned()))
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
        *broker.slot() = Some(connection);
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

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn healthy(&self) -> Option<Connection> {
        self.slot()
            .as_ref()
            .filter(|connection| connection.is_open())
            .cloned()
    }

    pub(crate) fn is_connected(&self) -> bool {
        !self.closed.is_cancelled() && self.healthy().is_some()
    }

    /// Connects and declares the topology every process relies on.
    async fn connect_once(&self) -> Result<Connection, Error> {
        let mut arguments = arguments_of(self.config.url.expose())?;
        arguments.connection_name(&self.config.connection_name);
        let connect = detached(async move {
            let connection = Connection::open(&arguments).await?;
            connection.register_callback(ConnectionEvents).await?;
            declare_topology(&connection).await?;
            Ok::<_, Error>(connection)
        });
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| broker_error("connecting timed out"))??;
        info!(name = %self.config.connection_name, "connected to rabbitmq");
        Ok(connection)
    }

    /// A live connection, reconnecting (with backoff, for as long as it takes) if needed.
    async fn connection(&self) -> Result<Connection, Error> {
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
                    *self.slot() = Some(connection.clone());
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
            match detached(async move { open_on(&connection).await }).await {
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

    async fn publisher(&self) -> Result<Confirmed, Error> {
        let mut slot = self.publisher.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.is_open()) {
            return Ok(channel.clone());
        }
        let channel = Confirmed::select(self.open_channel().await?).await?;
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// The channel that sends requests and receives their answers.
    async fn requester(&self) -> Result<Confirmed, Error> {
        let mut slot = self.requester.lock().await;
        if let Some(channel) = slot.as_ref().filter(|c| c.is_open()) {
            return Ok(channel.clone());
        }
        if slot.take().is_some() {
            // Answers to requests sent on the old channel can no longer arrive. (A request
            // registered while this happens fails too, with a retryable error.)
            self.replies.fail_all();
        }
        let channel = Confirmed::select(self.open_channel().await?).await?;
        let mut no_ack = BasicConsumeArguments::new(DIRECT_REPLY_TO, "");
        no_ack.no_ack = true;
        let consuming = channel.channel().clone();
        let (_tag, mut answers) =
            detached(async move { consuming.basic_consume_rx(no_ack).await }).await?;
        let replies = Arc::clone(&self.replies);
        tokio::spawn(async move {
            while let Some(answer) = answers.recv().await {
                let (Some(properties), Some(body)) = (answer.basic_properties, answer.content)
                else {
                    continue;
                };
                if !replies.resolve(message_of(&properties, body)) {
                    debug!("dropped a reply nobody waits for");
                }
            }
        });
        *slot = Some(channel.clone());
        Ok(channel)
    }

    /// Declares a shared queue on a channel of its own.
    async fn declare(&self, name: &str, shape: Shape) -> Result<(), Error> {
        let channel = self.open_channel().await?;
        let name = name.to_owned();
        detached(async move {
            declare_shared(&channel, &name, shape).await?;
            channel.close().await?;
            Ok::<_, Error>(())
        })
        .await
    }

    pub(crate) async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let channel = self.open_channel().await?;
        let name = name.to_owned();
        detached(async move {
            channel
                .queue_delete(QueueDeleteArguments::new(&name))
                .await?;
            channel.close().await
        })
        .await
    }

    pub(crate) async fn purge(&self, name: &str) -> Result<u32, Error> {
        let channel = self.open_channel().await?;
        let name = name.to_owned();
        detached(async move {
            declare_shared(&channel, &name, Shape::Shared).await?;
            let removed = channel.queue_purge(QueuePurgeArguments::new(&name)).await?;
            channel.close().await?;
            Ok::<_, Error>(removed.unwrap_or(0))
        })
        .await
    }

    pub(crate) async fn close(&self) {
        self.closed.cancel();
        self.replies.fail_all();
        let Some(connection) = self.slot().take() else {
            return;
        };
        // Bounded: the broker drops what is left of a connection that goes without closing.
        match tokio::time::timeout(CLOSE_TIMEOUT, detached(connection.close())).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => debug!(
                error = &error as &dyn std::error::Error,
                "closing the rabbitmq connection"
            ),
            Err(_) => warn!("rabbitmq did not answer the close in {CLOSE_TIMEOUT:?}; leaving"),
        }
    }
}

/// Declares the exchanges and the dead letters' queue.
async fn declare_topology(connection: &Connection) -> Result<(), Error> {
    let channel = open_on(connection).await?;
    for exchange in [EVENTS_EXCHANGE, DEAD_LETTER_EXCHANGE] {
        let mut durable = ExchangeDeclareArguments::of_type(exchange, ExchangeType::Topic);
        durable.durable = true;
        channel.exchange_declare(durable).await?;
    }
    let channel = declare_dead_letters(connection, channel).await?;
    channel
        .queue_bind(QueueBindArguments::new(
            DEAD_LETTER_EXCHANGE,
            DEAD_LETTER_EXCHANGE,
            "#",
        ))
        .await?;
    channel.close().await?;
    Ok(())
}

/// Opens a channel whose events (the broker closing it, cancelling a consumer) are handled:
/// a channel without them never ends a consumer the broker cancels. Run it [`detached`].
async fn open_on(connection: &Connection) -> Result<Channel, Error> {
    let channel = connection.open_channel(None).await?;
    channel.register_callback(confirm::Events::plain()).await?;
    Ok(channel)
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
    let durable = QueueDeclareArguments::new(DEAD_LETTER_EXCHANGE)
        .durable(true)
        .arguments(arguments)
        .finish();
    match channel.queue_declare(durable).await {
        Ok(_) => Ok(channel),
        Err(error) => {
            // PRECONDITION_FAILED closed the channel; anything else fails again here.
            let channel = open_on(connection).await?;
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
    let passive = QueueDeclareArguments::new(name).passive(true).finish();
    channel.queue_declare(passive).await?;
    Ok(())
}

/// A quorum queue's arguments (durable, replicated, and it counts deliveries), with `bounds`
/// (`x-max-length`, `x-message-ttl`, ...): past a length bound the oldest message is dropped.
fn quorum(bounds: &[(&str, i64)]) -> FieldTable {
    let mut arguments = FieldTable::new();
    arguments.insert(field("x-queue-type"), FieldValue::from("quorum"));
    for (name, value) in bounds {
        arguments.insert(field(name), FieldValue::l(*value));
    }
    if !bounds.is_empty() {
        arguments.insert(field("x-overflow"), FieldValue::from("drop-head"));
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
    let durable = QueueDeclareArguments::new(name)
        .durable(true)
        .arguments(arguments)
        .finish();
    channel.queue_declare(durable).await?;
    Ok(())
}

/// A header's or argument's name. Ours are all short: a name of 256 bytes or more is a bug.
pub(super) fn field(name: &str) -> amqprs::FieldName {
    name.try_into()
        .expect("field names are shorter than 256 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_reads_as_the_amqp_uri_spec_says() {
        let rows = [
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "127.0.0.1",
                5672,
                "/",
            ),
            ("amqp://u:p@rabbit/", "rabbit", 5672, "/"),
            ("amqp://rabbit", "rabbit", 5672, "/"),
            (
                "amqp://u:p@rabbit:5673/disco-test-1",
                "rabbit",
                5673,
                "disco-test-1",
            ),
            ("amqp://u:p@rabbit/a%2Fb", "rabbit", 5672, "a/b"),
            ("amqp://u:p@[::1]:5672/%2f", "::1", 5672, "/"),
            (
                "amqps://u:p@rabbit.example/%2f",
                "rabbit.example",
                5671,
                "/",
            ),
        ];
        for (url, host, port, vhost) in rows {
            let arguments = arguments_of(url).expect(url);
            assert_eq!(arguments.get_host(), host, "{url}");
            assert_eq!(arguments.get_port(), port, "{url}");
            assert_eq!(arguments.get_virtual_host(), vhost, "{url}");
            assert_eq!(
                arguments.get_tls_adaptor().is_some(),
                url.starts_with("amqps:"),
                "{url}"
            );
        }
    }

    #[test]
    fn a_url_that_is_not_amqp_is_refused_without_repeating_it() {
        for url in [
            "http://guest:s3cret@rabbit/",
            "guest:s3cret@rabbit",
            "amqp://guest:s3cret@/%2f",
            "amqp://guest:s3cret@rabbit/%ff",
            "",
        ] {
            let error = RabbitConfig::new(Secret::new(url), "test").expect_err(url);
            assert!(matches!(error, Error::InvalidUrl(_)), "{url}: {error:?}");
            assert!(!format!("{error} {error:?}").contains("s3cret"), "{url}");
        }
    }
}
