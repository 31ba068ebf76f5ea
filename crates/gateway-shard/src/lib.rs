#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`Config`], [`ShardRange`]: which shards, which intents, which events to publish.
//! - [`GatewayShard`]: [`GatewayShard::new`] registers metrics, [`GatewayShard::run`] runs the
//!   shards until shutdown, then saves their sessions.
//! - `shard`: one shard's loop: read, publish with confirms (bounded, so a slow broker slows the
//!   reading instead of growing memory), send commands, save the session on the way out.
//! - `queue`: identify coordination across processes through the bus lock.
//! - `generation`: resharding: a process retires once a generation with a larger total is READY.
//! - `frame`: reading a dispatch without re-serialising it.
//! - `metrics`: `disco_gateway_shard_*`.

mod frame;
mod generation;
mod metrics;
mod queue;
mod shard;

use std::collections::BTreeSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use disco_proto::v1::SavedSession;
use disco_proto::{Secret, route};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use twilight_gateway::{ConfigBuilder, Intents, Session, Shard, ShardId};

pub use disco_proto::InvalidConfig;

/// The role's name: the same for the crate, the CLI, the metric label and the Kubernetes object.
pub const ROLE: &str = "gateway-shard";

/// The dispatches published by default: what the command worker and the voice node bind.
pub const DEFAULT_EVENTS: [&str; 5] = [
    "MESSAGE_CREATE",
    "INTERACTION_CREATE",
    "VOICE_STATE_UPDATE",
    "VOICE_SERVER_UPDATE",
    "GUILD_CREATE",
];

/// The intents asked for by default, by name: guilds, guild messages and their content, voice
/// states.
pub const DEFAULT_INTENTS: [&str; 4] = [
    "GUILDS",
    "GUILD_MESSAGES",
    "MESSAGE_CONTENT",
    "GUILD_VOICE_STATES",
];

/// The intents [`DEFAULT_INTENTS`] names.
pub fn default_intents() -> Intents {
    Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::MESSAGE_CONTENT
        | Intents::GUILD_VOICE_STATES
}

/// A range of shards out of a total.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ShardRange {
    start: u32,
    end: u32,
    total: u32,
}

impl ShardRange {
    /// Shards `start..end` of `total`.
    pub fn new(start: u32, end: u32, total: u32) -> Result<Self, String> {
        if total == 0 {
            return Err("the shard total must be positive".to_owned());
        }
        if start >= end || end > total {
            return Err(format!(
                "shards {start}..{end} are not a non-empty range within 0..{total}"
            ));
        }
        Ok(Self { start, end, total })
    }

    /// Bucket `bucket` of `buckets` consecutive, near-equal ranges (pod `n` of a StatefulSet of
    /// `buckets` pods).
    pub fn bucket(bucket: u32, buckets: u32, total: u32) -> Result<Self, String> {
        if buckets == 0 || bucket >= buckets {
            return Err(format!("bucket {bucket} is not one of 0..{buckets}"));
        }
        if buckets > total {
            return Err(format!("{buckets} buckets cannot split {total} shards"));
        }
        let start = u32::try_from(u64::from(total) * u64::from(bucket) / u64::from(buckets))
            .map_err(|_| "shard numbers overflow".to_owned())?;
        let end = u32::try_from(u64::from(total) * (u64::from(bucket) + 1) / u64::from(buckets))
            .map_err(|_| "shard numbers overflow".to_owned())?;
        Self::new(start, end, total)
    }

    /// Parses `A..B` (B excluded) or `A..=B`.
    pub fn parse(text: &str, total: u32) -> Result<Self, String> {
        let number = |n: &str| {
            n.trim()
                .parse::<u32>()
                .map_err(|_| format!("{n:?} is not a shard number"))
        };
        if let Some((a, b)) = text.split_once("..=") {
            return Self::new(number(a)?, number(b)?.saturating_add(1), total);
        }
        if let Some((a, b)) = text.split_once("..") {
            return Self::new(number(a)?, number(b)?, total);
        }
        Err(format!("{text:?} is not a range like 0..4"))
    }

