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

/// Held while the record in `disco.generation` is read and put back: taking it out is how it
/// is read, so a second process reading at the same moment would find the queue empty and
/// start a superseded generation (seen: two old processes restarted together, one identified).
const RECORD_LOCK: &str = "generation";

/// The total of the generation that replaced `own_total`'s, if one did (as recorded by
/// [`record`]); the record stays for the next process that asks.
pub(crate) async fn superseded(bus: &bus::Bus, own_total: u32) -> Result<Option<u32>, Error> {
    let _lock = bus.lock(RECORD_LOCK).await?;
    let Some(newest) = take_record(bus).await? else {
        return Ok(None);
    };
    put_record(bus, newest).await?;
    Ok((newest > own_total).then_some(newest))
}

/// Records that the generation of `total` shards replaced the ones before it (a larger total
/// recorded already stays).
pub(crate) async fn record(bus: &bus::Bus, total: u32) -> Result<(), Error> {
    let _lock = bus.lock(RECORD_LOCK).await?;
    let newest = take_record(bus).await?.unwrap_or(0).max(total);
    put_record(bus, newest).await
}

async fn take_record(bus: &bus::Bus) -> Result<Option<u32>, Error> {
    let records = crate::drain_latest::<GenerationReady>(bus, route::GENERATION_QUEUE).await?;
    Ok(records.iter().map(|r| r.shard_total).max())
}

async fn put_record(bus: &bus::Bus, total: u32) -> Result<(), Error> {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rabbitmqctl(args: &[&str]) {
        let status = std::process::Command::new("rabbitmqctl")
            .args(args)
            .output()
            .expect("rabbitmqctl runs (RabbitMQ is installed)")
            .status;
        assert!(status.success(), "rabbitmqctl {args:?}");
    }

    /// Old processes restarted together (Kubernetes restarts every pod of a StatefulSet) each
    /// read the record at the same moment: every one of them learns its generation is gone.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_reading_the_record_together_all_find_it() {
        let vhost = format!("disco-test-generation-{}", std::process::id());
        rabbitmqctl(&["add_vhost", &vhost]);
        rabbitmqctl(&["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"]);
        let url = format!("amqp://guest:guest@127.0.0.1:5672/{vhost}");
        let connect = |name: String| {
            let url = url.clone();
            async move {
                let config = bus::RabbitConfig::new(disco_proto::Secret::new(url), name).unwrap();
                bus::Bus::rabbitmq(config).await.unwrap()
            }
        };
        record(&connect("new".to_owned()).await, 8).await.unwrap();
        let mut old = Vec::new();
        for n in 0..8 {
            old.push(connect(format!("old-{n}")).await);
        }
        let read = old.iter().map(|bus| superseded(bus, 4));
        let found = futures_util::future::join_all(read).await;
        // Whatever the order, the record is still there for the next process to read, and an
        // older total recorded late does not replace it.
        record(&old[0], 4).await.unwrap();
        let again = superseded(&old[1], 4).await.unwrap();
        for bus in old {
            bus.close().await;
        }
        rabbitmqctl(&["delete_vhost", &vhost]);
        let found: Vec<Option<u32>> = found.into_iter().map(Result::unwrap).collect();
        assert_eq!(found, vec![Some(8); 8]);
        assert_eq!(again, Some(8));
    }
}
