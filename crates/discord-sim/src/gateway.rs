//! Gateway v10 over WebSocket: HELLO, IDENTIFY, READY, GUILD_CREATE, heartbeats, RESUME with
//! replay, voice state updates, and Discord's close codes for every rule a client breaks.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::compress::Compressor;
use crate::payload::{self, now_ms};
use crate::state::{
    Conn, INTENT_GUILD_MEMBERS, INTENT_GUILD_PRESENCES, INTENT_GUILD_VOICE_STATES, INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT, INTENTS_KNOWN, Out, Session, Sim,
};

/// Commands a connection may send per minute.
const SENDS_PER_MINUTE: usize = 120;
/// The wait between two IDENTIFYs in one `max_concurrency` bucket.
const IDENTIFY_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Deserialize)]
pub(crate) struct GatewayQuery {
    v: Option<u8>,
    encoding: Option<String>,
    compress: Option<String>,
}

pub(crate) async fn upgrade(
    State(sim): State<Arc<Sim>>,
    Query(query): Query<GatewayQuery>,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| connection(sim, socket, query))
}

/// What a connection knows about itself.
struct Connection {
    id: u64,
    session: Option<String>,
    last_heartbeat: Instant,
    sends: VecDeque<Instant>,
    tx: mpsc::UnboundedSender<Out>,
}

/// What handling one client payload decided.
enum Next {
    Continue,
    Close(u16, &'static str),
}

async fn connection(sim: Arc<Sim>, socket: WebSocket, query: GatewayQuery) {
    let (mut sink, mut stream) = socket.split();
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    if query.v != Some(10) {
        let _ = sink.send(close(4012, "Invalid API version")).await;
        return;
    }
    if query.encoding.as_deref().is_some_and(|e| e != "json") {
        let _ = sink.send(close(4002, "Decode error")).await;
        return;
    }
    let Some(mut compressor) = Compressor::for_query(query.compress.as_deref()) else {
        let _ = sink.send(close(4002, "Decode error")).await;
        return;
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut conn = Connection {
        id: sim.conn_id(),
        session: None,
        last_heartbeat: Instant::now(),
        sends: VecDeque::new(),
        tx,
    };
    let interval = sim.world.heartbeat_interval_ms;
    let hello = json!({"op": 10, "d": {"heartbeat_interval": interval}}).to_string();
    // A client has the interval plus jitter and network slack before it counts as gone.
    let heartbeat_timeout = Duration::from_millis(interval + interval / 2 + 1_000);

    let frame = |compressor: &mut Compressor, text: &str| match compressor.compress(text) {
        Some(bytes) => Message::Binary(bytes.into()),
        None => Message::Text(text.into()),
    };
    if sink.send(frame(&mut compressor, &hello)).await.is_err() {
        return;
    }

    // A client that stopped heartbeating loses its session, not only its connection: Discord
    // says to "reconnect and start a new one" after 4009.
    let mut timed_out = false;
    let closed_with: Option<u16> = loop {
        let deadline = tokio::time::Instant::from_std(conn.last_heartbeat + heartbeat_timeout);
        tokio::select! {
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Text(text))) => match handle(&sim, &mut conn, text.as_str()) {
                    Next::Continue => {}
                    Next::Close(code, reason) => {
                        // What was queued before the close goes out first, in order.
                        while let Ok(Out::Frame(text)) = rx.try_recv() {
                            let _ = sink.send(frame(&mut compressor, &text)).await;
                        }
                        let _ = sink.send(close(code, reason)).await;
                        break Some(code);
                    }
                },
                Some(Ok(Message::Binary(_))) => {
                    let _ = sink.send(close(4002, "Decode error")).await;
                    break Some(4002);
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.as_ref().map_or(1005, |f| f.code);
                    client_closed(&sim, &conn, code);
                    // Echo the close, as the WebSocket closing handshake asks.
                    let _ = sink.send(Message::Close(frame)).await;
                    break None;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Err(_)) | None => break None,
            },
            out = rx.recv() => match out {
                Some(Out::Frame(text)) => {
                    if sink.send(frame(&mut compressor, &text)).await.is_err() {
                        break None;
                    }
                }
                Some(Out::Close(code, reason)) => {
                    let _ = sink.send(close(code, reason)).await;
                    break Some(code);
                }
                None => break None,
            },
            () = tokio::time::sleep_until(deadline) => {
                timed_out = true;
                let _ = sink.send(close(4009, "Session timed out")).await;
                break Some(4009);
            }
        }
    };
    let mut state = sim.lock();
    if let Some(session_id) = &conn.session
        && let Some(session) = state.gateway.sessions.get_mut(session_id)
    {
        if session.conn.as_ref().is_some_and(|c| c.id == conn.id) {
            session.conn = None;
        }
        let shard = session.shard;
        let log = state.shard_log(shard);
        log.connected = false;
        if let Some(code) = closed_with {
            log.closes.push((now_ms(), code));
        }
        // Discord ends the session for these; the client must identify again.
        if timed_out || closed_with.is_some_and(|code| !resumable_close(code)) {
            forget_session(&mut state, session_id);
        }
    }
}

