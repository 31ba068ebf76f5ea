//! The voice node's metrics, `disco_voice_node_*`. Commands and outcomes are closed sets and
//! close codes are Discord's few, so every label set is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabel {
    pub(crate) command: &'static str,
    /// `ok`, `not_in_voice`, `not_connected`, `nothing_playing`, `bad_source`, `failed`.
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TrackLabel {
    /// `playing` or `queued`.
    pub(crate) state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DisconnectLabel {
    /// The voice gateway's close code, or what ended the connection without one (`timeout`,
    /// `io`, `protocol`, ...).
    pub(crate) code: String,
}

#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) calls: Gauge,
    pub(crate) tracks: Family<TrackLabel, Gauge>,
    pub(crate) commands: Family<CommandLabel, Counter>,
    pub(crate) speech_seconds: Histogram,
    pub(crate) join_seconds: Histogram,
    pub(crate) disconnects: Family<DisconnectLabel, Counter>,
    pub(crate) shards_owned: Gauge,
    pub(crate) shard_locks_lost: Counter,
    pub(crate) events: Counter,
    pub(crate) gateway_shard_total: Gauge,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            calls: Gauge::default(),
            tracks: Family::default(),
            commands: Family::default(),
            speech_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            join_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
            disconnects: Family::default(),
            shards_owned: Gauge::default(),
            shard_locks_lost: Counter::default(),
            events: Counter::default(),
            gateway_shard_total: Gauge::default(),
        };
        // Both states, and the usual causes of a lost connection, from the start, so a
        // dashboard shows 0 rather than nothing.
        for state in ["playing", "queued"] {
            let _ = metrics.tracks.get_or_create(&TrackLabel { state });
        }
        for code in ["4006", "4014", "4015", "timeout", "io"] {
            let code = code.to_owned();
            let _ = metrics.disconnects.get_or_create(&DisconnectLabel { code });
        }
        let r = registry.sub_registry_with_prefix("voice_node");
        r.register("calls", "Voice calls connected now", metrics.calls.clone());
        r.register(
            "tracks",
            "Queued tracks, by state (the one playing, the ones waiting)",
            metrics.tracks.clone(),
        );
        r.register(
            "commands",
            "Voice commands handled, by command and outcome",
            metrics.commands.clone(),
        );
        r.register(
            "speech_synthesis_seconds",
            "Time espeak-ng took to synthesise a text",
            metrics.speech_seconds.clone(),
        );
        r.register(
            "join_seconds",
            "From asking the gateway to join to a connected voice call",
            metrics.join_seconds.clone(),
        );
        r.register(
            "disconnects",
            "Voice connections lost, by the voice gateway's close code or cause",
            metrics.disconnects.clone(),
        );
        r.register(
            "shards_owned",
            "Shards whose guilds this node holds the calls of",
            metrics.shards_owned.clone(),
        );
        r.register(
            "shard_locks_lost",
            "Times a shard's lock was lost with the broker connection (the node stops serving the shard until it holds the lock again)",
            metrics.shard_locks_lost.clone(),
        );
        r.register(
            "events",
            "Gateway events applied (voice states, voice servers, guilds)",
            metrics.events.clone(),
        );
        r.register(
            "gateway_shard_total",
            "The gateway's shard total this node sends op 4 and binds voice events by (larger than its own after a reshard)",
            metrics.gateway_shard_total.clone(),
        );
        metrics
    }
}
