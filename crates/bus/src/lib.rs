#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`Bus`]: the handle every role gets: [`Bus::publish`], [`Bus::subscribe`], [`Bus::request`].
//! - [`Destination`], [`Subscription`], [`QueueKind`]: where messages go and where they are read.
//! - [`Message`], [`Delivery`]: what is sent, and what is received with its settle methods.
//! - [`Error`]: what went wrong, and [`Error::is_retryable`]; [`Failure`]: a handler's error,
//!   which [`Delivery::settle`] turns into ack, requeue or dead-letter.
//! - `memory`: the in-process broker of the embedded mode.
//! - `rabbit`: RabbitMQ through amqprs: topology, confirms, reconnects.
//! - `topic`: AMQP topic pattern matching, for the in-memory broker.

mod error;
mod memory;
mod message;
mod rabbit;
mod topic;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use error::{Error, Failure};
pub use message::{Delivery, Message, PendingReply};
pub use rabbit::RabbitConfig;

/// Header that carries why a message was dead-lettered.
pub const DEAD_REASON_HEADER: &str = "x-disco-dead-reason";
/// Header that carries the queue a dead-lettered message came from.
pub const DEAD_QUEUE_HEADER: &str = "x-disco-dead-queue";
/// Header that carries the routing key a dead-lettered message was published with.
pub const DEAD_ROUTING_KEY_HEADER: &str = "x-disco-dead-routing-key";

/// Where a message is published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The events exchange ([`disco_proto::route::EVENTS_EXCHANGE`]) with this routing key. Every
    /// queue whose binding matches gets a copy; none matching is [`Error::Unroutable`].
    Event(String),
    /// One shared queue, by name. The queue is declared if it does not exist yet, so a command
    /// sent before its consumer first starts waits for it.
    Queue(String),
    /// A queue that keeps only the newest message published to it: a checkpoint, read with
    /// [`Bus::take_latest`]. Declared like a shared queue, with room for one message; each
    /// publish replaces what was there.
    Latest(String),
}

/// How a durable queue is declared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Every message, until consumed.
    Shared,
    /// The newest message only ([`Destination::Latest`]).
    Latest,
}

/// Which queue a consumer reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueKind {
    /// A durable queue that outlives its consumers. Consumers of the same name compete: each
    /// message goes to one of them.
    Shared(String),
    /// A queue of this consumer alone, deleted when it goes away (for watching the bus).
    Private,
}

/// The topic exchanges a queue can bind to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Exchange {
    /// Gateway events, by `<EVENT_NAME>.<shard_id>`
    /// ([`disco_proto::route::EVENTS_EXCHANGE`]).
    Events,
    /// Dead letters, by the name of the queue they came from
    /// ([`disco_proto::route::DEAD_LETTER_EXCHANGE`]). The queue of the same name binds `#`.
    DeadLetters,
}

/// A binding of a queue to an exchange with a topic pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Binding {
    /// The exchange.
    pub exchange: Exchange,
    /// `MESSAGE_CREATE.*`, `VOICE_STATE_UPDATE.7`, `#`: `*` is one word, `#` any number.
    pub pattern: String,
}

/// What a consumer reads: a queue, its bindings, and how many unsettled messages it may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The queue.
    pub queue: QueueKind,
    /// What the queue receives besides what is sent to it by name.
    pub bindings: Vec<Binding>,
    /// How many delivered but unsettled messages the consumer holds at most.
    pub prefetch: u16,
}

impl Subscription {
    /// A subscription to a shared queue with no bindings and a prefetch of 32.
    pub fn shared(name: impl Into<String>) -> Self {
        Self {
            queue: QueueKind::Shared(name.into()),
            bindings: Vec::new(),
            prefetch: 32,
        }
    }

    /// A private subscription with no bindings and a prefetch of 32.
    pub fn private() -> Self {
        Self {
            queue: QueueKind::Private,
            bindings: Vec::new(),
            prefetch: 32,
        }
    }

    /// Adds a binding on the events exchange.
    #[must_use]
    pub fn bind(mut self, pattern: impl Into<String>) -> Self {
        self.bindings.push(Binding {
            exchange: Exchange::Events,
            pattern: pattern.into(),
        });
        self
    }

