//! Reading a gateway frame just enough to route it: its opcode, event name, sequence, the raw
//! bytes of `d` (never re-serialised), the guild it belongs to and, for a message, its author.

use serde::Deserialize;
use serde_json::value::RawValue;

/// A dispatch (op 0), borrowed from the frame's text.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Dispatch<'a> {
    pub(crate) event: &'a str,
    pub(crate) sequence: u64,
    /// The exact bytes of `d` as Discord sent them.
    pub(crate) data: &'a str,
    pub(crate) guild_id: Option<u64>,
    /// Who wrote it, for messages (`author.id`).
    pub(crate) author_id: Option<u64>,
}

#[derive(Deserialize)]
struct Frame<'a> {
    op: u8,
    #[serde(borrow, default)]
    t: Option<&'a str>,
    #[serde(default)]
    s: Option<u64>,
    #[serde(borrow, default)]
    d: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct GuildRef<'a> {
    #[serde(borrow, default)]
    guild_id: Option<&'a str>,
    #[serde(borrow, default)]
    id: Option<&'a str>,
    #[serde(borrow, default)]
    author: Option<AuthorRef<'a>>,
}

#[derive(Deserialize)]
struct AuthorRef<'a> {
    #[serde(borrow)]
    id: &'a str,
}

/// The dispatch in `text`, or `None` for other opcodes and frames that are not JSON.
pub(crate) fn dispatch(text: &str) -> Option<Dispatch<'_>> {
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    if frame.op != 0 {
        return None;
    }
    let (event, sequence, data) = (frame.t?, frame.s?, frame.d?);
    let data = data.get();
    // Guild events name their guild `guild_id`; the GUILD_* events are the guild, `id`.
    let refs = serde_json::from_str::<GuildRef<'_>>(data).ok();
    let guild_id = refs.as_ref().and_then(|guild| {
        let id = if event.starts_with("GUILD_") && !event.starts_with("GUILD_MEMBER") {
            guild.id.or(guild.guild_id)
        } else {
            guild.guild_id
        };
        id?.parse().ok()
    });
    let author_id = refs
        .and_then(|r| r.author)
        .and_then(|author| author.id.parse().ok());
    Some(Dispatch {
        event,
        sequence,
        data,
        guild_id,
        author_id,
    })
}

#[cfg(test)]
mod tests {
    use super::{Dispatch, dispatch};

    #[test]
    fn dispatches_are_read_without_touching_their_payload() {
        let rows = [
            (
                r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"guild_id":"42", "content" :"hi","author":{"id":"11","bot":true}}}"#,
                Some(Dispatch {
                    event: "MESSAGE_CREATE",
                    sequence: 7,
                    data: r#"{"guild_id":"42", "content" :"hi","author":{"id":"11","bot":true}}"#,
                    guild_id: Some(42),
                    author_id: Some(11),
                }),
            ),
            (
                r#"{"op":0,"t":"GUILD_CREATE","s":2,"d":{"id":"9","name":"x"}}"#,
                Some(Dispatch {
                    event: "GUILD_CREATE",
                    sequence: 2,
                    data: r#"{"id":"9","name":"x"}"#,
                    guild_id: Some(9),
                    author_id: None,
                }),
            ),
            (
                r#"{"op":0,"t":"READY","s":1,"d":{"v":10,"user":{"id":"5"}}}"#,
                Some(Dispatch {
                    event: "READY",
                    sequence: 1,
                    data: r#"{"v":10,"user":{"id":"5"}}"#,
                    guild_id: None,
                    author_id: None,
                }),
            ),
            (
                r#"{"op":0,"t":"RESUMED","s":3,"d":{}}"#,
                Some(Dispatch {
                    event: "RESUMED",
                    sequence: 3,
                    data: "{}",
                    guild_id: None,
                    author_id: None,
                }),
            ),
            (r#"{"op":11}"#, None),
            (r#"{"op":10,"d":{"heartbeat_interval":41250}}"#, None),
            ("not json", None),
        ];
        for (text, want) in rows {
            assert_eq!(dispatch(text), want, "{text}");
        }
    }
}
