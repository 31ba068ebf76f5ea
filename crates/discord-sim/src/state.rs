//! The simulator's shared state: gateway sessions and what they were sent, messages,
//! interactions, commands, rate limits, and the record of what the bot did (`sent`) and which
//! rules it broke (`violations`).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::payload::now_ms;
use crate::world::{Limit, World};

/// Discord's epoch, 2015-01-01, in Unix milliseconds.
const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
/// How many dispatches a session keeps for RESUME.
pub(crate) const REPLAY_CAPACITY: usize = 50_000;

pub(crate) const INTENT_GUILDS: u64 = 1 << 0;
pub(crate) const INTENT_GUILD_MEMBERS: u64 = 1 << 1;
pub(crate) const INTENT_GUILD_VOICE_STATES: u64 = 1 << 7;
pub(crate) const INTENT_GUILD_PRESENCES: u64 = 1 << 8;
pub(crate) const INTENT_GUILD_MESSAGES: u64 = 1 << 9;
pub(crate) const INTENT_GUILD_MESSAGE_TYPING: u64 = 1 << 11;
pub(crate) const INTENT_MESSAGE_CONTENT: u64 = 1 << 15;
/// Every intent Discord defines (bits 0 to 25, some unused, 26-ish reserved).
pub(crate) const INTENTS_KNOWN: u64 = (1 << 26) - 1;

/// What a gateway connection task is told to send.
#[derive(Debug)]
pub(crate) enum Out {
    /// A frame, already serialised.
    Frame(Arc<str>),
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
}

/// A live gateway connection, as a session sees it.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::UnboundedSender<Out>,
}

/// A gateway session: survives its connection, for RESUME.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) shard: (u32, u32),
    pub(crate) intents: u64,
    pub(crate) seq: u64,
    pub(crate) replay: VecDeque<(u64, Arc<str>)>,
    pub(crate) conn: Option<Conn>,
}

impl Session {
    /// Whether this session receives the events of `guild_id`.
    pub(crate) fn owns(&self, guild_id: u64) -> bool {
        (guild_id >> 22) % u64::from(self.shard.1) == u64::from(self.shard.0)
    }

    /// Numbers, frames, keeps for replay and sends (if connected) one dispatch.
    pub(crate) fn push(&mut self, event: &str, data: &str) {
        self.seq += 1;
        let frame: Arc<str> =
            format!(r#"{{"op":0,"t":"{event}","s":{},"d":{data}}}"#, self.seq).into();
        if self.replay.len() == REPLAY_CAPACITY {
            self.replay.pop_front();
        }
        self.replay.push_back((self.seq, Arc::clone(&frame)));
        self.send(Out::Frame(frame));
    }

    pub(crate) fn send(&self, out: Out) {
        if let Some(conn) = &self.conn {
            // A connection that just went away: its session keeps the frame for RESUME.
            let _ = conn.tx.send(out);
        }
    }
}

/// What the control API reports about one shard.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct ShardLog {
    pub(crate) shard_id: u32,
    pub(crate) shard_total: u32,
    pub(crate) session_id: Option<String>,
    pub(crate) connected: bool,
    pub(crate) seq: u64,
    pub(crate) intents: u64,
    /// Unix ms of each IDENTIFY that started a session.
    pub(crate) identifies: Vec<u64>,
    /// Unix ms of each successful RESUME.
    pub(crate) resumes: Vec<u64>,
    /// (Unix ms, code) of each close, by either side.
    pub(crate) closes: Vec<(u64, u16)>,
    /// (Unix ms, guild, channel) of each voice state update (op 4) the shard sent: a channel
    /// joined, or `None`, left.
    pub(crate) voice_updates: Vec<(u64, u64, Option<u64>)>,
    pub(crate) presence: Option<Value>,
}

