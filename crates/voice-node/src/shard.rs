//! Owning one shard: the bus lock `voice-node.<shard>` makes one node the owner (a second node
//! with the same shard waits as a standby, so adding a node never takes over calls that are
//! running), then the shard's queue `disco.voice.<shard>` carries both the gateway's events for
//! the shard's guilds and the worker's commands, in order.
//!
//! Events are applied in order, in the loop: a join in progress waits for them. Commands run
//! in tasks (one at a time per guild), answered, then acked.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bus::{Delivery, Message, Subscription};
use disco_proto::v1::{GatewayEvent, VoiceCommand};
use disco_proto::{Versioned, route};
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::commands::Node;
use crate::voices::{GuildCreate, VoiceServer, VoiceState};

/// Deliveries in hand at once, per shard. Commands and the events that complete their joins
/// share the shard's queue (in order: a member's voice state comes before their command), and
/// a command waiting for its join holds its delivery: with a small prefetch, a burst of joins
/// holds every slot and the events they wait for stay queued behind them until every join
/// times out. Commands are small, and expired ones are dropped on delivery.
const PREFETCH: u16 = 1024;

/// The gateway events a voice node applies, bound from the gateway shards of its guilds.
const VOICE_EVENTS: [&str; 3] = ["GUILD_CREATE", "VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"];

pub(crate) async fn own(
    node: Arc<Node>,
    shard: u32,
    placed: Arc<AtomicUsize>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    placed.fetch_add(1, Ordering::Relaxed);
    let owned = own_placed(&node, shard, &shutdown).await;
    placed.fetch_sub(1, Ordering::Relaxed);
    owned
}

/// How long a node that lost a shard's lock (with its broker connection) keeps the shard's
/// calls while it tries to hold the lock again. Back within it, nobody else took the shard and
/// the calls go on; past it, another node may own the shard, and two nodes' calls in one guild
/// would fight, so this node leaves them.
const REGAIN: Duration = Duration::from_secs(10);

/// Takes the shard's lock (waiting as a standby while another node holds it), then serves the
/// shard; when the lock is lost, stops serving (so two nodes never consume one shard's
/// queue), and starts over.
async fn own_placed(
    node: &Arc<Node>,
    shard: u32,
    shutdown: &CancellationToken,
) -> Result<(), Error> {
    let bus = node.calls.bus().clone();
    let lock_name = format!("voice-node.{shard}");
    let mut lost_at: Option<tokio::time::Instant> = None;
    loop {
        let regain = async {
            match lost_at {
                Some(at) => tokio::time::sleep_until(at + REGAIN).await,
                None => std::future::pending().await,
            }
        };
        let mut lock = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            lock = bus.lock(&lock_name) => lock?,
            () = regain => {
                let left = leave_shard(node, shard).await;
                tracing::warn!(shard, left, "the shard's lock was not regained: its calls are left to the node that holds it");
                lost_at = None;
                continue;
            }
        };
        if lost_at.take().is_some() {
            tracing::info!(shard, "holding the shard's lock again; its calls go on");
        }
        if !serve(node, shard, &mut lock, shutdown).await? {
            return Ok(());
        }
        node.metrics.shard_locks_lost.inc();
        tracing::warn!(
            shard,
            "lost the shard's lock with the broker connection; serving it again once the lock is held"
        );
        lost_at = Some(tokio::time::Instant::now());
    }
}

/// Leaves the calls of the shard's guilds; how many were in a channel.
async fn leave_shard(node: &Node, shard: u32) -> usize {
    let mut left = 0;
    for (guild_id, _) in node.calls.all() {
        if route::shard_for_guild(guild_id, node.shard_total) == shard
            && node.calls.leave(guild_id).await
        {
            left += 1;
        }
    }
    left
}

/// Serves the shard while `lock` holds: true if the lock was lost, false at shutdown.
async fn serve(
    node: &Arc<Node>,
    shard: u32,
    lock: &mut bus::Lock,
    shutdown: &CancellationToken,
) -> Result<bool, Error> {
    let bus = node.calls.bus().clone();
    let queue = route::voice_queue(shard);
    let mut totals = node.gateway.watch();
    let mut bound = *totals.borrow_and_update();
    let mut subscription = Subscription::shared(queue.clone()).prefetch(PREFETCH);
    for gateway_shard in node.gateway.gateway_shards(shard, bound) {
        for event in VOICE_EVENTS {
            subscription = subscription.bind(route::event_key(event, gateway_shard));
        }
    }
    let mut consumer = bus.subscribe(subscription).await?;
    node.metrics.shards_owned.inc();
    tracing::info!(shard, "owning the shard's voice calls");
    let mut commands = tokio::task::JoinSet::new();
    let lost = loop {
        let delivery = tokio::select! {
            biased;
            () = shutdown.cancelled() => break false,
            () = lock.lost() => break true,
            Some(_) = commands.join_next(), if !commands.is_empty() => continue,
            Ok(()) = totals.changed() => {
                // The gateway runs a larger total: its shards' events for these guilds too
                // (those below the total bound so far are bound already).
                let total = *totals.borrow_and_update();
                for gateway_shard in node.gateway.gateway_shards(shard, total) {
                    if gateway_shard < bound {
                        continue;
                    }
                    for event in VOICE_EVENTS {
                        consumer.bind(route::event_key(event, gateway_shard)).await?;
                    }
                }
                bound = total;
                continue;
            }
            delivery = consumer.next() => match delivery {
                Some(delivery) => delivery,
                None => break false,
            },
        };
        if delivery.routing_key == queue {
            commands.spawn(command(Arc::clone(node), shard, delivery));
        } else {
            event(node, delivery).await;
        }
    };
    node.metrics.shards_owned.dec();
    // Commands in hand are answered before the consumer (whose channel acks them) goes.
    while commands.join_next().await.is_some() {}
    drop(consumer);
    Ok(lost)
}

