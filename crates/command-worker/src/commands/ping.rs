use super::{BoxFuture, Command, Definition, Invocation, permission};
use crate::reply::Reply;

/// `ping`: `pong! (<n>ms)`, n the gateway latency of the shard that received the event.
#[derive(Debug)]
pub(crate) struct Ping;

static DEFINITION: Definition = Definition {
    name: "ping",
    aliases: &[],
    description: "Answers pong, with the gateway latency",
    options: &[],
    localized_names: &[],
    permissions: permission::SEND_MESSAGES,
    slow: false,
};

impl Command for Ping {
    fn definition(&self) -> &'static Definition {
        &DEFINITION
    }

    fn run<'a>(&'a self, invocation: Invocation<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(async move { Reply::text(format!("pong! ({}ms)", invocation.latency_ms)) })
    }
}
