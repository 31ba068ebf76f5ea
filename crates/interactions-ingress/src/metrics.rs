//! The ingress's metrics, `disco_interactions_ingress_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    /// `pong`, `answered`, `deferred`, `unauthorized`, `bad_request`, `too_large`,
    /// `unavailable`.
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) requests: Family<OutcomeLabel, Counter>,
    pub(crate) verify_seconds: Histogram,
    pub(crate) reply_seconds: Histogram,
    pub(crate) deadline_misses: Counter,
    pub(crate) late_edits: Family<OutcomeLabel, Counter>,
    pub(crate) in_flight: Gauge,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            verify_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 12)),
            reply_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            deadline_misses: Counter::default(),
            late_edits: Family::default(),
            in_flight: Gauge::default(),
        };
        // Every outcome from the start, so a dashboard shows 0 rather than nothing.
        for outcome in [
            "pong",
            "not_a_command",
            "answered",
            "deferred",
            "unauthorized",
            "replayed",
            "bad_request",
            "too_large",
            "unavailable",
        ] {
            let _ = metrics.requests.get_or_create(&OutcomeLabel { outcome });
        }
        for outcome in ["edited", "apologized", "failed"] {
            let _ = metrics.late_edits.get_or_create(&OutcomeLabel { outcome });
        }
        let r = registry.sub_registry_with_prefix("interactions_ingress");
        r.register("requests", "Requests, by outcome", metrics.requests.clone());
        r.register(
            "verify_seconds",
            "Time to verify a request's signature",
            metrics.verify_seconds.clone(),
        );
        r.register(
            "reply_seconds",
            "Time from publishing an interaction to the worker's answer",
            metrics.reply_seconds.clone(),
        );
        r.register(
            "deadline_misses",
            "Interactions answered deferred because the worker was slower than the deadline",
            metrics.deadline_misses.clone(),
        );
        r.register(
            "late_edits",
            "Edits of deferred responses, by outcome (edited: the late answer; apologized: none came; failed)",
            metrics.late_edits.clone(),
        );
        r.register(
            "in_flight",
            "Requests being handled",
            metrics.in_flight.clone(),
        );
        metrics
    }
}
