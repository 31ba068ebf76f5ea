//! Locks across processes: the holder of lock `name` is the one exclusive consumer of
//! `disco.lock.<name>`; the broker releases it when the holder's channel or connection dies.

use std::time::Duration;

use lapin::Channel;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::{Backoff, Broker};
use crate::Error;

impl Broker {
    /// Holds the lock `name` across every process on this broker: the holder is the one
    /// exclusive consumer of the queue `disco.lock.<name>`. The broker releases it when the
    /// holder's channel closes, so a holder that dies gives it back by dying. Waits through
    /// broker failures: only a closed bus ends the wait with an error.
    pub(crate) async fn lock(&self, name: &str) -> Result<(lapin::Consumer, Channel), Error> {
        let queue = format!("disco.lock.{name}");
        let mut backoff = Backoff::new();
        loop {
            let channel = self.open_channel().await?;
            let durable = QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            };
            let declared = match channel
                .queue_declare(queue.as_str().into(), durable, FieldTable::default())
                .await
            {
                Ok(declared) => declared,
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
            if declared.consumer_count() > 0 {
                // Held: wait without provoking a refusal (which closes the channel, noisily).
                let _ = channel.close(200, "lock busy".into()).await;
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
                Ok(consumer) => return Ok((consumer, channel)),
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
