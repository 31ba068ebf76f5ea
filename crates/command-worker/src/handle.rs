//! One event, start to finish: parse, run the command, reply, then settle the delivery. The
//! delivery is acked only once the reply is confirmed by Discord (or refused for good); a
//! redelivered event cannot reply twice: messages carry the triggering message's id as their
//! nonce, and an interaction takes one initial response.

use std::sync::Arc;
use std::time::Instant;

use bus::{Delivery, Message};
use disco_proto::Versioned;
use disco_proto::v1::{GatewayEvent, InteractionReply};
use twilight_model::id::Id;

use crate::commands::{self, Commands, Invocation, Outcome};
use crate::discord::{CallError, Discord, Due, created};
use crate::metrics::{CommandLabel, DurationLabel, Metrics, ReasonLabel};
use crate::payload;
use crate::reply::{self, Reply};
use crate::voice::VoiceClient;

/// Discord's code for "Interaction has already been acknowledged".
const ALREADY_ACKNOWLEDGED: u64 = 40060;

/// What the worker shares between events.
#[derive(Debug)]
pub(crate) struct Context {
    pub(crate) discord: Discord,
    pub(crate) commands: Commands,
    pub(crate) voice: VoiceClient,
    pub(crate) prefix: String,
    pub(crate) metrics: Metrics,
    pub(crate) recent: crate::recent::Recent,
    /// Events handled at once; an event whose reply waits for its channel gives its turn up.
    pub(crate) capacity: tokio::sync::Semaphore,
    /// How long after a message its reply is still worth sending.
    pub(crate) reply_deadline: std::time::Duration,
}

/// How long a reply may wait for its turn in a rate-limited channel holding the worker's
/// capacity; through the rest-proxy, a longer wait is spent parked, without it.
const PARK_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// Parked a little past the turn, so as not to come back just before the window opens.
const PARK_SLACK: std::time::Duration = std::time::Duration::from_millis(100);

/// An event's turn at the worker's capacity, given up while its reply is parked.
pub(crate) struct Slot<'a> {
    capacity: &'a tokio::sync::Semaphore,
    permit: Option<tokio::sync::SemaphorePermit<'a>>,
}

impl<'a> Slot<'a> {
    async fn take(capacity: &'a tokio::sync::Semaphore) -> Self {
        Self {
            capacity,
            permit: capacity.acquire().await.ok(),
        }
    }

    /// Waits `wait` without the turn, then takes one again.
    async fn wait(&mut self, wait: std::time::Duration) {
        self.permit = None;
        tokio::time::sleep(wait).await;
        self.permit = self.capacity.acquire().await.ok();
    }
}

/// Why an event was not handled. None of these can succeed on a retry (a payload does not
/// change; Discord's unavailability outlasted the client's own retries), so each dead-letters
/// the event, counted by kind.
#[derive(Debug, thiserror::Error)]
enum Unhandled {
    #[error("not a GatewayEvent: {0}")]
    Malformed(String),
    #[error("{0}")]
    Unparseable(String),
    #[error("the worker does not handle {0}")]
    Unexpected(String),
    #[error("cannot answer the ingress")]
    Bus(#[source] bus::Error),
    #[error("discord is unavailable")]
    Discord(#[source] CallError),
}

impl Unhandled {
    /// The `reason` label of `disco_command_worker_dead_letters_total`.
    fn kind(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::Unparseable(_) => "unparseable",
            Self::Unexpected(_) => "unexpected",
            Self::Bus(_) => "bus",
            Self::Discord(_) => "discord",
        }
    }
}

impl bus::Failure for Unhandled {
    fn is_retryable(&self) -> bool {
        false
    }
}

/// How an event was handled, as the delivery is settled.
type Handling = Result<(), Unhandled>;

pub(crate) async fn handle(ctx: Arc<Context>, delivery: Delivery) {
    ctx.metrics.events.inc();
    let mut slot = Slot::take(&ctx.capacity).await;
    let outcome = process(&ctx, &delivery, &mut slot).await;
    drop(slot);
    if let Err(unhandled) = &outcome {
        tracing::warn!(
            error = unhandled as &dyn std::error::Error,
            "dead-lettering an event"
        );
        ctx.metrics
            .dead_letters
            .get_or_create(&ReasonLabel {
                reason: unhandled.kind(),
            })
            .inc();
    }
    if let Err(error) = delivery.settle(outcome).await {
        // It comes back; the nonce (or the interaction's single response) keeps the reply single.
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "could not settle an event"
        );
    }
}

