//! gateway-shard's settings, and the shard range a gateway or a voice node owns.

use clap::Args;
use gateway_shard::{Config, ShardRange};

use super::{DiscordArgs, SettingsError, Source, invalid, number_or_ordinal, refused};

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
        default_value_t = gateway_shard::DEFAULT_INTENTS.join(","),
        global = true
    )]
    pub intents: String,
    /// Dispatches to publish, comma separated.
    #[arg(
        long,
        env = "DISCO_EVENTS",
        default_value_t = gateway_shard::DEFAULT_EVENTS.join(","),
        global = true
    )]
    pub events: String,
    /// Publishes a shard may have waiting for their confirm before it stops reading.
    #[arg(
        long,
        env = "DISCO_PUBLISH_BUFFER",
        default_value_t = Config::DEFAULT_PUBLISH_BUFFER,
        global = true
    )]
    pub publish_buffer: usize,
    /// Bytes a shard's waiting publishes may hold before it stops reading.
    #[arg(
        long,
        env = "DISCO_PUBLISH_BUFFER_BYTES",
        default_value_t = Config::DEFAULT_PUBLISH_BUFFER_BYTES,
        global = true
    )]
    pub publish_buffer_bytes: usize,
    /// Identifies of the bot's daily session budget never spent, by any gateway process.
    #[arg(
        long,
        env = "DISCO_IDENTIFY_FLOOR",
        default_value_t = Config::DEFAULT_IDENTIFY_FLOOR,
        global = true
    )]
    pub identify_floor: u32,
}

/// Where each checked field comes from.
const SOURCES: &[Source] = &[
    ("events", "DISCO_EVENTS", "events"),
    ("publish_buffer", "DISCO_PUBLISH_BUFFER", "publish-buffer"),
    (
        "publish_buffer_bytes",
        "DISCO_PUBLISH_BUFFER_BYTES",
        "publish-buffer-bytes",
    ),
];

impl GatewayArgs {
    /// The gateway's settings, checked. `hostname` is the host name, for `--bucket auto`.
    pub fn config(
        &self,
        discord: &DiscordArgs,
        hostname: Option<&str>,
    ) -> Result<Config, SettingsError> {
        let mut config = Config::new(discord.token()?, self.shard_range(hostname)?);
        config.gateway_url = discord
            .gateway_url()?
            .map(|url| url.as_str().trim_end_matches('/').to_owned());
        config.intents = gateway_shard::parse_intents(&self.intents)
            .map_err(|problem| invalid("DISCO_INTENTS", "intents", problem))?;
        config.events = gateway_shard::parse_events(&self.events)
            .map_err(|problem| invalid("DISCO_EVENTS", "events", problem))?;
        config.publish_buffer = self.publish_buffer;
        config.publish_buffer_bytes = self.publish_buffer_bytes;
        config.identify_floor = self.identify_floor;
        config
            .validate()
            .map_err(|e| refused(e.field, e.problem, SOURCES))?;
        Ok(config)
    }

    /// This process's shards (a gateway's connections, a voice node's calls): `--shards`,
    /// else `--bucket` of `--buckets`, else all of them.
    pub fn shard_range(&self, hostname: Option<&str>) -> Result<ShardRange, SettingsError> {
        let total = self.shard_total;
        let shards = match (&self.shards, &self.bucket) {
            (Some(range), _) => ShardRange::parse(range, total)
                .map_err(|problem| invalid("DISCO_SHARDS", "shards", problem))?,
            (None, Some(bucket)) => {
                let bucket = number_or_ordinal(bucket, hostname, "DISCO_BUCKET", "bucket")?;
                ShardRange::bucket(bucket, self.buckets, total)
                    .map_err(|problem| invalid("DISCO_BUCKET", "bucket", problem))?
            }
            (None, None) => ShardRange::new(0, total, total)
                .map_err(|problem| invalid("DISCO_SHARD_TOTAL", "shard-total", problem))?,
        };
        Ok(shards)
    }
}
