//! `disco_rest_proxy_*`. Routes are templates (`POST /channels/{id}/messages`): never an id
//! or a token, so every label set is bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabel {
    pub(crate) route: String,
    pub(crate) status: u16,
    /// `discord`: Discord answered; `proxy`: the proxy answered instead.
    pub(crate) origin: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct LimitedLabel {
    pub(crate) route: String,
    /// `X-RateLimit-Scope`: `user`, `global`, `shared`; `none` without one (Cloudflare).
    pub(crate) scope: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RefusedLabel {
    pub(crate) route: String,
    /// `deadline`, `busy`, `unauthorized`, `forbidden`, `breaker`, `unreachable`.
    pub(crate) reason: &'static str,
}

#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    pub(crate) requests: Family<RequestLabel, Counter>,
    pub(crate) rate_limited: Family<LimitedLabel, Counter>,
    pub(crate) refused: Family<RefusedLabel, Counter>,
    pub(crate) invalid: Gauge,
    pub(crate) breaker_open: Gauge,
    pub(crate) token_rejected: Gauge,
    pub(crate) buckets: Gauge,
    pub(crate) wait: Histogram,
    pub(crate) discord: Histogram,
}

impl Metrics {
    pub(crate) fn register(registry: &mut Registry, budget: u32, global_limit: u32) -> Self {
        let metrics = Self {
            requests: Family::default(),
            rate_limited: Family::default(),
            refused: Family::default(),
            invalid: Gauge::default(),
            breaker_open: Gauge::default(),
            token_rejected: Gauge::default(),
            buckets: Gauge::default(),
            wait: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            discord: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
        };
        let r = registry.sub_registry_with_prefix("rest_proxy");
        r.register(
            "requests",
            "Requests answered, by route template, status and who answered (discord, proxy)",
            metrics.requests.clone(),
        );
        r.register(
            "rate_limited",
            "429s from Discord, by route template and X-RateLimit-Scope",
            metrics.rate_limited.clone(),
        );
        r.register(
            "refused",
            "Requests the proxy answered itself, by route template and reason",
            metrics.refused.clone(),
        );
        r.register(
            "invalid_requests",
            "Invalid requests (401, 403, 429 not shared) in Cloudflare's 10-minute window",
            metrics.invalid.clone(),
        );
        let threshold = Gauge::<i64>::default();
        threshold.set(i64::from(budget));
        r.register(
            "invalid_request_budget",
            "Invalid requests in the window above which failing routes are refused",
            threshold,
        );
        let global = Gauge::<i64>::default();
        global.set(i64::from(global_limit));
        r.register(
            "global_limit",
            "Requests per second this replica sends outside interaction routes",
            global,
        );
        r.register(
            "breaker_open",
            "1 while the invalid-request budget is spent and failing routes are refused",
            metrics.breaker_open.clone(),
        );
        r.register(
            "token_rejected",
            "1 once Discord answered 401 for the bot token: nothing is sent with it",
            metrics.token_rejected.clone(),
        );
        r.register(
            "buckets",
            "Rate-limit buckets held",
            metrics.buckets.clone(),
        );
        r.register(
            "wait_seconds",
            "How long requests waited for their turn in Discord's limits",
            metrics.wait.clone(),
        );
        r.register(
            "discord_seconds",
            "How long Discord took to answer",
            metrics.discord.clone(),
        );
        metrics
    }
}
