//! Identify coordination across processes: twilight asks this queue before every IDENTIFY.
//!
//! Discord allows one IDENTIFY per `max_concurrency` bucket (shard id modulo `max_concurrency`)
//! every 5 seconds, across every process of the bot. A shard takes the bus lock of its bucket
//! (on RabbitMQ, the exclusive consumer of `disco.lock.identify.<bucket>`), identifies, and keeps
//! the lock 5 seconds more. A process that dies holding it gives it back by dying.

use std::time::Duration;

use tokio::sync::oneshot;
use tracing::warn;
use twilight_gateway::queue::Queue;

/// The wait Discord requires between two IDENTIFYs of a bucket, plus a margin for the time
/// between the go-ahead and the IDENTIFY frame reaching Discord.
const HOLD: Duration = Duration::from_millis(5_250);

/// A twilight identify queue backed by the bus's lock.
#[derive(Clone, Debug)]
pub(crate) struct BusQueue {
    bus: bus::Bus,
    max_concurrency: u32,
}

impl BusQueue {
    pub(crate) fn new(bus: bus::Bus, max_concurrency: u32) -> Self {
        Self {
            bus,
            max_concurrency: max_concurrency.max(1),
        }
    }
}

impl Queue for BusQueue {
    fn enqueue(&self, shard: u32) -> oneshot::Receiver<()> {
        let (go, wait) = oneshot::channel();
        let bus = self.bus.clone();
        let bucket = shard % self.max_concurrency;
        tokio::spawn(async move {
            // An error here drops `go`, which makes twilight ask again.
            let lock = match bus.lock(&format!("identify.{bucket}")).await {
                Ok(lock) => lock,
                Err(error) => {
                    warn!(
                        error = &error as &dyn std::error::Error,
                        shard, bucket, "cannot take the identify lock"
                    );
                    return;
                }
            };
            if go.send(()).is_ok() {
                tokio::time::sleep(HOLD).await;
            }
            drop(lock);
        });
        wait
    }
}
