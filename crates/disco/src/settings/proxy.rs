//! rest-proxy's settings: its `Config` fields as flags and `DISCO_*` variables.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use rest_proxy::Config;

use super::{
    DiscordArgs, SettingsError, Source, invalid, number_or_ordinal, refused, url_with_scheme,
};

/// rest-proxy settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "rest-proxy")]
pub struct ProxyArgs {
    /// Where the REST proxy listens [default: 127.0.0.1:9300; `disco up`: any free port on
    /// 127.0.0.1, used by its own roles only].
    #[arg(long, env = "DISCO_REST_PROXY_LISTEN", global = true)]
    pub rest_proxy_listen: Option<SocketAddr>,
    /// Requests per second the bot may send outside interaction routes (Discord's global
    /// limit: 50 unless Discord raised it for the bot).
    #[arg(
        long,
        env = "DISCO_REST_GLOBAL_LIMIT",
        default_value_t = Config::DEFAULT_GLOBAL_LIMIT,
        global = true
    )]
    pub rest_global_limit: u32,
    /// Invalid requests (401, 403, 429) in 10 minutes above which the proxy refuses routes that
    /// fail (Cloudflare bans the address at 10,000).
    #[arg(
        long,
        env = "DISCO_REST_INVALID_BUDGET",
        default_value_t = Config::DEFAULT_INVALID_BUDGET,
        global = true
    )]
    pub rest_invalid_budget: u32,
    /// How long a request that names no deadline may wait for its turn, in seconds.
    #[arg(
        long,
        env = "DISCO_REST_DEADLINE_SECS",
        default_value_t = Config::DEFAULT_DEADLINE.as_secs(),
        global = true
    )]
    pub rest_deadline_secs: u64,
    /// Every replica's URL, comma-separated, the same list in the same order on each
    /// (`http://disco-rest-proxy-0.disco-rest-proxy-peers:9300,...`); unset for one replica.
    /// Each bucket has one owner, and each replica sends its share of the global limit.
    #[arg(
        long,
        env = "DISCO_REST_PROXY_PEERS",
        value_delimiter = ',',
        global = true
    )]
    pub rest_proxy_peers: Vec<String>,
    /// This replica's place in DISCO_REST_PROXY_PEERS (0-based), or `auto` for the number at
    /// the end of the host name (a StatefulSet's pod ordinal).
    #[arg(
        long,
        env = "DISCO_REST_PROXY_INDEX",
        default_value = "auto",
        global = true
    )]
    pub rest_proxy_index: String,
}

/// Where each checked field comes from.
const SOURCES: &[Source] = &[
    (
        "default_deadline",
        "DISCO_REST_DEADLINE_SECS",
        "rest-deadline-secs",
    ),
    (
        "global_limit",
        "DISCO_REST_GLOBAL_LIMIT",
        "rest-global-limit",
    ),
    (
        "invalid_budget",
        "DISCO_REST_INVALID_BUDGET",
        "rest-invalid-budget",
    ),
    ("index", "DISCO_REST_PROXY_INDEX", "rest-proxy-index"),
    ("upstream", "DISCO_DISCORD_API_URL", "discord-api-url"),
];

impl ProxyArgs {
    /// The proxy's settings, checked; `listen` unless set. `hostname` is the host name, for
    /// `--rest-proxy-index auto`.
    pub fn config(
        &self,
        discord: &DiscordArgs,
        listen: SocketAddr,
        hostname: Option<&str>,
    ) -> Result<Config, SettingsError> {
        let mut config = Config::new(discord.api_url()?);
        config.listen = self.rest_proxy_listen.unwrap_or(listen);
        config.global_limit = self.rest_global_limit;
        config.invalid_budget = self.rest_invalid_budget;
        config.default_deadline = Duration::from_secs(self.rest_deadline_secs);
        let peer = |url: &String| {
            url_with_scheme(url.trim(), &["http", "https"])
                .map_err(|problem| invalid("DISCO_REST_PROXY_PEERS", "rest-proxy-peers", problem))
        };
        config.peers = self
            .rest_proxy_peers
            .iter()
            .filter(|url| !url.trim().is_empty())
            .map(peer)
            .collect::<Result<_, _>>()?;
        if !config.peers.is_empty() {
            let index = number_or_ordinal(
                &self.rest_proxy_index,
                hostname,
                "DISCO_REST_PROXY_INDEX",
                "rest-proxy-index",
            )?;
            config.index = usize::try_from(index).unwrap_or(usize::MAX);
        }
        config
            .validate()
            .map_err(|e| refused(e.field, e.problem, SOURCES))?;
        Ok(config)
    }
}
