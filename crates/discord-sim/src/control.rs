//! The control API under `/_sim`, for tests and people: make members talk, join voice and use
//! commands; read what the bot sent and which rules it broke; disconnect shards; inject faults.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::payload::{self, MessageParts, now_ms};
use crate::state::{
    Fault, INTENT_GUILD_MESSAGE_TYPING, INTENT_GUILD_MESSAGES, INTENT_GUILD_VOICE_STATES,
    Interaction, Out, Sent, Sim,
};
use crate::world::ChannelKind;

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/info", get(info))
        .route("/messages", post(message))
        .route("/messages/bulk", post(bulk_messages))
        .route("/noise", post(noise))
        .route("/interactions", post(interaction))
        .route("/voice-states", post(voice_state))
        .route("/voice/{guild_id}", get(voice_stats))
        .route("/voice/{guild_id}/disconnect", post(voice_disconnect))
        .route("/sent", get(sent))
        .route("/violations", get(violations))
        .route("/invalid-requests", get(invalid_requests))
        .route("/shards", get(shards))
        .route("/shards/{id}/disconnect", post(disconnect))
        .route("/shards/{id}/reconnect", post(reconnect))
        .route("/shards/{id}/invalidate", post(invalidate))
        .route("/faults", post(add_fault))
        .route("/webhook/probe", post(probe))
}

fn bad_request(message: impl Into<String>) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": message.into()})),
    )
        .into_response()
}

/// Ids may be given as numbers or as strings, as Discord writes them.
fn id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Id {
        Number(u64),
        Text(String),
    }
    match Id::deserialize(deserializer)? {
        Id::Number(n) => Ok(n),
        Id::Text(s) => s.parse().map_err(serde::de::Error::custom),
    }
}

fn optional_id<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Wrap(#[serde(deserialize_with = "id")] u64);
    Option::<Wrap>::deserialize(deserializer).map(|w| w.map(|Wrap(n)| n))
}