    /// The shard ids.
    pub fn ids(&self) -> Range<u32> {
        self.start..self.end
    }

    /// The shard total.
    pub fn total(&self) -> u32 {
        self.total
    }
}

/// Parses intents from names, as Discord's documentation writes them (`GUILD_MESSAGES`), comma
/// separated.
pub fn parse_intents(text: &str) -> Result<Intents, String> {
    let mut intents = Intents::empty();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let flag = Intents::from_name(&name.to_ascii_uppercase()).ok_or_else(|| {
            format!("{name:?} is not an intent (GUILDS, GUILD_MESSAGES, MESSAGE_CONTENT, ...)")
        })?;
        intents |= flag;
    }
    if intents.is_empty() {
        return Err("no intents".to_owned());
    }
    Ok(intents)
}

/// Parses event names (`MESSAGE_CREATE,VOICE_STATE_UPDATE`).
pub fn parse_events(text: &str) -> Result<BTreeSet<String>, String> {
    let mut events = BTreeSet::new();
    for name in text.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !name.bytes().all(|b| b.is_ascii_uppercase() || b == b'_') {
            return Err(format!("{name:?} is not an event name like MESSAGE_CREATE"));
        }
        events.insert(name.to_owned());
    }
    if events.is_empty() {
        return Err("no events".to_owned());
    }
    Ok(events)
}

/// What the gateway needs to run.
#[derive(Clone, Debug)]
pub struct Config {
    /// The bot token.
    pub token: Secret,
    /// The gateway URL; when `None`, the one `GET /gateway/bot` names.
    pub gateway_url: Option<String>,
    /// The shards this process runs.
    pub shards: ShardRange,
    /// The intents to identify with.
    pub intents: Intents,
    /// The dispatches to publish; others are read and dropped (no consumer binds them).
    pub events: BTreeSet<String>,
    /// How many publishes a shard may have waiting for their confirm before it stops reading.
    pub publish_buffer: usize,
    /// How many bytes those publishes may hold, per shard, before it stops reading.
    pub publish_buffer_bytes: usize,
    /// Identifies of the daily session budget never spent, by any process of the bot: the
    /// reserve for a real emergency (running out ends every session and resets the token).
    pub identify_floor: u32,
}

impl Config {
    /// Publishes a shard may have waiting for their confirm, unless set.
    pub const DEFAULT_PUBLISH_BUFFER: usize = 1024;
    /// Bytes a shard's waiting publishes may hold, unless set.
    pub const DEFAULT_PUBLISH_BUFFER_BYTES: usize = 8 * 1024 * 1024;
    /// Identifies of the daily budget kept in reserve, unless set (of Discord's 1,000).
    pub const DEFAULT_IDENTIFY_FLOOR: u32 = 100;

    /// Shards `shards` of the bot with `token`; every other field at its default (the gateway
    /// URL Discord names, the default intents and events).
    pub fn new(token: Secret, shards: ShardRange) -> Self {
        Self {
            token,
            gateway_url: None,
            shards,
            intents: default_intents(),
            events: DEFAULT_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            publish_buffer: Self::DEFAULT_PUBLISH_BUFFER,
            publish_buffer_bytes: Self::DEFAULT_PUBLISH_BUFFER_BYTES,
            identify_floor: Self::DEFAULT_IDENTIFY_FLOOR,
        }
    }

    /// Refuses a value the gateway cannot run with, naming the field.
    ///
    /// # Errors
    /// The first field found wrong.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.events.is_empty() {
            return Err(InvalidConfig::new(
                "events",
                "expected at least one event to publish",
            ));
        }
        if self.publish_buffer == 0 {
            return Err(InvalidConfig::new("publish_buffer", "expected at least 1"));
        }
        if self.publish_buffer_bytes < 64 * 1024 {
            return Err(InvalidConfig::new(
                "publish_buffer_bytes",
                "expected at least 65536",
            ));
        }
        Ok(())
    }
}

