#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`Config`], [`VoiceNode`]: [`VoiceNode::new`] registers metrics, [`VoiceNode::run`] owns
//!   the configured shards' calls until shutdown, then leaves them.
//! - `shard`: owning one shard: its lock, its queue, events applied in order, commands in
//!   parallel (one at a time per guild).
//! - `calls`: songbird calls in driver mode; op 4 goes to the gateway through the bus.
//! - `gateway`: the gateway's shard total, followed when it grows (a reshard): where op 4 goes
//!   and which shards' voice events are bound.
//! - `voices`: who is in which voice channel, from the gateway's events; `discord`: asking
//!   Discord for a member the events never mentioned.
//! - `commands`: the node (its calls and who is where): a `VoiceCommand` in, a `VoiceReply`
//!   out, and the sweep that leaves channels the bot is alone in.
//! - `speech`, `source`: text-to-speech with espeak-ng; files and URLs to play; `fetch`: the
//!   HTTP client URLs are fetched with, which reaches public addresses only.
//! - `metrics`: `disco_voice_node_*`.

mod calls;
mod commands;
mod discord;
mod fetch;
mod gateway;
mod metrics;
mod shard;
mod source;
mod speech;
mod voices;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

pub use disco_proto::InvalidConfig;

/// The role's name: the same for the crate, the CLI, the metric label and the Kubernetes object.
pub const ROLE: &str = "voice-node";

/// What the voice node needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The bot's user id (voice connections are made as this user).
    pub user_id: u64,
    /// The shards whose guilds this node holds the calls of.
    pub shards: Range<u32>,
    /// The shard total (a command's guild must belong to the shard it came for).
    pub shard_total: u32,
    /// Leave a voice channel that has had nobody else in it this long.
    pub idle_timeout: Duration,
    /// How long joining may take, from asking the gateway to a connected call.
    pub join_timeout: Duration,
    /// The only directory `play <path>` may read from.
    pub media_dir: PathBuf,
    /// The text-to-speech program (espeak-ng).
    pub tts_program: PathBuf,
    /// Its voice (`espeak-ng --voices` lists them).
    pub tts_voice: String,
    /// The longest speech `say` makes; longer is refused (a thousand digits are minutes).
    pub max_speech: Duration,
    /// The most tracks a guild's queue holds.
    pub max_queue: usize,
    /// The longest a track plays: one known to be longer is refused, a stream of unknown
    /// length is stopped there.
    pub max_track: Duration,
}

impl Config {
    /// How long an empty channel is kept, unless set.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
    /// How long joining may take, unless set.
    pub const DEFAULT_JOIN_TIMEOUT: Duration = Duration::from_secs(5);
    /// What `play <file>` may read, unless set.
    pub const DEFAULT_MEDIA_DIR: &'static str = "media";
    /// The text-to-speech program, unless set.
    pub const DEFAULT_TTS_PROGRAM: &'static str = "espeak-ng";
    /// Its voice, unless set.
    pub const DEFAULT_TTS_VOICE: &'static str = "en";
    /// The longest speech, unless set.
    pub const DEFAULT_MAX_SPEECH: Duration = Duration::from_secs(60);
    /// The longest queue, unless set.
    pub const DEFAULT_MAX_QUEUE: usize = 50;
    /// The longest track, unless set.
    pub const DEFAULT_MAX_TRACK: Duration = Duration::from_secs(3600);

    /// The calls of `shards` of `shard_total`, as `user_id`; every other field at its default.
    pub fn new(user_id: u64, shards: Range<u32>, shard_total: u32) -> Self {
        Self {
            user_id,
            shards,
            shard_total,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
            join_timeout: Self::DEFAULT_JOIN_TIMEOUT,
            media_dir: PathBuf::from(Self::DEFAULT_MEDIA_DIR),
            tts_program: PathBuf::from(Self::DEFAULT_TTS_PROGRAM),
            tts_voice: Self::DEFAULT_TTS_VOICE.to_owned(),
            max_speech: Self::DEFAULT_MAX_SPEECH,
            max_queue: Self::DEFAULT_MAX_QUEUE,
            max_track: Self::DEFAULT_MAX_TRACK,
        }
    }

