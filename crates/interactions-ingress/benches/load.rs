//! Load on the interactions webhook, from a bundled generator that signs every request with a
//! fresh timestamp: requests per second and latency for PING (verification only) and for a
//! command answered over the bus by a worker stand-in, then PING at half the peak rate.
//!
//! `just bench-ingress`. `SECONDS` sets each phase's length (default 5), `CONNECTIONS` the
//! concurrent keep-alive connections (default 32).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bus::{Bus, Limits, Message, Subscription};
use disco_proto::v1::InteractionReply;
use disco_proto::{Versioned, route};
use ed25519_dalek::{Signer, SigningKey};
use interactions_ingress::{Config, Ingress, PublicKey};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A REST client that reaches nothing: the benchmark's answers come in time, nothing is edited.
fn nowhere() -> Arc<twilight_http::Client> {
    Arc::new(
        twilight_http::Client::builder()
            .proxy("127.0.0.1:9".to_owned(), true)
            .build(),
    )
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let seconds = Duration::from_secs(env("SECONDS", 5));
        let connections = env("CONNECTIONS", 32) as usize;
        let key = Arc::new(SigningKey::from_bytes(&[42; 32]));
        let bus = Bus::in_memory(Limits::default());
        responder(&bus);
        let mut config = Config::new(
            PublicKey::from_hex(&hex::encode(key.verifying_key().as_bytes())).unwrap(),
            1,
        );
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.late_answer = Duration::from_secs(10);
        let listener = interactions_ingress::bind(config.listen).unwrap();
        let address = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(Ingress::new(config, nowhere(), bus.clone(), &mut Registry::default()).serve(listener, stop.clone()));

        let ping = br#"{"type":1,"id":"1","token":"t","application_id":"1"}"#.to_vec();
        let command = br#"{"type":2,"id":"5","token":"t","application_id":"1","guild_id":"7","channel_id":"8","data":{"name":"ping"}}"#.to_vec();
        let peak = phase("PING", address, &key, &ping, connections, seconds, None).await;
        phase("command answered by a worker", address, &key, &command, connections, seconds, None).await;
        phase("PING at half the peak rate", address, &key, &ping, connections, seconds, Some(peak / 2.0)).await;
        stop.cancel();
    });
}

/// A worker stand-in answering every interaction at once.
fn responder(bus: &Bus) {
    let bus = bus.clone();
    tokio::spawn(async move {
        let mut consumer = bus
            .subscribe(
                Subscription::shared("bench.worker")
                    .bind(route::every_shard("INTERACTION_CREATE"))
                    .prefetch(1024),
            )
            .await
            .unwrap();
        let answer = InteractionReply {
            response: br#"{"type":4,"data":{"content":"pong! (1ms)"}}"#.to_vec().into(),
            ..Default::default()
        }
        .encode_current();
        while let Some(delivery) = consumer.next().await {
            delivery.reply(Message::new(answer.clone())).await.unwrap();
            delivery.ack().await.unwrap();
        }
    });
}

/// Runs one phase; prints and returns its requests per second.
async fn phase(
    name: &str,
    address: SocketAddr,
    key: &Arc<SigningKey>,
    body: &[u8],
    connections: usize,
    length: Duration,
    rate: Option<f64>,
) -> f64 {
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..connections {
        let key = Arc::clone(key);
        let body = body.to_vec();
        // With a target rate, each connection sends at its share of it.
        let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
        clients.spawn(async move {
            tokio::time::sleep(interval.map_or(Duration::ZERO, |i| i.mul_f64(n as f64 / connections as f64))).await;
            let stream = tokio::net::TcpStream::connect(address).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut latencies = Vec::new();
            let mut next = Instant::now();
            while started.elapsed() < length {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next.into()).await;
                    next += interval;
                }
                let timestamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs().to_string();
                let mut message = timestamp.as_bytes().to_vec();
                message.extend_from_slice(&body);
                let signature = hex::encode(key.sign(&message).to_bytes());
                let request = format!(
                    "POST /interactions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nx-signature-ed25519: {signature}\r\nx-signature-timestamp: {timestamp}\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                );
                let sent = Instant::now();
                write.write_all(request.as_bytes()).await.unwrap();
                write.write_all(&body).await.unwrap();
                let mut length = 0;
                let mut status = String::new();
                loop {
                    let mut line = String::new();
                    read.read_line(&mut line).await.unwrap();
                    if status.is_empty() {
                        status = line.clone();
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length: ") {
                        length = value.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut response = vec![0; length];
                read.read_exact(&mut response).await.unwrap();
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                latencies.push(sent.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = clients.join_next().await {
        latencies.extend(done.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    let rate = latencies.len() as f64 / elapsed;
    println!(
        "{name}: {rate:.0} requests/s over {connections} connections; latency p50 {:.2} ms, p99 {:.2} ms (generator signs in the same process)",
        at(0.5),
        at(0.99)
    );
    rate
}
