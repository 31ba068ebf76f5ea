//! A misbehaving client, written by hand, against the simulator's rules: each broken rule is
//! refused as Discord refuses it and shows up in `/_sim/violations`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::{Config, Control, Simulator};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PATIENCE: Duration = Duration::from_secs(10);

async fn start(config: Config) -> (Simulator, Control) {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    (sim, control)
}

async fn connect(sim: &Simulator) -> Socket {
    let url = format!("{}?v=10&encoding=json", sim.gateway_url);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let hello = next_payload(&mut socket).await;
    assert_eq!(hello["op"], 10);
    socket
}

/// The next payload; panics on a close or a timeout.
async fn next_payload(socket: &mut Socket) -> Value {
    match next(socket).await {
        Ok(payload) => payload,
        Err(code) => panic!("closed with {code}"),
    }
}

/// The next payload, or the close code.
async fn next(socket: &mut Socket) -> Result<Value, u16> {
    loop {
        let message = tokio::time::timeout(PATIENCE, socket.next())
            .await
            .expect("in time");
        match message {
            Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
            Some(Ok(Message::Close(frame))) => {
                return Err(frame.map_or(1005, |f| u16::from(f.code)));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Err(1006),
        }
    }
}

async fn send(socket: &mut Socket, payload: Value) {
    socket
        .send(Message::text(payload.to_string()))
        .await
        .unwrap();
}

fn identify(sim: &Simulator, shard: [u32; 2], intents: u64) -> Value {
    json!({"op": 2, "d": {
        "token": sim.world.token, "intents": intents, "shard": shard,
        "properties": {"os": "linux", "browser": "test", "device": "test"},
    }})
}

/// Reads until the dispatch named `event`.
async fn until_dispatch(socket: &mut Socket, event: &str) -> Value {
    loop {
        let payload = next_payload(socket).await;
        if payload["t"] == event {
            return payload;
        }
    }
}

async fn rules(control: &Control) -> Vec<String> {
    control
        .violations()
        .await
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn identifying_too_fast_is_refused_with_invalid_session() {
    let (sim, control) = start(Config::default()).await;
    let mut first = connect(&sim).await;
    send(&mut first, identify(&sim, [0, 2], 1)).await;
    until_dispatch(&mut first, "READY").await;
    // Same bucket (max_concurrency 1), well within 5 s.
    let mut second = connect(&sim).await;
    send(&mut second, identify(&sim, [1, 2], 1)).await;
    let refused = next_payload(&mut second).await;
    assert_eq!(refused, json!({"op": 9, "d": false}));
    assert_eq!(rules(&control).await, vec!["identify rate"]);
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn more_than_120_commands_a_minute_closes_with_4008() {
    let (sim, control) = start(Config::default()).await;
    let mut socket = connect(&sim).await;
    send(&mut socket, identify(&sim, [0, 1], 1)).await;
    until_dispatch(&mut socket, "READY").await;
    // IDENTIFY was one; 119 heartbeats make 120, which is allowed; the next is not.
    for _ in 0..119 {
        send(&mut socket, json!({"op": 1, "d": null})).await;
    }
    send(&mut socket, json!({"op": 1, "d": null})).await;
    let mut acks = 0;
    let code = loop {
        match next(&mut socket).await {
            Ok(payload) if payload["op"] == 11 => acks += 1,
            Ok(_) => {}
            Err(code) => break code,
        }
    };
    assert_eq!(code, 4008);
    assert_eq!(acks, 119);
    assert_eq!(rules(&control).await, vec!["gateway send rate"]);
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn bad_identifies_get_discords_close_codes() {
    let mut config = Config::default();
    config.world.message_content_intent = false;
    let (sim, control) = start(config).await;
    let cases = [
        (
            json!({"op": 2, "d": {"token": "a.b.c", "intents": 1, "properties": {}}}),
            4004,
        ),
        (identify(&sim, [2, 2], 1), 4010),
        (identify(&sim, [0, 1], 1 << 15), 4014),
        (identify(&sim, [0, 1], 1 << 40), 4013),
        (
            json!({"op": 4, "d": {"guild_id": "1", "channel_id": null}}),
            4003,
        ),
        (json!({"op": 99, "d": null}), 4001),
    ];
    for (payload, want) in cases {
        let mut socket = connect(&sim).await;
        send(&mut socket, payload.clone()).await;
        assert_eq!(next(&mut socket).await, Err(want), "{payload}");
    }
    let mut socket = connect(&sim).await;
    socket.send(Message::text("{not json")).await.unwrap();
    assert_eq!(next(&mut socket).await, Err(4002));
    assert_eq!(
        rules(&control).await,
        vec!["authentication", "sharding", "intents"]
    );
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_client_is_disconnected_and_its_session_ends() {
    let mut config = Config::default();
    config.world.heartbeat_interval_ms = 200;
    let (sim, control) = start(config).await;
    let mut socket = connect(&sim).await;
    send(&mut socket, identify(&sim, [0, 1], 1)).await;
    let ready = until_dispatch(&mut socket, "READY").await;
    // No heartbeats: closed after the interval and its grace.
    let code = loop {
        if let Err(code) = next(&mut socket).await {
            break code;
        }
    };
    assert_eq!(code, 4009);
    // As Discord says after 4009: the session is gone, a RESUME is refused (op 9, false).
    let mut socket = connect(&sim).await;
    send(&mut socket, json!({"op": 6, "d": {"token": sim.world.token, "session_id": ready["d"]["session_id"], "seq": 1}})).await;
    assert_eq!(
        next_payload(&mut socket).await,
        json!({"op": 9, "d": false})
    );
    assert!(rules(&control).await.is_empty());
    socket.close(None).await.unwrap();
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_normal_close_ends_the_session() {
    let (sim, _control) = start(Config::default()).await;
    let mut socket = connect(&sim).await;
    send(&mut socket, identify(&sim, [0, 1], 1)).await;
    let ready = until_dispatch(&mut socket, "READY").await;
    socket
        .close(Some(tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut socket = connect(&sim).await;
    send(&mut socket, json!({"op": 6, "d": {"token": sim.world.token, "session_id": ready["d"]["session_id"], "seq": 1}})).await;
    assert_eq!(
        next_payload(&mut socket).await,
        json!({"op": 9, "d": false})
    );
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn the_bots_voice_state_update_is_answered_with_voice_events() {
    let (sim, control) = start(Config::default()).await;
    let guild = &sim.world.guilds[0];
    let voice_channel = guild.channels[2].id;
    let mut socket = connect(&sim).await;
    // GUILDS | GUILD_VOICE_STATES
    send(&mut socket, identify(&sim, [0, 1], 1 | 1 << 7)).await;
    until_dispatch(&mut socket, "READY").await;
    send(
        &mut socket,
        json!({"op": 4, "d": {
            "guild_id": guild.id.to_string(), "channel_id": voice_channel.to_string(),
            "self_mute": false, "self_deaf": true,
        }}),
    )
    .await;
    let state = until_dispatch(&mut socket, "VOICE_STATE_UPDATE").await;
    assert_eq!(state["d"]["user_id"], sim.world.bot.id.to_string());
    assert_eq!(state["d"]["channel_id"], voice_channel.to_string());
    let server = until_dispatch(&mut socket, "VOICE_SERVER_UPDATE").await;
    assert_eq!(server["d"]["guild_id"], guild.id.to_string());
    assert!(server["d"]["token"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(server["d"]["endpoint"].as_str().is_some());

    // A voice channel of a guild this shard does not own is a mistake.
    let other = &sim.world.guilds[1];
    send(&mut socket, json!({"op": 4, "d": {"guild_id": other.id.to_string(), "channel_id": other.channels[2].id.to_string()}})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rules(&control).await,
        Vec::<String>::new(),
        "shard 0 of 1 owns every guild"
    );
    send(&mut socket, json!({"op": 4, "d": {"guild_id": guild.id.to_string(), "channel_id": guild.channels[0].id.to_string()}})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        rules(&control).await,
        vec!["voice state"],
        "a text channel is no voice channel"
    );
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn without_the_content_intent_message_content_is_blank() {
    let (sim, control) = start(Config::default()).await;
    let mut socket = connect(&sim).await;
    // GUILDS | GUILD_MESSAGES, no MESSAGE_CONTENT.
    send(&mut socket, identify(&sim, [0, 1], 1 | 1 << 9)).await;
    until_dispatch(&mut socket, "READY").await;
    let guild = &sim.world.guilds[0];
    control
        .say(guild.channels[0].id, guild.members[0].id, "secret plans")
        .await
        .unwrap();
    let message = until_dispatch(&mut socket, "MESSAGE_CREATE").await;
    assert_eq!(message["d"]["content"], "");
    let mention = format!("<@{}> ping", sim.world.bot.id);
    control
        .say(guild.channels[0].id, guild.members[0].id, &mention)
        .await
        .unwrap();
    let message = until_dispatch(&mut socket, "MESSAGE_CREATE").await;
    assert_eq!(
        message["d"]["content"], mention,
        "a mention of the bot keeps its content"
    );
    sim.stop().await.unwrap();
}

/// Resharding: shard 0 of 1 and shard 0 of 2 (a new generation) run side by side, as Discord
/// allows; an event of a guild both own reaches both, and no rule is broken.
#[tokio::test]
async fn two_generations_of_shards_run_side_by_side() {
    let (sim, control) = start(Config::default()).await;
    // GUILDS | GUILD_MESSAGES | MESSAGE_CONTENT
    let intents = 1 | (1 << 9) | (1 << 15);
    let mut old = connect(&sim).await;
    send(&mut old, identify(&sim, [0, 1], intents)).await;
    until_dispatch(&mut old, "READY").await;
    // The same identify bucket: 5 s apart, whatever the generation.
    tokio::time::sleep(std::time::Duration::from_millis(5_100)).await;
    let mut new = connect(&sim).await;
    send(&mut new, identify(&sim, [0, 2], intents)).await;
    until_dispatch(&mut new, "READY").await;
    // "Disco Lounge" is shard 0 of 2, and every guild is shard 0 of 1.
    let lounge = &sim.world.guilds[0];
    control
        .say(
            lounge.channels[0].id,
            lounge.members[0].id,
            "both hear this",
        )
        .await
        .unwrap();
    for socket in [&mut old, &mut new] {
        let message = until_dispatch(socket, "MESSAGE_CREATE").await;
        assert_eq!(message["d"]["content"], "both hear this");
    }
    assert!(rules(&control).await.is_empty());
    let shards = control.get("/shards").await.unwrap();
    let keys: Vec<(u64, u64)> = shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["shard_id"].as_u64().unwrap(),
                s["shard_total"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(keys, [(0, 1), (0, 2)]);
    sim.stop().await.unwrap();
}
