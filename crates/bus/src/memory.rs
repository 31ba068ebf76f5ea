//! The in-process broker of the embedded mode. Same contract as RabbitMQ: topic bindings,
//! competing consumers, prefetch, requeue, dead letters, delivery limits and request/reply.
//! Nothing survives the process, which is the embedded mode's trade-off.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::message::{Replies, Settle, Settling};
use crate::{
    Binding, Delivery, Destination, Error, Exchange, Limits, Message, PendingReply, QueueKind,
    Subscription,
};
use disco_proto::route::DEAD_LETTER_EXCHANGE;

/// The reply address of every request in this process.
const REPLY_ADDRESS: &str = "memory.reply";

pub(crate) struct Broker {
    state: Mutex<State>,
    replies: Arc<Replies>,
    limits: Limits,
    closed: CancellationToken,
    next_private: AtomicU64,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Default)]
struct State {
    queues: HashMap<String, Arc<Queue>>,
    /// (exchange, pattern, queue name)
    bindings: Vec<(Exchange, String, String)>,
}

struct Queue {
    name: String,
    ready: Mutex<VecDeque<Stored>>,
    /// Signalled whenever a consumer may be able to take something: a message arrived, or a
    /// consumer settled one and has room under its prefetch again.
    changed: Notify,
}

#[derive(Clone)]
struct Stored {
    message: Message,
    routing_key: String,
    delivery_count: u32,
    expires_at: Option<std::time::Instant>,
}

fn expiry(message: &Message) -> Option<std::time::Instant> {
    message
        .expires_after
        .map(|after| std::time::Instant::now() + after)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section here leaves the data consistent, so a panic elsewhere while the
    // lock was held does not make it unusable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Queue {
    fn new(name: String) -> Arc<Self> {
        Arc::new(Self {
            name,
            ready: Mutex::new(VecDeque::new()),
            changed: Notify::new(),
        })
    }

    fn push_back(&self, stored: Stored) {
        lock(&self.ready).push_back(stored);
        self.changed.notify_waiters();
    }

    /// Keeps `stored` alone: what was waiting is dropped, as RabbitMQ drops the head of a full
    /// queue.
    fn replace(&self, stored: Stored) {
        let mut ready = lock(&self.ready);
        ready.clear();
        ready.push_back(stored);
        drop(ready);
        self.changed.notify_waiters();
    }

    fn push_front(&self, stored: Stored) {
        lock(&self.ready).push_front(stored);
        self.changed.notify_waiters();
    }
}

impl Broker {
    pub(crate) fn new(limits: Limits) -> Self {
        let broker = Self {
            state: Mutex::default(),
            replies: Replies::new(),
            limits,
            closed: CancellationToken::new(),
            next_private: AtomicU64::new(0),
            locks: Mutex::default(),
        };
        broker.queue(DEAD_LETTER_EXCHANGE);
        lock(&broker.state).bindings.push((
            Exchange::DeadLetters,
            "#".to_owned(),
            DEAD_LETTER_EXCHANGE.to_owned(),
        ));
        broker
    }

    /// The queues whose bindings on `exchange` match `key`, each once.
    fn bound(&self, exchange: Exchange, key: &str) -> Vec<Arc<Queue>> {
        let state = lock(&self.state);
        let mut names: Vec<&String> = state
            .bindings
            .iter()
            .filter(|(on, pattern, _)| *on == exchange && crate::topic::matches(pattern, key))
            .map(|(_, _, queue)| queue)
            .collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter_map(|name| state.queues.get(name).cloned())
            .collect()
    }