async fn info(State(sim): State<Arc<Sim>>) -> Response {
    axum::Json(json!({
        "rest_url": sim.urls.rest,
        "gateway_url": sim.urls.gateway,
        "application_id": sim.world.application_id.to_string(),
        "bot_user_id": sim.world.bot.id.to_string(),
        "token": sim.world.token,
        "public_key": sim.public_key_hex(),
        "interactions_url": sim.interactions_url,
        "guilds": sim.world.guilds,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct NewMessage {
    #[serde(default, deserialize_with = "optional_id")]
    guild_id: Option<u64>,
    #[serde(deserialize_with = "id")]
    channel_id: u64,
    #[serde(deserialize_with = "id")]
    author_id: u64,
    content: String,
}

/// Builds and dispatches a member's message; the message JSON, or why not.
fn member_message(sim: &Sim, new: &NewMessage) -> Result<Value, String> {
    let world = &sim.world;
    let (guild, channel) = world
        .channel(new.channel_id)
        .ok_or_else(|| format!("no channel {}", new.channel_id))?;
    if new.guild_id.is_some_and(|g| g != guild.id) {
        return Err(format!(
            "channel {} is not in guild {:?}",
            new.channel_id, new.guild_id
        ));
    }
    if channel.kind != ChannelKind::Text {
        return Err(format!("channel {} is not a text channel", new.channel_id));
    }
    let author = guild
        .members
        .iter()
        .find(|m| m.id == new.author_id)
        .ok_or_else(|| {
            format!(
                "user {} is not a member of guild {}",
                new.author_id, guild.id
            )
        })?;
    if new.content.is_empty() || new.content.chars().count() > 2000 {
        return Err("content must be 1-2000 characters".to_owned());
    }
    let mentioned = payload::mentioned_ids(&new.content);
    let mentions: Vec<_> = mentioned.iter().filter_map(|id| world.user(*id)).collect();
    let joined = now_ms();
    let mut parts = MessageParts {
        id: sim.snowflake(),
        channel_id: channel.id,
        guild_id: Some(guild.id),
        author,
        author_is_bot: false,
        content: &new.content,
        tts: false,
        embeds: json!([]),
        nonce: None,
        timestamp_ms: joined,
        edited_ms: None,
        mentions,
        mention_everyone: new.content.contains("@everyone"),
        interaction_id: None,
        webhook_id: None,
    };
    let mut message = payload::message(&parts);
    message["member"] = payload::member(author, false, joined);
    if let Some(object) = message["member"].as_object_mut() {
        object.remove("user");
    }
    // Without the message content intent, Discord blanks the content unless the bot is
    // mentioned.
    let redacted = (!mentioned.contains(&world.bot.id)).then(|| {
        parts.content = "";
        let mut redacted = payload::message(&parts);
        redacted["member"] = message["member"].clone();
        redacted
    });
    sim.lock()
        .rest
        .messages
        .insert(parts.id, (channel.id, message.clone()));
    sim.dispatch(
        "MESSAGE_CREATE",
        Some(guild.id),
        Some(INTENT_GUILD_MESSAGES),
        &message,
        redacted.as_ref(),
    );
    Ok(message)
}

async fn message(State(sim): State<Arc<Sim>>, axum::Json(new): axum::Json<NewMessage>) -> Response {
    match member_message(&sim, &new) {
        Ok(message) => axum::Json(message).into_response(),
        Err(problem) => bad_request(problem),
    }
}

#[derive(Debug, Deserialize)]
struct Bulk {
    #[serde(flatten)]
    message: NewMessage,
    count: u32,
    /// ` #n` appended to each (the default), so they can be told apart; `false`: the content
    /// as given, as members type a command.
    #[serde(default = "numbered")]
    numbered: bool,
}

fn numbered() -> bool {
    true
}

#[derive(Debug, Deserialize)]
struct Noise {
    count: u32,
}

/// Gateway noise, as a busy bot's shards see it (scale tests, benchmarks): `count`
/// TYPING_START dispatches, round-robin over the guilds (their first text channel, their first
/// member), to the sessions with the typing intent.
async fn noise(State(sim): State<Arc<Sim>>, axum::Json(noise): axum::Json<Noise>) -> Response {
    let started = Instant::now();
    let world = &sim.world;
    let mut delivered = 0;
    for n in 0..noise.count as usize {
        let guild = &world.guilds[n % world.guilds.len()];
        let channel = guild.channels.iter().find(|c| c.kind == ChannelKind::Text);
        let (Some(channel), Some(member)) = (channel, guild.members.first()) else {
            continue;
        };
        let now = now_ms();
        let data = json!({
            "channel_id": channel.id.to_string(),
            "guild_id": guild.id.to_string(),
            "user_id": member.id.to_string(),
            "timestamp": now / 1000,
            "member": payload::member(member, false, now),
        });
        delivered += sim.dispatch(
            "TYPING_START",
            Some(guild.id),
            Some(INTENT_GUILD_MESSAGE_TYPING),
            &data,
            None,
        );
    }
    axum::Json(json!({
        "count": noise.count,
        "delivered": delivered,
        "elapsed_ms": started.elapsed().as_millis(),
    }))
    .into_response()
}

/// Many messages at once (benchmarks): `content` gets ` #n` appended unless `numbered` is false.
async fn bulk_messages(
    State(sim): State<Arc<Sim>>,
    axum::Json(bulk): axum::Json<Bulk>,
) -> Response {
    let started = Instant::now();
    let base = bulk.message.content.clone();
    let mut new = bulk.message;
    for n in 0..bulk.count {
        if bulk.numbered {
            new.content = format!("{base} #{n}");
        }
        if let Err(problem) = member_message(&sim, &new) {
            return bad_request(problem);
        }
    }
    axum::Json(json!({"count": bulk.count, "elapsed_ms": started.elapsed().as_millis()}))
        .into_response()
}

#[derive(Debug, Deserialize)]
struct NewInteraction {
    #[serde(default, deserialize_with = "optional_id")]
    guild_id: Option<u64>,
    #[serde(deserialize_with = "id")]
    channel_id: u64,
    #[serde(deserialize_with = "id")]
    user_id: u64,
    /// The command's name; it must be registered (globally or in the guild).
    #[serde(default)]
    name: Option<String>,
    /// `[{"name": "...", "value": ...}]`, checked against the registered definition.
    #[serde(default)]
    options: Vec<Value>,
    /// Raw `data`, sent as given without any check (for testing bad input).
    #[serde(default)]
    data: Option<Value>,
}

/// Checks the given options against the command's definition, as the Discord client does
/// before it sends anything, and types them.
fn typed_options(definition: &Value, given: &[Value]) -> Result<Vec<Value>, String> {
    let defined = definition["options"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut typed = Vec::new();
    for option in given {
        let name = option["name"].as_str().ok_or("every option needs a name")?;
        let spec = defined
            .iter()
            .find(|d| d["name"] == name)
            .ok_or_else(|| format!("the command has no option {name:?}"))?;
        let kind = spec["type"].as_u64().unwrap_or(3);
        let value = &option["value"];
        let fits = match kind {
            3 | 6 | 7 | 8 | 9 => value.is_string(),
            4 => value.is_i64() || value.is_u64(),
            5 => value.is_boolean(),
            10 => value.is_number(),
            _ => false,
        };
        if !fits {
            return Err(format!("option {name:?} takes type {kind}, not {value}"));
        }
        if let Some(choices) = spec["choices"].as_array()
            && !choices.iter().any(|c| &c["value"] == value)
        {
            return Err(format!(
                "option {name:?} must be one of its choices, not {value}"
            ));
        }
        typed.push(json!({"name": name, "type": kind, "value": value}));
    }
    for spec in &defined {
        if spec["required"].as_bool() == Some(true)
            && !given.iter().any(|g| g["name"] == spec["name"])
        {
            return Err(format!("option {} is required", spec["name"]));
        }
    }
    Ok(typed)
}

async fn interaction(
    State(sim): State<Arc<Sim>>,
    axum::Json(new): axum::Json<NewInteraction>,
) -> Response {
    let world = &sim.world;
    let Some((guild, channel)) = world.channel(new.channel_id) else {
        return bad_request(format!("no channel {}", new.channel_id));
    };
    if new.guild_id.is_some_and(|g| g != guild.id) {
        return bad_request(format!(
            "channel {} is not in guild {:?}",
            new.channel_id, new.guild_id
        ));
    }
    let Some(user) = guild.members.iter().find(|m| m.id == new.user_id) else {
        return bad_request(format!(
            "user {} is not a member of guild {}",
            new.user_id, guild.id
        ));
    };
    let data = match (&new.data, &new.name) {
        (Some(data), _) => data.clone(),
        (None, Some(name)) => {
            let definition = {
                let state = sim.lock();
                state
                    .rest
                    .guild_commands
                    .get(&guild.id)
                    .into_iter()
                    .flatten()
                    .chain(&state.rest.global_commands)
                    .find(|c| c["name"] == name.as_str())
                    .cloned()
            };
            let Some(definition) = definition else {
                return bad_request(format!(
                    "no command named {name:?} is registered for guild {} (register it first, as Discord requires)",
                    guild.id
                ));
            };
            let options = match typed_options(&definition, &new.options) {
                Ok(options) => options,
                Err(problem) => return bad_request(problem),
            };
            json!({
                "id": definition["id"],
                "name": name,
                "type": 1,
                "options": options,
                "guild_id": guild.id.to_string(),
            })
        }
        (None, None) => return bad_request("give the command's name (or raw data)"),
    };
    let id = sim.snowflake();
    let token = format!("sim-interaction-{id:x}-{:x}", sim.snowflake());
    let joined = now_ms();
    let mut member = payload::member(user, false, joined);
    member["permissions"] = json!("2248473465835073");
    let body = json!({
        "id": id.to_string(),
        "application_id": world.application_id.to_string(),
        "type": 2,
        "data": data,
        "guild_id": guild.id.to_string(),
        "guild": {"id": guild.id.to_string(), "locale": "ko", "features": []},
        "guild_locale": "ko",
        "channel_id": channel.id.to_string(),
        "channel": payload::channel(guild.id, channel, 0),
        "member": member,
        "token": token,
        "version": 1,
        "app_permissions": "2248473465835073",
        "locale": "ko",
        "entitlements": [],
        "authorizing_integration_owners": {"0": guild.id.to_string()},
        "context": 0,
        "attachment_size_limit": 26_214_400,
    });
    {
        let mut state = sim.lock();
        state.rest.interactions.insert(
            id,
            Interaction {
                token: token.clone(),
                guild_id: guild.id,
                channel_id: channel.id,
                created: Instant::now(),
                responded: None,
                original: None,
            },
        );
        state.rest.interaction_tokens.insert(token.clone(), id);
    }
    let mut result = json!({"id": id.to_string(), "token": token, "interaction": body});
    match &sim.interactions_url {
        Some(url) => {
            let answer = crate::webhook::deliver(&sim, url, body.to_string().into_bytes()).await;
            match &answer {
                Ok(answer) if answer.status == 200 => {
                    match serde_json::from_str::<Value>(&answer.body) {
                        Ok(response) => {
                            if let Err(refused) =
                                crate::rest::initial_response(&sim, id, &response, "webhook")
                            {
                                result["refused"] = json!(refused.status().as_u16());
                            }
                        }
                        Err(_) => sim.lock().violate(
                            "interactions endpoint",
                            format!("interaction {id}: the answer is not JSON"),
                        ),
                    }
                }
                Ok(answer) => sim.lock().violate(
                    "interactions endpoint",
                    format!(
                        "interaction {id}: a valid interaction answered {} {}",
                        answer.status, answer.body
                    ),
                ),
                Err(error) => sim.lock().violate(
                    "interactions endpoint",
                    format!("interaction {id}: {error}"),
                ),
            }
            result["webhook"] = json!(crate::webhook::Outcome::from(answer));
        }
        None => {
            let delivered = sim.dispatch("INTERACTION_CREATE", Some(guild.id), None, &body, None);
            result["delivered"] = json!(delivered > 0);
        }
    }
    axum::Json(result).into_response()
}

#[derive(Debug, Deserialize)]
struct NewVoiceState {
    #[serde(deserialize_with = "id")]
    guild_id: u64,
    #[serde(deserialize_with = "id")]
    user_id: u64,
    #[serde(default, deserialize_with = "optional_id")]
    channel_id: Option<u64>,
}

async fn voice_state(
    State(sim): State<Arc<Sim>>,
    axum::Json(new): axum::Json<NewVoiceState>,
) -> Response {
    let world = &sim.world;
    let Some(guild) = world.guild(new.guild_id) else {
        return bad_request(format!("no guild {}", new.guild_id));
    };
    let Some(user) = guild.members.iter().find(|m| m.id == new.user_id) else {
        return bad_request(format!(
            "user {} is not a member of guild {}",
            new.user_id, guild.id
        ));
    };
    if let Some(channel) = new.channel_id
        && !guild
            .channels
            .iter()
            .any(|c| c.id == channel && c.kind == ChannelKind::Voice)
    {
        return bad_request(format!(
            "channel {channel} is not a voice channel of guild {}",
            guild.id
        ));
    }
    {
        let mut state = sim.lock();
        match new.channel_id {
            Some(channel) => state.voice.insert((guild.id, user.id), channel),
            None => state.voice.remove(&(guild.id, user.id)),
        };
    }
    if user.id != sim.world.bot.id
        && let Err(error) = sim.voice.member_moved(guild.id, user.id, new.channel_id)
    {
        sim.lock()
            .violate("dave", format!("guild {}: {error}", guild.id));
    }
    announce_voice_state(&sim, guild.id, new.channel_id, user, false)
}

/// Dispatches a member's (or the bot's) new voice state, with a fresh voice session, and
/// answers with it.
fn announce_voice_state(
    sim: &Sim,
    guild_id: u64,
    channel_id: Option<u64>,
    user: &crate::world::User,
    bot: bool,
) -> Response {
    let session = format!("{:x}", sim.snowflake());
    let update = payload::voice_state(guild_id, channel_id, user, bot, &session, now_ms());
    sim.dispatch(
        "VOICE_STATE_UPDATE",
        Some(guild_id),
        Some(INTENT_GUILD_VOICE_STATES),
        &update,
        None,
    );
    axum::Json(update).into_response()
}

/// What the voice server heard from the bot in a guild.
async fn voice_stats(State(sim): State<Arc<Sim>>, Path(guild_id): Path<u64>) -> Response {
    if sim.world.guild(guild_id).is_none() {
        return bad_request(format!("no guild {guild_id}"));
    }
    axum::Json(sim.voice.stats(guild_id)).into_response()
}

/// Discord drops the bot from voice (a moderator disconnects it, the channel goes away): its
/// voice state becomes empty and its voice connection closes with 4014.
async fn voice_disconnect(State(sim): State<Arc<Sim>>, Path(guild_id): Path<u64>) -> Response {
    if sim.world.guild(guild_id).is_none() {
        return bad_request(format!("no guild {guild_id}"));
    }
    let bot = &sim.world.bot;
    if sim.lock().voice.remove(&(guild_id, bot.id)).is_none() {
        return bad_request(format!("the bot is not in voice in guild {guild_id}"));
    }
    sim.voice.revoke(guild_id);
    announce_voice_state(&sim, guild_id, None, bot, true)
}

#[derive(Debug, Deserialize)]
struct SentFilter {
    #[serde(default, deserialize_with = "optional_id")]
    channel_id: Option<u64>,
    #[serde(default, deserialize_with = "optional_id")]
    interaction_id: Option<u64>,
}

async fn sent(State(sim): State<Arc<Sim>>, Query(filter): Query<SentFilter>) -> Response {
    let state = sim.lock();
    let matches = |id: Option<&str>, want: Option<u64>| {
        want.is_none_or(|want| id == Some(want.to_string().as_str()))
    };
    let entries: Vec<&Sent> = state
        .record
        .sent
        .iter()
        .filter(|e| {
            matches(e.channel_id(), filter.channel_id)
                && matches(e.interaction_id(), filter.interaction_id)
        })
        .collect();
    axum::Json(entries).into_response()
}

/// Invalid REST requests in Cloudflare's current window, and whether the address is banned.
async fn invalid_requests(State(sim): State<Arc<Sim>>) -> Response {
    let (count, banned) = crate::rest::invalid_requests(&sim);
    axum::Json(json!({"in_window": count, "banned": banned})).into_response()
}

async fn violations(State(sim): State<Arc<Sim>>) -> Response {
    axum::Json(sim.lock().record.violations.clone()).into_response()
}

async fn shards(State(sim): State<Arc<Sim>>) -> Response {
    let state = sim.lock();
    let logs: Vec<_> = state.gateway.shard_logs.values().cloned().collect();
    axum::Json(json!({"sessions_started": state.gateway.sessions_started, "shards": logs}))
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
struct Disconnect {
    #[serde(default = "default_code")]
    code: u16,
    #[serde(default = "yes")]
    resume: bool,
}

fn default_code() -> u16 {
    4000
}
fn yes() -> bool {
    true
}

/// Runs `action` on the current session of shard `id`; 404 when there is none.
fn with_session(
    sim: &Sim,
    id: u32,
    action: impl FnOnce(&mut crate::state::State, (u32, u32), String),
) -> Response {
    let mut state = sim.lock();
    // Shard `id` of the newest generation (the largest total) when two run side by side.
    let current = state
        .gateway
        .shard_sessions
        .iter()
        .filter(|((shard, _), _)| *shard == id)
        .max_by_key(|((_, total), _)| *total)
        .map(|(key, session)| (*key, session.clone()));
    let Some((key, session_id)) = current else {
        return (
            StatusCode::NOT_FOUND,
            axum::Json(json!({"error": format!("shard {id} has no session")})),
        )
            .into_response();
    };
    action(&mut state, key, session_id);
    StatusCode::NO_CONTENT.into_response()
}

async fn disconnect(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<u32>,
    body: Option<axum::Json<Disconnect>>,
) -> Response {
    let request = body.map(|b| b.0).unwrap_or(Disconnect {
        code: default_code(),
        resume: true,
    });
    with_session(&sim, id, |state, key, session_id| {
        let reason = if request.resume {
            "Simulated disconnect"
        } else {
            "Simulated session end"
        };
        if let Some(session) = state.gateway.sessions.get(&session_id) {
            session.send(Out::Close(request.code, reason));
        }
        if !request.resume {
            state.gateway.sessions.remove(&session_id);
            state.gateway.shard_sessions.remove(&key);
        }
    })
}

async fn reconnect(State(sim): State<Arc<Sim>>, Path(id): Path<u32>) -> Response {
    with_session(&sim, id, |state, _, session_id| {
        if let Some(session) = state.gateway.sessions.get(&session_id) {
            session.send(Out::Frame(r#"{"op":7,"d":null}"#.into()));
        }
    })
}

#[derive(Debug, Deserialize)]
struct Invalidate {
    #[serde(default)]
    resumable: bool,
}

async fn invalidate(
    State(sim): State<Arc<Sim>>,
    Path(id): Path<u32>,
    body: Option<axum::Json<Invalidate>>,
) -> Response {
    let resumable = body.is_some_and(|b| b.resumable);
    with_session(&sim, id, |state, key, session_id| {
        if let Some(session) = state.gateway.sessions.get(&session_id) {
            let frame = format!(r#"{{"op":9,"d":{resumable}}}"#);
            session.send(Out::Frame(frame.into()));
        }
        if !resumable {
            state.gateway.sessions.remove(&session_id);
            state.gateway.shard_sessions.remove(&key);
        }
    })
}

async fn add_fault(State(sim): State<Arc<Sim>>, axum::Json(fault): axum::Json<Fault>) -> Response {
    if !matches!(fault.status, 429 | 500..=599) || fault.count == 0 {
        return bad_request("a fault is a 429 or a 5xx, at least once");
    }
    sim.lock().rest.faults.push(fault);
    StatusCode::NO_CONTENT.into_response()
}

async fn probe(State(sim): State<Arc<Sim>>) -> Response {
    let Some(url) = sim.interactions_url.clone() else {
        return bad_request("the simulator has no --interactions-url");
    };
    axum::Json(crate::webhook::probe(&sim, &url).await).into_response()
}