/// Why the gateway stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `GET /gateway/bot` or `GET /users/@me` failed.
    #[error("cannot get the gateway's details or the bot's own user from Discord")]
    GatewayInfo(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Not enough identifies left today for the shards that cannot resume.
    #[error(
        "the daily session budget has {remaining} identifies left, {needed} shards need one and \
         {floor} are kept in reserve (it resets in {reset_after_ms} ms); refusing to start"
    )]
    SessionBudget {
        /// Identifies left.
        remaining: u64,
        /// Shards without a session to resume.
        needed: u64,
        /// Identifies never spent (`DISCO_IDENTIFY_FLOOR`).
        floor: u64,
        /// When the budget resets.
        reset_after_ms: u64,
    },
    /// Discord closed a shard for good (bad token, invalid shard, disallowed intents).
    #[error("shard {shard} was closed for good by Discord (close code {code:?})")]
    FatallyClosed {
        /// The shard.
        shard: u32,
        /// The close code, when known.
        code: Option<u16>,
    },
    /// A shard's task panicked (a bug): the process stops rather than run on without it.
    #[error("a shard task panicked: {0}")]
    Panicked(String),
    /// The bus failed.
    #[error("the bus failed")]
    Bus(#[from] bus::Error),
}

/// The gateway role: a range of shards publishing to the bus.
#[derive(Debug)]
pub struct GatewayShard {
    config: Config,
    rest: Arc<twilight_http::Client>,
    bus: bus::Bus,
    metrics: metrics::Metrics,
    ready: Arc<[AtomicBool]>,
}

impl GatewayShard {
    /// Prepares the role, asking Discord through `rest` (the process's one REST client), and
    /// registers its metrics.
    pub fn new(
        config: Config,
        rest: Arc<twilight_http::Client>,
        bus: bus::Bus,
        registry: &mut Registry,
    ) -> Self {
        let metrics = metrics::Metrics::register(registry);
        metrics.shard_count.set(config.shards.total().into());
        metrics.identify_floor.set(config.identify_floor.into());
        // Every owned shard from the start, so a dashboard shows 0 rather than nothing.
        for shard in config.shards.ids() {
            let label = metrics::ShardLabel { shard };
            let _ = metrics.identifies.get_or_create(&label);
            let _ = metrics.resumes.get_or_create(&label);
            let _ = metrics.shard_state.get_or_create(&label);
            let _ = metrics.checkpoint_seconds.get_or_create(&label);
        }
        for event in &config.events {
            let label = metrics::EventLabel {
                event: event.clone(),
            };
            let _ = metrics.published.get_or_create(&label);
            let _ = metrics.unrouted.get_or_create(&label);
        }
        let ready = config
            .shards
            .ids()
            .map(|_| AtomicBool::new(false))
            .collect();
        Self {
            config,
            rest,
            bus,
            metrics,
            ready,
        }
    }

