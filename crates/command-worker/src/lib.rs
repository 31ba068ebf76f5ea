#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`CommandWorker`]: [`CommandWorker::new`] registers metrics, [`CommandWorker::run`]
//!   consumes the shared queue until shutdown, then finishes what it holds.
//! - [`commands`]: the commands, each defined once for both its slash and prefix forms.
//! - `handle`: one event from delivery to reply to ack.
//! - [`reply`]: what a command answers, as JSON for each way of answering.
//! - `payload`: the parts of Discord's dispatches the worker reads, as typed views.
//! - `recent`: the ids of commands taken lately: a copy (two generations of shards) runs once.
//! - `discord`: REST calls with Disco's retry rules.
//! - [`voice`]: asking the voice node that owns a guild.
//! - [`sync`]: `disco commands sync`.
//! - `metrics`: `disco_command_worker_*`.

pub mod commands;
mod discord;
mod handle;
mod metrics;
mod payload;
mod recent;
pub mod reply;
mod sync;
pub mod voice;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bus::Subscription;
use disco_proto::route;
use prometheus_client::registry::Registry;

pub use commands::Commands;
pub use discord::Direct;
pub use sync::{SyncError, SyncReport, sync};
use tokio_util::sync::CancellationToken;

pub use disco_proto::InvalidConfig;

/// Events a worker holds beside the `concurrency` it runs: replies parked until their
/// channel's turn (through the rest-proxy). A flooded channel's backlog waits here, acked only
/// once answered, without taking capacity from other channels; what could not be answered
/// before its deadline is refused at once, so this bounds ~120 replies per flooded channel.
pub const PARKED: u16 = 4_096;

/// The role's name: the same for the crate, the CLI, the metric label and the Kubernetes object.
pub const ROLE: &str = "command-worker";

/// What the worker needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The application id (interaction webhooks are addressed by it).
    pub application_id: u64,
    /// The prefix of message commands (`~~`).
    pub prefix: String,
    /// The shard total, to find the voice node that owns a guild.
    pub shard_total: u32,
    /// Events handled at once (and the queue prefetch).
    pub concurrency: u16,
    /// How long a voice request may wait for its node.
    pub voice_timeout: Duration,
    /// How long after a message its reply is still sent: a busy channel's backlog drains at
    /// Discord's pace (5 per 5 s) until then, and what is left is dropped with a reason.
    pub reply_deadline: Duration,
}

impl Config {
    /// The prefix of message commands, unless set.
    pub const DEFAULT_PREFIX: &'static str = "~~";
    /// Events handled at once, unless set.
    pub const DEFAULT_CONCURRENCY: u16 = 64;
    /// How long a voice command waits for its node, unless set.
    pub const DEFAULT_VOICE_TIMEOUT: Duration = Duration::from_secs(8);
    /// How long a reply is still sent, unless set: 100 replies queued in one channel take
    /// ~100 s at Discord's 5 per 5 s.
    pub const DEFAULT_REPLY_DEADLINE: Duration = Duration::from_secs(120);

    /// The worker of `application_id`; every other field at its default (one shard).
    pub fn new(application_id: u64) -> Self {
        Self {
            application_id,
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            shard_total: 1,
            concurrency: Self::DEFAULT_CONCURRENCY,
            voice_timeout: Self::DEFAULT_VOICE_TIMEOUT,
            reply_deadline: Self::DEFAULT_REPLY_DEADLINE,
        }
    }

    /// Refuses a value the worker cannot run with, naming the field.
    ///
    /// # Errors
    /// The first field found wrong.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.application_id == 0 {
            return Err(InvalidConfig::new(
                "application_id",
                "expected a Discord id",
            ));
        }
        if self.prefix.trim().is_empty() || self.prefix.chars().any(char::is_whitespace) {
            return Err(InvalidConfig::new(
                "prefix",
                "expected a prefix without spaces, like ~~",
            ));
        }
        if self.shard_total == 0 {
            return Err(InvalidConfig::new("shard_total", "expected at least 1"));
        }
        if self.concurrency == 0 {
            return Err(InvalidConfig::new("concurrency", "expected at least 1"));
        }
        if self.voice_timeout.is_zero() {
            return Err(InvalidConfig::new("voice_timeout", "expected more than 0"));
        }
        if self.reply_deadline < Duration::from_secs(1) {
            return Err(InvalidConfig::new(
                "reply_deadline",
                "expected at least 1 second",
            ));
        }
        Ok(())
    }
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The bus failed.
    #[error("the bus failed")]
    Bus(#[from] bus::Error),
}

/// The command worker role.
#[derive(Debug)]
pub struct CommandWorker {
    config: Config,
    commands: commands::Commands,
    rest: Arc<twilight_http::Client>,
    direct: Option<Arc<dyn Direct>>,
    bus: bus::Bus,
    metrics: metrics::Metrics,
    ready: Arc<AtomicBool>,
}

impl CommandWorker {
    /// Prepares the role, answering `commands` and replying through `rest` (the process's one
    /// REST client, with the bot token), and registers its metrics.
    pub fn new(
        config: Config,
        commands: commands::Commands,
        rest: Arc<twilight_http::Client>,
        bus: bus::Bus,
        registry: &mut Registry,
    ) -> Self {
        Self {
            config,
            commands,
            rest,
            direct: None,
            bus,
            metrics: metrics::Metrics::register(registry),
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Sends the worker's replies to a rest-proxy in the same process through `direct`
    /// instead of over HTTP.
    #[must_use]
    pub fn with_direct(mut self, direct: Arc<dyn Direct>) -> Self {
        self.direct = Some(direct);
        self
    }

    /// True while the worker consumes its queue.
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let ready = Arc::clone(&self.ready);
        move || ready.load(Ordering::Relaxed)
    }

    /// Consumes until `shutdown`, then stops taking events and finishes the ones it holds.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let concurrency = self.config.concurrency.max(1);
        let held = concurrency.saturating_add(PARKED);
        let subscription = Subscription::shared(route::COMMAND_WORKER_QUEUE)
            .bind(route::every_shard("MESSAGE_CREATE"))
            .bind(route::every_shard("INTERACTION_CREATE"))
            .prefetch(held);
        let mut consumer = self.bus.subscribe(subscription).await?;
        let context = Arc::new(handle::Context {
            discord: discord::Discord::new(
                self.rest,
                self.direct,
                self.config.application_id,
                self.metrics.clone(),
            ),
            commands: self.commands,
            voice: voice::VoiceClient::new(
                self.bus.clone(),
                self.config.shard_total,
                self.config.voice_timeout,
            ),
            prefix: self.config.prefix.clone(),
            metrics: self.metrics.clone(),
            recent: recent::Recent::default(),
            capacity: tokio::sync::Semaphore::new(usize::from(concurrency)),
            reply_deadline: self.config.reply_deadline,
        });
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(prefix = %self.config.prefix, concurrency, "consuming commands");
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                delivery = consumer.next(), if tasks.len() < usize::from(held) => match delivery {
                    Some(delivery) => {
                        tasks.spawn(handle::handle(Arc::clone(&context), delivery));
                    }
                    None => break,
                },
            }
        }
        self.ready.store(false, Ordering::Relaxed);
        // Stop taking events, finish those in hand (their acks need the consumer's channel).
        let held = tasks.len();
        if held > 0 {
            tracing::info!(held, "finishing the events in hand");
        }
        let finish = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(20), finish)
            .await
            .is_err()
        {
            tracing::warn!("events still in hand after 20 s; they go back to the queue");
        }
        drop(consumer);
        Ok(())
    }
}
