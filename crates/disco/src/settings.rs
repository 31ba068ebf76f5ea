//! Command line and environment. Flags win over their `DISCO_*` (or `DISCORD_TOKEN`) variables,
//! which win over defaults. Secrets are read as plain strings and checked here, so no parse
//! error ever repeats them, and `--help` never shows their values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use disco_proto::Secret;
use url::Url;

/// Disco runs Discord bots as services: shards, workers, voice nodes and an interactions
/// webhook, connected through RabbitMQ, or all in one process.
#[derive(Debug, Parser)]
#[command(name = "disco", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub discord: DiscordArgs,
    #[command(flatten)]
    pub bus: BusArgs,
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub worker: WorkerArgs,
    #[command(flatten)]
    pub voice: VoiceArgs,
    #[command(flatten)]
    pub ingress: IngressArgs,
}

impl Cli {
    /// Settings from flags, parsed exactly as `disco` parses its command line (the first item
    /// is the program's name); a `DISCO_*` variable still fills a flag that is not given.
    ///
    /// # Errors
    /// A flag that is unknown or does not parse.
    pub fn from_flags<I, T>(flags: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Self::try_parse_from(flags)
    }
}

/// interactions-ingress settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "interactions-ingress")]
pub struct IngressArgs {
    /// Where Discord's interaction webhooks are received.
    #[arg(
        long,
        env = "DISCO_INGRESS_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub ingress_listen: SocketAddr,
    /// The largest request body accepted, in bytes.
    #[arg(long, env = "DISCO_INGRESS_MAX_BODY", default_value_t = 64 * 1024, global = true)]
    pub ingress_max_body: usize,
    /// How far a request's timestamp may be from now, in seconds (replay protection).
    #[arg(
        long,
        env = "DISCO_INGRESS_TIMESTAMP_WINDOW_SECS",
        default_value_t = 300,
        global = true
    )]
    pub ingress_timestamp_window_secs: u64,
    /// How long to wait for the worker before answering "deferred", in milliseconds (Discord
    /// allows 3000).
    #[arg(
        long,
        env = "DISCO_INGRESS_DEADLINE_MS",
        default_value_t = 2_500,
        global = true
    )]
    pub ingress_deadline_ms: u64,
    /// How long a deferred interaction's answer may still come, in seconds (Discord's tokens
    /// last 900).
    #[arg(
        long,
        env = "DISCO_INGRESS_LATE_ANSWER_SECS",
        default_value_t = 120,
        global = true
    )]
    pub ingress_late_answer_secs: u64,
}

impl IngressArgs {
    pub fn config(
        &self,
        discord: &DiscordArgs,
        shard_total: u32,
    ) -> Result<interactions_ingress::Config, SettingsError> {
        if !(100..=2_900).contains(&self.ingress_deadline_ms) {
            return Err(invalid(
                "DISCO_INGRESS_DEADLINE_MS",
                "ingress-deadline-ms",
                "expected 100 to 2900: Discord drops an interaction not answered within 3 s",
            )
            .into());
        }
        if !(1..=900).contains(&self.ingress_late_answer_secs) {
            return Err(invalid(
                "DISCO_INGRESS_LATE_ANSWER_SECS",
                "ingress-late-answer-secs",
                "expected 1 to 900",
            )
            .into());
        }
        if self.ingress_max_body < 1024 {
            return Err(invalid(
                "DISCO_INGRESS_MAX_BODY",
                "ingress-max-body",
                "expected at least 1024",
            )
            .into());
        }
        Ok(interactions_ingress::Config {
            public_key: discord.public_key()?,
            application_id: discord.application_id()?,
            api_url: discord.api_url()?.as_str().trim_end_matches('/').to_owned(),
            listen: self.ingress_listen,
            max_body: self.ingress_max_body,
            timestamp_window: std::time::Duration::from_secs(self.ingress_timestamp_window_secs),
            deadline: std::time::Duration::from_millis(self.ingress_deadline_ms),
            late_answer: std::time::Duration::from_secs(self.ingress_late_answer_secs),
            shard_total: shard_total.max(1),
        })
    }
}

