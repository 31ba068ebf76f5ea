//! How many MESSAGE_CREATE dispatches per second the simulator delivers to one shard, read by
//! twilight-gateway as Disco's gateway reads them (raw messages, zstd-stream decompressed).
//!
//! `cargo bench -p discord-sim --bench dispatch` (or `just bench-sim`). Set `DISPATCHES` to
//! change the count (default 100000).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use discord_sim::{Config, Control, Simulator};
use futures_util::StreamExt as _;
use serde_json::json;
use twilight_gateway::{Intents, Message, Shard, ShardId};

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let count: u32 = std::env::var("DISPATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), Config::default()).await.unwrap();
        let config = twilight_gateway::ConfigBuilder::new(
            sim.world.token.clone(),
            Intents::GUILDS | Intents::GUILD_MESSAGES | Intents::MESSAGE_CONTENT,
        )
        .proxy_url(sim.gateway_url.clone())
        .build();
        let mut shard = Shard::with_config(ShardId::ONE, config);
        // Wait for READY and both GUILD_CREATEs.
        let mut setup = 0;
        while setup < 3 {
            if let Some(Ok(Message::Text(text))) = shard.next().await
                && (text.contains(r#""t":"READY""#) || text.contains(r#""t":"GUILD_CREATE""#))
            {
                setup += 1;
            }
        }
        let guild = &sim.world.guilds[0];
        let control = Control::new(&sim.rest_url);
        let body = json!({
            "channel_id": guild.channels[0].id.to_string(),
            "author_id": guild.members[0].id.to_string(),
            "content": "~~ping",
            "count": count,
        });
        let started = Instant::now();
        let inject = tokio::spawn(async move { control.post("/messages/bulk", &body).await.unwrap() });
        let mut received = 0;
        let mut bytes = 0;
        while received < count {
            match shard.next().await {
                Some(Ok(Message::Text(text))) if text.contains(r#""t":"MESSAGE_CREATE""#) => {
                    received += 1;
                    bytes += text.len();
                }
                Some(Ok(_)) => {}
                other => panic!("the shard stopped: {other:?}"),
            }
        }
        let elapsed = started.elapsed();
        inject.await.unwrap();
        println!(
            "{count} MESSAGE_CREATE dispatches to one shard in {:.2} s: {:.0} per second ({:.0} bytes each, zstd-stream)",
            elapsed.as_secs_f64(),
            f64::from(count) / elapsed.as_secs_f64(),
            bytes as f64 / f64::from(count),
        );
        sim.stop().await.unwrap();
    });
}
