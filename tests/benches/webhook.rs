//! Slash commands through Discord's interactions webhook: Disco (`disco interactions-ingress`
//! and `disco command-worker` as release processes on the real RabbitMQ) against the Flask +
//! PyNaCl endpoint of the original request (`python/webhook.py` under gunicorn, two processes
//! for the two cores), alternating in the same run. `CONNECTIONS` keep-alive connections
//! (default 32) send signed `/ping` commands for `SECONDS` (default 10) to each; `ROUNDS`
//! (default 2). Reports requests per second, latency, and CPU per request: Disco's processes
//! and RabbitMQ's, against Flask's. The generator signs in this process, for both. Each of
//! Disco's processes runs `THREADS` tokio worker threads (default 1, as the manifests' 1-CPU
//! limit gives every role in Kubernetes; 0: one per core, as on a bare machine). Issue #18.
//!
//! `just bench-webhook`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::World;
use ed25519_dalek::SigningKey;
use tests::measure::{broker_pid, cpu_seconds, setting};
use tests::{Vhost, free_address, release_disco, start_role, webhook_load};

fn main() {
    let (seconds, connections, rounds) = (
        Duration::from_secs(setting("SECONDS", 10)),
        setting("CONNECTIONS", 32),
        setting("ROUNDS", 2),
    );
    let threads = setting("THREADS", 1_usize).to_string();
    let threads: &[(&str, &str)] = if threads == "0" {
        &[]
    } else {
        &[("TOKIO_WORKER_THREADS", &threads)]
    };
    let Some(disco) = release_disco("bench-webhook") else {
        return;
    };
    let broker = broker_pid().expect("RabbitMQ runs on this machine");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let key = SigningKey::from_bytes(&[42; 32]);
        let public_key = hex::encode(key.verifying_key().as_bytes());
        // The worker's REST API (it registers its commands at start).
        let (sim, _control) = tests::simulate(World::default()).await;
        let vhost = Vhost::new("bench-webhook");
        let (worker, _) = start_role(&disco, &["command-worker"], threads, &sim, &vhost).await;
        let ingress_address = free_address().to_string();
        let (ingress, _) = start_role(
            &disco,
            &["interactions-ingress"],
            &[
                threads,
                &[
                    ("DISCO_PUBLIC_KEY", &public_key),
                    ("DISCO_INGRESS_LISTEN", &ingress_address),
                ],
            ]
            .concat(),
            &sim,
            &vhost,
        )
        .await;
        let disco_pids = [worker.id().unwrap(), ingress.id().unwrap()];
        let flask_address = free_address();
        let Some(flask) = tests::python_webhook(flask_address, &public_key).await else {
            return;
        };
        let flask_pid = flask.id().unwrap();

        let guild = &sim.world.guilds[0];
        let (application, guild_id, channel, member) = (
            sim.world.application_id,
            guild.id,
            guild.channels[0].id,
            guild.members[0].id,
        );
        let mut first = 1_u64 << 40;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            // Each interaction its own id: the worker answers an id once.
            let body = move |n: u64| {
                format!(
                    r#"{{"type":2,"id":"{}","token":"t{n}","application_id":"{application}","guild_id":"{guild_id}","channel_id":"{channel}","member":{{"user":{{"id":"{member}","username":"alice"}}}},"data":{{"id":"1","name":"ping","type":1}}}}"#,
                    first + n
                )
                .into_bytes()
            };
            let disco_cpu = || disco_pids.iter().map(|&p| cpu_seconds(p)).sum::<f64>();
            let before = (disco_cpu(), cpu_seconds(broker));
            let address = ingress_address.parse().unwrap();
            let load = webhook_load(address, &key, body, connections, seconds, None).await;
            let per = |cpu: f64| cpu * 1e3 / load.answered as f64;
            let (disco_ms, broker_ms) = (
                per(disco_cpu() - before.0),
                per(cpu_seconds(broker) - before.1),
            );
            println!(
                "  Disco: {:.0} commands/s, p50 {:.2} ms, p99 {:.2} ms; CPU per command {disco_ms:.3} \
                 ms in the ingress and the worker, {broker_ms:.3} ms in RabbitMQ",
                load.rate, load.p50_ms, load.p99_ms
            );
            ours.push((load.rate, disco_ms + broker_ms));
            first += 1 << 32;

            let before = tree_cpu(flask_pid);
            let load = webhook_load(flask_address, &key, body, connections, seconds, None).await;
            let flask_ms = (tree_cpu(flask_pid) - before) * 1e3 / load.answered as f64;
            println!(
                "  Flask + PyNaCl: {:.0} commands/s, p50 {:.2} ms, p99 {:.2} ms; CPU per command \
                 {flask_ms:.3} ms",
                load.rate, load.p50_ms, load.p99_ms
            );
            theirs.push((load.rate, flask_ms));
        }
        let mean = |runs: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
            runs.iter().map(f).sum::<f64>() / runs.len() as f64
        };
        println!(
            "webhook: Disco answers {:.1}x the commands per second of Flask + PyNaCl, at {:.2}x \
             its CPU per command (RabbitMQ included; means of {rounds} rounds)",
            mean(&ours, |r| r.0) / mean(&theirs, |r| r.0),
            mean(&ours, |r| r.1) / mean(&theirs, |r| r.1),
        );
        drop((worker, ingress, flask));
        sim.stop().await.unwrap();
    });
}

/// CPU seconds of a process and its children (gunicorn's workers).
fn tree_cpu(pid: u32) -> f64 {
    let children =
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
    cpu_seconds(pid)
        + children
            .split_whitespace()
            .filter_map(|child| child.parse().ok())
            .map(tree_cpu)
            .sum::<f64>()
}