    fn queue(&self, name: &str) -> Arc<Queue> {
        let mut state = lock(&self.state);
        Arc::clone(
            state
                .queues
                .entry(name.to_owned())
                .or_insert_with(|| Queue::new(name.to_owned())),
        )
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    pub(crate) fn publish(&self, destination: &Destination, message: Message) -> Result<(), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        match destination {
            Destination::Event(key) => {
                let targets = self.bound(Exchange::Events, key);
                if targets.is_empty() {
                    return Err(Error::Unroutable(key.clone()));
                }
                for queue in targets {
                    queue.push_back(Stored {
                        expires_at: expiry(&message),
                        message: message.clone(),
                        routing_key: key.clone(),
                        delivery_count: 0,
                    });
                }
            }
            Destination::Queue(name) => self.queue(name).push_back(Stored {
                expires_at: expiry(&message),
                message,
                routing_key: name.clone(),
                delivery_count: 0,
            }),
            Destination::Latest(name) => self.queue(name).replace(Stored {
                expires_at: expiry(&message),
                message,
                routing_key: name.clone(),
                delivery_count: 0,
            }),
        }
        Ok(())
    }

    pub(crate) fn request(
        &self,
        destination: &Destination,
        mut message: Message,
    ) -> Result<PendingReply, Error> {
        let (id, pending) = self.replies.register();
        message.correlation_id = Some(id);
        message.reply_to = Some(REPLY_ADDRESS.to_owned());
        self.publish(destination, message)?;
        Ok(pending)
    }

    pub(crate) fn subscribe(self: &Arc<Self>, subscription: Subscription) -> Consumer {
        let (name, private) = match subscription.queue {
            QueueKind::Shared(name) => (name, false),
            QueueKind::Private => {
                let n = self.next_private.fetch_add(1, Ordering::Relaxed);
                (format!("memory.private.{n}"), true)
            }
        };
        let queue = self.queue(&name);
        {
            let mut state = lock(&self.state);
            for binding in subscription.bindings {
                let binding = (binding.exchange, binding.pattern, name.clone());
                if !state.bindings.contains(&binding) {
                    state.bindings.push(binding);
                }
            }
        }
        Consumer {
            broker: Arc::clone(self),
            queue,
            prefetch: usize::from(subscription.prefetch.max(1)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            private,
        }
    }

    /// The next message of a shared queue, if it has one now.
    pub(crate) fn get(self: &Arc<Self>, name: &str) -> Result<Option<Delivery>, Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        let queue = self.queue(name);
        Ok(take(self, &queue, &Arc::new(AtomicUsize::new(0))))
    }

    /// Holds the lock `name` until the returned guard is dropped.
    pub(crate) async fn lock(&self, name: &str) -> Result<tokio::sync::OwnedMutexGuard<()>, Error> {
        let mutex = {
            let mut locks = lock(&self.locks);
            Arc::clone(locks.entry(name.to_owned()).or_default())
        };
        tokio::select! {
            guard = mutex.lock_owned() => Ok(guard),
            () = self.closed.cancelled() => Err(Error::Closed),
        }
    }

    pub(crate) fn purge(&self, name: &str) -> u32 {
        let queue = self.queue(name);
        let mut ready = lock(&queue.ready);
        let removed = u32::try_from(ready.len()).unwrap_or(u32::MAX);
        ready.clear();
        removed
    }

    pub(crate) fn delete_queue(&self, name: &str) {
        let mut state = lock(&self.state);
        state.queues.remove(name);
        state.bindings.retain(|(_, _, queue)| queue != name);
    }

    pub(crate) fn close(&self) {
        self.closed.cancel();
        self.replies.fail_all();
    }

    /// Routes a dead letter by the name of the queue it came from.
    fn dead_letter(&self, message: Message, origin_queue: &str) {
        for queue in self.bound(Exchange::DeadLetters, origin_queue) {
            queue.push_back(Stored {
                expires_at: expiry(&message),
                message: message.clone(),
                routing_key: origin_queue.to_owned(),
                delivery_count: 0,
            });
        }
    }
}

pub(crate) struct Consumer {
    broker: Arc<Broker>,
    queue: Arc<Queue>,
    prefetch: usize,
    in_flight: Arc<AtomicUsize>,
    private: bool,
}

