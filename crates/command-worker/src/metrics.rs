//! The worker's metrics, `disco_command_worker_*`. Command names come from the registry (plus
//! `unknown`), routes from the few the worker calls, so every label set is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CommandLabel {
    pub(crate) command: String,
    /// `answered`, `usage`, `unknown`, `failed`.
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DurationLabel {
    pub(crate) command: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RestLabel {
    pub(crate) route: &'static str,
    pub(crate) status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ReasonLabel {
    /// `malformed`, `unparseable`, `discord`.
    pub(crate) reason: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) commands: Family<CommandLabel, Counter>,
    pub(crate) duration: Family<DurationLabel, Histogram, fn() -> Histogram>,
    pub(crate) rest: Family<RestLabel, Counter>,
    pub(crate) retries: Counter,
    pub(crate) dead_letters: Family<ReasonLabel, Counter>,
    pub(crate) events: Counter,
    pub(crate) duplicates: Counter,
    pub(crate) parked: Counter,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            commands: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            rest: Family::default(),
            retries: Counter::default(),
            dead_letters: Family::default(),
            events: Counter::default(),
            duplicates: Counter::default(),
            parked: Counter::default(),
        };
        // Every reason from the start, so a dashboard shows 0 rather than nothing.
        for reason in [
            "malformed",
            "unparseable",
            "unexpected",
            "bus",
            "discord",
            "park",
        ] {
            let _ = metrics.dead_letters.get_or_create(&ReasonLabel { reason });
        }
        let r = registry.sub_registry_with_prefix("command_worker");
        r.register(
            "commands",
            "Commands handled, by command and outcome",
            metrics.commands.clone(),
        );
        r.register(
            "command_duration_seconds",
            "From the event's receipt by the gateway to the reply sent",
            metrics.duration.clone(),
        );
        r.register(
            "discord_requests",
            "Discord REST calls, by route and status (429: rate limited)",
            metrics.rest.clone(),
        );
        r.register(
            "discord_retries",
            "Discord REST calls retried after a 5xx or a timeout",
            metrics.retries.clone(),
        );
        r.register(
            "dead_letters",
            "Events dead-lettered, by reason",
            metrics.dead_letters.clone(),
        );
        r.register("events", "Events consumed", metrics.events.clone());
        r.register(
            "duplicates",
            "Commands dropped as a copy of one this worker took lately (both generations of shards deliver while the bot reshards)",
            metrics.duplicates.clone(),
        );
        r.register(
            "parked",
            "Replies parked (the worker's capacity given up) until their channel's turn in Discord's rate limits",
            metrics.parked.clone(),
        );
        metrics
    }
}
