//! command-worker's settings: its `Config` fields as flags and `DISCO_*` variables.

use clap::Args;
use command_worker::Config;

use super::{DiscordArgs, SettingsError, Source, refused};

/// command-worker settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "command-worker")]
pub struct WorkerArgs {
    /// The prefix of message commands.
    #[arg(long, env = "DISCO_PREFIX", default_value = Config::DEFAULT_PREFIX, global = true)]
    pub prefix: String,
    /// Events a worker handles at once.
    #[arg(
        long,
        env = "DISCO_WORKER_CONCURRENCY",
        default_value_t = Config::DEFAULT_CONCURRENCY,
        global = true
    )]
    pub concurrency: u16,
    /// How long a voice command waits for the voice node, in milliseconds.
    #[arg(
        long,
        env = "DISCO_VOICE_TIMEOUT_MS",
        default_value_t = Config::DEFAULT_VOICE_TIMEOUT.as_millis() as u64,
        global = true
    )]
    pub voice_timeout_ms: u64,
    /// How long after a message its reply is still sent, in seconds: a busy channel's backlog
    /// drains at Discord's pace until then (through the rest-proxy).
    #[arg(
        long,
        env = "DISCO_WORKER_REPLY_DEADLINE_SECS",
        default_value_t = Config::DEFAULT_REPLY_DEADLINE.as_secs(),
        global = true
    )]
    pub reply_deadline_secs: u64,
}

/// Where each checked field comes from.
const SOURCES: &[Source] = &[
    ("application_id", "DISCO_APPLICATION_ID", "application-id"),
    ("prefix", "DISCO_PREFIX", "prefix"),
    (
        "reply_deadline",
        "DISCO_WORKER_REPLY_DEADLINE_SECS",
        "reply-deadline-secs",
    ),
    ("shard_total", "DISCO_SHARD_TOTAL", "shard-total"),
    ("concurrency", "DISCO_WORKER_CONCURRENCY", "concurrency"),
    (
        "voice_timeout",
        "DISCO_VOICE_TIMEOUT_MS",
        "voice-timeout-ms",
    ),
];

impl WorkerArgs {
    /// The worker's settings, checked.
    pub fn config(&self, discord: &DiscordArgs, shard_total: u32) -> Result<Config, SettingsError> {
        let mut config = Config::new(discord.application_id()?);
        config.prefix.clone_from(&self.prefix);
        config.shard_total = shard_total;
        config.concurrency = self.concurrency;
        config.voice_timeout = std::time::Duration::from_millis(self.voice_timeout_ms);
        config.reply_deadline = std::time::Duration::from_secs(self.reply_deadline_secs);
        config
            .validate()
            .map_err(|e| refused(e.field, e.problem, SOURCES))?;
        Ok(config)
    }
}
