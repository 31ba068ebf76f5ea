//! Commands: each file defines one, once, and gets both forms from its [`Definition`]: the
//! slash command Discord shows (name, description, options, choices, localised names) and the
//! prefix form (`~~name args`), with argument parsing and a usage message.
//!
//! Adding a command: a new file with a `Command` impl (its options as `OptionDef` constants,
//! which is how it reads its arguments), and its line in [`Commands::standard`].

mod help;
mod ping;
mod seed;
mod voice;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use serde_json::{Value, json};

use crate::reply::Reply;

/// Discord permission bits the commands may need (for the invite URL).
pub mod permission {
    /// View channels.
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    /// Send messages.
    pub const SEND_MESSAGES: u64 = 1 << 11;
    /// Send text-to-speech messages.
    pub const SEND_TTS_MESSAGES: u64 = 1 << 12;
    /// Embed links.
    pub const EMBED_LINKS: u64 = 1 << 14;
    /// Read message history (to reply to a message).
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    /// Connect to voice channels.
    pub const CONNECT: u64 = 1 << 20;
    /// Speak in voice channels.
    pub const SPEAK: u64 = 1 << 21;
    /// Administrator: never asked for.
    pub const ADMINISTRATOR: u64 = 1 << 3;
}

/// An option's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Text (Discord type 3).
    String,
    /// A whole number (Discord type 4).
    Integer,
}

/// One option of a command. A command declares each as a constant, lists them in its
/// [`Definition`], and reads its arguments by them ([`Args::text`]), so an option name is
/// written once and a misspelt one does not compile.
#[derive(Debug)]
pub struct OptionDef {
    /// The option's name (lower case; any script).
    pub name: &'static str,
    /// What it is, shown by Discord.
    pub description: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether it must be given.
    pub required: bool,
    /// The only values allowed, when not empty.
    pub choices: &'static [&'static str],
    /// In the prefix form, takes the rest of the line (for free text). Only the last option.
    pub rest: bool,
}

/// Everything about a command that is not its behaviour.
#[derive(Debug)]
pub struct Definition {
    /// The name, as typed after `/` or the prefix.
    pub name: &'static str,
    /// Other names accepted in the prefix form.
    pub aliases: &'static [&'static str],
    /// What it does (1-100 characters).
    pub description: &'static str,
    /// Its options, required ones first.
    pub options: &'static [OptionDef],
    /// The name in other languages: (Discord locale, name).
    pub localized_names: &'static [(&'static str, &'static str)],
    /// The permissions it needs in the channel (for the invite URL).
    pub permissions: u64,
    /// Whether it may take longer than Discord's 3 s: interactions are deferred first.
    pub slow: bool,
}

/// An argument value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Arg {
    /// Text.
    String(String),
    /// A whole number.
    Integer(i64),
}

impl Arg {
    /// The text, or the number as text.
    pub fn text(&self) -> String {
        match self {
            Self::String(s) => s.clone(),
            Self::Integer(n) => n.to_string(),
        }
    }
}

/// A command's arguments, checked against its definition: every required option is there,
/// of its kind, within its choices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args(BTreeMap<&'static str, Arg>);

impl Args {
    /// The value of `option`, if given.
    pub fn get(&self, option: &OptionDef) -> Option<&Arg> {
        self.0.get(option.name)
    }

    /// The text of `option`, empty when an optional one was not given.
    pub fn text(&self, option: &OptionDef) -> String {
        self.get(option).map(Arg::text).unwrap_or_default()
    }

    /// The arguments in option-name order, as text.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        self.0.iter().map(|(k, v)| (*k, v.text())).collect()
    }
}

/// How handling a command went: what the worker does next, and the `outcome` label of
/// `disco_command_worker_commands_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The command ran and its reply was sent.
    Answered,
    /// The arguments were wrong: the usage line was sent.
    Usage,
    /// No command by that name: the reply says so (slash form only).
    Unknown,
    /// The reply could not be sent.
    Failed,
}

impl Outcome {
    /// Every outcome, for metrics that start at zero.
    pub const ALL: [Self; 4] = [Self::Answered, Self::Usage, Self::Unknown, Self::Failed];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::Usage => "usage",
            Self::Unknown => "unknown",
            Self::Failed => "failed",
        }
    }
}

/// Who asked, where, and with what.
#[derive(Debug)]
pub struct Invocation<'a> {
    /// The arguments.
    pub args: Args,
    /// The guild, when asked in one.
    pub guild_id: Option<u64>,
    /// The channel it was asked in.
    pub channel_id: u64,
    /// The member who asked.
    pub user_id: u64,
    /// The gateway's latency for this event, in milliseconds.
    pub latency_ms: u64,
    /// The prefix, for messages that mention commands.
    pub prefix: &'a str,
    /// Every command (for `help`).
    pub commands: &'a Commands,
    /// Asks the voice node of the guild.
    pub voice: &'a crate::voice::VoiceClient,
}

