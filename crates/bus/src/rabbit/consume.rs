//! Consuming: a consumer per subscription on its own channel (its prefetch is per channel),
//! re-subscribing after a reconnect; deliveries settled through their channel.

use std::fmt;
use std::sync::Arc;

use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicGetArguments,
    BasicQosArguments, BasicRejectArguments, Channel, ConsumerMessage, QueueBindArguments,
    QueueDeclareArguments,
};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{debug, info, warn};

use super::codec::{delivery_count, message_of};
use super::{Backoff, Broker, IfUnroutable, Via, broker_error, declare_shared, detached};
use crate::message::{Settle, Settling};
use crate::{Binding, Delivery, Error, Exchange, Message, QueueKind, Shape, Subscription};
use disco_proto::route::{DEAD_LETTER_EXCHANGE, EVENTS_EXCHANGE};

/// Tries of [`Broker::get`] before its error is returned (about 3 s of backoff in all).
const GET_ATTEMPTS: u32 = 6;

impl Broker {
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
        let subscription = subscription.clone();
        detached(async move {
            let prefetch = subscription.prefetch.max(1);
            channel
                .basic_qos(BasicQosArguments::new(0, prefetch, false))
                .await?;
            let queue = match &subscription.queue {
                QueueKind::Shared(name) => {
                    declare_shared(&channel, name, Shape::Shared).await?;
                    name.clone()
                }
                QueueKind::Private => {
                    let private = QueueDeclareArguments::exclusive_server_named()
                        .auto_delete(true)
                        .finish();
                    let declared = channel.queue_declare(private).await?;
                    declared.map(|(name, _, _)| name).unwrap_or_default()
                }
            };
            for binding in &subscription.bindings {
                bind(&channel, &queue, binding).await?;
            }
            let (tag, stream) = channel
                .basic_consume_rx(BasicConsumeArguments::new(&queue, ""))
                .await?;
            Ok::<_, Error>(Live {
                stream,
                tag,
                channel,
                queue,
            })
        })
        .await
    }

    /// The next message of a shared queue, if it has one now (AMQP `basic.get`).
    /// Takes one message from `name`, if it holds one. A broker error is tried again a few
    /// times: a quorum queue another process declared a moment ago may not have started on the
    /// broker yet, and RabbitMQ then fails the get with `noproc` (seen with gateway processes
    /// starting together, each reading `disco.generation`).
    pub(crate) async fn get(
        self: &Arc<Self>,
        name: &str,
        shape: Shape,
    ) -> Result<Option<Delivery>, Error> {
        let mut backoff = Backoff::new();
        let mut attempts = 1;
        loop {
            match self.get_once(name, shape).await {
                Err(error @ Error::Broker(_)) if attempts < GET_ATTEMPTS => {
                    let delay = backoff.next();
                    debug!(
                        queue = name,
                        error = &error as &dyn std::error::Error,
                        ?delay,
                        "get failed; trying again"
                    );
                    tokio::time::sleep(delay).await;
                    attempts += 1;
                }
                other => return other,
            }
        }
    }

    async fn get_once(
        self: &Arc<Self>,
        name: &str,
        shape: Shape,
    ) -> Result<Option<Delivery>, Error> {
        let channel = self.open_channel().await?;
        let queue = name.to_owned();
        let got = detached(async move {
            declare_shared(&channel, &queue, shape).await?;
            match channel.basic_get(BasicGetArguments::new(&queue)).await? {
                Some(got) => Ok::<_, Error>(Some((got, channel))),
                None => {
                    channel.close().await?;
                    Ok(None)
                }
            }
        })
        .await?;
        let Some(((got, properties, body), channel)) = got else {
            return Ok(None);
        };
        let count = delivery_count(&properties, got.redelivered());
        let settler = Settler {
            tag: got.delivery_tag(),
            channel,
            broker: Arc::clone(self),
        };
        Ok(Some(Delivery::new(
            message_of(&properties, body),
            got.routing_key().clone(),
            name.to_owned(),
            count,
            Box::new(settler),
        )))
    }
}

/// A consumer on its channel. Dropped, it cancels the consumer, so the broker stops sending it
/// messages, while deliveries not yet settled keep the channel open.
struct Live {
    stream: UnboundedReceiver<ConsumerMessage>,
    tag: String,
    channel: Channel,
    queue: String,
}

