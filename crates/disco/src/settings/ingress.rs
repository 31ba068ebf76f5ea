//! interactions-ingress's settings: its `Config` fields as flags and `DISCO_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use interactions_ingress::Config;

use super::{DiscordArgs, SettingsError, Source, refused};

/// interactions-ingress settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "interactions-ingress")]
pub struct IngressArgs {
    /// Where Discord's interaction webhooks are received.
    #[arg(
        long,
        env = "DISCO_INGRESS_LISTEN",
        default_value_t = Config::DEFAULT_LISTEN,
        global = true
    )]
    pub ingress_listen: SocketAddr,
    /// The largest request body accepted, in bytes.
    #[arg(
        long,
        env = "DISCO_INGRESS_MAX_BODY",
        default_value_t = Config::DEFAULT_MAX_BODY,
        global = true
    )]
    pub ingress_max_body: usize,
    /// How far a request's timestamp may be from now, in seconds (replay protection).
    #[arg(
        long,
        env = "DISCO_INGRESS_TIMESTAMP_WINDOW_SECS",
        default_value_t = Config::DEFAULT_TIMESTAMP_WINDOW.as_secs(),
        global = true
    )]
    pub ingress_timestamp_window_secs: u64,
    /// How long to wait for the worker before answering "deferred", in milliseconds (Discord
    /// allows 3000).
    #[arg(
        long,
        env = "DISCO_INGRESS_DEADLINE_MS",
        default_value_t = Config::DEFAULT_DEADLINE.as_millis() as u64,
        global = true
    )]
    pub ingress_deadline_ms: u64,
    /// How long a deferred interaction's answer may still come, in seconds (Discord's tokens
    /// last 900).
    #[arg(
        long,
        env = "DISCO_INGRESS_LATE_ANSWER_SECS",
        default_value_t = Config::DEFAULT_LATE_ANSWER.as_secs(),
        global = true
    )]
    pub ingress_late_answer_secs: u64,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(
        long,
        env = "DISCO_INGRESS_MAX_CONNECTIONS",
        default_value_t = Config::DEFAULT_MAX_CONNECTIONS,
        global = true
    )]
    pub ingress_max_connections: usize,
}

/// Where each checked field comes from.
const SOURCES: &[Source] = &[
    ("application_id", "DISCO_APPLICATION_ID", "application-id"),
    (
        "deadline",
        "DISCO_INGRESS_DEADLINE_MS",
        "ingress-deadline-ms",
    ),
    (
        "late_answer",
        "DISCO_INGRESS_LATE_ANSWER_SECS",
        "ingress-late-answer-secs",
    ),
    ("max_body", "DISCO_INGRESS_MAX_BODY", "ingress-max-body"),
    (
        "timestamp_window",
        "DISCO_INGRESS_TIMESTAMP_WINDOW_SECS",
        "ingress-timestamp-window-secs",
    ),
    ("shard_total", "DISCO_SHARD_TOTAL", "shard-total"),
    (
        "max_connections",
        "DISCO_INGRESS_MAX_CONNECTIONS",
        "ingress-max-connections",
    ),
];

impl IngressArgs {
    /// The ingress's settings, checked.
    pub fn config(&self, discord: &DiscordArgs, shard_total: u32) -> Result<Config, SettingsError> {
        let mut config = Config::new(discord.public_key()?, discord.application_id()?);
        config.listen = self.ingress_listen;
        config.max_body = self.ingress_max_body;
        config.timestamp_window = Duration::from_secs(self.ingress_timestamp_window_secs);
        config.deadline = Duration::from_millis(self.ingress_deadline_ms);
        config.late_answer = Duration::from_secs(self.ingress_late_answer_secs);
        config.shard_total = shard_total;
        config.max_connections = self.ingress_max_connections;
        config
            .validate()
            .map_err(|e| refused(e.field, e.problem, SOURCES))?;
        Ok(config)
    }
}
