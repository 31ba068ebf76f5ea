//! Stopping `disco up` as ops stop it (SIGTERM), with the bot in a voice call: the voice node
//! leaves the call while the gateway can still send op 4, and only then does the gateway close
//! its session. (Stopped the other way round, nobody sends the leave and the bot stays in the
//! channel until Discord times it out.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::{Config as SimConfig, Control, Simulator};
use serde_json::Value;
use tests::{free_address, reply_to, until_ready};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_leaves_voice_calls_before_the_gateway_closes() {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let world = &sim.world;
    let ca = tests::VoiceCa::new(&sim, "stop");
    command_worker_sync(&sim).await;
    let metrics = free_address();
    let mut disco = tokio::process::Command::new(env!("CARGO_BIN_EXE_disco"))
        .arg("up")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DISCORD_TOKEN", &world.token)
        .env("DISCO_APPLICATION_ID", world.application_id.to_string())
        .env("DISCO_PUBLIC_KEY", &sim.public_key)
        .env("DISCO_DISCORD_API_URL", &sim.rest_url)
        .env("DISCO_DISCORD_GATEWAY_URL", &sim.gateway_url)
        .env("DISCO_SHARD_TOTAL", world.recommended_shards.to_string())
        .env("DISCO_METRICS_LISTEN", metrics.to_string())
        .env("DISCO_INGRESS_LISTEN", free_address().to_string())
        .env("DISCO_MEDIA_DIR", tests::MEDIA_DIR)
        .env("DISCO_VOICE_TIMEOUT_MS", "20000")
        .env("SSL_CERT_FILE", ca.path())
        .env("DISCO_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_ready(metrics).await;

    let guild = &world.guilds[0];
    let general = guild.channels.iter().find(|c| c.name == "general").unwrap();
    let lounge = guild.channels.iter().find(|c| c.name == "Lounge").unwrap();
    let alice = guild.members.iter().find(|m| m.name == "alice").unwrap();
    control
        .voice(guild.id, alice.id, Some(lounge.id))
        .await
        .unwrap();
    let answer = reply_to(&control, general.id, alice.id, "~~play arpeggio.ogg").await;
    assert_eq!(
        answer["content"],
        format!("▶️ Playing **arpeggio.ogg** in <#{}>.", lounge.id)
    );
    tokio::time::timeout(Duration::from_secs(20), async {
        while control.voice_stats(guild.id).await.unwrap()["connected"] != true {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the bot joins the call");
    // `disco up` runs every role's tasks on one worker thread (songbird mixes on its own).
    assert_eq!(
        tests::metric(metrics, "disco_runtime_workers", &[]).await,
        1.0
    );

    let status = tests::stop_with(&mut disco, "-TERM", Duration::from_secs(30)).await;
    assert!(status.success(), "disco up exits 0 on SIGTERM: {status}");

    // The guild's shard: it sent the leave (op 4 with no channel), then closed.
    let shards = control.get("/shards").await.unwrap();
    let shard = shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["voice_updates"]
                .as_array()
                .unwrap()
                .iter()
                .any(|u| u[1] == guild.id)
        })
        .expect("a shard sent op 4 for the guild");
    let updates = shard["voice_updates"].as_array().unwrap();
    let left_at = updates
        .iter()
        .rev()
        .find(|u| u[1] == guild.id && u[2].is_null())
        .map(|u| u[0].as_u64().unwrap())
        .unwrap_or_else(|| panic!("the bot never left the channel: {shard}"));
    let closed_at = shard["closes"]
        .as_array()
        .unwrap()
        .last()
        .map(|c| c[0].as_u64().unwrap())
        .unwrap_or_else(|| panic!("the gateway never closed: {shard}"));
    assert!(
        left_at <= closed_at,
        "the bot left at {left_at} ms, after the gateway closed at {closed_at} ms: {shard}"
    );
    assert_eq!(shard["connected"], false);
    let stats: Value = control.voice_stats(guild.id).await.unwrap();
    assert_eq!(stats["connected"], false, "{stats}");
    let violations = control.violations().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
    sim.stop().await.unwrap();
}

async fn command_worker_sync(sim: &Simulator) {
    let world = &sim.world;
    let report = command_worker::sync(
        &command_worker::Commands::standard(),
        sim.bot_client(),
        world.application_id,
        None,
        false,
    )
    .await
    .unwrap();
    assert!(report.applied);
}
