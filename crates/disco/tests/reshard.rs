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

use discord_sim::{Simulator, World};
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

/// Waits for every process of `what` to exit by itself, each with status 0.
async fn exit_by_themselves(processes: &mut [Child], what: &str) {
    for process in processes {
        let status = tokio::time::timeout(PATIENCE, process.wait())
            .await
            .unwrap_or_else(|_| panic!("{what} exits by itself"))
            .unwrap();
        assert!(status.success(), "{what}: a process exits 0: {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_become_eight_with_no_command_lost_or_answered_twice() {
    let mut world = World::at_scale(8, 4, 64);
    tests::unthrottled(&mut world);
    let (sim, control) = tests::simulate(world).await;
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
    exit_by_themselves(&mut old, "the old generation").await;
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
    exit_by_themselves(
        &mut generation(&sim, &vhost, 4, 2),
        "a superseded generation",
    )
    .await;
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

/// Voice through a reshard, 2 shards to 4: the voice node, started for 2, keeps its call
/// playing while the gateway's generations change, then follows the new total: the bot's op 4
/// goes to the new generation's shard, and that shard's voice events reach the node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voice_follows_the_new_generation_and_a_call_goes_on_through_it() {
    // The default world with its second guild on shard 1 of 2 and 3 of 4: the same voice
    // node owns its call in both generations, but its op 4 and events change shard.
    let mut world = World::default();
    tests::unthrottled(&mut world);
    let moved = 2_u64 << 22;
    world.guilds[1].id += moved;
    for channel in &mut world.guilds[1].channels {
        channel.id += moved;
    }
    let (sim, control) = tests::simulate(world).await;
    let vhost = Vhost::new("reshard-voice");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let ca = tests::VoiceCa::new(&sim, "reshard");
    let node_admin = tests::free_address();
    let disco = |args: &[&str]| {
        let mut command = tests::disco_command(binary, args, &sim, &vhost);
        command
            .env("SSL_CERT_FILE", ca.path())
            .env("DISCO_MEDIA_DIR", tests::MEDIA_DIR)
            .env("DISCO_VOICE_IDLE_TIMEOUT_SECS", "2")
            .env("DISCO_VOICE_TIMEOUT_MS", "20000")
            .env("DISCO_METRICS_LISTEN", node_admin.to_string());
        command.spawn().unwrap()
    };
    let _node = disco(&["voice-node", "--shard-total", "2", "--shards", "0..2"]);
    let _worker = spawn_disco(
        binary,
        &["command-worker", "--shard-total", "2"],
        &sim,
        &vhost,
    );
    until_queues(
        &vhost,
        &["disco.voice.0", "disco.voice.1", "disco.command-worker"],
    )
    .await;
    let mut old = generation(&sim, &vhost, 2, 1);
    until_shards_connected(&control, 2).await;

    let guild = sim.world.guilds[1].clone();
    let channel = |name: &str| guild.channels.iter().find(|c| c.name == name).unwrap().id;
    let (general, lounge) = (channel("general"), channel("Lounge"));
    let alice = guild.members[0].id;
    let say = |text: &'static str| {
        let control = control.clone();
        async move {
            let reply = tests::reply_to(&control, general, alice, text).await;
            reply["content"].as_str().unwrap().to_owned()
        }
    };
    let until_voice = |what: &'static str, wanted: Box<dyn Fn(&serde_json::Value) -> bool>| {
        tests::until_voice(&control, guild.id, Duration::from_secs(30), what, wanted)
    };
    let heard = |stats: &serde_json::Value| stats["non_silent_seconds"].as_f64().unwrap();

    control.voice(guild.id, alice, Some(lounge)).await.unwrap();
    // 48 s of music, longer than the reshard takes (~20 s).
    let answer = say("~~play arpeggio.ogg").await;
    assert_eq!(
        answer,
        format!("▶️ Playing **arpeggio.ogg** in <#{lounge}>.")
    );
    for position in 2..=6 {
        let answer = say("~~play arpeggio.mp3").await;
        assert_eq!(
            answer,
            format!("Queued **arpeggio.mp3** (position {position}).")
        );
    }
    until_voice("the track is heard", Box::new(move |s| heard(s) >= 0.5)).await;

    // The new generation comes; the old one retires. The call goes on, on its connection.
    let new = generation(&sim, &vhost, 4, 2);
    exit_by_themselves(&mut old, "the old generation").await;
    let before = heard(&control.voice_stats(guild.id).await.unwrap());
    let stats = until_voice(
        "the track goes on after the reshard",
        Box::new(move |s| heard(s) >= before + 1.0),
    )
    .await;
    assert_eq!(stats["connections"], 1, "one voice connection: {stats}");
    let followed = tests::metric(node_admin, "disco_voice_node_gateway_shard_total", &[]).await;
    assert!((followed - 4.0).abs() < f64::EPSILON, "{followed}");

    // Alone, the bot leaves; asked again, it joins: both op 4s through shard 3 of 4, and the
    // events answering them reach the voice node.
    control.voice(guild.id, alice, None).await.unwrap();
    until_voice(
        "the bot leaves when alone",
        Box::new(|s| s["connected"] == false),
    )
    .await;
    control.voice(guild.id, alice, Some(lounge)).await.unwrap();
    let answer = say("~~voice hello disco").await;
    assert_eq!(answer, format!("🔊 Speaking in <#{lounge}>."));
    let before = heard(&control.voice_stats(guild.id).await.unwrap());
    until_voice(
        "the speech is heard",
        Box::new(move |s| s["connected"] == true && heard(s) >= before + 0.5),
    )
    .await;
    let shards = control.get("/shards").await.unwrap();
    let shard_3 = shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard_total"] == 4 && s["shard_id"] == 3)
        .unwrap();
    let channels: Vec<&serde_json::Value> = shard_3["voice_updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|update| &update[2])
        .collect();
    assert_eq!(
        channels,
        [&serde_json::Value::Null, &serde_json::json!(lounge)],
        "the leave and the join went through shard 3 of 4: {shard_3}"
    );
    let violations = control.violations().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    drop(new);
    sim.stop().await.unwrap();
}
