//! Command line and environment. Flags win over their `DISCO_*` (or `DISCORD_TOKEN`) variables,
//! which win over defaults. Secrets are read as plain strings and checked here, so no parse
//! error ever repeats them, and `--help` never shows their values.

mod gateway;
mod ingress;
mod proxy;
mod voice;
mod worker;

use std::net::SocketAddr;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use disco_proto::Secret;
use url::Url;

pub use gateway::GatewayArgs;
pub use ingress::IngressArgs;
pub use proxy::ProxyArgs;
pub use voice::VoiceArgs;
pub use worker::WorkerArgs;

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
    #[command(flatten)]
    pub proxy: ProxyArgs,
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
    /// The fleet's one way out to Discord's REST API, holding the bot's limits.
    RestProxy,
    /// Print the messages that cross RabbitMQ, as they cross it.
    Tail(TailArgs),
    /// Read, replay or purge the dead letters (`disco.dead`): messages no consumer could handle.
    #[command(subcommand)]
    DeadLetters(DeadLettersCommand),
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
    pub voice_tls: Option<std::path::PathBuf>,
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
    /// REST rate limits: `discord` (Discord's: 50 requests/s, 5 messages per 5 s per channel,
    /// the ban after 10,000 invalid requests in 10 minutes) or `off` (none, to measure Disco
    /// rather than Discord's pace). Replaces the world's own.
    #[arg(long, env = "DISCO_SIM_RATE_LIMITS", value_enum)]
    pub rate_limits: Option<SimRateLimits>,
    /// Answer each REST request after this many milliseconds, as Discord answers in tens of
    /// ms (replaces the world's `rest_latency_ms`).
    #[arg(long, env = "DISCO_SIM_REST_LATENCY_MS")]
    pub rest_latency_ms: Option<u64>,
    /// Where the voice server's TLS identity is written (`ca.pem` is what a voice node's
    /// SSL_CERT_FILE must name); a directory under the system's temporary one by default.
    #[arg(long, env = "DISCO_SIM_VOICE_TLS_DIR")]
    pub voice_tls_dir: Option<std::path::PathBuf>,
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
    /// Send every REST call through this rest-proxy (`http://disco-rest-proxy:9300`) instead
    /// of straight to Discord; the proxy holds the bot's rate limits for the whole fleet.
    #[arg(long, env = "DISCO_REST_PROXY_URL", global = true)]
    pub rest_proxy_url: Option<String>,
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
    /// Which logs to show, as a tracing filter (`info`, `disco=debug,songbird=info`). The bus
    /// reports every broker failure itself, with its causes.
    #[arg(
        long,
        env = "DISCO_LOG",
        default_value = "info,songbird=warn",
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

