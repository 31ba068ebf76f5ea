//! The voice server's rules, with a hand-written client: it speaks TLS with the simulator's own
//! CA, refuses an IDENTIFY that Discord did not hand out, and a version Discord does not serve.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use discord_sim::{Config, Control, Simulator};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

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
