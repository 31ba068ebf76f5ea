use disco_proto::v1::{VoiceCommand, voice_command};

use super::{BoxFuture, Command, Definition, Invocation, Kind, OptionDef, permission};
use crate::reply::Reply;

/// The voice commands, all answered by the voice node that owns the guild.
#[derive(Debug)]
pub(crate) enum Voice {
    Say,
    Play,
    Skip,
    Stop,
    Leave,
    Queue,
}

const VOICE: u64 = permission::CONNECT | permission::SPEAK | permission::SEND_MESSAGES;

/// `voice`'s `text`: what to say.
const TEXT: OptionDef = OptionDef {
    name: "text",
    description: "What to say",
    kind: Kind::String,
    required: true,
    choices: &[],
    rest: true,
};

/// `play`'s `source`: what to play.
const SOURCE: OptionDef = OptionDef {
    name: "source",
    description: "An http(s) URL or a file path",
    kind: Kind::String,
    required: true,
    choices: &[],
    rest: true,
};

static SAY: Definition = Definition {
    name: "voice",
    aliases: &["say"],
    description: "Joins your voice channel and says the text",
    options: &[TEXT],
    localized_names: &[("ko", "음성")],
    permissions: VOICE,
    slow: true,
};

static PLAY: Definition = Definition {
    name: "play",
    aliases: &[],
    description: "Joins your voice channel and plays an audio URL or file",
    options: &[SOURCE],
    localized_names: &[],
    permissions: VOICE,
    slow: true,
};

static SKIP: Definition = simple("skip", "Skips the track that is playing");
static STOP: Definition = simple("stop", "Stops playing and clears the queue");
static LEAVE: Definition = simple("leave", "Leaves the voice channel");
static QUEUE: Definition = simple("queue", "Shows what is playing and what comes next");

const fn simple(name: &'static str, description: &'static str) -> Definition {
    Definition {
        name,
        aliases: &[],
        description,
        options: &[],
        localized_names: &[],
        permissions: VOICE,
        slow: true,
    }
}

impl Command for Voice {
    fn definition(&self) -> &'static Definition {
        match self {
            Self::Say => &SAY,
            Self::Play => &PLAY,
            Self::Skip => &SKIP,
            Self::Stop => &STOP,
            Self::Leave => &LEAVE,
            Self::Queue => &QUEUE,
        }
    }

    fn run<'a>(&'a self, invocation: Invocation<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let Some(guild_id) = invocation.guild_id else {
                return Reply::text("Voice commands work in a server.".to_owned());
            };
            let args = &invocation.args;
            let action = match self {
                Self::Say => voice_command::Action::Say(voice_command::Say {
                    text: args.text(&TEXT),
                }),
                Self::Play => voice_command::Action::Play(voice_command::Play {
                    source: args.text(&SOURCE),
                }),
                Self::Skip => voice_command::Action::Skip(voice_command::Skip {}),
                Self::Stop => voice_command::Action::Stop(voice_command::Stop {}),
                Self::Leave => voice_command::Action::Leave(voice_command::Leave {}),
                Self::Queue => voice_command::Action::Queue(voice_command::ShowQueue {}),
            };
            let command = VoiceCommand {
                guild_id,
                channel_id: invocation.channel_id,
                requester_id: invocation.user_id,
                action: Some(action),
                ..Default::default()
            };
            Reply::text(invocation.voice.ask(command).await)
        })
    }
}
