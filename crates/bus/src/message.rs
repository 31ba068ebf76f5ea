use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::{
    DEAD_QUEUE_HEADER, DEAD_REASON_HEADER, DEAD_ROUTING_KEY_HEADER, Error, Failure, error::chain,
};

/// A message on the bus: a body (a `disco-proto` message) and a little metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Message {
    /// The encoded body.
    pub body: Bytes,
    /// Free-form headers (dead-letter reasons, for instance).
    pub headers: BTreeMap<String, String>,
    /// Matches a reply to its request. Set by [`crate::Bus::request`].
    pub correlation_id: Option<String>,
    /// Where the answer goes. Set by [`crate::Bus::request`].
    pub reply_to: Option<String>,
    /// Dropped by the broker if still queued after this long, and by the consumer if it
    /// expires in its hands before being returned: for requests whose requester stops
    /// waiting, so that nobody acts on them late. On a delivered message: what was left.
    pub expires_after: Option<std::time::Duration>,
}

impl Message {
    /// A message with this body and nothing else.
    pub fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            ..Self::default()
        }
    }

    /// Sets [`Message::expires_after`].
    #[must_use]
    pub fn expiring_after(mut self, after: std::time::Duration) -> Self {
        self.expires_after = Some(after);
        self
    }

    /// Adds a header.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }
}

/// A message received from a queue. Settle it once with [`ack`](Self::ack),
/// [`requeue`](Self::requeue) or [`dead_letter`](Self::dead_letter), after its work is done.
/// Dropped unsettled (its task panicked, say), it goes back to the queue.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// The routing key it was published with (the queue name, for direct publishes).
    pub routing_key: String,
    /// The queue it came from.
    pub queue: String,
    /// How many times it was delivered before without being settled.
    pub delivery_count: u32,
    settler: Option<Box<dyn Settle>>,
}

/// A future a backend settles with.
pub(crate) type Settling<'a> = Pin<Box<dyn Future<Output = Result<(), Error>> + Send + 'a>>;

/// How one delivery is settled: each backend (in-memory, RabbitMQ) implements it for its own
/// deliveries, so a delivery does not know which backend it came from.
pub(crate) trait Settle: Send + Sync + std::fmt::Debug {
    /// The work is done.
    fn ack(self: Box<Self>) -> Settling<'static>;
    /// Back to the queue.
    fn requeue(self: Box<Self>) -> Settling<'static>;
    /// To the dead letters, as `dead`, routed by the queue it came from.
    fn dead_letter(self: Box<Self>, dead: Message, origin_queue: String) -> Settling<'static>;
    /// `answer` to a request, at `reply_to`.
    fn reply<'a>(&'a self, reply_to: &'a str, answer: Message) -> Settling<'a>;
    /// Dropped unsettled: back to the queue, as well as can be done without waiting.
    fn abandon(self: Box<Self>);
}

impl Delivery {
    pub(crate) fn new(
        message: Message,
        routing_key: String,
        queue: String,
        delivery_count: u32,
        settler: Box<dyn Settle>,
    ) -> Self {
        Self {
            message,
            routing_key,
            queue,
            delivery_count,
            settler: Some(settler),
        }
    }

    /// Whether it was delivered before.
    pub fn redelivered(&self) -> bool {
        self.delivery_count > 0
    }

    /// The work is done: the message leaves the queue.
    pub async fn ack(mut self) -> Result<(), Error> {
        match self.settler.take() {
            Some(settler) => settler.ack().await,
            None => Ok(()),
        }
    }

    /// The work could not be done now: the message goes back to the queue for another try.
    pub async fn requeue(mut self) -> Result<(), Error> {
        match self.settler.take() {
            Some(settler) => settler.requeue().await,
            None => Ok(()),
        }
    }

    /// The message can never be processed: it goes to the dead-letter queue with `reason`
    /// (and where it came from), then leaves this queue.
    pub async fn dead_letter(mut self, reason: &str) -> Result<(), Error> {
        let dead = dead_message(&self.message, reason, &self.queue, &self.routing_key);
        match self.settler.take() {
            Some(settler) => settler.dead_letter(dead, self.queue.clone()).await,
            None => Ok(()),
        }
    }

    /// Settles the delivery by how its work went: done, it is acked; a failure that can
    /// succeed later, it is requeued; one that never will, it is dead-lettered, with the
    /// failure and its causes as the reason.
    pub async fn settle<E: Failure>(self, outcome: Result<(), E>) -> Result<(), Error> {
        match outcome {
            Ok(()) => self.ack().await,
            Err(failure) if failure.is_retryable() => self.requeue().await,
            Err(failure) => self.dead_letter(&chain(&failure)).await,
        }
    }

    /// Answers a request. The delivery still has to be settled.
    pub async fn reply(&self, mut answer: Message) -> Result<(), Error> {
        let reply_to = self.message.reply_to.clone().ok_or(Error::NoReplyAddress)?;
        answer
            .correlation_id
            .clone_from(&self.message.correlation_id);
        match &self.settler {
            Some(settler) => settler.reply(&reply_to, answer).await,
            None => Err(Error::Closed),
        }
    }
}

/// The copy of `message` that goes to the dead-letter queue: the same body, with why and
/// where it came from.
pub(crate) fn dead_message(
    message: &Message,
    reason: &str,
    queue: &str,
    routing_key: &str,
) -> Message {
    message
        .clone()
        .with_header(DEAD_REASON_HEADER, reason)
        .with_header(DEAD_QUEUE_HEADER, queue)
        .with_header(DEAD_ROUTING_KEY_HEADER, routing_key)
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(settler) = self.settler.take() {
            settler.abandon();
        }
    }
}

/// The requests of one process still waiting for an answer, by correlation id.
#[derive(Debug, Default)]
pub(crate) struct Replies {
    waiting: Mutex<HashMap<String, oneshot::Sender<Message>>>,
    next: AtomicU64,
    /// Makes ids unique across processes that share a reply address space.
    prefix: String,
}

impl Replies {
    pub(crate) fn new() -> Arc<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        Arc::new(Self {
            prefix: format!("{:x}-{nanos:x}", std::process::id()),
            ..Self::default()
        })
    }

    /// Registers a request: the id to send with it and the reply to await.
    pub(crate) fn register(self: &Arc<Self>) -> (String, PendingReply) {
        let id = format!(
            "{}-{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let (tx, rx) = oneshot::channel();
        self.lock().insert(id.clone(), tx);
        let pending = PendingReply {
            rx,
            replies: Arc::clone(self),
            id: id.clone(),
        };
        (id, pending)
    }

    /// Hands an answer to its waiting request; answers nobody waits for are dropped (their
    /// requester gave up or went away).
    pub(crate) fn resolve(&self, message: Message) -> bool {
        let Some(id) = message.correlation_id.as_deref() else {
            return false;
        };
        match self.lock().remove(id) {
            Some(tx) => tx.send(message).is_ok(),
            None => false,
        }
    }

    /// Fails every waiting request with [`Error::ReplyLost`].
    pub(crate) fn fail_all(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, oneshot::Sender<Message>>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The answer to a request, still to come. Dropping it gives up on the answer.
#[derive(Debug)]
pub struct PendingReply {
    rx: oneshot::Receiver<Message>,
    replies: Arc<Replies>,
    id: String,
}

impl PendingReply {
    /// The correlation id the request was sent with.
    pub fn correlation_id(&self) -> &str {
        &self.id
    }
}

impl Future for PendingReply {
    type Output = Result<Message, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|answer| answer.map_err(|_| Error::ReplyLost))
    }
}

impl Drop for PendingReply {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.id);
    }
}