    /// True while every shard of the range is READY (or RESUMED).
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let ready = Arc::clone(&self.ready);
        move || ready.iter().all(|shard| shard.load(Ordering::Relaxed))
    }

    /// Runs the shards until `shutdown`, then closes them so they can be resumed and saves
    /// their sessions for the next process.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let info = self
            .rest
            .gateway()
            .authed()
            .await
            .map_err(|e| Error::GatewayInfo(Box::new(e)))?
            .model()
            .await
            .map_err(|e| Error::GatewayInfo(Box::new(e)))?;
        let limit = info.session_start_limit;
        let bot_id = self
            .rest
            .current_user()
            .await
            .map_err(|e| Error::GatewayInfo(Box::new(e)))?
            .model()
            .await
            .map_err(|e| Error::GatewayInfo(Box::new(e)))?
            .id
            .get();
        if let Some(total) = generation::superseded(&self.bus, self.config.shards.total()).await? {
            warn!(
                total = self.config.shards.total(),
                new_total = total,
                "a generation of {total} shards replaced this one: not starting (remove this \
                 generation's processes; to go back to it, purge the queue disco.generation)"
            );
            self.metrics.replaced_by.set(total.into());
            return Ok(());
        }
        let mut saved = Vec::new();
        for id in self.config.shards.ids() {
            saved.push(take_saved_session(&self.bus, id, self.config.shards.total()).await?);
        }
        let needed = saved.iter().filter(|s| s.is_none()).count() as u64;
        let remaining = u64::from(limit.remaining);
        let floor = u64::from(self.config.identify_floor);
        self.metrics
            .session_start_remaining
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
        if needed + floor > remaining {
            return Err(Error::SessionBudget {
                remaining,
                needed,
                floor,
                reset_after_ms: limit.reset_after,
            });
        }
        let gateway_url = self.config.gateway_url.clone().unwrap_or(info.url);
        info!(
            shards = ?self.config.shards.ids(),
            total = self.config.shards.total(),
            max_concurrency = limit.max_concurrency,
            resuming = saved.iter().flatten().count(),
            "starting shards"
        );
        let queue = queue::BusQueue::new(
            self.bus.clone(),
            u32::from(limit.max_concurrency),
            queue::Budget {
                rest: Arc::clone(&self.rest),
                floor: self.config.identify_floor,
                remaining: self.metrics.session_start_remaining.clone(),
            },
        );
        let events = Arc::new(self.config.events.clone());
        let stop = shutdown.child_token();
        let retiring = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, (id, saved)) in self.config.shards.ids().zip(saved).enumerate() {
            let mut builder =
                ConfigBuilder::new(self.config.token.expose().to_owned(), self.config.intents)
                    .queue(queue.clone())
                    .proxy_url(gateway_url.clone());
            let mut last_sequence = None;
            if let Some(saved) = saved {
                last_sequence = Some(saved.sequence);
                builder = builder
                    .session(Session::new(saved.sequence, saved.session_id))
                    .resume_url(saved.resume_url);
            }
            let twilight = Shard::with_config(
                ShardId::new(id, self.config.shards.total()),
                builder.build(),
            );
            let task = shard::ShardTask {
                shard: twilight,
                bus: self.bus.clone(),
                metrics: self.metrics.clone(),
                events: Arc::clone(&events),
                bot_id,
                buffer: self.config.publish_buffer.max(1),
                buffer_bytes: self.config.publish_buffer_bytes,
                buffered_bytes: 0,
                ready: Arc::clone(&self.ready),
                retiring: Arc::clone(&retiring),
                index,
                last_sequence,
                pending: std::collections::VecDeque::new(),
                checkpointed: None,
                checkpointing: None,
                gap: None,
            };
            tasks.spawn(task.run(stop.clone()));
        }
        let watcher = generation::watch(self.bus.clone(), self.config.shards, self.readiness());
        tokio::pin!(watcher);
        let mut watching = true;
        let mut outcome = Ok(());
        loop {
            let joined = tokio::select! {
                retired = &mut watcher, if watching => {
                    watching = false;
                    match retired {
                        Ok(total) => {
                            self.metrics.replaced_by.set(total.into());
                            // Before the sessions end, so a process of this generation that
                            // starts again stays down rather than identify.
                            if let Err(error) = generation::record(&self.bus, total).await {
                                warn!(
                                    error = &error as &dyn std::error::Error,
                                    "cannot record the new generation"
                                );
                            }
                            retiring.store(true, Ordering::Relaxed);
                            stop.cancel();
                        }
                        // The shards meet the same bus failure and say so; they run on.
                        Err(error) => warn!(
                            error = &error as &dyn std::error::Error,
                            "cannot watch for a new generation of shards"
                        ),
                    }
                    continue;
                }
                joined = tasks.join_next() => joined,
            };
            let Some(result) = joined else { break };
            let result = result.unwrap_or_else(|panic| Err(Error::Panicked(panic.to_string())));
            if let Err(error) = result
                && outcome.is_ok()
            {
                // One shard failing for good means the bot is misconfigured: stop the others.
                stop.cancel();
                outcome = Err(error);
            }
        }
        // A shard that ended for good is not ready, whatever it last said.
        for ready in self.ready.iter() {
            ready.store(false, Ordering::Relaxed);
        }
        outcome
    }
}