/// The simulator's REST rate limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SimRateLimits {
    Discord,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum DeadLettersCommand {
    /// Print them, oldest first, with the queue each came from and why it died; they stay.
    List {
        /// Print at most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send them back to the queues they came from (once the cause is fixed), oldest first.
    Replay {
        /// Replay at most this many.
        #[arg(long, default_value_t = usize::MAX)]
        limit: usize,
    },
    /// Delete them all.
    Purge,
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

/// Where one field of a role's `Config` comes from: its environment variable and flag.
/// Each role's settings file lists its fields, so a role's `validate()` error is reported
/// under the setting the user wrote.
type Source = (&'static str, &'static str, &'static str);

/// The setting behind `field` in `sources`, refused with `problem`.
fn refused(field: &str, problem: String, sources: &[Source]) -> Invalid {
    match sources.iter().find(|(name, _, _)| *name == field) {
        Some((_, env, flag)) => invalid(env, flag, problem),
        // Every field a role validates is listed (tests check it); this only names the field.
        None => invalid("DISCO_*", "...", format!("{field}: {problem}")),
    }
}

/// A number, or `auto` for the number at the end of the host name (a StatefulSet pod's
/// ordinal): how a pod finds its place among its replicas.
fn number_or_ordinal(
    value: &str,
    hostname: Option<&str>,
    env: &'static str,
    flag: &'static str,
) -> Result<u32, Invalid> {
    match value {
        "auto" => hostname
            .and_then(|name| name.rsplit('-').next())
            .and_then(|ordinal| ordinal.parse().ok())
            .ok_or_else(|| invalid(env, flag, "`auto` needs a host name ending in -<number>")),
        number => number
            .parse()
            .map_err(|_| invalid(env, flag, "expected a number or `auto`")),
    }
}

pub(crate) fn invalid(
    env: &'static str,
    flag: &'static str,
    problem: impl Into<String>,
) -> Invalid {
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

impl DiscordArgs {
    /// The process's one Discord REST client, which every role it runs shares (and with it
    /// twilight's rate limiter): Discord's API at `DISCO_DISCORD_API_URL`, with the bot token
    /// when one is given. An interactions ingress alone has none: the interaction token
    /// authorises its calls.
    pub fn rest(&self) -> Result<Arc<twilight_http::Client>, SettingsError> {
        match self.rest_proxy_url()? {
            Some(proxy) => self.rest_through(&proxy),
            None => self.rest_through(&self.api_url()?),
        }
    }

    /// The REST client, sending to `url`: Discord's API, or a rest-proxy (which holds the rate
    /// limits, so twilight's own limiter is off).
    pub fn rest_through(&self, url: &Url) -> Result<Arc<twilight_http::Client>, SettingsError> {
        let mut builder = twilight_http::Client::builder();
        if let Some(token) = self.token.as_deref() {
            builder = builder.token(bot_token(token)?.expose().to_owned());
        }
        let host = url.host_str().unwrap_or_default();
        let address = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        if url.scheme() == "http" {
            builder = builder.proxy(address, true);
        } else if address != "discord.com" {
            builder = builder.proxy(address, false);
        }
        if self.rest_proxy_url.is_some() || *url != self.api_url()? {
            builder = builder.ratelimiter(None);
        }
        Ok(Arc::new(builder.build()))
    }

    /// The `Authorization` header value of the bot token (`Bot <token>`), if one is given.
    pub fn authorization(&self) -> Result<Option<Secret>, SettingsError> {
        let Some(token) = self.token.as_deref() else {
            return Ok(None);
        };
        let token = bot_token(token)?;
        Ok(Some(Secret::new(format!("Bot {}", token.expose()))))
    }

    /// The rest-proxy to send through, if one is set.
    pub fn rest_proxy_url(&self) -> Result<Option<Url>, SettingsError> {
        Ok(self
            .rest_proxy_url
            .as_deref()
            .map(|url| url_with_scheme(url, &["http", "https"]))
            .transpose()
            .map_err(|problem| invalid("DISCO_REST_PROXY_URL", "rest-proxy-url", problem))?)
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
            rest_proxy_url: None,
        }
    }

    /// The command line with valid Discord settings and `flags`.
    fn with_discord(flags: &[&str]) -> Cli {
        let mut all = vec![
            "disco",
            "--token",
            TOKEN,
            "--application-id",
            "1",
            "--public-key",
            KEY,
        ];
        all.extend_from_slice(flags);
        Cli::from_flags(all).expect("flags parse")
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

    /// Each role's `validate()` error is reported under the setting the user wrote.
    #[test]
    fn role_settings_are_refused_by_their_own_name() {
        let rows: &[(&[&str], &str, &str)] = &[
            (
                &["--prefix", "~ ~"],
                "command-worker",
                "DISCO_PREFIX (--prefix)",
            ),
            (
                &["--concurrency", "0"],
                "command-worker",
                "DISCO_WORKER_CONCURRENCY",
            ),
            (
                &["--voice-timeout-ms", "0"],
                "command-worker",
                "DISCO_VOICE_TIMEOUT_MS",
            ),
            (
                &["--shard-total", "0"],
                "command-worker",
                "DISCO_SHARD_TOTAL",
            ),
            (
                &["--ingress-deadline-ms", "3000"],
                "interactions-ingress",
                "DISCO_INGRESS_DEADLINE_MS",
            ),
            (
                &["--ingress-late-answer-secs", "0"],
                "interactions-ingress",
                "DISCO_INGRESS_LATE_ANSWER_SECS",
            ),
            (
                &["--ingress-max-connections", "0"],
                "interactions-ingress",
                "DISCO_INGRESS_MAX_CONNECTIONS",
            ),
            (
                &["--ingress-max-body", "10"],
                "interactions-ingress",
                "DISCO_INGRESS_MAX_BODY",
            ),
            (
                &["--ingress-timestamp-window-secs", "0"],
                "interactions-ingress",
                "DISCO_INGRESS_TIMESTAMP_WINDOW_SECS",
            ),
            (
                &["--voice-idle-timeout-secs", "0"],
                "voice-node",
                "DISCO_VOICE_IDLE_TIMEOUT_SECS",
            ),
            (
                &["--voice-join-timeout-ms", "0"],
                "voice-node",
                "DISCO_VOICE_JOIN_TIMEOUT_MS",
            ),
            (
                &["--tts-voice=-x"],
                "voice-node",
                "DISCO_TTS_VOICE (--tts-voice)",
            ),
            (
                &["--voice-max-speech-secs", "0"],
                "voice-node",
                "DISCO_VOICE_MAX_SPEECH_SECS",
            ),
            (
                &["--voice-max-queue", "0"],
                "voice-node",
                "DISCO_VOICE_MAX_QUEUE",
            ),
            (
                &["--voice-max-track-secs", "0"],
                "voice-node",
                "DISCO_VOICE_MAX_TRACK_SECS",
            ),
            (
                &["--shards", "1..3"],
                "voice-node",
                "DISCO_SHARDS (--shards)",
            ),
            (
                &["--publish-buffer", "0"],
                "gateway-shard",
                "DISCO_PUBLISH_BUFFER",
            ),
            (
                &["--publish-buffer-bytes", "10"],
                "gateway-shard",
                "DISCO_PUBLISH_BUFFER_BYTES",
            ),
            (
                &["--events", ","],
                "gateway-shard",
                "DISCO_EVENTS (--events)",
            ),
            (
                &["--reply-deadline-secs", "0"],
                "command-worker",
                "DISCO_WORKER_REPLY_DEADLINE_SECS",
            ),
            (
                &["--rest-invalid-budget", "10000"],
                "rest-proxy",
                "DISCO_REST_INVALID_BUDGET",
            ),
            (
                &["--rest-global-limit", "0"],
                "rest-proxy",
                "DISCO_REST_GLOBAL_LIMIT",
            ),
            (
                &["--rest-deadline-secs", "0"],
                "rest-proxy",
                "DISCO_REST_DEADLINE_SECS",
            ),
            (
                &[
                    "--rest-proxy-peers",
                    "http://a:9300,http://b:9300",
                    "--rest-proxy-index",
                    "2",
                ],
                "rest-proxy",
                "DISCO_REST_PROXY_INDEX",
            ),
            (
                &[
                    "--rest-proxy-peers",
                    "http://a:9300,b:9300",
                    "--rest-proxy-index",
                    "0",
                ],
                "rest-proxy",
                "DISCO_REST_PROXY_PEERS",
            ),
        ];
        for (flags, role, want) in rows {
            let cli = with_discord(flags);
            let error = match *role {
                "command-worker" => cli
                    .worker
                    .config(&cli.discord, cli.gateway.shard_total)
                    .err(),
                "interactions-ingress" => cli
                    .ingress
                    .config(&cli.discord, cli.gateway.shard_total)
                    .err(),
                "voice-node" => cli.voice.config(&cli.discord, &cli.gateway, None).err(),
                "rest-proxy" => cli
                    .proxy
                    .config(&cli.discord, rest_proxy::Config::DEFAULT_LISTEN, None)
                    .err(),
                _ => cli.gateway.config(&cli.discord, None).err(),
            }
            .unwrap_or_else(|| panic!("{flags:?} should be refused"))
            .to_string();
            assert!(
                error.starts_with(&format!("invalid {want}")),
                "{flags:?}: {error}"
            );
        }
    }

    #[test]
    fn defaults_are_the_roles_own() {
        let cli = with_discord(&[]);
        let worker = cli.worker.config(&cli.discord, 1).expect("valid");
        assert_eq!(
            worker.concurrency,
            command_worker::Config::DEFAULT_CONCURRENCY
        );
        let ingress = cli.ingress.config(&cli.discord, 1).expect("valid");
        assert_eq!(
            ingress.late_answer,
            interactions_ingress::Config::DEFAULT_LATE_ANSWER
        );
        assert_eq!(ingress.listen, interactions_ingress::Config::DEFAULT_LISTEN);
        let voice = cli
            .voice
            .config(&cli.discord, &cli.gateway, None)
            .expect("valid");
        assert_eq!(voice.join_timeout, voice_node::Config::DEFAULT_JOIN_TIMEOUT);
        let gateway = cli.gateway.config(&cli.discord, None).expect("valid");
        assert_eq!(
            gateway.publish_buffer,
            gateway_shard::Config::DEFAULT_PUBLISH_BUFFER
        );
        assert_eq!(gateway.intents, gateway_shard::default_intents());
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
