//! Who is in which voice channel, for the guilds of the node's shards: filled from GUILD_CREATE,
//! kept current by VOICE_STATE_UPDATE, so "join the member's channel" needs no call to Discord.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Deserialize;

/// guild -> (user -> voice channel), and whether the guild's whole list is known.
#[derive(Debug, Default)]
pub(crate) struct Voices {
    guilds: Mutex<HashMap<u64, GuildVoices>>,
}

#[derive(Debug, Default)]
struct GuildVoices {
    channels: HashMap<u64, u64>,
    /// Filled from GUILD_CREATE: a member missing here is not in voice. A node that started
    /// after the guild's GUILD_CREATE only knows the changes since.
    complete: bool,
}

impl Voices {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, GuildVoices>> {
        self.guilds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A guild's voice states as GUILD_CREATE lists them, replacing what was known.
    pub(crate) fn replace(&self, guild_id: u64, states: &[VoiceState]) {
        let channels = states
            .iter()
            .filter_map(|s| Some((s.user_id, s.channel_id?)))
            .collect();
        self.lock().insert(
            guild_id,
            GuildVoices {
                channels,
                complete: true,
            },
        );
    }

    /// Whether the node has the guild's whole list (it saw its GUILD_CREATE).
    pub(crate) fn complete(&self, guild_id: u64) -> bool {
        self.lock().get(&guild_id).is_some_and(|g| g.complete)
    }

    /// A member joined, moved (`Some`) or left voice (`None`).
    pub(crate) fn set(&self, guild_id: u64, user_id: u64, channel_id: Option<u64>) {
        let mut guilds = self.lock();
        let guild = &mut guilds.entry(guild_id).or_default().channels;
        match channel_id {
            Some(channel) => guild.insert(user_id, channel),
            None => guild.remove(&user_id),
        };
    }

    /// The voice channel a member is in.
    pub(crate) fn channel_of(&self, guild_id: u64, user_id: u64) -> Option<u64> {
        self.lock().get(&guild_id)?.channels.get(&user_id).copied()
    }

    /// How many members other than `except` are in a voice channel.
    pub(crate) fn others_in(&self, guild_id: u64, channel_id: u64, except: u64) -> usize {
        self.lock().get(&guild_id).map_or(0, |guild| {
            guild
                .channels
                .iter()
                .filter(|&(&user, &channel)| channel == channel_id && user != except)
                .count()
        })
    }
}

/// A voice state as the gateway sends it (inside GUILD_CREATE it has no `guild_id`).
#[derive(Debug, Deserialize)]
pub(crate) struct VoiceState {
    #[serde(default, deserialize_with = "optional_id")]
    pub(crate) guild_id: Option<u64>,
    #[serde(deserialize_with = "id")]
    pub(crate) user_id: u64,
    #[serde(default, deserialize_with = "optional_id")]
    pub(crate) channel_id: Option<u64>,
    #[serde(default)]
    pub(crate) session_id: String,
}

/// VOICE_SERVER_UPDATE: where the guild's voice server is. `endpoint` is null while Discord
/// moves the call to another server.
#[derive(Debug, Deserialize)]
pub(crate) struct VoiceServer {
    #[serde(deserialize_with = "id")]
    pub(crate) guild_id: u64,
    pub(crate) token: String,
    pub(crate) endpoint: Option<String>,
}

/// GUILD_CREATE, the part the node reads.
#[derive(Debug, Deserialize)]
pub(crate) struct GuildCreate {
    #[serde(deserialize_with = "id")]
    pub(crate) id: u64,
    #[serde(default)]
    pub(crate) unavailable: bool,
    #[serde(default)]
    pub(crate) voice_states: Vec<VoiceState>,
}

/// Discord writes snowflakes as strings.
fn id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    text.parse().map_err(serde::de::Error::custom)
}

fn optional_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
    text.map(|t| t.parse().map_err(serde::de::Error::custom))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guild_create_then_updates_track_who_is_where() {
        let guild: GuildCreate = serde_json::from_str(
            r#"{"id":"10","voice_states":[
                {"user_id":"1","channel_id":"100","session_id":"a"},
                {"user_id":"2","channel_id":"100","session_id":"b"},
                {"user_id":"3","channel_id":null,"session_id":"c"}]}"#,
        )
        .expect("parses");
        let voices = Voices::default();
        assert!(!voices.complete(10));
        voices.replace(guild.id, &guild.voice_states);
        assert!(voices.complete(10));
        assert_eq!(voices.channel_of(10, 1), Some(100));
        assert_eq!(voices.channel_of(10, 3), None);
        assert_eq!(voices.others_in(10, 100, 1), 1);

        let moved: VoiceState = serde_json::from_str(
            r#"{"guild_id":"10","user_id":"2","channel_id":"200","session_id":"b"}"#,
        )
        .expect("parses");
        voices.set(10, moved.user_id, moved.channel_id);
        assert_eq!(voices.others_in(10, 100, 1), 0);
        assert_eq!(voices.channel_of(10, 2), Some(200));
        voices.set(10, 2, None);
        assert_eq!(voices.channel_of(10, 2), None);
        assert_eq!(voices.channel_of(11, 2), None);
    }

    #[test]
    fn a_voice_server_move_has_no_endpoint() {
        let server: VoiceServer =
            serde_json::from_str(r#"{"guild_id":"10","token":"t","endpoint":null}"#)
                .expect("parses");
        assert_eq!((server.guild_id, server.endpoint), (10, None));
        assert!(serde_json::from_str::<VoiceServer>(r#"{"guild_id":"x","token":"t"}"#).is_err());
    }
}