async fn process(ctx: &Context, delivery: &Delivery, slot: &mut Slot<'_>) -> Handling {
    let event = match disco_proto::decode::<GatewayEvent>(&delivery.message.body) {
        Ok(event) => event,
        Err(error) => {
            return Err(Unhandled::Malformed(error.to_string()));
        }
    };
    let now = unix_ms();
    let age = u64::try_from(now - event.received_at_ms).unwrap_or(0);
    // The shard's heartbeat latency; an interaction from the HTTP ingress has none, and gets
    // its time through the platform instead.
    let latency_ms = event.heartbeat_latency_ms.map_or(age, u64::from);
    let unreadable = |error: serde_json::Error| {
        Unhandled::Unparseable(format!("{} payload: {error}", event.event_name))
    };
    let started = Instant::now();
    let outcome = match event.event_name.as_str() {
        "MESSAGE_CREATE" => {
            let message = serde_json::from_slice(&event.payload).map_err(unreadable)?;
            self::message(ctx, message, latency_ms, slot).await
        }
        "INTERACTION_CREATE" => {
            let interaction = serde_json::from_slice(&event.payload).map_err(unreadable)?;
            self::interaction(ctx, interaction, latency_ms, delivery).await
        }
        other => {
            return Err(Unhandled::Unexpected(other.to_owned()));
        }
    };
    if let Some((command, _)) = &outcome.1 {
        let took = started.elapsed().as_secs_f64() + age as f64 / 1000.0;
        ctx.metrics
            .duration
            .get_or_create(&DurationLabel {
                command: command.clone(),
            })
            .observe(took);
    }
    if let Some((command, result)) = outcome.1 {
        ctx.metrics
            .commands
            .get_or_create(&CommandLabel {
                command,
                outcome: result.label(),
            })
            .inc();
    }
    outcome.0
}

/// The command named, its reply, and how it went (`answered`, `usage`, `unknown`).
async fn run(
    ctx: &Context,
    name: &str,
    parse: commands::Parsed,
    place: Place,
    latency_ms: u64,
) -> (String, Reply, Outcome) {
    let prefix = ctx.prefix.as_str();
    let Some(command) = ctx.commands.find(name) else {
        let reply = Reply::text(format!(
            "unknown command `{name}`; `{prefix}help` (or `/help`) lists the commands"
        ));
        return ("unknown".to_owned(), reply, Outcome::Unknown);
    };
    let definition = command.definition();
    let args = match parse(definition) {
        Ok(args) => args,
        Err(problem) => {
            let reply = Reply::text(format!("{problem}. Usage: `{}`", definition.usage(prefix)));
            return (definition.name.to_owned(), reply, Outcome::Usage);
        }
    };
    let invocation = Invocation {
        args,
        guild_id: place.guild_id,
        channel_id: place.channel_id,
        user_id: place.user_id,
        latency_ms,
        prefix,
        commands: &ctx.commands,
        voice: &ctx.voice,
    };
    (
        definition.name.to_owned(),
        command.run(invocation).await,
        Outcome::Answered,
    )
}

#[derive(Clone, Copy)]
struct Place {
    guild_id: Option<u64>,
    channel_id: u64,
    user_id: u64,
}

type Handled = (Handling, Option<(String, Outcome)>);

