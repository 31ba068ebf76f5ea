//! Locks across processes: the holder of lock `name` is the one exclusive consumer of
//! `disco.lock.<name>`; the broker releases it when the holder's channel or connection dies.

use std::time::Duration;

use amqprs::channel::{BasicConsumeArguments, Channel, ConsumerMessage, QueueDeclareArguments};
use tokio::sync::mpsc::UnboundedReceiver;

use super::{Backoff, Broker, detached};
use crate::Error;

/// A held lock: its exclusive consumer, on a channel of its own. Dropping it closes the
/// channel, which releases the lock.
pub(crate) struct Held {
    stream: UnboundedReceiver<ConsumerMessage>,
    _channel: Channel,
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("rabbit::Held").finish_non_exhaustive()
    }
}

impl Held {
    /// Resolves when the lock is lost: the consumer's stream ends when its channel or
    /// connection goes. Nothing is ever published to a lock's queue.
    pub(crate) async fn lost(&mut self) {
        while self.stream.recv().await.is_some() {}
    }
}

impl Broker {
    /// Holds the lock `name` across every process on this broker: the holder is the one
    /// exclusive consumer of the queue `disco.lock.<name>`. The broker releases it when the
    /// holder's channel closes, so a holder that dies gives it back by dying. Waits through
    /// broker failures: only a closed bus ends the wait with an error.
    pub(crate) async fn lock(&self, name: &str) -> Result<Held, Error> {
        let queue = format!("disco.lock.{name}");
        let mut backoff = Backoff::new();
        loop {
            let channel = self.open_channel().await?;
            let (name, held) = (queue.clone(), channel.clone());
            let declared = detached(async move {
                let durable = QueueDeclareArguments::durable_client_named(&name);
                held.queue_declare(durable).await
            })
            .await;
            let consumers = match declared {
                Ok(declared) => declared.map_or(0, |(_, _, consumers)| consumers),
                Err(error) => {
                    let delay = backoff.next();
                    tracing::debug!(
                        error = &error as &dyn std::error::Error,
                        ?delay,
                        "cannot declare a lock's queue; retrying"
                    );
                    self.pause(delay).await?;
                    continue;
                }
            };
            if consumers > 0 {
                // Held: wait without provoking a refusal (which closes the channel, noisily).
                let _ = detached(channel.close()).await;
                self.pause(Duration::from_millis(100)).await?;
                continue;
            }
            let mut exclusive = BasicConsumeArguments::new(&queue, "");
            exclusive.exclusive = true;
            let held = channel.clone();
            match detached(async move { held.basic_consume_rx(exclusive).await }).await {
                Ok((_tag, stream)) => {
                    return Ok(Held {
                        stream,
                        _channel: channel,
                    });
                }
                // ACCESS_REFUSED: someone else holds it (the broker closed this channel); or
                // the connection failed: both are waited out.
                Err(_) => {
                    let delay = backoff.next().min(Duration::from_millis(250));
                    self.pause(delay).await?;
                }
            }
        }
    }
}
