//! The voice gateway: a websocket on `wss://` that checks IDENTIFY against the grants, insists
//! on DAVE being offered, hands out the session description, and wants heartbeats.

use std::time::Duration;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

use super::dave::{Call, Out, PROTOCOL_VERSION};
use super::hub::{HubState, Link, Receiver};
use super::{HEARTBEAT_INTERVAL_MS, MODE};
use crate::state::Sim;

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a voice gateway connection ends.
enum End {
    Close(u16, &'static str),
    Gone,
}

// tungstenite's handshake callback returns its own (large) error type.
#[allow(clippy::result_large_err)]
pub(super) async fn connection(
    sim: &Sim,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    shutdown: CancellationToken,
) -> Result<(), BoxError> {
    let stream = acceptor.accept(stream).await?;
    let mut query = String::new();
    let mut ws = tokio_tungstenite::accept_hdr_async(
        stream,
        |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
            query = request.uri().query().unwrap_or_default().to_owned();
            Ok(response)
        },
    )
    .await?;
    let version = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("v="))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let (outbox_tx, outbox) = unbounded_channel();
    let mut session = VoiceSession {
        version,
        seq: 0,
        link: sim.conn_id(),
        guild_id: None,
        ssrc: 0,
        outbox_tx,
        outbox,
    };
    let end = if (4..=8).contains(&version) {
        session.run(sim, &mut ws, &shutdown).await
    } else {
        sim.lock().violate(
            "voice gateway",
            format!("asked for voice gateway version {version:?}; Discord serves 4 to 8"),
        );
        End::Close(4020, "Bad request.")
    };
    if let Some(guild_id) = session.guild_id {
        let mut hub = sim.voice.lock();
        // A connection replaced by a newer one (a RESUME, a new IDENTIFY) leaves the call to
        // it; any other end (the client left, the bot left, a rule broken) ends the call.
        let replaced = hub
            .links
            .get(&guild_id)
            .is_some_and(|l| l.id != session.link);
        if !replaced {
            hub.links.remove(&guild_id);
            // A client that went away may RESUME with the same ssrc, key and DAVE group; a
            // connection the server closed may not.
            if matches!(end, End::Close(..)) {
                hub.receivers.remove(&session.ssrc);
                hub.calls.remove(&guild_id);
            }
        }
        if let Some(stats) = hub.stats.get_mut(&guild_id) {
            stats.connected &= replaced;
            if let End::Close(code, _) = &end {
                stats.close_codes.push(*code);
            }
        }
    }
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        ws.close(Some(frame)).await.ok();
    }
    Ok(())
}

struct VoiceSession {
    version: u32,
    seq: u64,
    /// This connection's id, to tell it from the one that replaces it.
    link: u64,
    guild_id: Option<u64>,
    ssrc: u32,
    /// What the server sends unasked (DAVE, when members come and go), through [`Link`].
    outbox_tx: UnboundedSender<Out>,
    outbox: UnboundedReceiver<Out>,
}

impl VoiceSession {
    fn link(&self, stop: &CancellationToken) -> Link {
        Link {
            id: self.link,
            stop: stop.clone(),
            outbox: self.outbox_tx.clone(),
        }
    }

    /// A binary DAVE message: `[seq: u16, v8 only][op: u8][payload]`.
    async fn send_binary(&mut self, ws: &mut Ws, op: u8, payload: &[u8]) -> Result<(), BoxError> {
        let mut message = Vec::with_capacity(payload.len() + 3);
        if self.version >= 8 {
            self.seq += 1;
            #[allow(clippy::cast_possible_truncation)] // the wire's sequence number wraps
            message.extend_from_slice(&(self.seq as u16).to_be_bytes());
        }
        message.push(op);
        message.extend_from_slice(payload);
        ws.send(Message::binary(message)).await?;
        Ok(())
    }

    async fn send_out(&mut self, ws: &mut Ws, out: Vec<Out>) -> Result<(), BoxError> {
        for message in out {
            match message {
                Out::Binary(op, payload) => self.send_binary(ws, op, &payload).await?,
                Out::Json(op, d) => self.send(ws, op, d).await?,
            }
        }
        Ok(())
    }

