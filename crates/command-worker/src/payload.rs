//! The parts of Discord's dispatches the worker reads, as small typed views. serde passes over
//! every field not named here, so Discord adding one never makes an event unreadable.

use serde::Deserialize;
use serde_json::Value;
use twilight_model::id::Id;
use twilight_model::id::marker::{
    ChannelMarker, GuildMarker, InteractionMarker, MessageMarker, UserMarker,
};

/// A `MESSAGE_CREATE`.
#[derive(Debug, Deserialize)]
pub(crate) struct Message {
    pub(crate) id: Id<MessageMarker>,
    pub(crate) channel_id: Id<ChannelMarker>,
    #[serde(default)]
    pub(crate) guild_id: Option<Id<GuildMarker>>,
    pub(crate) author: User,
    #[serde(default)]
    pub(crate) content: String,
}

/// A message's author, or an interaction's user.
#[derive(Debug, Deserialize)]
pub(crate) struct User {
    pub(crate) id: Id<UserMarker>,
    #[serde(default)]
    pub(crate) bot: bool,
}

/// An `INTERACTION_CREATE`. Only application commands (type 2) are answered; the fields they
/// need are checked then, so other kinds pass whatever they carry.
#[derive(Debug, Deserialize)]
pub(crate) struct Interaction {
    #[serde(rename = "type")]
    pub(crate) kind: u8,
    pub(crate) id: Option<Id<InteractionMarker>>,
    pub(crate) token: Option<String>,
    pub(crate) channel_id: Option<Id<ChannelMarker>>,
    #[serde(default)]
    pub(crate) guild_id: Option<Id<GuildMarker>>,
    /// Who used it in a guild.
    #[serde(default)]
    pub(crate) member: Option<Member>,
    /// Who used it in a DM.
    #[serde(default)]
    pub(crate) user: Option<User>,
    #[serde(default)]
    pub(crate) data: Option<CommandData>,
}

/// An application command interaction's type.
pub(crate) const APPLICATION_COMMAND: u8 = 2;

/// A guild member (of an interaction).
#[derive(Debug, Deserialize)]
pub(crate) struct Member {
    pub(crate) user: User,
}

/// What an application command carries.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct CommandData {
    #[serde(default)]
    pub(crate) name: String,
    /// Read against the command's definition (`Definition::parse_slash`).
    #[serde(default)]
    pub(crate) options: Vec<Value>,
}

impl Interaction {
    /// Who used it: the member in a guild, the user in a DM.
    pub(crate) fn user_id(&self) -> Option<Id<UserMarker>> {
        self.member
            .as_ref()
            .map(|m| m.user.id)
            .or_else(|| self.user.as_ref().map(|u| u.id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_read_what_discord_sends_and_pass_over_the_rest() {
        let message: Message = serde_json::from_str(
            r#"{"id":"11","channel_id":"22","guild_id":"33","content":"~~ping",
                "author":{"id":"44","username":"alice"},"tts":false,"new_field":[1]}"#,
        )
        .expect("a message");
        assert_eq!(
            (
                message.id.get(),
                message.channel_id.get(),
                message.author.id.get()
            ),
            (11, 22, 44)
        );
        assert!(!message.author.bot);
        let interaction: Interaction = serde_json::from_str(
            r#"{"type":2,"id":"5","token":"t","channel_id":"6","guild_id":"7",
                "member":{"user":{"id":"8"}},"data":{"name":"ping","options":[]}}"#,
        )
        .expect("an interaction");
        assert_eq!(interaction.user_id().map(Id::get), Some(8));
        let ping: Interaction = serde_json::from_str(r#"{"type":1}"#).expect("a PING");
        assert_eq!(ping.kind, 1);
        assert!(serde_json::from_str::<Message>(r#"{"id":"1"}"#).is_err());
    }
}