    /// Adds a binding on the dead-letter exchange: `pattern` matches the names of the queues
    /// whose dead letters this queue receives.
    #[must_use]
    pub fn bind_dead_letters(mut self, pattern: impl Into<String>) -> Self {
        self.bindings.push(Binding {
            exchange: Exchange::DeadLetters,
            pattern: pattern.into(),
        });
        self
    }

    /// Sets the prefetch.
    #[must_use]
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch;
        self
    }
}

/// Settings both brokers share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// A message delivered this many times without being settled is dead-lettered instead of
    /// being delivered again: a message that crashes its consumers must not loop forever.
    pub max_deliveries: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_deliveries: 5 }
    }
}

/// The message bus: a cheap handle, cloned into every role.
#[derive(Clone)]
pub struct Bus {
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Memory(Arc<memory::Broker>),
    Rabbit(Arc<rabbit::Broker>),
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus").field("kind", &self.kind()).finish()
    }
}

impl Bus {
    /// A bus inside this process: the embedded mode, and tests.
    pub fn in_memory(limits: Limits) -> Self {
        Self {
            transport: Transport::Memory(Arc::new(memory::Broker::new(limits))),
        }
    }

    /// Connects to RabbitMQ and declares the shared topology. Fails if the broker cannot be
    /// reached now; later outages are ridden out with reconnects.
    pub async fn rabbitmq(config: RabbitConfig) -> Result<Self, Error> {
        let broker = rabbit::Broker::connect(config).await?;
        Ok(Self {
            transport: Transport::Rabbit(broker),
        })
    }

    /// `"memory"` or `"rabbitmq"`.
    pub fn kind(&self) -> &'static str {
        match &self.transport {
            Transport::Memory(_) => "memory",
            Transport::Rabbit(_) => "rabbitmq",
        }
    }

    /// Publishes a message and returns once the broker has taken responsibility for it
    /// (publisher confirm). Through a broker outage it waits and retries; a message whose
    /// confirm was lost with a connection is published again, so delivery is at least once.
    pub async fn publish(&self, destination: Destination, message: Message) -> Result<(), Error> {
        match &self.transport {
            Transport::Memory(broker) => broker.publish(&destination, message),
            Transport::Rabbit(broker) => broker.publish(&destination, message).await,
        }
    }

    /// Starts consuming. The consumer survives broker outages: it reconnects and resumes.
    pub async fn subscribe(&self, subscription: Subscription) -> Result<Consumer, Error> {
        let inner = match &self.transport {
            Transport::Memory(broker) => ConsumerInner::Memory(broker.subscribe(subscription)),
            Transport::Rabbit(broker) => {
                ConsumerInner::Rabbit(Box::new(broker.subscribe(subscription).await?))
            }
        };
        Ok(Consumer { inner })
    }

    /// Sends a request; the returned [`PendingReply`] resolves with the answer. The caller
    /// decides how long to wait (and may keep waiting after a first deadline has passed).
    pub async fn request(
        &self,
        destination: Destination,
        message: Message,
    ) -> Result<PendingReply, Error> {
        match &self.transport {
            Transport::Memory(broker) => broker.request(&destination, message),
            Transport::Rabbit(broker) => broker.request(&destination, message).await,
        }
    }

    /// Sends a request and waits at most `deadline` for its answer.
    pub async fn call(
        &self,
        destination: Destination,
        message: Message,
        deadline: Duration,
    ) -> Result<Message, Error> {
        let pending = self.request(destination, message).await?;
        tokio::time::timeout(deadline, pending)
            .await
            .map_err(|_| Error::Timeout(deadline))?
    }

    /// Whether the bus can carry messages now (false while RabbitMQ is unreachable).
    pub fn is_connected(&self) -> bool {
        match &self.transport {
            Transport::Memory(broker) => !broker.is_closed(),
            Transport::Rabbit(broker) => broker.is_connected(),
        }
    }

    /// Takes the next message of a shared queue if it has one now, without waiting.
    pub async fn get(&self, queue: &str) -> Result<Option<Delivery>, Error> {
        match &self.transport {
            Transport::Memory(broker) => broker.get(queue),
            Transport::Rabbit(broker) => broker.get(queue, Shape::Shared).await,
        }
    }

    /// Takes what a [`Destination::Latest`] queue holds (the newest message published to it),
    /// if anything, without waiting.
    pub async fn take_latest(&self, queue: &str) -> Result<Option<Delivery>, Error> {
        match &self.transport {
            Transport::Memory(broker) => broker.get(queue),
            Transport::Rabbit(broker) => broker.get(queue, Shape::Latest).await,
        }
    }

    /// Waits for, then holds, the lock `name`, shared by every process on the bus (on
    /// RabbitMQ: the one exclusive consumer of a queue). Dropping the [`Lock`] releases it; so
    /// does the holder's death, or the loss of its broker connection.
    pub async fn lock(&self, name: &str) -> Result<Lock, Error> {
        let inner = match &self.transport {
            Transport::Memory(broker) => LockInner::Memory(broker.lock(name).await?),
            Transport::Rabbit(broker) => LockInner::Rabbit(Box::new(broker.lock(name).await?)),
        };
        Ok(Lock { inner })
    }

    /// Empties a shared queue (messages delivered and not yet settled stay); how many messages
    /// were removed.
    pub async fn purge(&self, queue: &str) -> Result<u32, Error> {
        match &self.transport {
            Transport::Memory(broker) => Ok(broker.purge(queue)),
            Transport::Rabbit(broker) => broker.purge(queue).await,
        }
    }

    /// Deletes a shared queue and what it holds (tools and tests).
    pub async fn delete_queue(&self, name: &str) -> Result<(), Error> {
        match &self.transport {
            Transport::Memory(broker) => {
                broker.delete_queue(name);
                Ok(())
            }
            Transport::Rabbit(broker) => broker.delete_queue(name).await,
        }
    }

    /// Closes the bus: consumers end, publishes fail with [`Error::Closed`].
    pub async fn close(&self) {
        match &self.transport {
            Transport::Memory(broker) => broker.close(),
            Transport::Rabbit(broker) => broker.close().await,
        }
    }
}