    /// A DAVE step of the call's group: its answers, or the rule it broke (recorded).
    fn dave(
        &self,
        sim: &Sim,
        step: impl FnOnce(
            &mut Call,
            &[u64],
            &super::dave::ExternalSender,
            &mut super::dave::DaveStats,
        ) -> Result<Vec<Out>, String>,
    ) -> Vec<Out> {
        let Some(guild_id) = self.guild_id else {
            return Vec::new();
        };
        let result = {
            let mut hub = sim.voice.lock();
            // Read under the lock that member moves take: none is missed in between.
            let present = hub.present(guild_id);
            let HubState {
                calls,
                stats,
                links,
                ..
            } = &mut *hub;
            match calls.get_mut(&guild_id) {
                Some(call) => step(
                    call,
                    &present,
                    &sim.voice.sender,
                    &mut stats.entry(guild_id).or_default().dave,
                ),
                // The bot left (or was removed) while this message was on its way: its
                // connection is ending, and what arrives meanwhile is dropped, as by Discord.
                None if links.get(&guild_id).is_none_or(|link| link.id != self.link) => {
                    Ok(Vec::new())
                }
                None => Err("a DAVE message outside a DAVE call".to_owned()),
            }
        };
        result.unwrap_or_else(|error| {
            sim.lock()
                .violate("dave", format!("guild {guild_id}: {error}"));
            Vec::new()
        })
    }

    /// Binary DAVE messages from the bot: its key package (26), its commit and welcome (28).
    fn binary(&self, sim: &Sim, message: &[u8]) -> Result<Vec<Out>, End> {
        let Some((&op, payload)) = message.split_first() else {
            return Err(End::Close(4002, "Failed to decode payload."));
        };
        match op {
            26 => Ok(self.dave(sim, |call, present, sender, stats| {
                call.key_package(payload, present, sender, stats)
            })),
            28 => Ok(self.dave(sim, |call, _, _, stats| call.commit(payload, stats))),
            _ => Err(End::Close(4001, "Unknown opcode.")),
        }
    }

    /// The members (not the bot) in the voice channel the bot was granted.
    fn present(&self, sim: &Sim) -> Vec<u64> {
        self.guild_id
            .map(|guild_id| sim.voice.lock().present(guild_id))
            .unwrap_or_default()
    }

    async fn send(&mut self, ws: &mut Ws, op: u8, d: Value) -> Result<(), BoxError> {
        let mut message = json!({"op": op, "d": d});
        if self.version >= 8 {
            self.seq += 1;
            message["seq"] = json!(self.seq);
        }
        ws.send(Message::text(message.to_string())).await?;
        Ok(())
    }