impl Drop for Live {
    fn drop(&mut self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.channel.is_open() {
            return;
        }
        // The task holds a handle on the channel, so the channel's close (when its last handle
        // goes) follows the cancel: a cancel after the close would break the protocol, and the
        // broker would close the whole connection. No cancel-ok comes back (no_wait): amqprs
        // awaits nothing from the channel meanwhile.
        let channel = self.channel.clone();
        let mut cancel = BasicCancelArguments::new(&self.tag);
        cancel.no_wait = true;
        runtime.spawn(async move {
            if let Err(error) = channel.basic_cancel(cancel).await {
                debug!(
                    error = &error as &dyn std::error::Error,
                    "could not cancel a consumer"
                );
            }
        });
    }
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

async fn bind(channel: &Channel, queue: &str, binding: &Binding) -> Result<(), Error> {
    let exchange = match binding.exchange {
        Exchange::Events => EVENTS_EXCHANGE,
        Exchange::DeadLetters => DEAD_LETTER_EXCHANGE,
    };
    channel
        .queue_bind(QueueBindArguments::new(queue, exchange, &binding.pattern))
        .await?;
    Ok(())
}

impl Consumer {
    /// Binds now if consuming (a resumed consumer binds all its subscription's bindings).
    pub(crate) async fn bind(&mut self, binding: Binding) -> Result<(), Error> {
        if let Some(live) = &self.live {
            let (channel, queue, pattern) =
                (live.channel.clone(), live.queue.clone(), binding.clone());
            detached(async move { bind(&channel, &queue, &pattern).await }).await?;
        }
        self.subscription.bindings.push(binding);
        Ok(())
    }

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
                item = live.stream.recv() => item,
                () = self.broker.closed.cancelled() => return None,
            };
            // amqprs fills every field of a message it passes on.
            let Some(ConsumerMessage {
                deliver: Some(deliver),
                basic_properties: Some(properties),
                content: Some(body),
                ..
            }) = item
            else {
                if live.channel.is_open() {
                    warn!(queue = %live.queue, "the broker cancelled the consumer, resubscribing");
                } else {
                    warn!(queue = %live.queue, "consumer lost its channel, resubscribing");
                }
                self.live = None;
                continue;
            };
            let count = delivery_count(&properties, deliver.redelivered());
            let settler = Settler {
                tag: deliver.delivery_tag(),
                channel: live.channel.clone(),
                broker: Arc::clone(&self.broker),
            };
            let delivery = Delivery::new(
                message_of(&properties, body),
                deliver.routing_key().clone(),
                live.queue.clone(),
                count,
                Box::new(settler),
            );
            if delivery.message.expires_after == Some(std::time::Duration::ZERO) {
                // Its requester stopped waiting (and told whoever asked) while it sat in this
                // consumer's prefetch buffer; RabbitMQ would have dropped it in the queue.
                debug!(queue = %delivery.queue, "dropping an expired message");
                if let Err(error) = delivery.ack().await {
                    debug!(
                        error = &error as &dyn std::error::Error,
                        "could not ack an expired message"
                    );
                }
                continue;
            }
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
    tag: u64,
    channel: Channel,
    broker: Arc<Broker>,
}

impl fmt::Debug for Settler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("rabbit::Settler").finish_non_exhaustive()
    }
}

impl Settler {
    /// A delivery's channel that the broker closed cannot settle it (the broker requeued it):
    /// an ack or reject sent on it would break the protocol, and the broker would close the
    /// whole connection.
    fn open(&self) -> Result<(), Error> {
        if self.channel.is_open() {
            Ok(())
        } else {
            Err(broker_error(
                "the delivery's channel closed; the broker requeued it",
            ))
        }
    }

    async fn ack(self) -> Result<(), Error> {
        self.open()?;
        self.channel
            .basic_ack(BasicAckArguments::new(self.tag, false))
            .await?;
        Ok(())
    }

    /// Back to the queue, counted as a failed delivery: `basic.reject`, which every RabbitMQ
    /// counts in `x-delivery-count`. (`basic.nack` says "not processed" and, from RabbitMQ 4.3,
    /// is not counted, so a message that fails every time would loop forever.)
    async fn requeue(self) -> Result<(), Error> {
        self.open()?;
        self.channel
            .basic_reject(BasicRejectArguments::new(self.tag, true))
            .await?;
        Ok(())
    }

    /// Routes the dead letter by the name of the queue it came from.
    async fn dead_letter(self, dead: Message, origin_queue: String) -> Result<(), Error> {
        self.broker
            .send(
                Via::Publisher,
                DEAD_LETTER_EXCHANGE,
                &origin_queue,
                &dead,
                IfUnroutable::Refuse,
            )
            .await?;
        self.ack().await
    }
}

impl Settle for Settler {
    fn ack(self: Box<Self>) -> Settling<'static> {
        Box::pin((*self).ack())
    }

    fn requeue(self: Box<Self>) -> Settling<'static> {
        Box::pin((*self).requeue())
    }

    fn dead_letter(self: Box<Self>, dead: Message, origin_queue: String) -> Settling<'static> {
        Box::pin((*self).dead_letter(dead, origin_queue))
    }

    fn reply<'a>(&'a self, reply_to: &'a str, answer: Message) -> Settling<'a> {
        Box::pin(async move {
            self.broker
                .send(Via::Publisher, "", reply_to, &answer, IfUnroutable::Drop)
                .await
        })
    }

    /// Gives the message back now rather than when the channel closes.
    fn abandon(self: Box<Self>) {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = (*self).requeue().await {
                    debug!(
                        error = &error as &dyn std::error::Error,
                        "could not requeue an abandoned delivery"
                    );
                }
            });
        }
    }
}