/// voice-node settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "voice-node")]
pub struct VoiceArgs {
    /// Leave a voice channel that has had nobody else in it this long, in seconds.
    #[arg(
        long,
        env = "DISCO_VOICE_IDLE_TIMEOUT_SECS",
        default_value_t = 120,
        global = true
    )]
    pub voice_idle_timeout_secs: u64,
    /// How long joining a voice channel may take, in milliseconds.
    #[arg(
        long,
        env = "DISCO_VOICE_JOIN_TIMEOUT_MS",
        default_value_t = 5_000,
        global = true
    )]
    pub voice_join_timeout_ms: u64,
    /// The only directory `play <file>` reads from.
    #[arg(long, env = "DISCO_MEDIA_DIR", default_value = "media", global = true)]
    pub media_dir: PathBuf,
    /// The text-to-speech program.
    #[arg(
        long,
        env = "DISCO_TTS_PROGRAM",
        default_value = "espeak-ng",
        global = true
    )]
    pub tts_program: PathBuf,
    /// The text-to-speech voice (`espeak-ng --voices` lists them).
    #[arg(long, env = "DISCO_TTS_VOICE", default_value = "en", global = true)]
    pub tts_voice: String,
}

impl VoiceArgs {
    /// The voice node's settings, checked. The bot's user id is the application id (the same
    /// for every bot application).
    pub fn config(
        &self,
        discord: &DiscordArgs,
        gateway: &GatewayArgs,
        hostname: Option<&str>,
    ) -> Result<voice_node::Config, SettingsError> {
        let shards = gateway.shard_range(hostname)?;
        at_least_one(
            self.voice_idle_timeout_secs,
            "DISCO_VOICE_IDLE_TIMEOUT_SECS",
            "voice-idle-timeout-secs",
        )?;
        at_least_one(
            self.voice_join_timeout_ms,
            "DISCO_VOICE_JOIN_TIMEOUT_MS",
            "voice-join-timeout-ms",
        )?;
        if self.tts_voice.trim().is_empty() || self.tts_voice.starts_with('-') {
            return Err(invalid(
                "DISCO_TTS_VOICE",
                "tts-voice",
                "expected a voice name, like en",
            )
            .into());
        }
        let config = voice_node::Config {
            token: discord.token()?,
            api_url: discord.api_url()?.as_str().trim_end_matches('/').to_owned(),
            user_id: discord.application_id()?,
            shards: shards.ids(),
            shard_total: shards.total(),
            idle_timeout: Duration::from_secs(self.voice_idle_timeout_secs),
            join_timeout: Duration::from_millis(self.voice_join_timeout_ms),
            media_dir: self.media_dir.clone(),
            tts_program: self.tts_program.clone(),
            tts_voice: self.tts_voice.clone(),
        };
        config
            .validate()
            .map_err(|problem| invalid("DISCO_SHARDS", "shards", problem))?;
        Ok(config)
    }
}

/// command-worker settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "command-worker")]
pub struct WorkerArgs {
    /// The prefix of message commands.
    #[arg(long, env = "DISCO_PREFIX", default_value = "~~", global = true)]
    pub prefix: String,
    /// Events a worker handles at once.
    #[arg(
        long,
        env = "DISCO_WORKER_CONCURRENCY",
        default_value_t = 64,
        global = true
    )]
    pub concurrency: u16,
    /// How long a voice command waits for the voice node, in milliseconds.
    #[arg(
        long,
        env = "DISCO_VOICE_TIMEOUT_MS",
        default_value_t = 8_000,
        global = true
    )]
    pub voice_timeout_ms: u64,
}

impl WorkerArgs {
    pub fn config(
        &self,
        discord: &DiscordArgs,
        shard_total: u32,
    ) -> Result<command_worker::Config, SettingsError> {
        if self.prefix.trim().is_empty() || self.prefix.chars().any(char::is_whitespace) {
            return Err(invalid(
                "DISCO_PREFIX",
                "prefix",
                "expected a prefix without spaces, like ~~",
            )
            .into());
        }
        at_least_one(
            self.concurrency.into(),
            "DISCO_WORKER_CONCURRENCY",
            "concurrency",
        )?;
        at_least_one(shard_total.into(), "DISCO_SHARD_TOTAL", "shard-total")?;
        Ok(command_worker::Config {
            token: discord.token()?,
            api_url: discord.api_url()?.as_str().trim_end_matches('/').to_owned(),
            application_id: discord.application_id()?,
            prefix: self.prefix.clone(),
            shard_total,
            concurrency: self.concurrency,
            voice_timeout: std::time::Duration::from_millis(self.voice_timeout_ms),
        })
    }
}