/// What the bot sent, as `GET /_sim/sent` lists it: `kind` says which (`message`,
/// `interaction_response`, `edit`, `delete`, `followup`), ids are strings as Discord writes
/// them, and the rest is what the bot asked for.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum Sent {
    /// Create Message.
    Message {
        at_ms: u64,
        channel_id: String,
        message_id: String,
        content: String,
        tts: bool,
        embeds: Value,
        allowed_mentions: Option<Value>,
        nonce: Option<Value>,
        enforce_nonce: bool,
        message_reference: Option<Value>,
        flags: Option<u64>,
    },
    /// An interaction's initial response, by callback or as the webhook's HTTP answer (`via`).
    InteractionResponse {
        at_ms: u64,
        via: String,
        interaction_id: String,
        channel_id: String,
        message_id: Option<String>,
        response_type: u64,
        content: Option<Value>,
        tts: bool,
        embeds: Value,
        allowed_mentions: Option<Value>,
        flags: Option<Value>,
        latency_ms: u64,
    },
    /// An edit of an interaction's original message.
    Edit {
        at_ms: u64,
        interaction_id: String,
        channel_id: String,
        message_id: String,
        content: Value,
        embeds: Value,
        allowed_mentions: Option<Value>,
    },
    /// A deleted original message.
    Delete {
        at_ms: u64,
        interaction_id: String,
        message_id: String,
    },
    /// A follow-up message.
    Followup {
        at_ms: u64,
        interaction_id: String,
        channel_id: String,
        message_id: String,
        content: String,
        tts: bool,
        embeds: Value,
        allowed_mentions: Option<Value>,
    },
}

impl Sent {
    /// The channel it went to, when it names one.
    pub(crate) fn channel_id(&self) -> Option<&str> {
        match self {
            Self::Message { channel_id, .. }
            | Self::InteractionResponse { channel_id, .. }
            | Self::Edit { channel_id, .. }
            | Self::Followup { channel_id, .. } => Some(channel_id),
            Self::Delete { .. } => None,
        }
    }

    /// The interaction it answers, if it answers one.
    pub(crate) fn interaction_id(&self) -> Option<&str> {
        match self {
            Self::Message { .. } => None,
            Self::InteractionResponse { interaction_id, .. }
            | Self::Edit { interaction_id, .. }
            | Self::Delete { interaction_id, .. }
            | Self::Followup { interaction_id, .. } => Some(interaction_id),
        }
    }
}

/// A rule the bot broke.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Violation {
    pub(crate) at_ms: u64,
    pub(crate) rule: &'static str,
    pub(crate) detail: String,
}

/// An interaction the simulator created.
#[derive(Debug)]
pub(crate) struct Interaction {
    pub(crate) token: String,
    pub(crate) guild_id: u64,
    pub(crate) channel_id: u64,
    pub(crate) created: Instant,
    /// The initial response's type, once given.
    pub(crate) responded: Option<u8>,
    /// The message the response created or will create (type 4 or 5).
    pub(crate) original: Option<u64>,
}

/// A fault the control API injected: the next `count` matching requests fail with `status`.
#[derive(Clone, Debug, serde::Deserialize)]
pub(crate) struct Fault {
    pub(crate) status: u16,
    #[serde(default = "one")]
    pub(crate) count: u32,
    /// `messages`, `callback`, `webhook`, `commands`, or `any`.
    #[serde(default = "any")]
    pub(crate) route: String,
    /// For 429s: the `retry_after` given, in seconds.
    #[serde(default = "half")]
    pub(crate) retry_after: f64,
}

fn one() -> u32 {
    1
}
fn any() -> String {
    "any".to_owned()
}
fn half() -> f64 {
    0.5
}

/// A REST rate-limit bucket: a fixed window, and a note of the 429 it last gave.
#[derive(Debug)]
pub(crate) struct Bucket {
    pub(crate) window_start: Instant,
    pub(crate) used: u32,
    /// After a 429, the time before which a request ignores it.
    pub(crate) blocked_until: Option<Instant>,
}