    /// Refuses a value the node cannot run with, naming the field.
    ///
    /// # Errors
    /// The first field found wrong.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.user_id == 0 {
            return Err(InvalidConfig::new(
                "user_id",
                "the bot's user id is missing",
            ));
        }
        if self.shards.is_empty() || self.shards.end > self.shard_total {
            return Err(InvalidConfig::new(
                "shards",
                format!(
                    "{}..{} is not a non-empty range within 0..{}",
                    self.shards.start, self.shards.end, self.shard_total
                ),
            ));
        }
        if self.idle_timeout.is_zero() {
            return Err(InvalidConfig::new("idle_timeout", "expected at least 1 s"));
        }
        if self.join_timeout.is_zero() {
            return Err(InvalidConfig::new("join_timeout", "expected at least 1 ms"));
        }
        if !(1..=600).contains(&self.max_speech.as_secs()) {
            return Err(InvalidConfig::new("max_speech", "expected 1 to 600 s"));
        }
        if !(1..=10_000).contains(&self.max_queue) {
            return Err(InvalidConfig::new(
                "max_queue",
                "expected 1 to 10000 tracks",
            ));
        }
        if !(1..=86_400).contains(&self.max_track.as_secs()) {
            return Err(InvalidConfig::new("max_track", "expected 1 to 86400 s"));
        }
        if self.tts_voice.trim().is_empty() || self.tts_voice.starts_with('-') {
            return Err(InvalidConfig::new(
                "tts_voice",
                "expected a voice name, like en",
            ));
        }
        Ok(())
    }
}

/// Why the voice node stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus failed.
    #[error("the bus failed")]
    Bus(#[from] bus::Error),
}

/// The voice node role.
#[derive(Debug)]
pub struct VoiceNode {
    config: Config,
    rest: Arc<twilight_http::Client>,
    bus: bus::Bus,
    metrics: metrics::Metrics,
    /// Shards whose task runs: owning the shard, or in line for the node that holds it.
    placed: Arc<AtomicUsize>,
}

impl VoiceNode {
    /// Prepares the role, asking Discord through `rest` (the process's one REST client, with
    /// the bot token) where members it has not seen are, and registers its metrics.
    pub fn new(
        config: Config,
        rest: Arc<twilight_http::Client>,
        bus: bus::Bus,
        registry: &mut Registry,
    ) -> Self {
        Self {
            config,
            rest,
            bus,
            metrics: metrics::Metrics::register(registry),
            placed: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// True while every one of the node's shards is owned by it or waits in line for the node
    /// that still holds it (a standby). A standby is ready on purpose: a StatefulSet rollout
    /// waits for each updated pod to be ready before it replaces the next old one, so a new pod
    /// that stayed unready until an old pod let go of its shards would stall the rollout for
    /// ever. `disco_voice_node_shards_owned` tells owners from standbys.
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let placed = Arc::clone(&self.placed);
        let wanted = self.config.shards.len();
        move || placed.load(Ordering::Relaxed) == wanted
    }

    /// Owns the shards until `shutdown`, then leaves every call.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let node = Arc::new(commands::Node::new(
            &self.config,
            self.rest,
            self.bus.clone(),
            self.metrics.clone(),
        ));
        tracing::info!(
            shards = ?self.config.shards,
            media = %self.config.media_dir.display(),
            "owning voice calls"
        );
        let mut shards = tokio::task::JoinSet::new();
        for shard in self.config.shards.clone() {
            shards.spawn(shard::own(
                Arc::clone(&node),
                shard,
                Arc::clone(&self.placed),
                shutdown.clone(),
            ));
        }
        let sweeper =
            tokio::spawn(Arc::clone(&node).sweep(self.config.idle_timeout, shutdown.clone()));
        let follower = tokio::spawn({
            let (bus, gateway, metrics, stop) = (
                self.bus.clone(),
                Arc::clone(&node.gateway),
                self.metrics.clone(),
                shutdown.clone(),
            );
            async move {
                if let Err(error) = gateway::follow(bus, gateway, metrics, stop).await {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "cannot follow the gateway's shard total"
                    );
                }
            }
        });
        let mut failure = None;
        while let Some(done) = shards.join_next().await {
            if let Ok(Err(error)) = done {
                tracing::error!(error = &error as &dyn std::error::Error, "a shard stopped");
                failure.get_or_insert(error);
                shutdown.cancel();
            }
        }
        sweeper.abort();
        follower.abort();
        let left = tokio::time::timeout(Duration::from_secs(10), node.calls.leave_all()).await;
        match left {
            Ok(count) if count > 0 => tracing::info!(count, "left every call"),
            Ok(_) => {}
            Err(_) => tracing::warn!("calls still open after 10 s"),
        }
        failure.map_or(Ok(()), Err)
    }
}
