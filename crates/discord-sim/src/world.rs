//! The simulated world: the application, its bot, the guilds with their channels, members and
//! voice states, and the limits Discord would apply. A default world is built in; a JSON or TOML
//! file can replace it.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Everything the simulator knows before anything happens.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// The application's id.
    pub application_id: u64,
    /// The application's name.
    #[serde(default = "default_app_name")]
    pub application_name: String,
    /// The bot user.
    pub bot: User,
    /// The bot token the simulator accepts (`Authorization: Bot <token>`, IDENTIFY).
    pub token: String,
    /// 32 bytes, hex: the seed of the Ed25519 key that signs webhook deliveries. The public key
    /// derived from it is what the interactions endpoint verifies with.
    pub signing_seed: String,
    /// Identify buckets: shard `n` identifies in bucket `n % max_concurrency`, once per 5 s.
    #[serde(default = "one")]
    pub max_concurrency: u32,
    /// Sessions the bot may start per day (`session_start_limit.total`).
    #[serde(default = "thousand")]
    pub session_start_limit: u32,
    /// The shard count `GET /gateway/bot` recommends.
    #[serde(default = "one")]
    pub recommended_shards: u32,
    /// Whether the application has the privileged message content intent enabled.
    #[serde(default = "yes")]
    pub message_content_intent: bool,
    /// The heartbeat interval HELLO announces, in milliseconds.
    #[serde(default = "heartbeat_interval")]
    pub heartbeat_interval_ms: u64,
    /// REST rate limits.
    #[serde(default)]
    pub rate_limits: RateLimits,
    /// How long each REST request takes to answer, in milliseconds (Discord: tens of ms).
    #[serde(default)]
    pub rest_latency_ms: u64,
    /// Whether voice calls are end-to-end encrypted (DAVE), as Discord's are since March 2026;
    /// `false` serves transport encryption only, as before (to compare the cost).
    #[serde(default = "yes")]
    pub dave: bool,
    /// The guilds the bot is in.
    pub guilds: Vec<Guild>,
}

/// REST rate limits: `limit` requests per `window_ms`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// `POST /channels/{id}/messages`, per channel. Discord: 5 per 5 s.
    #[serde(default = "message_limit")]
    pub messages_per_channel: Limit,
    /// Every other bot-authenticated route, per route. Discord's buckets vary; 50 per second
    /// is a fair stand-in.
    #[serde(default = "route_limit")]
    pub per_route: Limit,
    /// All bot-authenticated requests together. Discord: 50 per second. Interaction
    /// callbacks and webhook routes are exempt, as on Discord.
    #[serde(default = "global_limit")]
    pub global: Limit,
    /// Invalid requests (401, 403, and 429 unless `X-RateLimit-Scope: shared`) allowed per
    /// window before Cloudflare bans the address. Discord: 10,000 per 10 minutes.
    #[serde(default = "invalid_limit")]
    pub invalid_requests: Limit,
    /// How long the ban lasts, in milliseconds: every request is refused. Discord: about an hour.
    #[serde(default = "ban_ms")]
    pub ban_ms: u64,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            messages_per_channel: message_limit(),
            per_route: route_limit(),
            global: global_limit(),
            invalid_requests: invalid_limit(),
            ban_ms: ban_ms(),
        }
    }
}

fn invalid_limit() -> Limit {
    Limit {
        limit: 10_000,
        window_ms: 10 * 60 * 1000,
    }
}

fn ban_ms() -> u64 {
    60 * 60 * 1000
}

/// A number of requests per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// Requests allowed per window.
    pub limit: u32,
    /// The window, in milliseconds.
    pub window_ms: u64,
}

/// A user.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The user's id.
    pub id: u64,
    /// The user name.
    pub name: String,
}

/// A guild the bot is in.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Guild {
    /// The guild's id; its shard is `(id >> 22) % shard_total`.
    pub id: u64,
    /// The guild's name.
    pub name: String,
    /// Its channels.
    pub channels: Vec<Channel>,
    /// Its members besides the bot.
    pub members: Vec<User>,
    /// Who is in which voice channel when the simulator starts.
    #[serde(default)]
    pub voice_states: Vec<VoiceState>,
}

/// A guild channel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Channel {
    /// The channel's id.
    pub id: u64,
    /// The channel's name.
    pub name: String,
    /// Text or voice.
    pub kind: ChannelKind,
    /// The bot may read but not send here (no Send Messages): Create Message answers 403.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
}