/// Close codes after which Discord lets the session be resumed.
fn resumable_close(code: u16) -> bool {
    !matches!(code, 1000 | 1001 | 4004 | 4010..=4014)
}

fn forget_session(state: &mut crate::state::State, session_id: &str) {
    if let Some(session) = state.gateway.sessions.remove(session_id) {
        if state
            .gateway
            .shard_sessions
            .get(&session.shard)
            .is_some_and(|id| id == session_id)
        {
            state.gateway.shard_sessions.remove(&session.shard);
        }
        let log = state.shard_log(session.shard);
        log.session_id = None;
    }
}

/// The client closed the connection: codes 1000 and 1001 end the session, others keep it
/// resumable (twilight closes with 4000 to keep it).
fn client_closed(sim: &Sim, conn: &Connection, code: u16) {
    let mut state = sim.lock();
    let Some(session_id) = &conn.session else {
        return;
    };
    let Some(shard) = state.gateway.sessions.get(session_id).map(|s| s.shard) else {
        return;
    };
    let log = state.shard_log(shard);
    log.closes.push((now_ms(), code));
    if matches!(code, 1000 | 1001) {
        // The session ends here, so the disconnect below cannot find it: record it now.
        log.connected = false;
        forget_session(&mut state, session_id);
    }
}

