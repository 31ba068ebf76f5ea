//! songbird calls in driver mode. The node owns no shard, so a call's op 4 (join, move, leave)
//! goes to the gateway that owns the guild's shard as a `ShardCommand` on the bus, and the
//! gateway's VOICE_STATE_UPDATE / VOICE_SERVER_UPDATE come back through the shard's queue.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bus::{Bus, Destination, Message};
use disco_proto::v1::{ShardCommand, VoiceStateUpdate, shard_command};
use disco_proto::{Versioned, route};
use songbird::error::{JoinError, JoinResult};
use songbird::events::context_data::DisconnectReason;
use songbird::id::{ChannelId, GuildId};
use songbird::shards::{Shard, VoiceUpdate};
use songbird::{Call, CoreEvent, Event, EventContext, EventHandler};

use crate::gateway::GatewayTotal;
use crate::metrics::{DisconnectLabel, Metrics};

/// One guild's call.
#[derive(Debug)]
pub(crate) struct Guild {
    pub(crate) call: Arc<tokio::sync::Mutex<Call>>,
    /// Since when the bot has been alone in the channel.
    pub(crate) empty_since: Mutex<Option<Instant>>,
}

/// The calls of the node's guilds.
#[derive(Debug)]
pub(crate) struct Calls {
    bus: Bus,
    user_id: NonZeroU64,
    gateway: Arc<GatewayTotal>,
    config: songbird::Config,
    join_timeout: Duration,
    metrics: Metrics,
    guilds: Mutex<HashMap<u64, Arc<Guild>>>,
}

impl Calls {
    pub(crate) fn new(
        bus: Bus,
        user_id: NonZeroU64,
        gateway: Arc<GatewayTotal>,
        join_timeout: Duration,
        metrics: Metrics,
    ) -> Self {
        let config = songbird::Config::default()
            .gateway_timeout(Some(join_timeout))
            .driver_timeout(Some(join_timeout));
        Self {
            bus,
            user_id,
            gateway,
            config,
            join_timeout,
            metrics,
            guilds: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn bus(&self) -> &Bus {
        &self.bus
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Arc<Guild>>> {
        self.guilds.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The guild's call, if the node has one.
    pub(crate) fn get(&self, guild_id: u64) -> Option<Arc<Guild>> {
        self.lock().get(&guild_id).cloned()
    }

    /// The guild's call, made (not yet joined) if there is none: an existing call is reused.
    pub(crate) fn get_or_create(&self, guild_id: NonZeroU64) -> Arc<Guild> {
        let mut guilds = self.lock();
        let guild = guilds.entry(guild_id.get()).or_insert_with(|| {
            let link = GatewayLink {
                bus: self.bus.clone(),
                gateway: Arc::clone(&self.gateway),
                join_timeout: self.join_timeout,
            };
            let mut call = Call::from_config(
                guild_id,
                Shard::Generic(Arc::new(link)),
                self.user_id,
                self.config.clone(),
            );
            call.add_global_event(
                Event::Core(CoreEvent::DriverDisconnect),
                CountDisconnects(self.metrics.clone()),
            );
            Arc::new(Guild {
                call: Arc::new(tokio::sync::Mutex::new(call)),
                empty_since: Mutex::new(None),
            })
        });
        Arc::clone(guild)
    }

    /// Joins (or stays in) `channel`: asks the gateway for op 4, then waits for Discord's
    /// answer and the voice connection.
    pub(crate) async fn connect(&self, guild: &Guild, channel: NonZeroU64) -> JoinResult<()> {
        let started = Instant::now();
        // The call's lock must be released before the join is awaited: the events that
        // complete it lock the call too.
        let join = guild
            .call
            .lock()
            .await
            .join(ChannelId::from(channel))
            .await?;
        join.await?;
        self.metrics
            .join_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Leaves the guild's channel and forgets the call. False if there was none.
    pub(crate) async fn leave(&self, guild_id: u64) -> bool {
        let Some(guild) = self.lock().remove(&guild_id) else {
            return false;
        };
        let mut call = guild.call.lock().await;
        let connected = call.current_channel().is_some();
        call.stop();
        if let Err(error) = call.leave().await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                guild_id,
                "leaving the voice channel failed"
            );
        }
        connected
    }

    /// Leaves every call (shutdown). Returns how many there were.
    pub(crate) async fn leave_all(&self) -> usize {
        let guilds: Vec<u64> = self.lock().keys().copied().collect();
        let mut left = 0;
        for guild_id in guilds {
            if self.leave(guild_id).await {
                left += 1;
            }
        }
        self.metrics.calls.set(0);
        left
    }

    /// Drops the guild's call without leaving (it is in no channel).
    pub(crate) fn forget(&self, guild_id: u64) {
        self.lock().remove(&guild_id);
    }

    pub(crate) fn all(&self) -> Vec<(u64, Arc<Guild>)> {
        self.lock()
            .iter()
            .map(|(id, guild)| (*id, Arc::clone(guild)))
            .collect()
    }
}

/// Publishes a call's op 4 for the gateway shard that holds the guild, in the total the
/// gateway runs by when it is sent.
struct GatewayLink {
    bus: Bus,
    gateway: Arc<GatewayTotal>,
    /// A join not sent within this long is not sent at all: the member who asked was told it
    /// failed, and the bot must not turn up in a channel later. (A leave is always sent.)
    join_timeout: Duration,
}

#[async_trait]
impl VoiceUpdate for GatewayLink {
    async fn update_voice_state(
        &self,
        guild_id: GuildId,
        channel_id: Option<ChannelId>,
        self_deaf: bool,
        self_mute: bool,
    ) -> JoinResult<()> {
        let total = self.gateway.get();
        let shard = route::shard_for_guild(guild_id.0.get(), total);
        let command = ShardCommand {
            shard_id: shard,
            command: Some(shard_command::Command::VoiceStateUpdate(VoiceStateUpdate {
                guild_id: guild_id.0.get(),
                channel_id: channel_id.map(|c| c.0.get()),
                self_mute,
                self_deaf,
            })),
            ..Default::default()
        };
        let mut message = Message::new(command.encode_current());
        if channel_id.is_some() {
            message = message.expiring_after(self.join_timeout);
        }
        self.bus
            .publish(
                Destination::Queue(route::shard_queue(shard, total)),
                message,
            )
            .await
            .map_err(|error| {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    shard,
                    total,
                    "cannot ask the gateway for op 4"
                );
                JoinError::NoSender
            })
    }
}

/// Counts lost voice connections by close code.
struct CountDisconnects(Metrics);

#[async_trait]
impl EventHandler for CountDisconnects {
    async fn act(&self, context: &EventContext<'_>) -> Option<Event> {
        if let EventContext::DriverDisconnect(data) = context {
            let code = match &data.reason {
                None | Some(DisconnectReason::Requested) => return None,
                Some(DisconnectReason::WsClosed(Some(code))) => (*code as u16).to_string(),
                Some(DisconnectReason::WsClosed(None)) => "closed".to_owned(),
                Some(DisconnectReason::TimedOut) => "timeout".to_owned(),
                Some(DisconnectReason::Io) => "io".to_owned(),
                Some(DisconnectReason::ProtocolViolation) => "protocol".to_owned(),
                Some(_) => "other".to_owned(),
            };
            tracing::warn!(guild_id = data.guild_id.0.get(), %code, "voice connection lost");
            self.0
                .disconnects
                .get_or_create(&DisconnectLabel { code })
                .inc();
        }
        None
    }
}