/// gateway-shard settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "gateway-shard")]
pub struct GatewayArgs {
    /// Shards across every gateway process.
    #[arg(long, env = "DISCO_SHARD_TOTAL", default_value_t = 1, global = true)]
    pub shard_total: u32,
    /// This process's shards, like `0..4`; instead of --bucket.
    #[arg(long, env = "DISCO_SHARDS", global = true)]
    pub shards: Option<String>,
    /// This process's bucket of the shards (0-based), or `auto` for the number at the end of
    /// the host name (a StatefulSet pod's ordinal).
    #[arg(long, env = "DISCO_BUCKET", global = true)]
    pub bucket: Option<String>,
    /// How many buckets (gateway processes) share the shards.
    #[arg(long, env = "DISCO_BUCKETS", default_value_t = 1, global = true)]
    pub buckets: u32,
    /// Gateway intents, comma separated.
    #[arg(
        long,
        env = "DISCO_INTENTS",
        default_value = "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT,GUILD_VOICE_STATES",
        global = true
    )]
    pub intents: String,
    /// Dispatches to publish, comma separated.
    #[arg(
        long,
        env = "DISCO_EVENTS",
        default_value = "MESSAGE_CREATE,INTERACTION_CREATE,VOICE_STATE_UPDATE,VOICE_SERVER_UPDATE,GUILD_CREATE",
        global = true
    )]
    pub events: String,
    /// Publishes a shard may have waiting for their confirm before it stops reading.
    #[arg(
        long,
        env = "DISCO_PUBLISH_BUFFER",
        default_value_t = 1024,
        global = true
    )]
    pub publish_buffer: usize,
}

impl GatewayArgs {
    /// The gateway's settings, checked. `hostname` is the host name, for `--bucket auto`.
    pub fn config(
        &self,
        discord: &DiscordArgs,
        hostname: Option<&str>,
    ) -> Result<gateway_shard::Config, SettingsError> {
        Ok(gateway_shard::Config {
            token: discord.token()?,
            api_url: discord.api_url()?.as_str().trim_end_matches('/').to_owned(),
            gateway_url: discord
                .gateway_url()?
                .map(|url| url.as_str().trim_end_matches('/').to_owned()),
            shards: self.shard_range(hostname)?,
            intents: gateway_shard::parse_intents(&self.intents)
                .map_err(|problem| invalid("DISCO_INTENTS", "intents", problem))?,
            events: gateway_shard::parse_events(&self.events)
                .map_err(|problem| invalid("DISCO_EVENTS", "events", problem))?,
            publish_buffer: self.publish_buffer,
        })
    }

    /// This process's shards (a gateway's connections, a voice node's calls): `--shards`,
    /// else `--bucket` of `--buckets`, else all of them.
    pub fn shard_range(
        &self,
        hostname: Option<&str>,
    ) -> Result<gateway_shard::ShardRange, SettingsError> {
        let total = self.shard_total;
        let shards = match (&self.shards, &self.bucket) {
            (Some(range), _) => gateway_shard::ShardRange::parse(range, total)
                .map_err(|problem| invalid("DISCO_SHARDS", "shards", problem))?,
            (None, Some(bucket)) => {
                let bucket = match bucket.as_str() {
                    "auto" => hostname
                        .and_then(|name| name.rsplit('-').next())
                        .and_then(|ordinal| ordinal.parse().ok())
                        .ok_or_else(|| {
                            invalid(
                                "DISCO_BUCKET",
                                "bucket",
                                "`auto` needs a host name ending in -<number>",
                            )
                        })?,
                    number => number.parse().map_err(|_| {
                        invalid("DISCO_BUCKET", "bucket", "expected a number or `auto`")
                    })?,
                };
                gateway_shard::ShardRange::bucket(bucket, self.buckets, total)
                    .map_err(|problem| invalid("DISCO_BUCKET", "bucket", problem))?
            }
            (None, None) => gateway_shard::ShardRange::new(0, total, total)
                .map_err(|problem| invalid("DISCO_SHARD_TOTAL", "shard-total", problem))?,
        };
        Ok(shards)
    }
}