impl Consumer {
    pub(crate) fn bind(&self, binding: Binding) {
        let binding = (binding.exchange, binding.pattern, self.queue.name.clone());
        let mut state = lock(&self.broker.state);
        if !state.bindings.contains(&binding) {
            state.bindings.push(binding);
        }
    }
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("memory::Consumer")
            .field("queue", &self.queue.name)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            let changed = self.queue.changed.notified();
            tokio::pin!(changed);
            // Register for a wake-up before looking, so a push between the look and the wait
            // is not missed.
            changed.as_mut().enable();
            if self.broker.is_closed() {
                return None;
            }
            if self.in_flight.load(Ordering::Acquire) < self.prefetch
                && let Some(delivery) = take(&self.broker, &self.queue, &self.in_flight)
            {
                return Some(delivery);
            }
            tokio::select! {
                () = &mut changed => {}
                () = self.broker.closed.cancelled() => return None,
            }
        }
    }
}

/// Takes the next message of `queue`, dead-lettering any that reached the delivery limit.
fn take(
    broker: &Arc<Broker>,
    queue: &Arc<Queue>,
    in_flight: &Arc<AtomicUsize>,
) -> Option<Delivery> {
    loop {
        let stored = lock(&queue.ready).pop_front()?;
        if stored
            .expires_at
            .is_some_and(|at| at <= std::time::Instant::now())
        {
            // Expired: its requester stopped waiting, as RabbitMQ drops it too.
            continue;
        }
        if stored.delivery_count >= broker.limits.max_deliveries {
            let reason = format!(
                "delivered {} times without being settled",
                stored.delivery_count
            );
            let dead = crate::message::dead_message(
                &stored.message,
                &reason,
                &queue.name,
                &stored.routing_key,
            );
            broker.dead_letter(dead, &queue.name);
            continue;
        }
        in_flight.fetch_add(1, Ordering::AcqRel);
        // As from RabbitMQ: a delivered message's expiry is what is left of it.
        let mut message = stored.message.clone();
        message.expires_after = stored
            .expires_at
            .map(|at| at.saturating_duration_since(std::time::Instant::now()));
        return Some(Delivery::new(
            message,
            stored.routing_key.clone(),
            queue.name.clone(),
            stored.delivery_count,
            Box::new(Settler {
                broker: Arc::clone(broker),
                queue: Arc::clone(queue),
                in_flight: Arc::clone(in_flight),
                stored,
            }),
        ));
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if self.private {
            self.broker.delete_queue(&self.queue.name);
        }
    }
}

/// Settles one in-memory delivery.
pub(crate) struct Settler {
    broker: Arc<Broker>,
    queue: Arc<Queue>,
    in_flight: Arc<AtomicUsize>,
    stored: Stored,
}

impl fmt::Debug for Settler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("memory::Settler")
            .field("queue", &self.queue.name)
            .finish_non_exhaustive()
    }
}

impl Settler {
    fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.queue.changed.notify_waiters();
    }

    fn back_to_the_queue(mut self) {
        self.stored.delivery_count += 1;
        self.queue.push_front(self.stored.clone());
        self.release();
    }
}

impl Settle for Settler {
    fn ack(self: Box<Self>) -> Settling<'static> {
        self.release();
        Box::pin(async { Ok(()) })
    }

    fn requeue(self: Box<Self>) -> Settling<'static> {
        self.back_to_the_queue();
        Box::pin(async { Ok(()) })
    }

    fn dead_letter(self: Box<Self>, dead: Message, _origin_queue: String) -> Settling<'static> {
        self.broker.dead_letter(dead, &self.queue.name);
        self.release();
        Box::pin(async { Ok(()) })
    }

    fn reply<'a>(&'a self, reply_to: &'a str, answer: Message) -> Settling<'a> {
        let sent = if reply_to == REPLY_ADDRESS {
            // An answer nobody waits for any more (the requester gave up) is dropped, as
            // RabbitMQ drops a reply to a requester that went away.
            self.broker.replies.resolve(answer);
            Ok(())
        } else {
            self.broker
                .publish(&Destination::Queue(reply_to.to_owned()), answer)
        };
        Box::pin(async move { sent })
    }

    fn abandon(self: Box<Self>) {
        self.back_to_the_queue();
    }
}