fn handle(sim: &Sim, conn: &mut Connection, text: &str) -> Next {
    let now = Instant::now();
    conn.sends.push_back(now);
    while conn
        .sends
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(60))
    {
        conn.sends.pop_front();
    }
    if conn.sends.len() > SENDS_PER_MINUTE {
        sim.lock().violate(
            "gateway send rate",
            format!("more than {SENDS_PER_MINUTE} gateway commands in 60 s on one connection"),
        );
        return Next::Close(4008, "Rate limited.");
    }
    let Ok(payload) = serde_json::from_str::<Value>(text) else {
        return Next::Close(4002, "Decode error");
    };
    let Some(op) = payload.get("op").and_then(Value::as_u64) else {
        return Next::Close(4002, "Decode error");
    };
    let d = payload.get("d").cloned().unwrap_or(Value::Null);
    match (op, conn.session.is_some()) {
        (1, _) => {
            conn.last_heartbeat = now;
            let _ = conn.tx.send(Out::Frame(r#"{"op":11}"#.into()));
            Next::Continue
        }
        (2, false) => identify(sim, conn, &d),
        (6, false) => resume(sim, conn, &d),
        (2 | 6, true) => Next::Close(4005, "Already authenticated."),
        (3, true) => {
            let mut state = sim.lock();
            if let Some(shard) = conn
                .session
                .as_ref()
                .and_then(|id| state.gateway.sessions.get(id))
                .map(|s| s.shard)
            {
                state.shard_log(shard).presence = Some(d);
            }
            Next::Continue
        }
        (4, true) => voice_state_update(sim, conn, &d),
        (8, true) => Next::Continue,
        (3 | 4 | 8, false) => Next::Close(4003, "Not authenticated."),
        _ => Next::Close(4001, "Unknown opcode."),
    }
}

/// The token in IDENTIFY or RESUME, with or without the `Bot ` prefix (Discord takes both).
fn token_matches(d: &Value, token: &str) -> bool {
    d.get("token")
        .and_then(Value::as_str)
        .is_some_and(|given| given.strip_prefix("Bot ").unwrap_or(given) == token)
}

fn identify(sim: &Sim, conn: &mut Connection, d: &Value) -> Next {
    let world = &sim.world;
    let mut state = sim.lock();
    if !token_matches(d, &world.token) {
        state.violate("authentication", "IDENTIFY with a wrong token".to_owned());
        return Next::Close(4004, "Authentication failed.");
    }
    let shard = match d.get("shard") {
        None => Some((0, 1)),
        Some(value) => value.as_array().and_then(|pair| match pair.as_slice() {
            [id, total] => Some((
                u32::try_from(id.as_u64()?).ok()?,
                u32::try_from(total.as_u64()?).ok()?,
            )),
            _ => None,
        }),
    };
    let Some((shard_id, shard_total)) = shard.filter(|(id, total)| *total > 0 && id < total) else {
        state.violate(
            "sharding",
            format!("IDENTIFY with an invalid shard {:?}", d.get("shard")),
        );
        return Next::Close(4010, "Invalid shard.");
    };
    let Some(intents) = d.get("intents").and_then(Value::as_u64) else {
        return Next::Close(4002, "Decode error");
    };
    if intents & !INTENTS_KNOWN != 0 {
        return Next::Close(4013, "Invalid intent(s).");
    }
    let privileged = INTENT_GUILD_MEMBERS
        | INTENT_GUILD_PRESENCES
        | if world.message_content_intent {
            0
        } else {
            INTENT_MESSAGE_CONTENT
        };
    if intents & privileged != 0 {
        state.violate(
            "intents",
            format!(
                "IDENTIFY with privileged intents {:#x} the application lacks",
                intents & privileged
            ),
        );
        return Next::Close(4014, "Disallowed intent(s).");
    }

    let now = Instant::now();
    let bucket = shard_id % world.max_concurrency;
    if let Some(last) = state.gateway.bucket_identified.get(&bucket)
        && now.duration_since(*last) < IDENTIFY_INTERVAL
    {
        let since = now.duration_since(*last);
        state.violate(
            "identify rate",
            format!("shard {shard_id} identified {} ms after the last IDENTIFY in bucket {bucket} (5000 ms required)", since.as_millis()),
        );
        let _ = conn.tx.send(Out::Frame(r#"{"op":9,"d":false}"#.into()));
        return Next::Continue;
    }
    if state.gateway.sessions_started >= world.session_start_limit {
        state.violate(
            "session budget",
            format!(
                "shard {shard_id} identified with the daily budget of {} sessions spent",
                world.session_start_limit
            ),
        );
        let _ = conn.tx.send(Out::Frame(r#"{"op":9,"d":false}"#.into()));
        return Next::Continue;
    }
    state.gateway.bucket_identified.insert(bucket, now);
    state.gateway.sessions_started += 1;

    if let Some(old) = state
        .gateway
        .shard_sessions
        .get(&(shard_id, shard_total))
        .cloned()
        && state
            .gateway
            .sessions
            .get(&old)
            .is_some_and(|s| s.conn.is_some())
    {
        state.violate(
            "sharding",
            format!("shard {shard_id} identified while another connection holds it"),
        );
        if let Some(old_session) = state.gateway.sessions.get(&old) {
            old_session.send(Out::Close(4009, "Session timed out"));
        }
        forget_session(&mut state, &old);
    }

    let session_id = format!(
        "{:032x}",
        u128::from(sim.snowflake()) << 64 | u128::from(conn.id)
    );
    let mut session = Session {
        id: session_id.clone(),
        shard: (shard_id, shard_total),
        intents,
        seq: 0,
        replay: VecDeque::new(),
        conn: Some(Conn {
            id: conn.id,
            tx: conn.tx.clone(),
        }),
    };
    let guilds: Vec<&crate::world::Guild> =
        world.guilds.iter().filter(|g| session.owns(g.id)).collect();
    let ready = json!({
        "v": 10,
        "user": payload::current_user(world),
        "guilds": guilds.iter().map(|g| json!({"id": g.id.to_string(), "unavailable": true})).collect::<Vec<_>>(),
        "session_id": session_id,
        "resume_gateway_url": sim.urls.gateway,
        "shard": [shard_id, shard_total],
        "application": {"id": world.application_id.to_string(), "flags": 0},
    });
    session.push("READY", &ready.to_string());
    if intents & INTENT_GUILDS != 0 {
        let joined = now_ms();
        for guild in guilds {
            let voice: Vec<(u64, u64)> = state
                .voice
                .iter()
                .filter(|((g, _), _)| *g == guild.id)
                .map(|((_, user), channel)| (*user, *channel))
                .collect();
            session.push(
                "GUILD_CREATE",
                &payload::guild_create(world, guild, &voice, joined).to_string(),
            );
        }
    }
    let log = state.shard_log((shard_id, shard_total));
    log.identifies.push(now_ms());
    log.session_id = Some(session_id.clone());
    log.connected = true;
    log.intents = intents;
    log.seq = session.seq;
    state.gateway.sessions.insert(session_id.clone(), session);
    state
        .gateway
        .shard_sessions
        .insert((shard_id, shard_total), session_id.clone());
    conn.session = Some(session_id);
    Next::Continue
}

fn resume(sim: &Sim, conn: &mut Connection, d: &Value) -> Next {
    let mut state = sim.lock();
    if !token_matches(d, &sim.world.token) {
        state.violate("authentication", "RESUME with a wrong token".to_owned());
        return Next::Close(4004, "Authentication failed.");
    }
    let session_id = d
        .get("session_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let seq = d.get("seq").and_then(Value::as_u64).unwrap_or(0);
    let Some(session) = state.gateway.sessions.get_mut(&session_id) else {
        let _ = conn.tx.send(Out::Frame(r#"{"op":9,"d":false}"#.into()));
        return Next::Continue;
    };
    let oldest = session.replay.front().map_or(session.seq + 1, |(s, _)| *s);
    if seq > session.seq || seq + 1 < oldest {
        let _ = conn.tx.send(Out::Frame(r#"{"op":9,"d":false}"#.into()));
        return Next::Continue;
    }
    if let Some(old) = session.conn.take() {
        let _ = old.tx.send(Out::Close(4009, "Session timed out"));
    }
    session.conn = Some(Conn {
        id: conn.id,
        tx: conn.tx.clone(),
    });
    for (s, frame) in &session.replay {
        if *s > seq {
            let _ = conn.tx.send(Out::Frame(Arc::clone(frame)));
        }
    }
    session.push("RESUMED", "{}");
    let shard = session.shard;
    let current_seq = session.seq;
    let intents = session.intents;
    state
        .gateway
        .shard_sessions
        .insert(shard, session_id.clone());
    let log = state.shard_log(shard);
    log.resumes.push(now_ms());
    log.connected = true;
    log.session_id = Some(session_id.clone());
    log.seq = current_seq;
    log.intents = intents;
    conn.session = Some(session_id);
    Next::Continue
}

/// Opcode 4: the bot joins, moves or leaves a voice channel. Discord answers with the bot's
/// VOICE_STATE_UPDATE and, when joining, a VOICE_SERVER_UPDATE.
fn voice_state_update(sim: &Sim, conn: &mut Connection, d: &Value) -> Next {
    let world = &sim.world;
    let id = |key: &str| {
        d.get(key)
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok())
    };
    let Some(guild_id) = id("guild_id") else {
        return Next::Close(4002, "Decode error");
    };
    let channel_id = id("channel_id");
    let mut state = sim.lock();
    let Some(session_id) = conn.session.clone() else {
        return Next::Close(4003, "Not authenticated.");
    };
    let owns = state
        .gateway
        .sessions
        .get(&session_id)
        .is_some_and(|s| s.owns(guild_id));
    let valid_channel = channel_id.is_none_or(|channel| {
        world
            .channel(channel)
            .is_some_and(|(g, c)| g.id == guild_id && c.kind == crate::world::ChannelKind::Voice)
    });
    if !owns || world.guild(guild_id).is_none() || !valid_channel {
        state.violate(
            "voice state",
            format!("op 4 for guild {guild_id}, channel {channel_id:?}: not a voice channel of a guild of this shard"),
        );
        return Next::Continue;
    }
    if let Some(shard) = state.gateway.sessions.get(&session_id).map(|s| s.shard) {
        state
            .shard_log(shard)
            .voice_updates
            .push((now_ms(), guild_id, channel_id));
    }
    match channel_id {
        Some(channel) => state.voice.insert((guild_id, world.bot.id), channel),
        None => state.voice.remove(&(guild_id, world.bot.id)),
    };
    let voice_session = format!("{:x}", sim.snowflake());
    let voice_token = format!("{:x}", sim.snowflake());
    match channel_id {
        Some(channel) => sim
            .voice
            .grant(guild_id, channel, &voice_session, &voice_token),
        None => sim.voice.revoke(guild_id),
    }
    let update = payload::voice_state(
        guild_id,
        channel_id,
        &world.bot,
        true,
        &voice_session,
        now_ms(),
    );
    let Some(session) = state.gateway.sessions.get_mut(&session_id) else {
        return Next::Continue;
    };
    if session.intents & INTENT_GUILD_VOICE_STATES != 0 {
        session.push("VOICE_STATE_UPDATE", &update.to_string());
    }
    if channel_id.is_some() {
        let server = json!({
            "token": voice_token,
            "guild_id": guild_id.to_string(),
            "endpoint": sim.voice.endpoint,
        });
        session.push("VOICE_SERVER_UPDATE", &server.to_string());
    }
    Next::Continue
}
