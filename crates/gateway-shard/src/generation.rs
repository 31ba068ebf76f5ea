//! Generations of shards: resharding without downtime.
//!
//! Every process says, every few seconds while all its shards are READY, which shards of which
//! total it runs ([`GenerationReady`]). A process whose total is smaller listens: once the
//! processes of one larger total cover all of that total's shards, its generation is replaced
//! and it retires. The shards of both generations publish meanwhile; consumers answer a message
//! or an interaction once whichever generation delivers it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus::{Destination, Message, Subscription};
use disco_proto::v1::GenerationReady;
use disco_proto::{Versioned, route};
use tracing::{info, warn};

use crate::{Error, ShardRange};

/// How often a READY process says so.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// A process not heard from for this long no longer counts towards its generation's coverage.
const FORGET_AFTER: Duration = Duration::from_secs(10);

/// What the processes of the larger totals said, and when.
#[derive(Debug, Default)]
pub(crate) struct Newer {
    /// Per total, per first shard: the end of the range and when it was last heard.
    seen: BTreeMap<u32, BTreeMap<u32, (u32, Instant)>>,
}

impl Newer {
    /// Notes one announcement; returns the total whose shards are now all READY, if one is.
    pub(crate) fn heard(&mut self, ready: &GenerationReady, now: Instant) -> Option<u32> {
        let ranges = self.seen.entry(ready.shard_total).or_default();
        ranges.insert(ready.shard_start, (ready.shard_end, now));
        ranges.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
        let mut covered = 0;
        for (&start, &(end, _)) in ranges.iter() {
            if start > covered {
                return None;
            }
            covered = covered.max(end);
        }
        (covered >= ready.shard_total).then_some(ready.shard_total)
    }
}

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
    let mut newer = Newer::default();
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
                if heard.shard_start >= heard.shard_end || heard.shard_end > heard.shard_total {
                    warn!(?heard, "ignoring an announcement of no shards");
                    continue;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(total: u32, start: u32, end: u32) -> GenerationReady {
        GenerationReady {
            schema_version: 1,
            shard_total: total,
            shard_start: start,
            shard_end: end,
        }
    }

    #[test]
    fn a_generation_is_ready_when_its_ranges_cover_every_shard() {
        let now = Instant::now();
        let mut newer = Newer::default();
        assert_eq!(newer.heard(&ready(8, 0, 2), now), None);
        assert_eq!(newer.heard(&ready(8, 4, 6), now), None, "2..4 is missing");
        assert_eq!(newer.heard(&ready(8, 2, 4), now), None, "6..8 is missing");
        assert_eq!(newer.heard(&ready(16, 0, 16), now), Some(16));
        assert_eq!(newer.heard(&ready(8, 6, 8), now), Some(8));
    }

    #[test]
    fn a_process_not_heard_from_lately_does_not_count() {
        let start = Instant::now();
        let mut newer = Newer::default();
        assert_eq!(newer.heard(&ready(4, 0, 2), start), None);
        let later = start + FORGET_AFTER;
        assert_eq!(newer.heard(&ready(4, 2, 4), later), None);
        assert_eq!(newer.heard(&ready(4, 0, 2), later), Some(4));
    }
}
