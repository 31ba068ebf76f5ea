//! What a command answers, and its JSON for each way of answering: a message, an interaction
//! response, an edit of the original response. Nothing is ever mentioned (`parse: []`), so
//! user text echoed back cannot ping `@everyone`. The bodies are typed views of the reply,
//! serialized straight into the request: building a `serde_json::Value` tree first cost ~8k of
//! the ~183k instructions a `~~ping` costs `disco up`.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

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

/// `allowed_mentions`: nobody, and (for messages) not the replied-to author either.
#[derive(Debug, Serialize)]
pub struct NoMentions {
    parse: [(); 0],
    #[serde(skip_serializing_if = "Option::is_none")]
    replied_user: Option<bool>,
}

/// `POST /channels/{id}/messages`'s body.
#[derive(Debug, Serialize)]
pub struct MessageBody<'a> {
    content: Cow<'a, str>,
    tts: bool,
    embeds: &'a [Value],
    allowed_mentions: NoMentions,
    nonce: &'a str,
    enforce_nonce: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    message_reference: Option<Reference>,
}

/// What a message replies to.
#[derive(Debug, Serialize)]
pub struct Reference {
    /// A snowflake, as Discord writes them: a string.
    message_id: String,
    fail_if_not_exists: bool,
}

/// An interaction response: `data` is absent from the deferred one.
#[derive(Debug, Serialize)]
pub struct InteractionResponse<'a> {
    #[serde(rename = "type")]
    kind: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<ResponseData<'a>>,
}

/// A message sent as an interaction's response, or edited into it.
#[derive(Debug, Serialize)]
pub struct ResponseData<'a> {
    content: Cow<'a, str>,
    /// An edit leaves text-to-speech as it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    tts: Option<bool>,
    embeds: &'a [Value],
    allowed_mentions: NoMentions,
}

impl Reply {
    /// A plain text answer.
    pub fn text(content: String) -> Self {
        Self {
            content,
            ..Self::default()
        }
    }

    /// The content, cut to Discord's limit.
    fn content(&self) -> Cow<'_, str> {
        if self.content.chars().count() <= MAX_CONTENT {
            return Cow::Borrowed(&self.content);
        }
        let mut cut: String = self.content.chars().take(MAX_CONTENT - 1).collect();
        cut.push('…');
        Cow::Owned(cut)
    }

    /// `POST /channels/{id}/messages`: replying to `message_id`, with a nonce so a redelivered
    /// event returns the first reply instead of creating a second.
    pub fn message<'a>(&'a self, nonce: &'a str, message_id: Option<u64>) -> MessageBody<'a> {
        MessageBody {
            content: self.content(),
            tts: self.tts,
            embeds: &self.embeds,
            allowed_mentions: NoMentions {
                parse: [],
                replied_user: Some(false),
            },
            nonce,
            enforce_nonce: true,
            message_reference: message_id.map(|id| Reference {
                message_id: id.to_string(),
                fail_if_not_exists: false,
            }),
        }
    }

    /// An interaction's initial response, type 4 (channel message with source).
    pub fn interaction_response(&self) -> InteractionResponse<'_> {
        InteractionResponse {
            kind: 4,
            data: Some(self.data(Some(self.tts))),
        }
    }

    /// `PATCH .../messages/@original`, after a deferred response.
    pub fn edit(&self) -> ResponseData<'_> {
        self.data(None)
    }

    fn data(&self, tts: Option<bool>) -> ResponseData<'_> {
        ResponseData {
            content: self.content(),
            tts,
            embeds: &self.embeds,
            allowed_mentions: NoMentions {
                parse: [],
                replied_user: None,
            },
        }
    }
}

/// The deferred response (type 5): "thinking", to be edited.
pub fn deferred() -> InteractionResponse<'static> {
    InteractionResponse {
        kind: 5,
        data: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn json(body: impl Serialize) -> Value {
        serde_json::to_value(body).expect("a body serializes")
    }

    #[test]
    fn replies_never_mention_and_carry_the_nonce() {
        let reply = Reply {
            content: "@everyone look".to_owned(),
            tts: true,
            embeds: vec![json!({"title": "t"})],
        };
        assert_eq!(
            json(reply.message("1234", Some(99))),
            json!({
                "content": "@everyone look",
                "tts": true,
                "embeds": [{"title": "t"}],
                "allowed_mentions": {"parse": [], "replied_user": false},
                "nonce": "1234",
                "enforce_nonce": true,
                "message_reference": {"message_id": "99", "fail_if_not_exists": false},
            })
        );
        assert!(
            json(reply.message("1", None))
                .get("message_reference")
                .is_none()
        );
        assert_eq!(
            json(reply.interaction_response()),
            json!({"type": 4, "data": {
                "content": "@everyone look",
                "tts": true,
                "embeds": [{"title": "t"}],
                "allowed_mentions": {"parse": []},
            }})
        );
        assert_eq!(
            json(reply.edit()),
            json!({
                "content": "@everyone look",
                "embeds": [{"title": "t"}],
                "allowed_mentions": {"parse": []},
            })
        );
        assert_eq!(json(deferred()), json!({"type": 5}));
    }

    #[test]
    fn long_content_is_cut_to_discords_limit() {
        let reply = Reply::text("가".repeat(2500));
        let content = json(reply.message("1", None))["content"]
            .as_str()
            .map(|c| c.chars().count());
        assert_eq!(content, Some(2000));
    }
}
