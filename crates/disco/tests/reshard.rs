//! Resharding as ops run it: a bot on 4 shards in 2 `disco gateway-shard` processes gets a new
//! generation of 8 shards in 4 processes under steady prefix and slash commands. Both
//! generations run side by side; once every shard of the new one is READY, the old processes
//! end their sessions and exit 0 by themselves (and stay down when started again), every command
//! is answered exactly once, and no Discord rule is broken (identify pacing is shared across
//! both generations).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use discord_sim::{Config as SimConfig, Control, Simulator, World};
use serde_json::json;
use tests::{
    Vhost, spawn_disco, spawn_gateways, until_answered_once, until_queues, until_shards_connected,
};
use tokio::process::Child;

const PATIENCE: Duration = Duration::from_secs(90);

fn generation(sim: &Simulator, vhost: &Vhost, total: u32, processes: u32) -> Vec<Child> {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    spawn_gateways(binary, sim, vhost, total, processes, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_become_eight_with_no_command_lost_or_answered_twice() {
    let mut world = World::at_scale(8, 4, 64);
    tests::unthrottled(&mut world);
    let config = SimConfig {
        world,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let vhost = Vhost::new("reshard");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let synced = tests::disco_command(binary, &["commands", "sync"], &sim, &vhost)
        .status()
        .await
        .unwrap();
    assert!(synced.success(), "slash commands registered");
    let _worker = spawn_disco(binary, &["command-worker"], &sim, &vhost);
    until_queues(&vhost, &["disco.command-worker"]).await;
    let mut old = generation(&sim, &vhost, 4, 2);
    until_shards_connected(&control, 4).await;

    // Steady load: a prefix and a slash command every 50 ms, each in the next guild, so every
    // shard of both generations has some.
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn({
        let (control, guilds, stop) = (control.clone(), sim.world.guilds.clone(), stop.clone());
        async move {
            let (mut messages, mut interactions) = (Vec::new(), Vec::new());
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let guild = &guilds[n % guilds.len()];
                let (channel, member) = (guild.channels[0].id, guild.members[0].id);
                let said = control.say(channel, member, "~~ping").await.unwrap();
                messages.push(said["id"].as_str().unwrap().to_owned());
                let used = control
                    .command(channel, member, "ping", json!([]))
                    .await
                    .unwrap();
                interactions.push(used["id"].as_str().unwrap().to_owned());
                n += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            (messages, interactions)
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = std::time::Instant::now();
    let new = generation(&sim, &vhost, 8, 4);
    // The old processes go by themselves once the new generation is READY in full.
    for child in &mut old {
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("the old generation exits by itself")
            .unwrap();
        assert!(status.success(), "a retiring process exits 0: {status}");
    }
    let retired_in = started.elapsed();
    // Commands go on through the new generation alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (messages, interactions) = load.await.unwrap();

    let commands: Vec<String> = messages.iter().chain(&interactions).cloned().collect();
    until_answered_once(&control, &commands, PATIENCE).await;
    let violations = control.violations().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    // The old sessions ended; the eight of the new generation are the only ones connected.
    let shards = control.get("/shards").await.unwrap();
    let live: Vec<(u64, u64)> = shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["connected"] == true)
        .map(|s| {
            (
                s["shard_total"].as_u64().unwrap(),
                s["shard_id"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        live,
        (0..8).map(|id| (8, id)).collect::<Vec<_>>(),
        "{shards}"
    );
    // Kubernetes restarts a pod that exited: a process of the old generation started again
    // stays down, without identifying.
    for mut again in generation(&sim, &vhost, 4, 2) {
        let status = tokio::time::timeout(PATIENCE, again.wait())
            .await
            .expect("a superseded process exits by itself")
            .unwrap();
        assert!(status.success(), "{status}");
    }
    let shards = control.get("/shards").await.unwrap();
    for shard in shards["shards"].as_array().unwrap() {
        assert_eq!(
            shard["identifies"].as_array().unwrap().len(),
            1,
            "one identify per session, none by a superseded process: {shard}"
        );
    }
    eprintln!(
        "resharded 4 -> 8 under {} commands; the old generation exited {retired_in:?} after \
         the new one started",
        commands.len()
    );
    drop(new);
    sim.stop().await.unwrap();
}
