//! The voice server's rules, with a hand-written client: it speaks TLS with the simulator's own
//! CA, refuses an IDENTIFY that Discord did not hand out, one without a DAVE offer, and a
//! version Discord does not serve; a dropped client RESUMEs its session.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use discord_sim::{Config, Control, Simulator};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use twilight_gateway::{Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _};
use twilight_model::gateway::payload::outgoing::UpdateVoiceState;
use twilight_model::id::Id;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

async fn dial(sim: &Simulator, version: u32) -> Ws {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(sim.voice_tls.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(&sim.voice_endpoint)
        .await
        .unwrap();
    let host = sim.voice_endpoint.split(':').next().unwrap().to_owned();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(host).unwrap(), tcp)
        .await
        .expect("the simulator's CA signs the voice server's certificate");
    let url = format!("wss://{}/?v={version}", sim.voice_endpoint);
    tokio_tungstenite::client_async(url, tls).await.unwrap().0
}

/// The close code the server ends the connection with.
async fn closed_with(ws: &mut Ws) -> u16 {
    while let Some(message) = ws.next().await {
        if let Ok(Message::Close(Some(frame))) = message {
            return frame.code.into();
        }
    }
    panic!("closed without a code")
}

async fn rules_broken(sim: &Simulator) -> Vec<String> {
    Control::new(&sim.rest_url)
        .violations()
        .await
        .unwrap()
        .iter()
        .map(|v| v["rule"].as_str().unwrap().to_owned())
        .collect()
}

/// What the gateway hands out when the bot joins a voice channel: (session id, token).
async fn join_voice(sim: &Simulator) -> (Shard, String, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = twilight_gateway::ConfigBuilder::new(
        sim.world.token.clone(),
        Intents::GUILDS | Intents::GUILD_VOICE_STATES,
    )
    .proxy_url(sim.gateway_url.clone())
    .build();
    let mut shard = Shard::with_config(ShardId::new(0, 1), config);
    let guild = &sim.world.guilds[0];
    let lounge = guild.channels.iter().find(|c| c.name == "Lounge").unwrap();
    let (mut session, mut token) = (None, None);
    while session.is_none() || token.is_none() {
        match shard
            .next_event(EventTypeFlags::all())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Ready(_) => shard.command(&UpdateVoiceState::new(
                Id::new(guild.id),
                Some(Id::new(lounge.id)),
                false,
                false,
            )),
            Event::VoiceStateUpdate(state) => session = Some(state.session_id.clone()),
            Event::VoiceServerUpdate(server) => token = Some(server.token.clone()),
            _ => {}
        }
    }
    (shard, session.unwrap(), token.unwrap())
}

async fn next_op(ws: &mut Ws) -> serde_json::Value {
    loop {
        if let Message::Text(text) = ws.next().await.unwrap().unwrap() {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test]
async fn a_granted_session_connects_and_resumes_and_dave_is_required() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let guild = sim.world.guilds[0].id;
    let (_shard, session, token) = join_voice(&sim).await;
    let identify = |dave: u16| {
        json!({"op": 0, "d": {
            "server_id": guild.to_string(),
            "user_id": sim.world.bot.id.to_string(),
            "session_id": session,
            "token": token,
            "max_dave_protocol_version": dave,
        }})
        .to_string()
    };

    // Without a DAVE offer: refused, as Discord refuses it since March 2026.
    let mut ws = dial(&sim, 4).await;
    ws.send(Message::text(identify(0))).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, 4017);
    assert_eq!(rules_broken(&sim).await, ["dave"]);

    // With it: HELLO, READY, then the session description for the one mode offered.
    let mut ws = dial(&sim, 4).await;
    ws.send(Message::text(identify(1))).await.unwrap();
    assert_eq!(next_op(&mut ws).await["op"], 8);
    let ready = next_op(&mut ws).await;
    assert_eq!(ready["op"], 2);
    assert_eq!(ready["d"]["modes"], json!(["aead_aes256_gcm_rtpsize"]));
    let select = json!({"op": 1, "d": {"protocol": "udp", "data": {
        "address": "127.0.0.1", "port": 9, "mode": "aead_aes256_gcm_rtpsize"}}});
    ws.send(Message::text(select.to_string())).await.unwrap();
    let description = next_op(&mut ws).await;
    assert_eq!(description["op"], 4);
    assert_eq!(description["d"]["secret_key"].as_array().unwrap().len(), 32);
    assert_eq!(description["d"]["dave_protocol_version"], 1);
    // DAVE: the voice server's external sender package (op 25, binary, no sequence at v4).
    let external_sender = loop {
        if let Message::Binary(bytes) = ws.next().await.unwrap().unwrap() {
            break bytes;
        }
    };
    assert_eq!(external_sender[0], 25);
    assert!(external_sender.len() > 64, "a key and a credential");
    ws.send(Message::text(json!({"op": 3, "d": 42}).to_string()))
        .await
        .unwrap();
    assert_eq!(next_op(&mut ws).await, json!({"op": 6, "d": 42}));

    // The connection drops; the client RESUMEs the same session on a new one.
    drop(ws);
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let mut ws = dial(&sim, 4).await;
    let resume = json!({"op": 7, "d": {
        "server_id": guild.to_string(), "session_id": session, "token": token}});
    ws.send(Message::text(resume.to_string())).await.unwrap();
    assert_eq!(next_op(&mut ws).await["op"], 8);
    assert_eq!(next_op(&mut ws).await["op"], 9);
    let stats = control.voice_stats(guild).await.unwrap();
    assert_eq!(stats["connected"], true, "{stats}");
    assert_eq!(stats["connections"], 2, "{stats}");
    assert_eq!(stats["max_dave_protocol_version"], 1, "{stats}");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn an_identify_discord_did_not_hand_out_is_refused() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let mut ws = dial(&sim, 4).await;
    let identify = json!({"op": 0, "d": {
        "server_id": sim.world.guilds[0].id.to_string(),
        "user_id": sim.world.bot.id.to_string(),
        "session_id": "made-up",
        "token": "made-up",
        "max_dave_protocol_version": 1,
    }});
    ws.send(Message::text(identify.to_string())).await.unwrap();
    assert_eq!(closed_with(&mut ws).await, 4004);
    assert_eq!(rules_broken(&sim).await, ["voice identify"]);
    let stats = Control::new(&sim.rest_url)
        .voice_stats(sim.world.guilds[0].id)
        .await
        .unwrap();
    assert_eq!(stats["connections"], 0);
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn versions_discord_does_not_serve_are_refused() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Config::default())
        .await
        .unwrap();
    let mut ws = dial(&sim, 2).await;
    assert_eq!(closed_with(&mut ws).await, 4020);
    assert_eq!(rules_broken(&sim).await, ["voice gateway"]);
    sim.stop().await.unwrap();
}
