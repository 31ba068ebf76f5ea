use super::{BoxFuture, Command, Definition, Invocation, permission};
use crate::reply::Reply;

/// `help`: the commands, from their definitions.
#[derive(Debug)]
pub(crate) struct Help;

static DEFINITION: Definition = Definition {
    name: "help",
    aliases: &["도움말"],
    description: "Lists the commands",
    options: &[],
    localized_names: &[("ko", "도움말")],
    permissions: permission::SEND_MESSAGES | permission::EMBED_LINKS,
    slow: false,
};

impl Command for Help {
    fn definition(&self) -> &'static Definition {
        &DEFINITION
    }

    fn run<'a>(&'a self, invocation: Invocation<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(async move {
            let lines: Vec<String> = invocation
                .commands
                .iter()
                .map(|c| {
                    let d = c.definition();
                    format!(
                        "`{}` (or `/{}`): {}",
                        d.usage(invocation.prefix),
                        d.name,
                        d.description
                    )
                })
                .collect();
            let mut reply = Reply::text("Disco's commands:".to_owned());
            reply.embeds.push(serde_json::json!({
                "title": "Commands",
                "description": lines.join("\n"),
            }));
            reply
        })
    }
}