/// What a request got from a bucket.
pub(crate) enum Take {
    Allowed {
        remaining: u32,
        reset_after: Duration,
    },
    Limited {
        retry_after: Duration,
        ignored_429: bool,
    },
}

impl Bucket {
    fn new(now: Instant) -> Self {
        Self {
            window_start: now,
            used: 0,
            blocked_until: None,
        }
    }

    pub(crate) fn take(&mut self, limit: Limit, now: Instant) -> Take {
        let window = Duration::from_millis(limit.window_ms);
        if now.duration_since(self.window_start) >= window {
            self.window_start = now;
            self.used = 0;
        }
        let reset_after = window.saturating_sub(now.duration_since(self.window_start));
        let ignored_429 = self.blocked_until.is_some_and(|until| now < until);
        if self.used < limit.limit && !ignored_429 {
            self.used += 1;
            return Take::Allowed {
                remaining: limit.limit - self.used,
                reset_after,
            };
        }
        self.blocked_until = Some(now + reset_after);
        Take::Limited {
            retry_after: reset_after,
            ignored_429,
        }
    }

    /// An injected 429: the client must wait `retry_after` like for a real one.
    pub(crate) fn block(&mut self, retry_after: Duration, now: Instant) {
        self.blocked_until = Some(now + retry_after);
    }
}

/// Everything the simulator holds, behind one lock, by who owns it: the gateway's sessions,
/// the REST side's objects and limits, and the record a test reads.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) gateway: GatewayState,
    pub(crate) rest: RestState,
    /// (guild, user) -> voice channel.
    pub(crate) voice: BTreeMap<(u64, u64), u64>,
    pub(crate) record: Record,
}

/// Gateway sessions, per shard, and the identify limits.
#[derive(Debug, Default)]
pub(crate) struct GatewayState {
    pub(crate) sessions: HashMap<String, Session>,
    /// The current session of each shard id.
    /// The current session of each shard, by `(shard id, shard total)`: two generations of
    /// shards (a resharding) run side by side, as Discord allows.
    pub(crate) shard_sessions: BTreeMap<(u32, u32), String>,
    pub(crate) shard_logs: BTreeMap<(u32, u32), ShardLog>,
    /// Last IDENTIFY per `max_concurrency` bucket.
    pub(crate) bucket_identified: HashMap<u32, Instant>,
    pub(crate) sessions_started: u32,
}

/// What the REST API holds: messages, interactions, commands, rate limits, injected faults.
#[derive(Debug, Default)]
pub(crate) struct RestState {
    /// Messages by id: (channel, JSON).
    pub(crate) messages: HashMap<u64, (u64, Value)>,
    /// (channel, nonce) -> (message id, when).
    pub(crate) nonces: HashMap<(u64, String), (u64, Instant)>,
    pub(crate) interactions: HashMap<u64, Interaction>,
    pub(crate) interaction_tokens: HashMap<String, u64>,
    pub(crate) global_commands: Vec<Value>,
    pub(crate) guild_commands: HashMap<u64, Vec<Value>>,
    pub(crate) buckets: HashMap<String, Bucket>,
    /// When each invalid request of the current window was answered (Cloudflare's count).
    pub(crate) invalid: std::collections::VecDeque<Instant>,
    /// Every request is refused until then: the address is banned.
    pub(crate) banned_until: Option<Instant>,
    pub(crate) faults: Vec<Fault>,
}

/// The test oracle: what the bot sent, and every rule it broke.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) sent: Vec<Sent>,
    pub(crate) violations: Vec<Violation>,
}

impl State {
    pub(crate) fn violate(&mut self, rule: &'static str, detail: String) {
        tracing::warn!(rule, %detail, "the bot broke a rule");
        self.record.violations.push(Violation {
            at_ms: now_ms(),
            rule,
            detail,
        });
    }

    pub(crate) fn shard_log(&mut self, shard: (u32, u32)) -> &mut ShardLog {
        let log = self.gateway.shard_logs.entry(shard).or_default();
        log.shard_id = shard.0;
        log.shard_total = shard.1;
        log
    }

