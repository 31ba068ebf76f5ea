//! What a command answers, and its JSON for each way of answering: a message, an interaction
//! response, an edit of the original response. Nothing is ever mentioned (`parse: []`), so
//! user text echoed back cannot ping `@everyone`.

use serde_json::{Value, json};

/// Discord's limit on message content, in characters.
const MAX_CONTENT: usize = 2000;

/// A command's answer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reply {
    /// The text.
    pub content: String,
    /// Read aloud by Discord clients.
    pub tts: bool,
    /// Embeds, as Discord's JSON.
    pub embeds: Vec<Value>,
}

impl Reply {
    /// A plain text answer.
    pub fn text(content: String) -> Self {
        Self {
            content,
            ..Self::default()
        }
    }

    fn content(&self) -> String {
        if self.content.chars().count() <= MAX_CONTENT {
            return self.content.clone();
        }
        let mut cut: String = self.content.chars().take(MAX_CONTENT - 1).collect();
        cut.push('…');
        cut
    }

    /// `POST /channels/{id}/messages`: replying to `message_id`, with a nonce so a redelivered
    /// event returns the first reply instead of creating a second.
    pub fn message(&self, nonce: &str, message_id: Option<u64>) -> Value {
        let mut body = json!({
            "content": self.content(),
            "tts": self.tts,
            "embeds": self.embeds,
            "allowed_mentions": {"parse": [], "replied_user": false},
            "nonce": nonce,
            "enforce_nonce": true,
        });
        if let Some(id) = message_id {
            body["message_reference"] =
                json!({"message_id": id.to_string(), "fail_if_not_exists": false});
        }
        body
    }

    /// An interaction's initial response, type 4 (channel message with source).
    pub fn interaction_response(&self) -> Value {
        json!({
            "type": 4,
            "data": {
                "content": self.content(),
                "tts": self.tts,
                "embeds": self.embeds,
                "allowed_mentions": {"parse": []},
            },
        })
    }

    /// `PATCH .../messages/@original`, after a deferred response.
    pub fn edit(&self) -> Value {
        json!({
            "content": self.content(),
            "embeds": self.embeds,
            "allowed_mentions": {"parse": []},
        })
    }
}

/// The deferred response (type 5): "thinking", to be edited.
pub fn deferred() -> Value {
    json!({"type": 5})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_never_mention_and_carry_the_nonce() {
        let reply = Reply::text("@everyone look".to_owned());
        let message = reply.message("1234", Some(99));
        assert_eq!(message["allowed_mentions"]["parse"], json!([]));
        assert_eq!(message["nonce"], "1234");
        assert_eq!(message["enforce_nonce"], true);
        assert_eq!(message["message_reference"]["message_id"], "99");
        assert_eq!(
            reply.interaction_response()["data"]["allowed_mentions"]["parse"],
            json!([])
        );
        assert_eq!(reply.edit()["allowed_mentions"]["parse"], json!([]));
    }

    #[test]
    fn long_content_is_cut_to_discords_limit() {
        let reply = Reply::text("가".repeat(2500));
        let content = reply.message("1", None)["content"]
            .as_str()
            .map(|c| c.chars().count());
        assert_eq!(content, Some(2000));
    }
}
