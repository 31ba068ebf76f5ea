//! Publishing: confirmed publishes to exchanges and queues, and requests answered through
//! RabbitMQ's direct reply-to.

use amqprs::channel::BasicPublishArguments;
use tracing::warn;

use super::codec::properties_of;
use super::confirm::Outcome;
use super::{Backoff, Broker, DIRECT_REPLY_TO, IfUnroutable, Via};
use crate::{Destination, Error, Message, PendingReply, Shape};
use disco_proto::route::EVENTS_EXCHANGE;

impl Broker {
    /// Publishes and waits for the confirm, through reconnects. A queue destination that does
    /// not exist yet is declared and the message sent again.
    pub(super) async fn send(
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
                Via::Publisher => self.publisher().await,
                Via::Requester => self.requester().await,
            };
            // Setting a channel up can fail like a publish can (the connection drops between
            // opening the channel and selecting confirms): tried again the same way. Only a
            // closed bus ends the attempts.
            let channel = match channel {
                Ok(channel) => channel,
                Err(Error::Closed) => return Err(Error::Closed),
                Err(error) => {
                    let why = "cannot set up a channel to publish on";
                    self.again(&mut backoff, routing_key, why, Some(&error))
                        .await?;
                    continue;
                }
            };
            let mut arguments = BasicPublishArguments::new(exchange, routing_key);
            arguments.mandatory = if_unroutable != IfUnroutable::Drop;
            let outcome = channel
                .publish(arguments, properties_of(message), message.body.to_vec())
                .await;
            match outcome {
                Ok(Outcome::Acked) => return Ok(()),
                Ok(Outcome::Returned)
                    if let IfUnroutable::DeclareQueue(shape) = if_unroutable
                        && !declared =>
                {
                    // A failed declare is tried again with the publish.
                    match self.declare(routing_key, shape).await {
                        Ok(()) => declared = true,
                        Err(error) => {
                            let why = "cannot declare the queue";
                            self.again(&mut backoff, routing_key, why, Some(&error))
                                .await?;
                        }
                    }
                }
                Ok(Outcome::Returned) => {
                    return Err(Error::Unroutable(routing_key.to_owned()));
                }
                Ok(Outcome::Nacked) => {
                    let why = "rabbitmq refused a message";
                    self.again(&mut backoff, routing_key, why, None).await?;
                }
                Err(error) => {
                    self.again(&mut backoff, routing_key, "publish failed", Some(&error))
                        .await?;
                }
            }
        }
    }

    /// Says why a publish is tried again, then waits the backoff's next delay (unless the bus
    /// closes first).
    async fn again(
        &self,
        backoff: &mut Backoff,
        routing_key: &str,
        why: &str,
        error: Option<&Error>,
    ) -> Result<(), Error> {
        let delay = backoff.next();
        warn!(
            error = error.map(|e| e as &dyn std::error::Error),
            routing_key,
            ?delay,
            "{why}, retrying"
        );
        self.pause(delay).await
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
                    IfUnroutable::DeclareQueue(Shape::Shared),
                )
                .await
            }
            Destination::Latest(queue) => {
                self.send(
                    Via::Publisher,
                    "",
                    queue,
                    &message,
                    IfUnroutable::DeclareQueue(Shape::Latest),
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
            Destination::Queue(queue) | Destination::Latest(queue) => {
                self.send(
                    Via::Requester,
                    "",
                    queue,
                    &message,
                    IfUnroutable::DeclareQueue(Shape::Shared),
                )
                .await?
            }
        }
        Ok(pending)
    }
}