// Variants are named after the roles, and one role is the command worker.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Every role in one process on the in-memory bus (the default).
    Up,
    /// Discord shards: publish every dispatch to RabbitMQ.
    GatewayShard,
    /// Run commands from RabbitMQ and reply through Discord's REST API.
    CommandWorker,
    /// Voice calls for the guilds of a range of shards.
    VoiceNode,
    /// Discord's HTTP interactions webhook.
    InteractionsIngress,
    /// Print the messages that cross RabbitMQ, as they cross it.
    Tail(TailArgs),
    /// A strict local Discord (gateway, REST, signed webhooks) to run Disco against.
    #[cfg(feature = "sim")]
    Sim(SimArgs),
    /// The Discord simulator and every role in one process, with a short scripted session.
    #[cfg(feature = "sim")]
    Demo(DemoArgs),
    /// Manage the application's slash commands.
    #[command(subcommand)]
    Commands(CommandsCommand),
    /// Print the URL that invites the bot with the least permissions its commands need.
    InviteUrl,
}

#[cfg(feature = "sim")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Run the scripted session and exit: 0 if every step got the answer it should.
    #[arg(long)]
    pub once: bool,
    /// Where the demo's simulator listens.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Where the demo's ingress listens.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub ingress_listen: SocketAddr,
    /// The voice server's TLS identity, made by the demo before it runs itself again with
    /// SSL_CERT_FILE naming its CA (see `demo::trust_voice_ca`).
    #[arg(long, env = "DISCO_DEMO_VOICE_TLS", hide = true)]
    pub voice_tls: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum CommandsCommand {
    /// Register the commands (bulk overwrite), printing what was added, changed and removed.
    Sync {
        /// Register in this guild only (instant, for testing) instead of globally.
        #[arg(long)]
        guild: Option<u64>,
        /// Show what would change without changing it.
        #[arg(long)]
        dry_run: bool,
    },
}

#[cfg(feature = "sim")]
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Where the simulator listens (REST, gateway and control API on one port).
    #[arg(long, env = "DISCO_SIM_LISTEN", default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// A world file (JSON or TOML) replacing the default guilds, members and limits.
    #[arg(long, env = "DISCO_SIM_WORLD")]
    pub world: Option<std::path::PathBuf>,
    /// Deliver interactions to this interactions endpoint (signed) instead of the gateway.
    #[arg(long, env = "DISCO_SIM_INTERACTIONS_URL")]
    pub interactions_url: Option<String>,
    /// Where the voice server's TLS identity is written (`ca.pem` is what a voice node's
    /// SSL_CERT_FILE must name); a directory under the system's temporary one by default.
    #[arg(long, env = "DISCO_SIM_VOICE_TLS_DIR")]
    pub voice_tls_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct DiscordArgs {
    /// The bot token from the developer portal (without the "Bot " prefix).
    #[arg(long, env = "DISCORD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// The application id.
    #[arg(long, env = "DISCO_APPLICATION_ID", global = true)]
    pub application_id: Option<String>,
    /// The application's public key, 64 hexadecimal characters: it signs interactions.
    #[arg(long, env = "DISCO_PUBLIC_KEY", global = true)]
    pub public_key: Option<String>,
    /// Discord's REST base URL.
    #[arg(
        long,
        env = "DISCO_DISCORD_API_URL",
        default_value = "https://discord.com",
        global = true
    )]
    pub discord_api_url: String,
    /// Discord's gateway URL; by default the one `GET /gateway/bot` names.
    #[arg(long, env = "DISCO_DISCORD_GATEWAY_URL", global = true)]
    pub discord_gateway_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct BusArgs {
    /// RabbitMQ, for the roles run one per process.
    #[arg(
        long,
        env = "DISCO_AMQP_URL",
        hide_env_values = true,
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        global = true
    )]
    pub amqp_url: String,
}

#[derive(Debug, Args)]
pub struct TelemetryArgs {
    /// Log format: `pretty` for people, `json` for log collectors.
    #[arg(
        long,
        env = "DISCO_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Pretty,
        global = true
    )]
    pub log_format: LogFormat,
    /// Which logs to show, as a tracing filter (`info`, `disco=debug,lapin=warn`).
    #[arg(
        long,
        env = "DISCO_LOG",
        default_value = "info,lapin=error,songbird=warn",
        global = true
    )]
    pub log: String,
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    #[arg(
        long,
        env = "DISCO_METRICS_LISTEN",
        default_value = "127.0.0.1:9100",
        global = true
    )]
    pub metrics_listen: SocketAddr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// Event patterns to watch (`MESSAGE_CREATE.*`, `#` for everything).
    #[arg(default_value = "#")]
    pub patterns: Vec<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub count: Option<u64>,
}

/// A setting with a value that cannot be used. Names the setting as the user knows it; never
/// repeats a secret's value.
#[derive(Debug, thiserror::Error)]
#[error("invalid {env} (--{flag}): {problem}")]
pub struct Invalid {
    env: &'static str,
    flag: &'static str,
    problem: String,
}

