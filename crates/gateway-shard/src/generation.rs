//! Generations of shards: resharding without downtime.
//!
//! Every process says, every few seconds while all its shards are READY, which shards of which
//! total it runs ([`GenerationReady`]). A process whose total is smaller listens: once the
//! processes of one larger total cover all of that total's shards, its generation is replaced
//! and it retires. The shards of both generations publish meanwhile; consumers answer a message
//! or an interaction once whichever generation delivers it.

use std::time::Instant;

use bus::{Destination, Message, Subscription};
use disco_proto::generation::{ANNOUNCE_EVERY, Coverage};
use disco_proto::v1::GenerationReady;
use disco_proto::{Versioned, route};
use tracing::{info, warn};

use crate::{Error, ShardRange};

/// The total of the generation that replaced `own_total`'s, if one did (as recorded by
/// [`record`]); the record stays for the next process that asks.
pub(crate) async fn superseded(bus: &bus::Bus, own_total: u32) -> Result<Option<u32>, Error> {
    let records = crate::drain_latest::<GenerationReady>(bus, route::GENERATION_QUEUE).await?;
    let Some(newest) = records.iter().map(|r| r.shard_total).max() else {
        return Ok(None);
    };
    record(bus, newest).await?;
    Ok((newest > own_total).then_some(newest))
}

/// Records that the generation of `total` shards replaced the ones before it.
pub(crate) async fn record(bus: &bus::Bus, total: u32) -> Result<(), Error> {
    let record = GenerationReady {
        schema_version: 0,
        shard_total: total,
        shard_start: 0,
        shard_end: total,
    };
    bus.publish(
        Destination::Latest(route::GENERATION_QUEUE.to_owned()),
        Message::new(record.encode_current()),
    )
    .await?;
    Ok(())
}

/// Announces this process while `ready()`, and returns once a generation with a larger total
/// than `own` is READY in full: the caller retires this one. Runs until then.
pub(crate) async fn watch(
    bus: bus::Bus,
    own: ShardRange,
    ready: impl Fn() -> bool,
) -> Result<u32, Error> {
    let mut announcements = bus
        .subscribe(Subscription::private().bind(route::every_shard(route::GENERATION_READY)))
        .await?;
    let ids = own.ids();
    let mine = GenerationReady {
        schema_version: 0,
        shard_total: own.total(),
        shard_start: ids.start,
        shard_end: ids.end,
    };
    let key = route::event_key(route::GENERATION_READY, ids.start);
    let mut announce = tokio::time::interval(ANNOUNCE_EVERY);
    announce.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut newer = Coverage::default();
    loop {
        tokio::select! {
            _ = announce.tick() => {
                if !ready() {
                    continue;
                }
                let message = Message::new(mine.encode_current());
                if let Err(error) = bus.publish(Destination::Event(key.clone()), message).await {
                    // The next tick says it again; a generation waits a little longer to retire.
                    warn!(error = &error as &dyn std::error::Error, "cannot announce this generation");
                }
            }
            delivery = announcements.next() => {
                let Some(delivery) = delivery else {
                    return Err(Error::Bus(bus::Error::Closed));
                };
                let heard = match disco_proto::decode::<GenerationReady>(&delivery.message.body) {
                    Ok(heard) => heard,
                    Err(error) => {
                        delivery.dead_letter(&format!("not a GenerationReady: {error}")).await?;
                        continue;
                    }
                };
                delivery.ack().await?;
                if heard.shard_total <= own.total() {
                    continue;
                }
                if let Some(total) = newer.heard(&heard, Instant::now()) {
                    info!(
                        total = own.total(),
                        new_total = total,
                        "every shard of the new generation is READY: this generation retires"
                    );
                    return Ok(total);
                }
            }
        }
    }
}
