//! The gateway's metrics, `disco_gateway_shard_*`. Labels are bounded: event names come from the
//! configured set, shards from the owned range, close codes from Discord's list.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct EventLabel {
    pub(crate) event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ShardLabel {
    pub(crate) shard: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CloseLabel {
    pub(crate) code: u16,
}

/// Everything the gateway measures.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) published: Family<EventLabel, Counter>,
    pub(crate) unrouted: Family<EventLabel, Counter>,
    pub(crate) own_messages: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) deferred: Counter,
    pub(crate) confirm_seconds: Histogram,
    pub(crate) publish_failures: Counter,
    pub(crate) buffered: Gauge,
    pub(crate) shard_state: Family<ShardLabel, Gauge>,
    pub(crate) shard_count: Gauge,
    pub(crate) replaced_by: Gauge,
    pub(crate) session_start_remaining: Gauge,
    pub(crate) identify_floor: Gauge,
    pub(crate) heartbeat_seconds: Family<ShardLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) checkpoint_seconds: Family<ShardLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub(crate) identifies: Family<ShardLabel, Counter>,
    pub(crate) resumes: Family<ShardLabel, Counter>,
    pub(crate) closes: Family<CloseLabel, Counter>,
    pub(crate) commands: Counter,
    pub(crate) bad_commands: Counter,
}

/// Shard states as the `shard_state` gauge reports them.
pub(crate) const STATE_DISCONNECTED: i64 = 0;
pub(crate) const STATE_CONNECTING: i64 = 1;
pub(crate) const STATE_READY: i64 = 2;

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            published: Family::default(),
            unrouted: Family::default(),
            own_messages: Counter::default(),
            duplicates: Counter::default(),
            deferred: Counter::default(),
            confirm_seconds: Histogram::new(exponential_buckets(0.000_25, 2.0, 14)),
            publish_failures: Counter::default(),
            buffered: Gauge::default(),
            shard_state: Family::default(),
            shard_count: Gauge::default(),
            replaced_by: Gauge::default(),
            session_start_remaining: Gauge::default(),
            identify_floor: Gauge::default(),
            heartbeat_seconds: Family::default(),
            checkpoint_seconds: Family::default(),
            identifies: Family::default(),
            resumes: Family::default(),
            closes: Family::default(),
            commands: Counter::default(),
            bad_commands: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("gateway_shard");
        r.register(
            "events_published",
            "Dispatches published to the bus, by event",
            metrics.published.clone(),
        );
        r.register(
            "events_unrouted",
            "Dispatches no consumer binds, by event (not kept)",
            metrics.unrouted.clone(),
        );
        r.register(
            "own_messages",
            "The bot's own messages, read and not published (every consumer would ignore them)",
            metrics.own_messages.clone(),
        );
        r.register(
            "events_duplicate",
            "Replayed dispatches already published in this session (skipped)",
            metrics.duplicates.clone(),
        );
        r.register(
            "events_deferred",
            "Dispatches left for Discord to replay because the publish buffer was full",
            metrics.deferred.clone(),
        );
        r.register(
            "publish_confirm_seconds",
            "Time from publish to the broker's confirm",
            metrics.confirm_seconds.clone(),
        );
        r.register(
            "publish_failures",
            "Publishes that failed for good",
            metrics.publish_failures.clone(),
        );
        r.register(
            "publish_buffer",
            "Publishes waiting for their confirm",
            metrics.buffered.clone(),
        );
        r.register(
            "shard_state",
            "0 disconnected, 1 connecting, 2 ready",
            metrics.shard_state.clone(),
        );
        r.register(
            "shard_count",
            "Shards across every gateway process (DISCO_SHARD_TOTAL): the number that should be READY",
            metrics.shard_count.clone(),
        );
        r.register(
            "replaced_by",
            "The shard total of the generation that replaced this process's (it is retiring); 0 while it is the newest",
            metrics.replaced_by.clone(),
        );
        r.register(
            "session_start_remaining",
            "Identifies left in the bot's daily session budget (Discord's session_start_limit.remaining), as last read",
            metrics.session_start_remaining.clone(),
        );
        r.register(
            "identify_floor",
            "Identifies of the daily budget this process never spends (DISCO_IDENTIFY_FLOOR)",
            metrics.identify_floor.clone(),
        );
        r.register(
            "heartbeat_latency_seconds",
            "The shard's latest heartbeat round trip",
            metrics.heartbeat_seconds.clone(),
        );
        r.register(
            "checkpoint_timestamp_seconds",
            "When the shard last checkpointed its session (Unix seconds): its age is how much a crash would replay",
            metrics.checkpoint_seconds.clone(),
        );
        r.register(
            "identifies",
            "Sessions started with IDENTIFY",
            metrics.identifies.clone(),
        );
        r.register("resumes", "Sessions resumed", metrics.resumes.clone());
        r.register(
            "closes",
            "Gateway connections closed, by close code",
            metrics.closes.clone(),
        );
        r.register(
            "commands",
            "Gateway commands sent for other services",
            metrics.commands.clone(),
        );
        r.register(
            "bad_commands",
            "Shard commands refused (dead-lettered)",
            metrics.bad_commands.clone(),
        );
        metrics
    }
}