/// A setting the command needs and nobody gave.
#[derive(Debug, thiserror::Error)]
#[error("missing {env} (--{flag})")]
pub struct Missing {
    pub env: &'static str,
    pub flag: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Missing(#[from] Missing),
}

/// A count or a duration that must not be zero.
fn at_least_one(value: u64, env: &'static str, flag: &'static str) -> Result<(), Invalid> {
    if value == 0 {
        return Err(invalid(env, flag, "expected at least 1"));
    }
    Ok(())
}

fn invalid(env: &'static str, flag: &'static str, problem: impl Into<String>) -> Invalid {
    Invalid {
        env,
        flag,
        problem: problem.into(),
    }
}

/// What the Discord-facing roles need, checked.
/// Checked together up front; each role reads its own settings.
#[derive(Debug)]
pub struct Discord {
    pub token: Secret,
    pub application_id: u64,
    pub public_key: interactions_ingress::PublicKey,
    pub api_url: Url,
    pub gateway_url: Option<Url>,
}

impl DiscordArgs {
    /// Checks every Discord setting; the first problem found is returned.
    pub fn validate(&self) -> Result<Discord, SettingsError> {
        Ok(Discord {
            token: self.token()?,
            application_id: self.application_id()?,
            public_key: self.public_key()?,
            api_url: self.api_url()?,
            gateway_url: self.gateway_url()?,
        })
    }

    pub fn token(&self) -> Result<Secret, SettingsError> {
        let token = self.token.as_deref().ok_or(Missing {
            env: "DISCORD_TOKEN",
            flag: "token",
        })?;
        Ok(bot_token(token)?)
    }

    pub fn application_id(&self) -> Result<u64, SettingsError> {
        let id = self.application_id.as_deref().ok_or(Missing {
            env: "DISCO_APPLICATION_ID",
            flag: "application-id",
        })?;
        Ok(snowflake(id).ok_or_else(|| {
            invalid(
                "DISCO_APPLICATION_ID",
                "application-id",
                "expected a Discord id (a positive integer)",
            )
        })?)
    }

    pub fn public_key(&self) -> Result<interactions_ingress::PublicKey, SettingsError> {
        let key = self.public_key.as_deref().ok_or(Missing {
            env: "DISCO_PUBLIC_KEY",
            flag: "public-key",
        })?;
        Ok(interactions_ingress::PublicKey::from_hex(key)
            .map_err(|problem| invalid("DISCO_PUBLIC_KEY", "public-key", problem.to_string()))?)
    }

    pub fn api_url(&self) -> Result<Url, SettingsError> {
        Ok(url_with_scheme(&self.discord_api_url, &["http", "https"])
            .map_err(|problem| invalid("DISCO_DISCORD_API_URL", "discord-api-url", problem))?)
    }

