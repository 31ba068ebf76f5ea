//! Asking the voice node that owns a guild, and turning its answer into words.

use std::time::Duration;

use bus::{Bus, Destination, Message};
use disco_proto::v1::{VoiceCommand, VoiceReply, voice_reply::Outcome};
use disco_proto::{Versioned, route};

/// The original request's words for a member who is not in a voice channel.
pub const NOT_IN_VOICE: &str = "먼저, '음성채널'에 들어와 주세요. ^^";
/// The original request's words when the bot has no voice connection to act on.
pub const NOT_CONNECTED: &str = "The bot is not connected to a voice channel.";
/// When no voice node answers in time.
pub const NO_ANSWER: &str =
    "The voice service did not answer in time; please try again in a moment.";

/// Sends voice requests to the node that owns the guild's shard and waits for its answer.
#[derive(Clone, Debug)]
pub struct VoiceClient {
    bus: Bus,
    shard_total: u32,
    timeout: Duration,
}

impl VoiceClient {
    /// A client routing by `shard_total`, waiting at most `timeout` for an answer.
    pub fn new(bus: Bus, shard_total: u32, timeout: Duration) -> Self {
        Self {
            bus,
            shard_total: shard_total.max(1),
            timeout,
        }
    }

    /// Asks, and says what came of it. A request nobody takes in time expires in its queue, so
    /// no node acts on it after the member was told it failed.
    pub async fn ask(&self, command: VoiceCommand) -> String {
        let shard = route::shard_for_guild(command.guild_id, self.shard_total);
        let message = Message::new(command.encode_current()).expiring_after(self.timeout);
        let answer = self
            .bus
            .call(
                Destination::Queue(route::voice_queue(shard)),
                message,
                self.timeout,
            )
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    shard,
                    "no answer from the voice node"
                );
                return NO_ANSWER.to_owned();
            }
        };
        match disco_proto::decode::<VoiceReply>(&answer.body) {
            Ok(reply) => words(&reply),
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "the voice node's answer is not a VoiceReply"
                );
                NO_ANSWER.to_owned()
            }
        }
    }
}

/// What a member reads for a voice node's answer.
pub fn words(reply: &VoiceReply) -> String {
    match reply.outcome() {
        Outcome::NotInVoice => NOT_IN_VOICE.to_owned(),
        Outcome::NotConnected => NOT_CONNECTED.to_owned(),
        Outcome::NothingPlaying if reply.detail.is_empty() => "Nothing is playing.".to_owned(),
        Outcome::Ok if !reply.queue.is_empty() => {
            let mut lines = vec![reply.detail.clone()];
            lines.extend(
                reply
                    .queue
                    .iter()
                    .enumerate()
                    .map(|(n, title)| format!("{}. {title}", n + 1)),
            );
            lines.join("\n").trim().to_owned()
        }
        _ if reply.detail.is_empty() => "Done.".to_owned(),
        _ => reply.detail.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_the_original_requests_words() {
        let reply = |outcome: Outcome, detail: &str, queue: &[&str]| VoiceReply {
            outcome: outcome.into(),
            detail: detail.to_owned(),
            queue: queue.iter().map(|q| (*q).to_owned()).collect(),
            ..Default::default()
        };
        let rows = [
            (reply(Outcome::NotInVoice, "", &[]), NOT_IN_VOICE),
            (reply(Outcome::NotConnected, "", &[]), NOT_CONNECTED),
            (
                reply(Outcome::Ok, "Playing hello.wav", &[]),
                "Playing hello.wav",
            ),
            (
                reply(Outcome::Ok, "Queue:", &["a", "b"]),
                "Queue:\n1. a\n2. b",
            ),
            (
                reply(Outcome::NothingPlaying, "", &[]),
                "Nothing is playing.",
            ),
        ];
        for (answer, want) in rows {
            assert_eq!(words(&answer), want);
        }
    }
}