    async fn run(&mut self, sim: &Sim, ws: &mut Ws, shutdown: &CancellationToken) -> End {
        let first = tokio::time::timeout(Duration::from_secs(10), next_json(ws)).await;
        let Ok(Some(first)) = first else {
            return End::Close(4003, "Not authenticated.");
        };
        let link = CancellationToken::new();
        let started = match first.get("op").and_then(Value::as_u64) {
            Some(0) => self.identify(sim, ws, &first["d"], &link).await,
            Some(7) => self.resume(sim, ws, &first["d"], &link).await,
            _ => Err(End::Close(4003, "Not authenticated.")),
        };
        if let Err(end) = started {
            return end;
        }
        let interval = Duration::from_millis(HEARTBEAT_INTERVAL_MS);
        let mut deadline = tokio::time::Instant::now() + interval + interval / 2;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return End::Close(1001, "Going away."),
                () = link.cancelled() => return End::Close(4014, "Disconnected."),
                () = tokio::time::sleep_until(deadline) => return End::Close(4009, "Session timeout."),
                Some(out) = self.outbox.recv() => {
                    if self.send_out(ws, vec![out]).await.is_err() {
                        return End::Gone;
                    }
                    continue;
                }
                message = ws.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Binary(bytes))) => {
                    let sent = match self.binary(sim, &bytes) {
                        Ok(out) => self.send_out(ws, out).await,
                        Err(end) => return end,
                    };
                    if sent.is_err() {
                        return End::Gone;
                    }
                    continue;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return End::Gone,
                Some(Ok(Message::Frame(_))) => continue,
            };
            let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                return End::Close(4002, "Failed to decode payload.");
            };
            let d = &payload["d"];
            let sent = match payload.get("op").and_then(Value::as_u64) {
                Some(1) => match self.select_protocol(sim, d) {
                    Ok(description) => {
                        // Who is in the call, then the external sender for the bot's group.
                        let present = self.present(sim);
                        let connect = json!({
                            "user_ids": present.iter().map(u64::to_string).collect::<Vec<_>>(),
                        });
                        let dave = sim.world.dave.then(|| sim.voice.sender.announcement());
                        async {
                            self.send(ws, 4, description).await?;
                            if !present.is_empty() {
                                self.send(ws, 11, connect).await?;
                            }
                            self.send_out(ws, dave.into_iter().collect()).await
                        }
                        .await
                    }
                    Err(end) => return end,
                },
                // dave_protocol_ready_for_transition
                Some(23) => {
                    let transition = d
                        .get("transition_id")
                        .and_then(Value::as_u64)
                        .and_then(|t| u16::try_from(t).ok())
                        .unwrap_or_default();
                    let out = self.dave(sim, |call, _, sender, stats| {
                        call.ready(transition, sender, stats)
                    });
                    self.send_out(ws, out).await
                }
                // dave_mls_invalid_commit_welcome: the bot could not use what it was sent.
                Some(31) => {
                    sim.lock().violate(
                        "dave",
                        format!(
                            "the bot could not process the commit or welcome of transition {}",
                            d["transition_id"]
                        ),
                    );
                    Ok(())
                }
                Some(3) => {
                    deadline = tokio::time::Instant::now() + interval + interval / 2;
                    // v4 sends the nonce itself; v8 sends {t, seq_ack}. The ACK echoes it.
                    let ack = if self.version >= 8 {
                        json!({"t": d.get("t").cloned().unwrap_or(Value::Null)})
                    } else {
                        d.clone()
                    };
                    self.send(ws, 6, ack).await
                }
                Some(5) => Ok(()),
                Some(0 | 7) => return End::Close(4005, "Already authenticated."),
                _ => return End::Close(4001, "Unknown opcode."),
            };
            if sent.is_err() {
                return End::Gone;
            }
        }
    }

    async fn identify(
        &mut self,
        sim: &Sim,
        ws: &mut Ws,
        d: &Value,
        link: &CancellationToken,
    ) -> Result<(), End> {
        let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or_default();
        let guild_id = snowflake(d, "server_id").unwrap_or_default();
        let dave = d
            .get("max_dave_protocol_version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let ssrc = {
            let mut hub = sim.voice.lock();
            let grant = hub.grants.get(&guild_id).cloned();
            let valid = grant.as_ref().is_some_and(|grant| {
                snowflake(d, "user_id") == Some(sim.world.bot.id)
                    && text("session_id") == grant.session_id
                    && text("token") == grant.token
            });
            let Some(grant) = grant.filter(|_| valid) else {
                drop(hub);
                sim.lock().violate(
                    "voice identify",
                    format!("IDENTIFY for guild {guild_id} without the session and token Discord handed out"),
                );
                return Err(End::Close(4004, "Authentication failed."));
            };
            if dave == 0 {
                drop(hub);
                sim.lock().violate(
                    "dave",
                    format!("IDENTIFY for guild {guild_id} offers no DAVE protocol version; Discord requires end-to-end encryption"),
                );
                return Err(End::Close(4017, "E2EE/DAVE protocol required."));
            }
            hub.next_ssrc += 1;
            let ssrc = hub.next_ssrc;
            // A new session: whatever the guild had before is over.
            hub.receivers.retain(|_, r| r.guild_id != guild_id);
            let new_link = self.link(link);
            hub.take_over(guild_id, new_link);
            let decoder = opus2::Decoder::new(48_000, opus2::Channels::Stereo)
                .map_err(|_| End::Close(4000, "Unknown error."))?;
            hub.receivers.insert(
                ssrc,
                Receiver {
                    guild_id,
                    cipher: None,
                    decoder,
                },
            );
            let stats = hub.stats.entry(guild_id).or_default();
            stats.connected = true;
            stats.channel_id = Some(grant.channel_id.to_string());
            stats.connections += 1;
            stats.gateway_version = self.version;
            stats.max_dave_protocol_version = u32::try_from(dave).unwrap_or(u32::MAX);
            ssrc
        };
        self.guild_id = Some(guild_id);
        self.ssrc = ssrc;
        let udp = sim.voice.udp;
        let hello = json!({"heartbeat_interval": HEARTBEAT_INTERVAL_MS});
        let ready = json!({
            "ssrc": ssrc,
            "ip": udp.ip().to_string(),
            "port": udp.port(),
            "modes": [MODE],
            "heartbeat_interval": HEARTBEAT_INTERVAL_MS,
        });
        let sent = async {
            self.send(ws, 8, hello).await?;
            self.send(ws, 2, ready).await
        };
        sent.await.map_err(|_| End::Gone)
    }

    /// RESUME after a dropped connection: the same grant, the same ssrc and key.
    async fn resume(
        &mut self,
        sim: &Sim,
        ws: &mut Ws,
        d: &Value,
        link: &CancellationToken,
    ) -> Result<(), End> {
        let guild_id = snowflake(d, "server_id").unwrap_or_default();
        let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or_default();
        {
            let mut hub = sim.voice.lock();
            let valid = hub.grants.get(&guild_id).is_some_and(|grant| {
                text("session_id") == grant.session_id && text("token") == grant.token
            });
            let ssrc = hub
                .receivers
                .iter()
                .find_map(|(ssrc, r)| (r.guild_id == guild_id).then_some(*ssrc));
            let (true, Some(ssrc)) = (valid, ssrc) else {
                return Err(End::Close(4006, "Session no longer valid."));
            };
            let new_link = self.link(link);
            hub.take_over(guild_id, new_link);
            let stats = hub.stats.entry(guild_id).or_default();
            stats.connected = true;
            stats.connections += 1;
            self.guild_id = Some(guild_id);
            self.ssrc = ssrc;
        }
        let sent = async {
            self.send(ws, 8, json!({"heartbeat_interval": HEARTBEAT_INTERVAL_MS}))
                .await?;
            self.send(ws, 9, Value::Null).await
        };
        sent.await.map_err(|_| End::Gone)
    }

    /// SELECT_PROTOCOL: UDP with the offered mode; answered with the session description.
    fn select_protocol(&mut self, sim: &Sim, d: &Value) -> Result<Value, End> {
        if d.get("protocol").and_then(Value::as_str) != Some("udp") {
            return Err(End::Close(4012, "Unknown protocol."));
        }
        if d.pointer("/data/mode").and_then(Value::as_str) != Some(MODE) {
            return Err(End::Close(4016, "Unknown encryption mode."));
        }
        let key: [u8; 32] = rand::random();
        let mut hub = sim.voice.lock();
        let Some(receiver) = hub.receivers.get_mut(&self.ssrc) else {
            return Err(End::Close(4006, "Session no longer valid."));
        };
        receiver.cipher = Some(Aes256Gcm::new(&key.into()));
        let guild_id = receiver.guild_id;
        let channel_id = hub.grants.get(&guild_id).map_or(0, |g| g.channel_id);
        let version = if sim.world.dave {
            // A new session: a new group, formed once the bot's key package arrives.
            hub.calls
                .insert(guild_id, Call::new(sim.world.bot.id, channel_id));
            PROTOCOL_VERSION
        } else {
            0
        };
        hub.stats.entry(guild_id).or_default().dave.protocol_version = version;
        Ok(json!({
            "mode": MODE,
            "secret_key": key.to_vec(),
            "dave_protocol_version": version,
        }))
    }
}

/// An id as clients send it: a string, or (some clients) a number.
fn snowflake(d: &Value, key: &str) -> Option<u64> {
    match d.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}