/// Why a delivery on a shard's voice queue cannot be handled, now or ever: it is dead-lettered.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("not a {0}: {1}")]
    Malformed(&'static str, String),
    #[error(
        "guild {guild} belongs to shard {owner} of {total}, not {shard}: the sender's shard total differs"
    )]
    Misrouted {
        guild: u64,
        owner: u32,
        total: u32,
        shard: u32,
    },
    #[error("{0}")]
    Inapplicable(String),
}

impl bus::Failure for Refused {
    fn is_retryable(&self) -> bool {
        false
    }
}

async fn command(node: Arc<Node>, shard: u32, delivery: Delivery) {
    let outcome = answer(&node, shard, &delivery).await;
    if let Err(refused) = &outcome {
        tracing::warn!(
            error = refused as &dyn std::error::Error,
            "dead-lettering a voice command"
        );
    }
    settle(delivery.settle(outcome).await);
}

/// Runs a command and answers it. A command that was run is settled as done even when its
/// answer is lost: running it again (queueing a track twice) would not bring the answer back.
async fn answer(node: &Node, shard: u32, delivery: &Delivery) -> Result<(), Refused> {
    let command = disco_proto::decode::<VoiceCommand>(&delivery.message.body)
        .map_err(|error| Refused::Malformed("VoiceCommand", error.to_string()))?;
    let owner = route::shard_for_guild(command.guild_id, node.shard_total);
    if owner != shard {
        return Err(Refused::Misrouted {
            guild: command.guild_id,
            owner,
            total: node.shard_total,
            shard,
        });
    }
    let answer = node.handle(&command).await;
    if let Err(error) = delivery.reply(Message::new(answer.encode_current())).await {
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            guild_id = command.guild_id,
            "the answer could not be sent"
        );
    }
    Ok(())
}

/// Applies one gateway event to what the node knows and to its calls.
async fn event(node: &Node, delivery: Delivery) {
    let outcome = match disco_proto::decode::<GatewayEvent>(&delivery.message.body) {
        Ok(event) => apply(node, &event).await.map_err(Refused::Inapplicable),
        Err(error) => Err(Refused::Malformed("GatewayEvent", error.to_string())),
    };
    match &outcome {
        Ok(()) => {
            node.metrics.events.inc();
        }
        Err(refused) => tracing::warn!(
            error = refused as &dyn std::error::Error,
            "dead-lettering an event"
        ),
    }
    settle(delivery.settle(outcome).await);
}

/// What the event says, applied; `Err` says why it cannot be.
async fn apply(node: &Node, event: &GatewayEvent) -> Result<(), String> {
    let name = event.event_name.as_str();
    let malformed = |error: serde_json::Error| format!("malformed {name}: {error}");
    match name {
        "GUILD_CREATE" => {
            let guild: GuildCreate = serde_json::from_slice(&event.payload).map_err(malformed)?;
            if !guild.unavailable {
                node.voices.replace(guild.id, &guild.voice_states);
            }
        }
        "VOICE_STATE_UPDATE" => {
            let state: VoiceState = serde_json::from_slice(&event.payload).map_err(malformed)?;
            voice_state(node, state).await;
        }
        "VOICE_SERVER_UPDATE" => {
            let server: VoiceServer = serde_json::from_slice(&event.payload).map_err(malformed)?;
            if let (Some(guild), Some(endpoint)) =
                (node.calls.get(server.guild_id), server.endpoint)
            {
                guild
                    .call
                    .lock()
                    .await
                    .update_server(endpoint, server.token);
            }
        }
        other => return Err(format!("the voice node does not take {other} events")),
    }
    Ok(())
}

async fn voice_state(node: &Node, state: VoiceState) {
    let Some(guild_id) = state.guild_id else {
        return;
    };
    node.voices.set(guild_id, state.user_id, state.channel_id);
    if state.user_id != node.user_id {
        return;
    }
    // The bot's own state completes a join, follows a move, or ends the call when Discord
    // removed the bot from the channel.
    let Some(guild) = node.calls.get(guild_id) else {
        return;
    };
    let channel = state
        .channel_id
        .and_then(NonZeroU64::new)
        .map(songbird::id::ChannelId::from);
    guild
        .call
        .lock()
        .await
        .update_state(state.session_id, channel);
}

fn settle(result: Result<(), bus::Error>) {
    if let Err(error) = result {
        // The broker redelivers what was not settled; nothing else to do here.
        tracing::warn!(
            error = &error as &dyn std::error::Error,
            "a delivery could not be settled"
        );
    }
}
