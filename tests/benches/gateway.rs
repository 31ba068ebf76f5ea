//! The gateway's cost: events published per second with confirms on (one shard, the real
//! RabbitMQ, a consumer draining the queue), CPU per event for this process and for the broker,
//! the memory of an idle `disco gateway-shard` holding 16 shards, and a bot at scale: 64 shards
//! of 2,000 guilds in four processes (time to READY, memory per idle shard, CPU per 1,000
//! events of typing noise, and how fast the simulator feeds them).
//!
//! `just bench-gateway` (it builds the release `disco` first). `EVENTS` sets the count
//! (default 50000); `DISCO_AMQP_URL` the broker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bus::{Bus, RabbitConfig, Subscription};
use disco_proto::{Secret, route};
use gateway_shard::{Config, GatewayShard, ShardRange};
use prometheus_client::registry::Registry;
use serde_json::json;
use tests::measure::{broker_pid, cpu_seconds, rss_kib};
use tests::{Vhost, spawn_disco, until_shards_connected};
use tokio_util::sync::CancellationToken;

fn amqp_url() -> String {
    std::env::var("DISCO_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let events: u32 = std::env::var("EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(throughput(events));
    runtime.block_on(idle_memory());
    runtime.block_on(at_scale());
}

async fn throughput(events: u32) {
    let (sim, control) = tests::simulate(discord_sim::World {
        recommended_shards: 1,
        ..discord_sim::World::default()
    })
    .await;
    let bus = Bus::rabbitmq(RabbitConfig::new(Secret::new(amqp_url()), "bench-gateway").unwrap())
        .await
        .unwrap();
    let drain = Bus::rabbitmq(RabbitConfig::new(Secret::new(amqp_url()), "bench-drain").unwrap())
        .await
        .unwrap();
    let queue = format!("bench.gateway.{}", std::process::id());
    let mut consumer = drain
        .subscribe(
            Subscription::shared(&queue)
                .bind(route::every_shard("MESSAGE_CREATE"))
                .prefetch(1000),
        )
        .await
        .unwrap();
    let mut gateway_config = Config::new(
        Secret::new(sim.world.token.clone()),
        ShardRange::new(0, 1, 1).unwrap(),
    );
    gateway_config.gateway_url = Some(sim.gateway_url.clone());
    gateway_config.events = ["MESSAGE_CREATE".to_owned()].into();
    let gateway = GatewayShard::new(
        gateway_config,
        sim.bot_client(),
        bus.clone(),
        &mut Registry::default(),
    );
    let ready = gateway.readiness();
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway.run(stop.clone()));
    while !ready() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let guild = &sim.world.guilds[0];
    let me = std::process::id();
    let broker = broker_pid();
    let (cpu_before, broker_before) = (cpu_seconds(me), broker.map_or(0.0, cpu_seconds));
    let started = Instant::now();
    control
        .post(
            "/messages/bulk",
            &json!({
                "channel_id": guild.channels[0].id.to_string(),
                "author_id": guild.members[0].id.to_string(),
                "content": "~~ping",
                "count": events,
            }),
        )
        .await
        .unwrap();
    let mut received = 0;
    while received < events {
        let delivery = consumer.next().await.unwrap();
        delivery.ack().await.unwrap();
        received += 1;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(me) - cpu_before;
    let broker_cpu = broker.map_or(0.0, cpu_seconds) - broker_before;
    let per_event = |seconds: f64| seconds / f64::from(events) * 1e6;
    println!(
        "gateway: {events} events published and consumed in {elapsed:.2} s = {:.0} events/s \
         (persistent, confirmed, acked one by one)",
        f64::from(events) / elapsed
    );
    println!(
        "  CPU per event: {:.1} us in this process (simulator + gateway + consumer), {:.1} us in RabbitMQ",
        per_event(cpu),
        per_event(broker_cpu)
    );
    stop.cancel();
    task.await.unwrap().unwrap();
    drop(consumer);
    drain.delete_queue(&queue).await.unwrap();
    drain.close().await;
    bus.close().await;
    sim.stop().await.unwrap();
}

/// Memory of an idle `disco gateway-shard` process holding 16 shards (the release binary).
async fn idle_memory() {
    let Some(disco) = tests::release_disco("idle memory") else {
        return;
    };
    let (sim, control) = tests::simulate(discord_sim::World {
        max_concurrency: 16,
        recommended_shards: 16,
        ..discord_sim::World::default()
    })
    .await;
    let vhost = Vhost::new("bench");
    let mut child = spawn_disco(
        &disco,
        &["gateway-shard", "--shard-total", "16"],
        &sim,
        &vhost,
    );
    until_shards_connected(&control, 16).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = child.id().unwrap();
    println!(
        "idle memory: {} KiB resident for one process holding 16 shards ({} KiB per shard, all in)",
        rss_kib(pid),
        rss_kib(pid) / 16
    );
    child.kill().await.unwrap();
    sim.stop().await.unwrap();
}

/// 64 shards (`max_concurrency` 16) of 2,000 guilds in four release `disco gateway-shard`
/// processes: time to READY, memory per idle shard, and the CPU the processes spend per 1,000
/// dispatches of typing noise (read and dropped: no consumer binds them).
async fn at_scale() {
    const SHARDS: u32 = 64;
    const NOISE: u32 = 64_000;
    let Some(disco) = tests::release_disco("at scale") else {
        return;
    };
    let (sim, control) = tests::simulate(discord_sim::World::at_scale(SHARDS, 16, 2_000)).await;
    let vhost = Vhost::new("bench-scale");
    let started = Instant::now();
    let mut children: Vec<_> = (0..4)
        .map(|bucket| {
            let bucket = bucket.to_string();
            let args = [
                "gateway-shard",
                "--shard-total",
                "64",
                "--buckets",
                "4",
                "--bucket",
                &bucket,
                "--intents",
                "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT,GUILD_VOICE_STATES,GUILD_MESSAGE_TYPING",
            ];
            spawn_disco(&disco, &args, &sim, &vhost)
        })
        .collect();
    until_shards_connected(&control, SHARDS as usize).await;
    let ready_in = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pids: Vec<u32> = children.iter().map(|c| c.id().unwrap()).collect();
    let rss: u64 = pids.iter().map(|&pid| rss_kib(pid)).sum();
    let cpu_before: f64 = pids.iter().map(|&pid| cpu_seconds(pid)).sum();
    let noise = control
        .post("/noise", &json!({"count": NOISE}))
        .await
        .unwrap();
    // The noise is read as it arrives; let the processes finish reading it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cpu: f64 = pids.iter().map(|&pid| cpu_seconds(pid)).sum::<f64>() - cpu_before;
    let sim_ms = noise["elapsed_ms"].as_f64().unwrap_or(0.0);
    println!(
        "at scale: 64 shards READY in {:.1} s (4 processes, max_concurrency 16, 2,000 guilds)",
        ready_in.as_secs_f64()
    );
    println!(
        "at scale: {} KiB resident for 4 processes, {} KiB per idle shard",
        rss,
        rss / u64::from(SHARDS)
    );
    println!(
        "at scale: {NOISE} typing dispatches, {:.1} ms CPU per 1,000 in the gateways; the simulator sent them at {:.0}/s",
        cpu * 1000.0 / f64::from(NOISE) * 1000.0,
        f64::from(NOISE) / (sim_ms / 1000.0).max(0.001)
    );
    for child in &mut children {
        child.kill().await.unwrap();
    }
    sim.stop().await.unwrap();
}
