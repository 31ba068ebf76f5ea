//! A bot at scale, as ops run it: 64 shards (`max_concurrency` 16) over 2,000 guilds, served by
//! four `disco gateway-shard` processes on the real RabbitMQ, with typing noise around the
//! commands, as a busy bot's shards see it. Every shard becomes READY within Discord's identify
//! pacing, the noise is read and dropped (no consumer binds it), every command is answered
//! exactly once, and no Discord rule is broken. Every REST call goes through one
//! `disco rest-proxy`, as in production: the replies of 200 channels at once meet Discord's
//! global limit there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use discord_sim::World;
use serde_json::json;
use tests::{
    Vhost, free_address, spawn_disco, spawn_gateways, start_rest_proxy, until_answered_once,
    until_queues, until_shards_connected,
};

const SHARDS: u32 = 64;
const PROCESSES: u32 = 4;
const COMMANDS: usize = 200;
const PATIENCE: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_shards_in_four_processes_answer_under_noise() {
    let (sim, control) = tests::simulate(World::at_scale(SHARDS, 16, 2_000)).await;
    let vhost = Vhost::new("scale");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let total = SHARDS.to_string();
    let proxy_listen = free_address();
    let _proxy = start_rest_proxy(binary, &sim, &vhost, (proxy_listen, free_address()), &[]).await;
    let proxy_url = format!("http://{proxy_listen}");
    let _worker = spawn_disco(
        binary,
        &[
            "command-worker",
            "--shard-total",
            &total,
            "--rest-proxy-url",
            &proxy_url,
        ],
        &sim,
        &vhost,
    );
    until_queues(&vhost, &["disco.command-worker"]).await;
    let started = Instant::now();
    let _gateways = spawn_gateways(
        binary,
        &sim,
        &vhost,
        SHARDS,
        PROCESSES,
        &[
            "--intents",
            "GUILDS,GUILD_MESSAGES,MESSAGE_CONTENT,GUILD_VOICE_STATES,GUILD_MESSAGE_TYPING",
            "--rest-proxy-url",
            &proxy_url,
        ],
    );
    // Identify pacing (16 at a time, 5 s apart, across the four processes) is the
    // simulator's to enforce: an early IDENTIFY is a violation, asserted below.
    until_shards_connected(&control, SHARDS as usize).await;
    let ready_in = started.elapsed();

    let noise = control
        .post("/noise", &json!({"count": 20_000}))
        .await
        .unwrap();
    assert_eq!(noise["delivered"], 20_000, "{noise}");
    let guilds = &sim.world.guilds;
    let mut said = Vec::new();
    for n in 0..COMMANDS {
        // One command in each of 200 guilds: every shard gets some.
        let guild = &guilds[n * guilds.len() / COMMANDS];
        let message = control
            .say(guild.channels[0].id, guild.members[0].id, "~~ping")
            .await
            .unwrap();
        said.push(message["id"].as_str().unwrap().to_owned());
    }
    until_answered_once(&control, &said, PATIENCE).await;
    let violations = control.violations().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    eprintln!(
        "64 shards READY in {ready_in:?}; the simulator sent 20,000 typing events in {} ms",
        noise["elapsed_ms"]
    );
    sim.stop().await.unwrap();
}