/// How to read a command's arguments once its definition is known (prefix or slash form).
pub type Parsed = Box<dyn FnOnce(&'static Definition) -> Result<Args, String> + Send>;

/// A boxed future, so commands can be trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A command: its definition, and what it does.
pub trait Command: Send + Sync + std::fmt::Debug {
    /// The definition, from which both forms come.
    fn definition(&self) -> &'static Definition;
    /// Runs it.
    fn run<'a>(&'a self, invocation: Invocation<'a>) -> BoxFuture<'a, Reply>;
}

/// A set of commands: what a worker answers, what `disco commands sync` registers, what the
/// invite URL asks permissions for. A value, built once and handed to whoever needs it.
#[derive(Debug)]
pub struct Commands(Vec<Box<dyn Command>>);

impl Commands {
    /// Disco's commands, in the order `help` lists them.
    pub fn standard() -> Self {
        Self(vec![
            Box::new(ping::Ping),
            Box::new(seed::Seed),
            Box::new(voice::Voice::Say),
            Box::new(voice::Voice::Play),
            Box::new(voice::Voice::Skip),
            Box::new(voice::Voice::Stop),
            Box::new(voice::Voice::Leave),
            Box::new(voice::Voice::Queue),
            Box::new(help::Help),
        ])
    }

    /// The commands, in order.
    pub fn iter(&self) -> impl Iterator<Item = &dyn Command> {
        self.0.iter().map(AsRef::as_ref)
    }

    /// Finds a command by name or alias (prefix form: ASCII case does not matter).
    pub fn find(&self, name: &str) -> Option<&dyn Command> {
        let name = name.to_lowercase();
        self.iter().find(|c| {
            let d = c.definition();
            d.name == name || d.aliases.contains(&name.as_str())
        })
    }

    /// The slash commands, as `PUT /applications/{id}/commands` takes them.
    pub fn slash(&self) -> Vec<Value> {
        self.iter().map(|c| c.definition().slash()).collect()
    }

    /// The permissions the commands together need: what the invite URL asks for. Never
    /// Administrator.
    pub fn permissions(&self) -> u64 {
        let replying =
            permission::VIEW_CHANNEL | permission::SEND_MESSAGES | permission::READ_MESSAGE_HISTORY;
        self.iter()
            .fold(replying, |bits, c| bits | c.definition().permissions)
    }
}

impl Definition {
    /// The slash command, as `PUT /applications/{id}/commands` takes it.
    pub fn slash(&self) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .map(|o| {
                let mut option = json!({
                    "type": match o.kind { Kind::String => 3, Kind::Integer => 4 },
                    "name": o.name,
                    "description": o.description,
                    "required": o.required,
                });
                if !o.choices.is_empty() {
                    option["choices"] = o
                        .choices
                        .iter()
                        .map(|c| json!({"name": c, "value": c}))
                        .collect();
                }
                option
            })
            .collect();
        let mut command = json!({
            "type": 1,
            "name": self.name,
            "description": self.description,
            "options": options,
        });
        if !self.localized_names.is_empty() {
            command["name_localizations"] = self
                .localized_names
                .iter()
                .map(|(locale, name)| ((*locale).to_owned(), json!(name)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        command
    }

    /// How to use it in the prefix form.
    pub fn usage(&self, prefix: &str) -> String {
        let mut usage = format!("{prefix}{}", self.name);
        for option in self.options {
            let name = if option.choices.is_empty() {
                option.name.to_owned()
            } else {
                format!("{}: {}", option.name, option.choices.join("|"))
            };
            if option.required {
                usage.push_str(&format!(" <{name}>"));
            } else {
                usage.push_str(&format!(" [{name}]"));
            }
        }
        usage
    }

    /// Parses the prefix form's arguments (the text after the command name). Quotes group
    /// words; a `rest` option takes the rest of the line as written.
    pub fn parse_prefix(&self, text: &str) -> Result<Args, String> {
        let mut args = BTreeMap::new();
        let mut rest = text.trim();
        for option in self.options {
            if rest.is_empty() {
                if option.required {
                    return Err(format!("missing `{}`", option.name));
                }
                continue;
            }
            let value = if option.rest {
                let value = rest.to_owned();
                rest = "";
                value
            } else {
                let (word, remaining) = next_word(rest);
                rest = remaining;
                word
            };
            args.insert(option.name, check(option, Value::String(value))?);
        }
        if !rest.is_empty() {
            return Err(format!("unexpected `{rest}`"));
        }
        Ok(Args(args))
    }

    /// Reads a slash command's options (`data.options` of the interaction).
    pub fn parse_slash(&self, options: &[Value]) -> Result<Args, String> {
        let mut args = BTreeMap::new();
        for given in options {
            let name = given["name"].as_str().unwrap_or_default();
            let option = self
                .options
                .iter()
                .find(|o| o.name == name)
                .ok_or_else(|| format!("unknown option `{name}`"))?;
            args.insert(option.name, check(option, given["value"].clone())?);
        }
        for option in self.options {
            if option.required && !args.contains_key(option.name) {
                return Err(format!("missing `{}`", option.name));
            }
        }
        Ok(Args(args))
    }
}

/// The next word of `text` (a quoted phrase counts as one), and what follows it.
fn next_word(text: &str) -> (String, &str) {
    let text = text.trim_start();
    if let Some(quoted) = text.strip_prefix('"')
        && let Some(end) = quoted.find('"')
    {
        return (quoted[..end].to_owned(), quoted[end + 1..].trim_start());
    }
    match text.find(char::is_whitespace) {
        Some(end) => (text[..end].to_owned(), text[end..].trim_start()),
        None => (text.to_owned(), ""),
    }
}

fn check(option: &OptionDef, value: Value) -> Result<Arg, String> {
    let arg = match option.kind {
        Kind::String => Arg::String(match value {
            Value::String(s) => s,
            other => other.to_string(),
        }),
        Kind::Integer => Arg::Integer(
            match &value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("`{}` must be a whole number", option.name))?,
        ),
    };
    if !option.choices.is_empty() && !option.choices.contains(&arg.text().as_str()) {
        return Err(format!(
            "`{}` must be one of {}",
            option.name,
            option.choices.join(", ")
        ));
    }
    if let Arg::String(text) = &arg
        && text.trim().is_empty()
        && option.required
    {
        return Err(format!("missing `{}`", option.name));
    }
    Ok(arg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> &'static Definition {
        Commands::standard()
            .find("테스트")
            .map(Command::definition)
            .expect("registered")
    }

    /// The parsed arguments, in option-name order, or the problem.
    fn parsed(text: &str) -> Result<Vec<(String, String)>, String> {
        seed().parse_prefix(text).map(|args| {
            args.pairs()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        })
    }

    #[test]
    fn prefix_arguments_parse_like_the_slash_form() {
        let pairs = |list: &[(&str, &str)]| -> Vec<(String, String)> {
            list.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert_eq!(
            parsed("찬구 첫 글입니다"),
            Ok(pairs(&[("옵션", "찬구"), ("작성글", "첫 글입니다")]))
        );
        assert_eq!(
            parsed("\"호빈이\"   여러   칸"),
            Ok(pairs(&[("옵션", "호빈이"), ("작성글", "여러   칸")]))
        );
        let problems = [
            ("누구 글", "`옵션` must be one of 호빈이, 찬구, 카밀라"),
            ("찬구", "missing `작성글`"),
            ("", "missing `옵션`"),
        ];
        for (text, problem) in problems {
            assert_eq!(parsed(text), Err(problem.to_owned()), "{text}");
        }
    }

    #[test]
    fn slash_options_are_checked_too() {
        let good = [
            json!({"name": "옵션", "value": "카밀라"}),
            json!({"name": "작성글", "value": "안녕"}),
        ];
        let args = seed().parse_slash(&good).expect("valid");
        assert_eq!(
            args.get(&seed::WHO),
            Some(&Arg::String("카밀라".to_owned()))
        );
        assert_eq!(args.text(&seed::POST), "안녕");
        assert!(seed().parse_slash(&good[..1]).is_err());
        assert!(
            seed()
                .parse_slash(&[json!({"name": "x", "value": 1})])
                .is_err()
        );
    }

    #[test]
    fn the_seed_command_is_the_original_requests() {
        let slash = seed().slash();
        assert_eq!(slash["name"], "테스트");
        assert_eq!(slash["options"][0]["name"], "옵션");
        assert_eq!(slash["options"][0]["type"], 3);
        assert_eq!(slash["options"][0]["required"], true);
        let choices: Vec<&str> = slash["options"][0]["choices"]
            .as_array()
            .expect("choices")
            .iter()
            .map(|c| c["value"].as_str().expect("text"))
            .collect();
        assert_eq!(choices, ["호빈이", "찬구", "카밀라"]);
        assert_eq!(slash["options"][1]["name"], "작성글");
        assert_eq!(
            seed().usage("~~"),
            "~~테스트 <옵션: 호빈이|찬구|카밀라> <작성글>"
        );
    }

    #[test]
    fn names_and_aliases_resolve_and_permissions_are_least() {
        let commands = Commands::standard();
        assert_eq!(
            commands.find("say").map(|c| c.definition().name),
            Some("voice")
        );
        assert_eq!(
            commands.find("PING").map(|c| c.definition().name),
            Some("ping")
        );
        assert!(commands.find("nope").is_none());
        let bits = commands.permissions();
        assert_eq!(bits & permission::ADMINISTRATOR, 0, "never Administrator");
        assert_ne!(bits & permission::SPEAK, 0, "voice commands need to speak");
    }
}
