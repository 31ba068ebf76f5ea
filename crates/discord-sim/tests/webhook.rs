//! Webhook delivery: interactions POSTed to an endpoint, signed as Discord signs them, and the
//! forged requests an endpoint must refuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use discord_sim::{Config, Control, Simulator};
use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};

/// An endpoint that verifies as Discord requires, PONGs a PING and answers commands.
async fn careful(key: VerifyingKey, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (Some(signature), Some(timestamp)) = (
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
    ) else {
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    };
    let mut bytes = [0_u8; 64];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fresh = timestamp
        .parse::<u64>()
        .is_ok_and(|t| t.abs_diff(now) <= 300);
    let mut message = timestamp.into_bytes();
    message.extend_from_slice(&body);
    let valid = fresh
        && hex::decode_to_slice(&signature, &mut bytes).is_ok()
        && key
            .verify_strict(&message, &Signature::from_bytes(&bytes))
            .is_ok();
    if !valid {
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let interaction: Value = serde_json::from_slice(&body).unwrap();
    match interaction["type"].as_u64() {
        Some(1) => axum::Json(json!({"type": 1})).into_response(),
        _ => axum::Json(
            json!({"type": 4, "data": {"content": "pong!", "allowed_mentions": {"parse": []}}}),
        )
        .into_response(),
    }
}

/// An endpoint that trusts everyone.
async fn careless() -> Response {
    axum::Json(json!({"type": 1})).into_response()
}

async fn endpoint(router: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

async fn sim_for(address: SocketAddr) -> (Simulator, Control) {
    let config = Config {
        interactions_url: Some(format!("http://{address}/interactions")),
        ..Config::default()
    };
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    (sim, control)
}

#[tokio::test]
async fn a_careful_endpoint_passes_the_probe_and_answers_interactions() {
    let world = discord_sim::World::default();
    let mut key = [0_u8; 32];
    hex::decode_to_slice(discord_sim::public_key(&world), &mut key).unwrap();
    let key = VerifyingKey::from_bytes(&key).unwrap();
    let router = axum::Router::new().route(
        "/interactions",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| careful(key, headers, body)),
    );
    let (sim, control) = sim_for(endpoint(router).await).await;

    let probes = control.post("/webhook/probe", &json!({})).await.unwrap();
    let probes = probes.as_array().unwrap();
    assert_eq!(probes.len(), 9);
    for probe in probes {
        assert_eq!(probe["ok"], true, "{probe}");
    }

    let url = format!(
        "{}/api/v10/applications/{}/commands",
        sim.rest_url, sim.world.application_id
    );
    let put = json!([{"name": "ping", "description": "pong"}]);
    let answer = put_commands(&url, &sim.world.token, &put).await;
    assert_eq!(answer, 200);
    let guild = &sim.world.guilds[0];
    let result = control
        .command(guild.channels[0].id, guild.members[0].id, "ping", json!([]))
        .await
        .unwrap();
    assert_eq!(result["webhook"]["status"], 200, "{result}");
    let sent = control.sent().await.unwrap();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["via"], "webhook");
    assert_eq!(sent[0]["content"], "pong!");
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_careless_endpoint_is_caught_accepting_forgeries() {
    let router = axum::Router::new().route("/interactions", axum::routing::post(careless));
    let (sim, control) = sim_for(endpoint(router).await).await;
    let probes = control.post("/webhook/probe", &json!({})).await.unwrap();
    let failed: Vec<&str> = probes
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["ok"] == false)
        .map(|p| p["case"].as_str().unwrap())
        .collect();
    assert_eq!(failed.len(), 8, "every forgery was accepted: {failed:?}");
    assert_eq!(control.violations().await.unwrap().len(), 8);
    sim.stop().await.unwrap();
}

/// A bulk overwrite of commands with the bot token; the status.
async fn put_commands(url: &str, token: &str, body: &Value) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url.split_at(url.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "PUT {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bot {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response[9..12].parse().unwrap()
}
