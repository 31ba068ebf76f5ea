//! The gateway's shard total, followed while the bot reshards.
//!
//! A voice node owns the calls of a range of shards of its *partition*: the shard total it was
//! started with. After a reshard the gateway runs a larger total, a multiple of the partition
//! (Discord's rule for large bots, and ours). Guild `g` is on gateway shard `g % T'` and on
//! partition shard `g % T`; since `T` divides `T'`, partition shard `s` holds exactly the guilds
//! of gateway shards `s + jT`. So the owner of a call never changes (no call is dropped), and
//! what follows the gateway's total is only where the node's op 4 goes and which shards' voice
//! events it binds. The node follows a total once every shard of it is READY
//! ([`Coverage`]): the moment the old generation retires.

use std::sync::Arc;
use std::time::Instant;

use bus::Subscription;
use disco_proto::generation::Coverage;
use disco_proto::route;
use disco_proto::v1::GenerationReady;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::metrics::Metrics;

/// The shard total the gateway runs by, as far as this node knows.
#[derive(Debug)]
pub(crate) struct GatewayTotal {
    partition: u32,
    total: watch::Sender<u32>,
}

impl GatewayTotal {
    /// Starts at the partition: the gateway runs the node's own total until it says otherwise.
    pub(crate) fn new(partition: u32) -> Self {
        let partition = partition.max(1);
        Self {
            partition,
            total: watch::Sender::new(partition),
        }
    }

    pub(crate) fn get(&self) -> u32 {
        *self.total.borrow()
    }

    /// Changes of the total.
    pub(crate) fn watch(&self) -> watch::Receiver<u32> {
        self.total.subscribe()
    }

    /// The gateway shards, of `total`, whose guilds are on partition shard `shard`.
    pub(crate) fn gateway_shards(&self, shard: u32, total: u32) -> impl Iterator<Item = u32> {
        (0..total / self.partition).map(move |j| shard + j * self.partition)
    }

    /// Follows `total` if it is larger and a multiple of the partition; true if it changed.
    fn follow(&self, total: u32) -> bool {
        if total <= self.get() {
            return false;
        }
        if !total.is_multiple_of(self.partition) {
            tracing::warn!(
                partition = self.partition,
                total,
                "the gateway runs a total that is not a multiple of this node's: \
                 roll the voice nodes to the new DISCO_SHARD_TOTAL"
            );
            return false;
        }
        self.total.send_replace(total);
        true
    }
}

/// Listens to the gateway processes' announcements until `shutdown`, following a larger total
/// once all of its shards are READY.
pub(crate) async fn follow(
    bus: bus::Bus,
    gateway: Arc<GatewayTotal>,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    metrics.gateway_shard_total.set(i64::from(gateway.get()));
    let mut announcements = bus
        .subscribe(Subscription::private().bind(route::every_shard(route::GENERATION_READY)))
        .await?;
    let mut coverage = Coverage::default();
    loop {
        let Some(delivery) = shutdown.run_until_cancelled(announcements.next()).await else {
            return Ok(());
        };
        let Some(delivery) = delivery else {
            return Err(Error::Bus(bus::Error::Closed));
        };
        let decoded = disco_proto::decode::<GenerationReady>(&delivery.message.body);
        // An announcement is said again in 2 s: one not settled is no loss.
        let settled = match &decoded {
            Ok(_) => delivery.ack().await,
            Err(error) => {
                delivery
                    .dead_letter(&format!("not a GenerationReady: {error}"))
                    .await
            }
        };
        if let Err(error) = settled {
            tracing::debug!(
                error = &error as &dyn std::error::Error,
                "cannot settle an announcement"
            );
        }
        if let Ok(heard) = decoded
            && let Some(total) = coverage.heard(&heard, Instant::now())
            && gateway.follow(total)
        {
            metrics.gateway_shard_total.set(i64::from(total));
            tracing::info!(
                total,
                "every shard of a larger gateway generation is READY: op 4 and voice events follow it"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_shard_holds_the_gateway_shards_congruent_to_it() {
        let gateway = GatewayTotal::new(4);
        assert_eq!(gateway.gateway_shards(1, 4).collect::<Vec<_>>(), [1]);
        assert_eq!(
            gateway.gateway_shards(1, 16).collect::<Vec<_>>(),
            [1, 5, 9, 13]
        );
        // Every guild's gateway shard is one of its partition shard's.
        for guild in (0..64_u64).map(|n| (n * 7_919 + 3) << 22) {
            let shard = route::shard_for_guild(guild, 4);
            let gateway_shard = route::shard_for_guild(guild, 16);
            assert!(
                gateway
                    .gateway_shards(shard, 16)
                    .any(|s| s == gateway_shard)
            );
        }
    }

    #[test]
    fn only_a_larger_multiple_is_followed() {
        let gateway = GatewayTotal::new(4);
        assert!(!gateway.follow(2));
        assert!(!gateway.follow(6));
        assert!(gateway.follow(8));
        assert!(!gateway.follow(4), "never back to a smaller total");
        assert_eq!(gateway.get(), 8);
    }
}
