//! `disco command-worker` replicas as ops run them: three OS processes share one queue on the
//! real RabbitMQ; one is killed with SIGKILL in the middle of 3,000 commands, and every command
//! is still answered exactly once.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use discord_sim::{Config as SimConfig, Control, Simulator};
use tests::{Vhost, messages_sent, say_many, spawn_disco, until_shards_connected};

const COMMANDS: usize = 3_000;
const PATIENCE: Duration = Duration::from_secs(120);

fn disco(role: &str, sim: &Simulator, vhost: &Vhost) -> tokio::process::Child {
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    spawn_disco(binary, &[role, "--shard-total", "1"], sim, vhost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_answer_3000_commands_exactly_once_despite_a_sigkill() {
    let mut config = SimConfig::default();
    config.world.recommended_shards = 1;
    // Discord's limits would stretch 3,000 replies over minutes; this test is about delivery.
    tests::unthrottled(&mut config.world);
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let vhost = Vhost::new("workers");

    let mut workers: Vec<_> = (0..3)
        .map(|_| disco("command-worker", &sim, &vhost))
        .collect();
    // Workers declare the queue; give them a moment before events flow.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _gateway = disco("gateway-shard", &sim, &vhost);
    until_shards_connected(&control, 1).await;

    say_many(&sim, "~~테스트 찬구", COMMANDS).await;

    let mut killed = false;
    let answered = tokio::time::timeout(PATIENCE, async {
        loop {
            let sent = messages_sent(&control).await;
            if !killed && sent.len() >= COMMANDS / 3 {
                let victim = workers.remove(0);
                let pid = victim.id().unwrap().to_string();
                Command::new("kill").args(["-KILL", &pid]).status().unwrap();
                killed = true;
            }
            if sent.len() >= COMMANDS {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every command answered in time");
    assert!(killed);
    // A little longer: a duplicate would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answered_after = messages_sent(&control).await;
    assert_eq!(answered_after.len(), answered.len(), "no reply came twice");
    assert_eq!(answered.len(), COMMANDS);
    let nonces: BTreeSet<&str> = answered
        .iter()
        .map(|e| e["nonce"].as_str().unwrap())
        .collect();
    assert_eq!(nonces.len(), COMMANDS, "one reply per command");
    let contents: BTreeSet<&str> = answered
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents.len(), COMMANDS);
    assert!(contents.contains("찬구: #0 (첫 메시지 발송 추카추카추)"));
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}
