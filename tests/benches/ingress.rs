//! Load on the interactions webhook, from a bundled generator that signs every request with a
//! fresh timestamp: requests per second and latency for PING (verification only) and for a
//! command answered over the bus by a worker stand-in, then PING at half the peak rate.
//!
//! `just bench-ingress`. `SECONDS` sets each phase's length (default 5), `CONNECTIONS` the
//! concurrent keep-alive connections (default 32).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, Limits, Message, Subscription};
use disco_proto::v1::InteractionReply;
use disco_proto::{Versioned, route};
use ed25519_dalek::SigningKey;
use interactions_ingress::{Config, Ingress, PublicKey};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

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
        let seconds = Duration::from_secs(tests::measure::setting("SECONDS", 5));
        let connections = tests::measure::setting("CONNECTIONS", 32);
        let key = SigningKey::from_bytes(&[42; 32]);
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

        // `{n}`: each interaction its own id, as the ingress refuses a replayed one.
        let ping = r#"{"type":1,"id":"{n}","token":"t","application_id":"1"}"#;
        let command = r#"{"type":2,"id":"{n}","token":"t","application_id":"1","guild_id":"7","channel_id":"8","data":{"name":"ping"}}"#;
        let peak = phase("PING", address, &key, ping, connections, seconds, None).await;
        phase("command answered by a worker", address, &key, command, connections, seconds, None).await;
        phase("PING at half the peak rate", address, &key, ping, connections, seconds, Some(peak / 2.0)).await;
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
    key: &SigningKey,
    body: &'static str,
    connections: usize,
    length: Duration,
    rate: Option<f64>,
) -> f64 {
    // Ids apart from the last phase's.
    static FIRST: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let first = FIRST.fetch_add(1 << 32, std::sync::atomic::Ordering::Relaxed);
    let load = tests::webhook_load(
        address,
        key,
        move |n| body.replace("{n}", &(first + n).to_string()).into_bytes(),
        connections,
        length,
        rate,
    )
    .await;
    println!(
        "{name}: {:.0} requests/s over {connections} connections; latency p50 {:.2} ms, p99 {:.2} ms (generator signs in the same process)",
        load.rate, load.p50_ms, load.p99_ms
    );
    load.rate
}
