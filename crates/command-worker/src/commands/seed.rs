use super::{BoxFuture, Command, Definition, Invocation, Kind, OptionDef, permission};
use crate::reply::Reply;

/// The original request's command: `테스트` ("test") with a choice of `옵션` ("option") and a
/// free-text `작성글` ("post"); the answer uses both, spoken by the Discord client (TTS).
#[derive(Debug)]
pub(crate) struct Seed;

/// `옵션`: who the post is for.
pub(super) const WHO: OptionDef = OptionDef {
    name: "옵션",
    description: "Who the post is for",
    kind: Kind::String,
    required: true,
    choices: &["호빈이", "찬구", "카밀라"],
    rest: false,
};

/// `작성글`: the post.
pub(super) const POST: OptionDef = OptionDef {
    name: "작성글",
    description: "The post",
    kind: Kind::String,
    required: true,
    choices: &[],
    rest: true,
};

static DEFINITION: Definition = Definition {
    name: "테스트",
    aliases: &["test"],
    description: "The first command: pick someone and write a post",
    options: &[WHO, POST],
    localized_names: &[("en-US", "test"), ("en-GB", "test")],
    permissions: permission::SEND_MESSAGES | permission::SEND_TTS_MESSAGES,
    slow: false,
};

impl Command for Seed {
    fn definition(&self) -> &'static Definition {
        &DEFINITION
    }

    fn run<'a>(&'a self, invocation: Invocation<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let args = &invocation.args;
            let mut reply = Reply::text(format!(
                "{}: {} (첫 메시지 발송 추카추카추)",
                args.text(&WHO),
                args.text(&POST)
            ));
            reply.tts = true;
            reply
        })
    }
}