    pub fn gateway_url(&self) -> Result<Option<Url>, SettingsError> {
        Ok(self
            .discord_gateway_url
            .as_deref()
            .map(|url| url_with_scheme(url, &["ws", "wss"]))
            .transpose()
            .map_err(|problem| {
                invalid("DISCO_DISCORD_GATEWAY_URL", "discord-gateway-url", problem)
            })?)
    }
}

impl BusArgs {
    pub fn rabbit(&self, connection_name: &str) -> Result<bus::RabbitConfig, Invalid> {
        bus::RabbitConfig::new(Secret::new(self.amqp_url.as_str()), connection_name)
            .map_err(|problem| invalid("DISCO_AMQP_URL", "amqp-url", problem.to_string()))
    }
}

/// A bot token: three dot-separated base64url parts. Checked for shape only; Discord decides
/// whether it is valid. The token is never part of the error.
fn bot_token(token: &str) -> Result<Secret, Invalid> {
    let problem = |what: &str| invalid("DISCORD_TOKEN", "token", what);
    let token = token.trim();
    if token.is_empty() {
        return Err(problem("it is empty"));
    }
    if token.starts_with("Bot ") || token.starts_with("Bearer ") {
        return Err(problem("give the token alone, without the \"Bot \" prefix"));
    }
    let parts: Vec<&str> = token.split('.').collect();
    let base64url = |part: &&str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if parts.len() != 3 || !parts.iter().all(base64url) {
        return Err(problem(
            "expected a bot token: three dot-separated parts of letters, digits, '-' and '_'",
        ));
    }
    Ok(Secret::new(token))
}

fn snowflake(text: &str) -> Option<u64> {
    text.trim().parse().ok().filter(|id| *id > 0)
}

fn url_with_scheme(text: &str, schemes: &[&str]) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("not a URL ({error})"))?;
    if schemes.contains(&url.scheme()) {
        Ok(url)
    } else {
        Err(format!("expected a {} URL", schemes.join(" or ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJkLm.abcdefghijklmnopqrstuvwxyz0123456789_-";
    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn args(
        token: Option<&str>,
        application_id: Option<&str>,
        public_key: Option<&str>,
    ) -> DiscordArgs {
        DiscordArgs {
            token: token.map(str::to_owned),
            application_id: application_id.map(str::to_owned),
            public_key: public_key.map(str::to_owned),
            discord_api_url: "https://discord.com".to_owned(),
            discord_gateway_url: None,
        }
    }

    #[test]
    fn valid_discord_settings_pass() {
        let discord = args(Some(TOKEN), Some("123"), Some(KEY))
            .validate()
            .expect("valid");
        assert_eq!(discord.application_id, 123);
        assert_eq!(discord.token.expose(), TOKEN);
        assert!(
            !format!("{discord:?}").contains(TOKEN),
            "Debug hides the token"
        );
    }

    /// Each bad value is refused with the name of its setting, and never with the token.
    #[test]
    fn bad_settings_name_the_setting() {
        let rows: Vec<(DiscordArgs, &str)> = vec![
            (
                args(None, Some("1"), Some(KEY)),
                "missing DISCORD_TOKEN (--token)",
            ),
            (
                args(Some(""), Some("1"), Some(KEY)),
                "invalid DISCORD_TOKEN (--token): it is empty",
            ),
            (
                args(Some("Bot a.b.c"), Some("1"), Some(KEY)),
                "invalid DISCORD_TOKEN (--token): give the token alone",
            ),
            (
                args(Some("not-a-token"), Some("1"), Some(KEY)),
                "invalid DISCORD_TOKEN (--token): expected a bot token",
            ),
            (
                args(Some("a.b.c d"), Some("1"), Some(KEY)),
                "invalid DISCORD_TOKEN (--token): expected a bot token",
            ),
            (
                args(Some(TOKEN), None, Some(KEY)),
                "missing DISCO_APPLICATION_ID",
            ),
            (
                args(Some(TOKEN), Some("abc"), Some(KEY)),
                "invalid DISCO_APPLICATION_ID (--application-id)",
            ),
            (
                args(Some(TOKEN), Some("0"), Some(KEY)),
                "invalid DISCO_APPLICATION_ID (--application-id)",
            ),
            (
                args(Some(TOKEN), Some("1"), None),
                "missing DISCO_PUBLIC_KEY (--public-key)",
            ),
            (
                args(Some(TOKEN), Some("1"), Some("abcd")),
                "invalid DISCO_PUBLIC_KEY (--public-key): expected 64 hexadecimal characters",
            ),
        ];
        for (args, want) in rows {
            let error = args.validate().expect_err(want).to_string();
            assert!(
                error.starts_with(want),
                "{error:?} should start with {want:?}"
            );
            assert!(!error.contains("GhJkLm"), "the token leaked: {error}");
        }
        let mut bad_url = args(Some(TOKEN), Some("1"), Some(KEY));
        bad_url.discord_gateway_url = Some("http://example.com".to_owned());
        let error = bad_url.validate().expect_err("ws only").to_string();
        assert_eq!(
            error,
            "invalid DISCO_DISCORD_GATEWAY_URL (--discord-gateway-url): expected a ws or wss URL"
        );
    }

    #[test]
    fn amqp_url_is_checked_without_echoing_it() {
        for url in [
            "http://guest:s3cret@host",
            "amqp://guest:s3cret@host:notaport",
            "s3cret",
        ] {
            let error = BusArgs {
                amqp_url: url.to_owned(),
            }
            .rabbit("test")
            .expect_err(url)
            .to_string();
            assert!(
                error.starts_with("invalid DISCO_AMQP_URL (--amqp-url)"),
                "{error}"
            );
            assert!(!error.contains("s3cret"), "the password leaked: {error}");
        }
        let config = BusArgs {
            amqp_url: "amqp://guest:s3cret@127.0.0.1:5672/%2f".to_owned(),
        }
        .rabbit("test")
        .expect("valid");
        assert!(!format!("{config:?}").contains("s3cret"));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