/// Takes the session a previous process saved for `shard`, if any; the newest wins when several
/// were saved.
async fn take_saved_session(
    bus: &bus::Bus,
    shard: u32,
    total: u32,
) -> Result<Option<SavedSession>, Error> {
    let mut newest: Option<SavedSession> = None;
    for saved in drain_latest::<SavedSession>(bus, &route::session_queue(shard, total)).await? {
        if saved.shard_total != total || saved.shard_id != shard {
            info!(
                shard,
                saved_total = saved.shard_total,
                total,
                "ignoring a session saved for another shard layout"
            );
        } else if newest
            .as_ref()
            .is_none_or(|n| n.saved_at_ms <= saved.saved_at_ms)
        {
            newest = Some(saved);
        }
    }
    Ok(newest)
}

/// Takes everything a [`bus::Destination::Latest`] queue holds (one message, or a few when
/// processes wrote at once), acked; what is not an `M` is dead-lettered with the reason.
pub(crate) async fn drain_latest<M: disco_proto::Versioned>(
    bus: &bus::Bus,
    queue: &str,
) -> Result<Vec<M>, Error> {
    let mut taken = Vec::new();
    while let Some(delivery) = bus.take_latest(queue).await? {
        match disco_proto::decode::<M>(&delivery.message.body) {
            Ok(message) => {
                delivery.ack().await?;
                taken.push(message);
            }
            Err(error) => {
                let name = std::any::type_name::<M>().rsplit("::").next().unwrap_or("");
                delivery
                    .dead_letter(&format!("not a {name}: {error}"))
                    .await?;
            }
        }
    }
    Ok(taken)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_split_shards_into_consecutive_ranges() {
        let ranges: Vec<Range<u32>> = (0..3)
            .map(|b| ShardRange::bucket(b, 3, 16).expect("valid").ids())
            .collect();
        assert_eq!(ranges, vec![0..5, 5..10, 10..16]);
        assert_eq!(ShardRange::bucket(1, 2, 8).expect("valid").ids(), 4..8);
        assert!(ShardRange::bucket(2, 2, 8).is_err());
        assert!(ShardRange::bucket(0, 9, 8).is_err());
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(ShardRange::parse("0..4", 8).expect("valid").ids(), 0..4);
        assert_eq!(ShardRange::parse("4..=7", 8).expect("valid").ids(), 4..8);
        for bad in ["4..4", "0..9", "x..2", "3"] {
            assert!(ShardRange::parse(bad, 8).is_err(), "{bad}");
        }
    }

    #[test]
    fn intents_and_events_parse() {
        assert_eq!(
            parse_intents("guilds, GUILD_MESSAGES").expect("valid"),
            Intents::GUILDS | Intents::GUILD_MESSAGES
        );
        assert!(parse_intents("GUILDZ").is_err());
        assert!(parse_intents("").is_err());
        assert_eq!(
            parse_events("MESSAGE_CREATE,READY").expect("valid").len(),
            2
        );
        assert!(parse_events("message_create").is_err());
        assert_eq!(
            parse_intents(&DEFAULT_INTENTS.join(",")).expect("valid"),
            default_intents()
        );
    }
}