/// A held lock; see [`Bus::lock`].
#[derive(Debug)]
pub struct Lock {
    inner: LockInner,
}

#[derive(Debug)]
enum LockInner {
    Memory(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>),
    /// Dropping it closes its channel, which ends the exclusive consumer.
    Rabbit(Box<rabbit::Held>),
}

impl Lock {
    /// Resolves when the lock is lost: on RabbitMQ, when the connection or channel that held it
    /// goes (a network blip, a broker restart), which releases it on the broker, so another
    /// process may hold it now. Whoever acts as the holder must stop when this resolves. A lock
    /// on the in-memory bus is never lost.
    pub async fn lost(&mut self) {
        match &mut self.inner {
            LockInner::Memory(_) => std::future::pending().await,
            LockInner::Rabbit(held) => held.lost().await,
        }
    }
}

/// A stream of deliveries from one [`Subscription`].
///
/// Dropping the consumer stops it; messages it held unsettled go back to the queue.
#[derive(Debug)]
pub struct Consumer {
    inner: ConsumerInner,
}

#[derive(Debug)]
enum ConsumerInner {
    Memory(memory::Consumer),
    Rabbit(Box<rabbit::Consumer>),
}

impl Consumer {
    /// The next delivery; `None` once the bus is closed.
    ///
    /// A message delivered [`Limits::max_deliveries`] times already is dead-lettered here
    /// rather than returned.
    pub async fn next(&mut self) -> Option<Delivery> {
        match &mut self.inner {
            ConsumerInner::Memory(consumer) => consumer.next().await,
            ConsumerInner::Rabbit(consumer) => consumer.next().await,
        }
    }

    /// Binds the consumer's queue to `pattern` on the events exchange as well, from now on
    /// (and again whenever the consumer resumes after a broker outage).
    ///
    /// # Errors
    /// The broker refused the binding.
    pub async fn bind(&mut self, pattern: impl Into<String>) -> Result<(), Error> {
        let binding = Binding {
            exchange: Exchange::Events,
            pattern: pattern.into(),
        };
        match &mut self.inner {
            ConsumerInner::Memory(consumer) => {
                consumer.bind(binding);
                Ok(())
            }
            ConsumerInner::Rabbit(consumer) => consumer.bind(binding).await,
        }
    }
}