    pub(crate) fn bucket(&mut self, key: &str, now: Instant) -> &mut Bucket {
        self.rest
            .buckets
            .entry(key.to_owned())
            .or_insert_with(|| Bucket::new(now))
    }

    /// Takes the first injected fault matching `route`, if any.
    pub(crate) fn take_fault(&mut self, route: &str) -> Option<Fault> {
        let index = self
            .rest
            .faults
            .iter()
            .position(|f| f.route == route || f.route == "any")?;
        let fault = self.rest.faults[index].clone();
        self.rest.faults[index].count -= 1;
        if self.rest.faults[index].count == 0 {
            self.rest.faults.remove(index);
        }
        Some(fault)
    }

    /// The sessions that receive an event of `guild_id` (every current session when `None`).
    pub(crate) fn sessions_for(
        &mut self,
        guild_id: Option<u64>,
    ) -> impl Iterator<Item = &mut Session> {
        let current: Vec<String> = self.gateway.shard_sessions.values().cloned().collect();
        self.gateway.sessions.values_mut().filter(move |session| {
            current.contains(&session.id) && guild_id.is_none_or(|guild| session.owns(guild))
        })
    }
}

/// The simulator: the world, the signing key, and the state behind one lock.
#[derive(Debug)]
pub(crate) struct Sim {
    pub(crate) world: World,
    pub(crate) signing: SigningKey,
    pub(crate) urls: Urls,
    pub(crate) interactions_url: Option<String>,
    pub(crate) voice: crate::voice::hub::Hub,
    state: Mutex<State>,
    next_id: AtomicU64,
    next_conn: AtomicU64,
}

/// Where the simulator answers.
#[derive(Clone, Debug)]
pub(crate) struct Urls {
    /// `http://host:port`
    pub(crate) rest: String,
    /// `ws://host:port/gateway`
    pub(crate) gateway: String,
}

impl Sim {
    pub(crate) fn new(
        world: World,
        urls: Urls,
        interactions_url: Option<String>,
        voice: crate::voice::hub::Hub,
    ) -> Self {
        let signing = SigningKey::from_bytes(&world.seed());
        let mut state = State::default();
        for guild in &world.guilds {
            for seated in &guild.voice_states {
                state
                    .voice
                    .insert((guild.id, seated.user_id), seated.channel_id);
                if seated.user_id != world.bot.id {
                    voice.seat(guild.id, seated.user_id, seated.channel_id);
                }
            }
        }
        Self {
            world,
            signing,
            urls,
            interactions_url,
            voice,
            state: Mutex::new(state),
            next_id: AtomicU64::new(0),
            next_conn: AtomicU64::new(0),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements; a panicking handler leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A fresh snowflake: the time, and a counter in the low bits.
    pub(crate) fn snowflake(&self) -> u64 {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        (now_ms().saturating_sub(DISCORD_EPOCH_MS) << 22) | (n & 0x3f_ffff)
    }

    pub(crate) fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn public_key_hex(&self) -> String {
        hex::encode(self.signing.verifying_key().as_bytes())
    }

    /// Sends a dispatch to every session that owns the guild and has the intent.
    ///
    /// `without_content` is the payload for sessions lacking the message content intent.
    pub(crate) fn dispatch(
        &self,
        event: &str,
        guild_id: Option<u64>,
        intent: Option<u64>,
        data: &Value,
        without_content: Option<&Value>,
    ) -> usize {
        let full = data.to_string();
        let redacted = without_content.map(Value::to_string);
        let mut state = self.lock();
        let mut delivered = 0;
        for session in state.sessions_for(guild_id) {
            if intent.is_some_and(|bit| session.intents & bit == 0) {
                continue;
            }
            let payload = match &redacted {
                Some(redacted) if session.intents & INTENT_MESSAGE_CONTENT == 0 => redacted,
                _ => &full,
            };
            session.push(event, payload);
            delivered += 1;
        }
        delivered
    }
}
