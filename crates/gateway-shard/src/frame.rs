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
///
/// One pass over the frame: `d` is read once, for its guild and author, and its bytes are the
/// span that read covered. (Reading the frame with `d` as a raw value, then `d` again for its
/// fields, walked every dispatch twice: 43k of the 270k instructions a `~~ping` cost `disco
/// up`.) A frame the pass cannot take (an escaped key, a `d` it cannot read) is read the
/// general way.
pub(crate) fn dispatch(text: &str) -> Option<Dispatch<'_>> {
    match one_pass(text) {
        Some(frame) => frame.dispatch(),
        None => two_passes(text),
    }
}

/// What the pass took from a frame.
#[derive(Default)]
struct Fields<'a> {
    op: Option<u8>,
    t: Option<&'a str>,
    s: Option<u64>,
    d: Option<&'a str>,
    refs: Option<GuildRef<'a>>,
}

impl<'a> Fields<'a> {
    fn dispatch(self) -> Option<Dispatch<'a>> {
        if self.op? != 0 {
            return None;
        }
        let (event, sequence, data) = (self.t?, self.s?, self.d?);
        Some(Dispatch::new(event, sequence, data, self.refs))
    }
}

/// JSON's whitespace, skipped.
fn skip_space(text: &str) -> &str {
    text.trim_start_matches([' ', '\n', '\r', '\t'])
}

/// The value at the start of `text` and what follows it.
fn value<'a, T: Deserialize<'a>>(text: &'a str) -> Option<(T, &'a str)> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, &text[values.byte_offset()..]))
}

fn one_pass(text: &str) -> Option<Fields<'_>> {
    let mut fields = Fields::default();
    let mut rest = skip_space(skip_space(text).strip_prefix('{')?);
    if let Some(after) = rest.strip_prefix('}') {
        return skip_space(after).is_empty().then_some(fields);
    }
    // The fields read so far: one read twice leaves the frame to the general reading (serde
    // refuses duplicate fields).
    let mut seen = [false; 4];
    loop {
        let (key, after) = value::<&str>(rest)?;
        rest = skip_space(skip_space(after).strip_prefix(':')?);
        if let Some(field) = ["op", "t", "s", "d"].iter().position(|f| *f == key)
            && std::mem::replace(&mut seen[field], true)
        {
            return None;
        }
        rest = match key {
            "op" => {
                let after;
                (fields.op, after) = value(rest)?;
                after
            }
            "t" => {
                let after;
                (fields.t, after) = value(rest)?;
                after
            }
            "s" => {
                let after;
                (fields.s, after) = value(rest)?;
                after
            }
            "d" => {
                // A `d` without the fields' shapes has no guild or author, as in two passes.
                let (refs, after) = value::<Option<GuildRef<'_>>>(rest).or_else(|| {
                    value::<serde::de::IgnoredAny>(rest).map(|(_, after)| (None, after))
                })?;
                // `"d":null` is no `d`, as `Option<&RawValue>` reads it.
                fields.d = Some(&rest[..rest.len() - after.len()]).filter(|d| *d != "null");
                fields.refs = refs;
                after
            }
            _ => value::<serde::de::IgnoredAny>(rest)?.1,
        };
        rest = skip_space(rest);
        if let Some(after) = rest.strip_prefix(',') {
            rest = skip_space(after);
        } else {
            let after = rest.strip_prefix('}')?;
            return skip_space(after).is_empty().then_some(fields);
        }
    }
}

/// The frame read whole with `d` raw, then `d` read again for its guild and author.
fn two_passes(text: &str) -> Option<Dispatch<'_>> {
    let frame: Frame<'_> = serde_json::from_str(text).ok()?;
    if frame.op != 0 {
        return None;
    }
    let (event, sequence, data) = (frame.t?, frame.s?, frame.d?);
    let data = data.get();
    let refs = serde_json::from_str::<GuildRef<'_>>(data).ok();
    Some(Dispatch::new(event, sequence, data, refs))
}

impl<'a> Dispatch<'a> {
    fn new(event: &'a str, sequence: u64, data: &'a str, refs: Option<GuildRef<'a>>) -> Self {
        // Guild events name their guild `guild_id`; the GUILD_* events are the guild, `id`.
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
        Self {
            event,
            sequence,
            data,
            guild_id,
            author_id,
        }
    }
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

    /// The one pass reads what the general reading reads, or leaves the frame to it.
    #[test]
    fn one_pass_reads_as_the_general_reading_does() {
        let frames = [
            r#"{"t":"MESSAGE_CREATE","s":7,"op":0,"d":{"guild_id":"42","content":"hi \"x\" {}","author":{"id":"11"}}}"#,
            r#" { "d" : { "author" : { "id" : "11" } , "guild_id" : "42" } , "op" : 0 , "s" : 8 , "t" : "MESSAGE_CREATE" } "#,
            r#"{"op":0,"t":"GUILD_CREATE","s":2,"d":{"id":"9","channels":[{"id":"1","guild_id":"9"}]}}"#,
            r#"{"op":0,"t":"TYPING_START","s":2,"d":{"guild_id":9}}"#,
            r#"{"op":0,"t":"X","s":2,"d":null}"#,
            r#"{"op":0,"t":"X","s":2,"d":[1,2]}"#,
            r#"{"op":0,"t":"X","s":2,"d":{},"extra":{"a":[true,null,1.5e3]}}"#,
            r#"{"\u006fp":0,"t":"X","s":2,"d":{}}"#,
            r#"{"op":9,"d":false,"s":null,"t":null}"#,
            r#"{"op":0,"t":"X","s":2,"d":{}"#,
            r#"{"op":0,"t":"X","s":2,"d":{}}}"#,
            r#"{"op":0,"t":"X","s":2,"d":{},}"#,
            r#"{"op":0,"t":"X","s":2,"d":{}} x"#,
            r#"{"op":0,"t":"X","s":2 "d":{}}"#,
            r#"{"op":0,"t":"X","s":2,"d":{},"s":3}"#,
            "{}",
            "",
        ];
        for (i, text) in frames.into_iter().enumerate() {
            assert_eq!(dispatch(text), super::two_passes(text), "{text}");
            match super::one_pass(text) {
                Some(fields) => assert_eq!(fields.dispatch(), super::two_passes(text), "{text}"),
                // From the escaped key on: frames the pass leaves to the general reading (an
                // escaped key, a duplicate field, frames that are not one JSON object).
                None => assert!(i >= 7, "one pass could not read {text}"),
            }
        }
        // Left to the general reading, which reads it.
        let escaped = r#"{"\u006fp":0,"t":"X","s":2,"d":{}}"#;
        assert!(super::one_pass(escaped).is_none());
        assert!(dispatch(escaped).is_some());
    }
}