/// The kinds of channel the simulator has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    /// A text channel (Discord type 0).
    Text,
    /// A voice channel (Discord type 2).
    Voice,
}

impl ChannelKind {
    /// Discord's channel type number.
    pub fn code(self) -> u8 {
        match self {
            Self::Text => 0,
            Self::Voice => 2,
        }
    }
}

/// A member in a voice channel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceState {
    /// The member.
    pub user_id: u64,
    /// The voice channel.
    pub channel_id: u64,
}

/// Why a world file was refused.
#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    /// The file could not be read.
    #[error("cannot read the world file")]
    Read(#[from] std::io::Error),
    /// Not valid JSON for a world.
    #[error("invalid world JSON")]
    Json(#[from] serde_json::Error),
    /// Not valid TOML for a world.
    #[error("invalid world TOML")]
    Toml(#[from] toml::de::Error),
    /// Parsed, but inconsistent.
    #[error("invalid world: {0}")]
    Invalid(String),
}

fn default_app_name() -> String {
    "Disco".to_owned()
}
fn one() -> u32 {
    1
}
fn thousand() -> u32 {
    1000
}
fn yes() -> bool {
    true
}
fn heartbeat_interval() -> u64 {
    41_250
}
fn message_limit() -> Limit {
    Limit {
        limit: 5,
        window_ms: 5_000,
    }
}
fn route_limit() -> Limit {
    Limit {
        limit: 50,
        window_ms: 1_000,
    }
}
fn global_limit() -> Limit {
    Limit {
        limit: 50,
        window_ms: 1_000,
    }
}

/// An id in Discord's snowflake shape whose guild shard is `n` for any total dividing 8.
const fn snowflake(n: u64, low: u64) -> u64 {
    ((1_000_000 + n) << 22) | low
}

impl Default for World {
    /// Two guilds ("Disco Lounge" on shard 0, "Disco Annex" on shard 1 of 2), each with text and
    /// voice channels and three members besides the bot, nobody in voice yet.
    fn default() -> Self {
        let members = vec![
            User {
                id: snowflake(0, 11),
                name: "alice".to_owned(),
            },
            User {
                id: snowflake(0, 12),
                name: "bob".to_owned(),
            },
            User {
                id: snowflake(0, 13),
                name: "chanku".to_owned(),
            },
        ];
        let guild = |n: u64, name: &str| Guild {
            id: snowflake(n, 0),
            name: name.to_owned(),
            channels: vec![
                Channel {
                    id: snowflake(n, 1),
                    name: "general".to_owned(),
                    kind: ChannelKind::Text,
                    read_only: false,
                },
                Channel {
                    id: snowflake(n, 2),
                    name: "bots".to_owned(),
                    kind: ChannelKind::Text,
                    read_only: false,
                },
                Channel {
                    id: snowflake(n, 3),
                    name: "Lounge".to_owned(),
                    kind: ChannelKind::Voice,
                    read_only: false,
                },
                Channel {
                    id: snowflake(n, 4),
                    name: "Music".to_owned(),
                    kind: ChannelKind::Voice,
                    read_only: false,
                },
            ],
            members: members.clone(),
            voice_states: Vec::new(),
        };
        Self {
            application_id: snowflake(0, 100),
            application_name: default_app_name(),
            bot: User {
                id: snowflake(0, 100),
                name: "Disco".to_owned(),
            },
            token: "MTA0OTQ5NzE0MDA0OTQ3NzYw.GdiScO.simulator-token-not-a-real-one".to_owned(),
            signing_seed: "d15c0d15c0d15c0d15c0d15c0d15c0d15c0d15c0d15c0d15c0d15c0d15c0d15c"
                .to_owned(),
            max_concurrency: 1,
            session_start_limit: 1000,
            recommended_shards: 2,
            message_content_intent: true,
            heartbeat_interval_ms: heartbeat_interval(),
            rate_limits: RateLimits::default(),
            rest_latency_ms: 0,
            dave: true,
            guilds: vec![guild(0, "Disco Lounge"), guild(1, "Disco Annex")],
        }
    }
}

impl World {
    /// A bot at scale: `guilds` guilds spread evenly over `shards` shards (each with a text
    /// channel "general" and the default world's three members), identifying `max_concurrency`
    /// shards at a time; everything else as in the default world.
    pub fn at_scale(shards: u32, max_concurrency: u32, guilds: u32) -> Self {
        let base = Self::default();
        let members = base.guilds[0].members.clone();
        Self {
            max_concurrency,
            recommended_shards: shards,
            guilds: (0..u64::from(guilds))
                .map(|n| Guild {
                    id: snowflake(n, 0),
                    name: format!("Guild {n}"),
                    channels: vec![Channel {
                        id: snowflake(n, 1),
                        name: "general".to_owned(),
                        kind: ChannelKind::Text,
                        read_only: false,
                    }],
                    members: members.clone(),
                    voice_states: Vec::new(),
                })
                .collect(),
            ..base
        }
    }

    /// Reads a world from a `.json` or `.toml` file.
    pub fn load(path: &Path) -> Result<Self, WorldError> {
        let text = std::fs::read_to_string(path)?;
        let world: Self = if path.extension().is_some_and(|e| e == "toml") {
            toml::from_str(&text)?
        } else {
            serde_json::from_str(&text)?
        };
        world.check()?;
        Ok(world)
    }

    /// Refuses a world Discord could not have.
    pub fn check(&self) -> Result<(), WorldError> {
        let invalid = |what: String| Err(WorldError::Invalid(what));
        let mut seed = [0_u8; 32];
        if hex::decode_to_slice(&self.signing_seed, &mut seed).is_err() {
            return invalid("signing_seed must be 64 hexadecimal characters".to_owned());
        }
        if self.max_concurrency == 0 || self.recommended_shards == 0 {
            return invalid("max_concurrency and recommended_shards must be positive".to_owned());
        }
        if self.token.split('.').count() != 3 {
            return invalid("token must have three dot-separated parts".to_owned());
        }
        for guild in &self.guilds {
            for state in &guild.voice_states {
                if self.voice_channel(guild.id, state.channel_id).is_none() {
                    return invalid(format!(
                        "voice state of user {} names {}, not a voice channel of guild {}",
                        state.user_id, state.channel_id, guild.id
                    ));
                }
            }
        }
        Ok(())
    }

    /// The signing seed as bytes (checked by [`World::check`]).
    pub(crate) fn seed(&self) -> [u8; 32] {
        let mut seed = [0_u8; 32];
        // `check` refused any other seed; a zero key would only fail verification.
        let _ = hex::decode_to_slice(&self.signing_seed, &mut seed);
        seed
    }

    /// A guild by id.
    pub fn guild(&self, id: u64) -> Option<&Guild> {
        self.guilds.iter().find(|guild| guild.id == id)
    }

    /// The guild and channel of a channel id.
    pub fn channel(&self, id: u64) -> Option<(&Guild, &Channel)> {
        self.guilds.iter().find_map(|guild| {
            guild
                .channels
                .iter()
                .find(|channel| channel.id == id)
                .map(|channel| (guild, channel))
        })
    }

    fn voice_channel(&self, guild_id: u64, channel_id: u64) -> Option<&Channel> {
        self.guild(guild_id)?
            .channels
            .iter()
            .find(|c| c.id == channel_id && c.kind == ChannelKind::Voice)
    }

    /// A user of the world: the bot or a member of any guild.
    pub fn user(&self, id: u64) -> Option<&User> {
        if self.bot.id == id {
            return Some(&self.bot);
        }
        self.guilds
            .iter()
            .flat_map(|guild| &guild.members)
            .find(|user| user.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_world_is_valid_and_spreads_guilds_over_shards() {
        let world = World::default();
        world.check().expect("valid");
        let shards: Vec<u64> = world.guilds.iter().map(|g| (g.id >> 22) % 2).collect();
        assert_eq!(shards, vec![0, 1]);
    }

    #[test]
    fn world_files_round_trip_in_json_and_toml() {
        let world = World::default();
        let dir = std::env::temp_dir().join(format!("disco-sim-world-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let json = dir.join("world.json");
        std::fs::write(&json, serde_json::to_string(&world).expect("json")).expect("write");
        assert_eq!(World::load(&json).expect("loads"), world);
        let toml_path = dir.join("world.toml");
        std::fs::write(&toml_path, toml::to_string(&world).expect("toml")).expect("write");
        assert_eq!(World::load(&toml_path).expect("loads"), world);
        std::fs::write(&json, r#"{"application_id": 1}"#).expect("write");
        assert!(matches!(World::load(&json), Err(WorldError::Json(_))));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn inconsistent_worlds_are_refused() {
        let mut world = World::default();
        let text_channel = world.guilds[0].channels[0].id;
        world.guilds[0].voice_states.push(VoiceState {
            user_id: 1,
            channel_id: text_channel,
        });
        let error = world
            .check()
            .expect_err("a text channel is not a voice channel");
        assert!(error.to_string().contains("not a voice channel"));
    }
}
