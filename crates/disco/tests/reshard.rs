//! Resharding as ops run it: a bot on 4 shards in 2 `disco gateway-shard` processes gets a new
//! generation of 8 shards in 4 processes under steady prefix and slash commands. Both
//! generations run side by side; once every shard of the new one is READY, the old processes
//! end their sessions and exit 0 by themselves (and stay down when started again), every command
//! is answered exactly once, and no Discord rule is broken (identify pacing is shared across
//! both generations).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use discord_sim::{Config as SimConfig, Control, Simulator, World};
use serde_json::json;
use tests::{Vhost, spawn_disco, until_queues, until_shards_connected};

const PATIENCE: Duration = Duration::from_secs(90);

fn generation(
    sim: &Simulator,
    vhost: &Vhost,
    total: u32,
    processes: u32,
) -> Vec<tokio::process::Child> {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let (total, buckets) = (total.to_string(), processes.to_string());
    (0..processes)
        .map(|bucket| {
            let bucket = bucket.to_string();
            let args = [
                "gateway-shard",
                "--shard-total",
                &total,
                "--buckets",
                &buckets,
                "--bucket",
                &bucket,
            ];
            spawn_disco(binary, &args, sim, vhost)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_become_eight_with_no_command_lost_or_answered_twice() {
    let mut world = World::at_scale(8, 4, 64);
    let generous = discord_sim::world::Limit {
        limit: 100_000,
        window_ms: 1_000,
    };
    world.rate_limits.messages_per_channel = generous;
    world.rate_limits.global = generous;
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
    let new = generation(&sim, &vhost, 8, 4);
    // The old processes go by themselves once the new generation is READY in full.
    for child in &mut old {
        let status = tokio::time::timeout(PATIENCE, child.wait())
            .await
            .expect("the old generation exits by itself")
            .unwrap();
        assert!(status.success(), "a retiring process exits 0: {status}");
    }
    // Commands go on through the new generation alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let (messages, interactions) = load.await.unwrap();

    let mut answered = BTreeMap::new();
    tokio::time::timeout(PATIENCE, async {
        loop {
            answered.clear();
            for entry in control.sent().await.unwrap() {
                let id = match entry["kind"].as_str() {
                    Some("message") => entry["nonce"].as_str(),
                    Some("interaction_response") => entry["interaction_id"].as_str(),
                    _ => None,
                };
                if let Some(id) = id {
                    *answered.entry(id.to_owned()).or_insert(0) += 1;
                }
            }
            if messages
                .iter()
                .chain(&interactions)
                .all(|id| answered.contains_key(id))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        let missing = messages
            .iter()
            .chain(&interactions)
            .filter(|id| !answered.contains_key(*id))
            .count();
        panic!(
            "{missing} of {} commands were never answered",
            messages.len() + interactions.len()
        )
    });
    assert!(
        answered.values().all(|&n| n == 1),
        "a command answered twice"
    );
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
        "resharded 4 -> 8 under {} commands",
        messages.len() + interactions.len()
    );
    drop(new);
    sim.stop().await.unwrap();
}