async fn message(
    ctx: &Context,
    message: payload::Message,
    latency_ms: u64,
    slot: &mut Slot<'_>,
) -> Handled {
    if message.author.bot {
        return (Ok(()), None);
    }
    let Some(text) = message.content.strip_prefix(ctx.prefix.as_str()) else {
        return (Ok(()), None);
    };
    let text = text.trim_start();
    let (name, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    if name.is_empty() {
        return (Ok(()), None);
    }
    let (message_id, channel_id) = (message.id.get(), message.channel_id.get());
    if !ctx.recent.first(message_id) {
        ctx.metrics.duplicates.inc();
        return (Ok(()), None);
    }
    let place = Place {
        guild_id: message.guild_id.map(Id::get),
        channel_id,
        user_id: message.author.id.get(),
    };
    let rest = rest.to_owned();
    let parse: commands::Parsed = Box::new(move |definition| definition.parse_prefix(&rest));
    let (command, reply, result) = run(ctx, name, parse, place, latency_ms).await;
    if result == Outcome::Unknown {
        // Not ours: another bot's prefix, or a typo. Silence, as discord.py's commands do;
        // a known command used wrongly still gets its usage line.
        return (Ok(()), Some((command, result)));
    }
    let mut due = Due {
        deadline: created(message_id) + ctx.reply_deadline,
        max_wait: Some(PARK_AFTER),
        returning: false,
    };
    let nonce = message_id.to_string();
    let body = reply.message(&nonce, Some(message_id));
    let sent = loop {
        match ctx.discord.create_message(channel_id, &body, due).await {
            // The channel's turn comes later: wait for it without the worker's capacity.
            Err(CallError::Later { wait, .. }) => {
                ctx.metrics.parked.inc();
                slot.wait(wait + PARK_SLACK).await;
                // Back at its promised turn, it waits in line as long as the client waits.
                due.returning = true;
                due.max_wait = None;
            }
            other => break other,
        }
    };
    (settle(sent, &command), Some((command, result)))
}

async fn interaction(
    ctx: &Context,
    interaction: payload::Interaction,
    latency_ms: u64,
    delivery: &Delivery,
) -> Handled {
    // An application command. Components, autocomplete and modals are not used.
    if interaction.kind != payload::APPLICATION_COMMAND {
        return (Ok(()), None);
    }
    let user_id = interaction.user_id().map_or(0, Id::get);
    let (Some(interaction_id), Some(token), Some(channel_id)) =
        (interaction.id, interaction.token, interaction.channel_id)
    else {
        return (
            Err(Unhandled::Unparseable(
                "INTERACTION_CREATE without id, token or channel_id".to_owned(),
            )),
            None,
        );
    };
    let (interaction_id, token) = (interaction_id.get(), token.as_str());
    if !ctx.recent.first(interaction_id) {
        ctx.metrics.duplicates.inc();
        return (Ok(()), None);
    }
    let place = Place {
        guild_id: interaction.guild_id.map(Id::get),
        channel_id: channel_id.get(),
        user_id,
    };
    let payload::CommandData { name, options } = interaction.data.unwrap_or_default();
    let parse: commands::Parsed = Box::new(move |definition| definition.parse_slash(&options));
    let slow = ctx
        .commands
        .find(&name)
        .is_some_and(|c| c.definition().slow);

    // From the HTTP ingress: the answer goes back over the bus and becomes the HTTP response
    // (or, if it comes late, the ingress's edit of its deferred response).
    if delivery.message.reply_to.is_some() {
        let (command, reply, result) = run(ctx, &name, parse, place, latency_ms).await;
        let answer = InteractionReply {
            response: serde_json::to_vec(&reply.interaction_response())
                .expect("a reply's JSON has only string keys")
                .into(),
            ..Default::default()
        };
        return match delivery.reply(Message::new(answer.encode_current())).await {
            Ok(()) => (Ok(()), Some((command, result))),
            Err(error) => (Err(Unhandled::Bus(error)), Some((command, Outcome::Failed))),
        };
    }

    // From the gateway: a slow command defers first (Discord gives 3 s), then edits.
    if slow {
        match ctx
            .discord
            .interaction_callback(interaction_id, token, &reply::deferred())
            .await
        {
            Ok(()) => {}
            // A redelivery: an earlier attempt deferred; finishing it is an edit, as here.
            Err(CallError::Refused {
                code: Some(ALREADY_ACKNOWLEDGED),
                ..
            }) => {}
            Err(error) => return (settle(Err(error), &name), Some((name, Outcome::Failed))),
        }
    }
    let (command, reply, result) = run(ctx, &name, parse, place, latency_ms).await;
    let sent = if slow {
        ctx.discord
            .edit_original(interaction_id, token, &reply.edit())
            .await
    } else {
        match ctx
            .discord
            .interaction_callback(interaction_id, token, &reply.interaction_response())
            .await
        {
            // A redelivery of an interaction an earlier attempt answered: answered once, done.
            Err(CallError::Refused {
                code: Some(ALREADY_ACKNOWLEDGED),
                ..
            }) => Ok(()),
            other => other,
        }
    };
    (settle(sent, &command), Some((command, result)))
}

/// A refused call is final (logged with its route, then acked); an unavailable Discord, after
/// its retries, dead-letters the event with the reason.
fn settle(sent: Result<(), CallError>, command: &str) -> Handling {
    match sent {
        Ok(()) => Ok(()),
        // Missing Permissions: a member typing where the bot may not write; the rest-proxy
        // answers the repeats itself. Not worth a warning each time.
        Err(error @ CallError::Refused { status: 403, .. }) => {
            tracing::debug!(
                command,
                error = &error as &dyn std::error::Error,
                "no permission to reply here"
            );
            Ok(())
        }
        Err(error @ CallError::Refused { .. }) => {
            tracing::warn!(
                command,
                error = &error as &dyn std::error::Error,
                "discord refused the reply; not retrying"
            );
            Ok(())
        }
        Err(error @ CallError::Expired { .. }) => {
            tracing::info!(
                command,
                error = &error as &dyn std::error::Error,
                "the reply's time passed; dropping it"
            );
            Ok(())
        }
        // Only replies to messages wait; interaction routes are never busy.
        Err(error @ (CallError::Unavailable { .. } | CallError::Later { .. })) => {
            Err(Unhandled::Discord(error))
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
