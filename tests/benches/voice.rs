//! The voice node's cost: CPU per active call playing audio, and how many calls one
//! `disco voice-node` process holds on this machine.
//!
//! The release `disco` runs the voice node, a command worker and a gateway against the
//! simulator and the real RabbitMQ. Calls are added in steps; in each guild a member sits in
//! the voice channel and queues Ogg/Vorbis (decoded, resampled from 22,050 to 48,000 Hz,
//! mixed, Opus-encoded and encrypted by the node). Over a 10 s window per step, the simulator
//! counts each call's packets: a call is held when it delivers at least 95 % of its 50 packets
//! per second. The simulator (decrypting and decoding every packet) runs in this process, on
//! the same two cores, so the node's share of the machine is smaller than a real one's.
//!
//! Calls are end-to-end encrypted (DAVE) as on Discord: the node encrypts every frame for the
//! call's group, and the simulated member decrypts it. `DAVE=0` serves transport encryption
//! only, to compare.
//!
//! `just bench-voice` (it builds the release `disco` first). `CALLS` sets the steps (default
//! `1,10,20,40,60,80`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::Control;
use discord_sim::world::{Channel, ChannelKind, Guild, Limit, VoiceState};
use tests::measure::{cpu_seconds, rss_kib};
use tests::{Vhost, disco_command, until_queues, until_shards_connected};

const WINDOW: Duration = Duration::from_secs(10);
/// Plays queued per call: 16 x 8 s, longer than every step together.
const PLAYS: usize = 16;

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let steps: Vec<usize> = std::env::var("CALLS")
        .unwrap_or_else(|_| "1,10,20,40,60,80".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(calls(&steps));
}

/// A world of `count` guilds, each with a member (alice) already in its voice channel.
fn world(count: usize) -> discord_sim::World {
    let mut world = discord_sim::World {
        dave: std::env::var("DAVE").map_or(true, |v| v != "0"),
        ..discord_sim::World::default()
    };
    let template = world.guilds[0].clone();
    let alice = template.members[0].id;
    let generous = Limit {
        limit: 1_000_000,
        window_ms: 1_000,
    };
    world.rate_limits.messages_per_channel = generous;
    world.rate_limits.global = generous;
    world.rate_limits.per_route = generous;
    world.guilds = (0..count as u64)
        .map(|n| {
            let id = (2_000_000 + n) << 22;
            let channel = |k: u64, name: &str, kind: ChannelKind| Channel {
                id: id + k,
                name: name.to_owned(),
                kind,
                read_only: false,
            };
            Guild {
                id,
                name: format!("bench {n}"),
                channels: vec![
                    channel(1, "general", ChannelKind::Text),
                    channel(2, "Lounge", ChannelKind::Voice),
                ],
                members: template.members.clone(),
                voice_states: vec![VoiceState {
                    user_id: alice,
                    channel_id: id + 2,
                }],
            }
        })
        .collect();
    world
}

async fn packets(control: &Control, guilds: &[u64]) -> Vec<u64> {
    let mut counts = Vec::with_capacity(guilds.len());
    for &guild in guilds {
        let stats = control.voice_stats(guild).await.unwrap();
        counts.push(stats["packets"].as_u64().unwrap_or_default());
    }
    counts
}

async fn calls(steps: &[usize]) {
    let Some(disco) = tests::release_disco("voice") else {
        return;
    };
    let most = steps.iter().copied().max().unwrap_or(1);
    let (sim, control) = tests::simulate(world(most)).await;
    let vhost = Vhost::new("bench-voice");
    let ca = tests::VoiceCa::new(&sim, "bench");
    let spawn = |args: &[&str]| {
        let mut command = disco_command(&disco, args, &sim, &vhost);
        command
            .env("SSL_CERT_FILE", ca.path())
            .env("DISCO_MEDIA_DIR", tests::MEDIA_DIR)
            .env("DISCO_VOICE_TIMEOUT_MS", "30000");
        command.spawn().unwrap()
    };
    let shards = sim.world.recommended_shards.to_string();
    let node = spawn(&["voice-node", "--shard-total", &shards]);
    let _worker = spawn(&["command-worker", "--shard-total", &shards]);
    let queues: Vec<String> = (0..sim.world.recommended_shards)
        .map(disco_proto::route::voice_queue)
        .collect();
    let queues: Vec<&str> = queues.iter().map(String::as_str).collect();
    until_queues(&vhost, &queues).await;
    let _gateway = spawn(&["gateway-shard", "--shard-total", &shards]);
    until_shards_connected(&control, sim.world.recommended_shards as usize).await;

    let node_pid = node.id().unwrap();
    let me = std::process::id();
    let alice = sim.world.guilds[0].members[0].id;
    let guilds: Vec<u64> = sim.world.guilds.iter().map(|g| g.id).collect();
    println!(
        "voice: calls playing Ogg/Vorbis through one voice-node process (release), {} s windows, {}",
        WINDOW.as_secs(),
        if sim.world.dave {
            "end-to-end encrypted (DAVE)"
        } else {
            "transport encryption only"
        }
    );
    println!("  calls  node CPU  per call   held (>= 95% of 50 packets/s)  slowest call  node RSS");
    let mut started = 0;
    for &wanted in steps {
        for guild in &sim.world.guilds[started..wanted] {
            for _ in 0..PLAYS {
                control
                    .say(guild.channels[0].id, alice, "~~play arpeggio.ogg")
                    .await
                    .unwrap();
            }
        }
        // Every new call connected and sending.
        let live = &guilds[..wanted];
        let connected = tokio::time::timeout(Duration::from_secs(120), async {
            loop {
                let counts = packets(&control, live).await;
                if counts.iter().all(|&c| c > 50) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        if connected.is_err() {
            println!("  {wanted:>5}  calls did not all start within 120 s: the node is saturated");
            break;
        }
        started = wanted;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let before = packets(&control, live).await;
        let (node_before, me_before) = (cpu_seconds(node_pid), cpu_seconds(me));
        tokio::time::sleep(WINDOW).await;
        let after = packets(&control, live).await;
        let node_cpu = cpu_seconds(node_pid) - node_before;
        let my_cpu = cpu_seconds(me) - me_before;
        let rates: Vec<f64> = before
            .iter()
            .zip(&after)
            .map(|(b, a)| (a - b) as f64 / WINDOW.as_secs_f64())
            .collect();
        let held = rates.iter().filter(|&&r| r >= 47.5).count();
        let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
        let busy = node_cpu / WINDOW.as_secs_f64();
        println!(
            "  {wanted:>5}  {:>6.1} %  {:>5.2} ms/s  {held:>5} of {wanted:<5}                  {slowest:>5.1} pkt/s  {:>6} KiB   (simulator: {:.0} % CPU)",
            busy * 100.0,
            busy * 1000.0 / wanted as f64,
            rss_kib(node_pid),
            my_cpu / WINDOW.as_secs_f64() * 100.0,
        );
        if held < wanted {
            println!("  the node no longer holds every call at {wanted} calls");
            break;
        }
    }
    sim.stop().await.unwrap();
}
