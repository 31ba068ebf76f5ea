//! The platform as ops run it: `disco gateway-shard` (2 shards), two `disco command-worker`s and
//! a `disco rest-proxy` as release processes on the real RabbitMQ, against the simulator.
//!
//! - Cost: `COUNT` `~~ping`s (default 2,000) at `RATE` per second (default 40; 0: all at
//!   once) round `CHANNELS` channels (default 4), Discord answering every REST call after
//!   `LATENCY` ms (default 20) with its global limit (50 per second). CPU per command of
//!   Disco's processes and, separately, of RabbitMQ (idle subtracted from both); CPU and
//!   context switches per command by role; the events the gateway published per command; the
//!   discord.py bot of the original request in the same run, against a fresh simulator.
//! - Latency: `LATENCY_RATE` commands per second (default 500) for `SECONDS` (default 10),
//!   round 64 channels, with the global limit raised (as Discord does for large bots): the time
//!   from the simulator dispatching a command to the reply reaching its REST API (its `LATENCY`
//!   subtracted), p50 / p99 / max; after a ~~ping in each channel (`WARM=0`: without), so the
//!   rest-proxy knows the channels' buckets, as a running bot does. Then where the slowest
//!   waited: how many broker confirms, proxy waits and Discord answers took over 50 ms.
//!
//! Each process runs `THREADS` tokio worker threads (default 1, as the manifests' 1-CPU limit
//! gives every role in Kubernetes; 0: one per core, as on a bare machine).
//!
//! `just bench-fleet`. Issue #18.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use discord_sim::world::Limit;
use discord_sim::{Simulator, World};
use tests::measure::{
    broker_pid, context_switches, cpu_seconds, quantile, reply_latencies_ms, setting,
};
use tests::{
    Vhost, free_address, messages_sent, python_bot, release_disco, start_role, until_queues,
    until_sent_or_quiet,
};

/// The processes of one fleet, killed when dropped.
struct Fleet {
    /// The rest-proxy, the two workers, the gateway.
    processes: Vec<tokio::process::Child>,
    gateway_admin: std::net::SocketAddr,
    proxy_admin: std::net::SocketAddr,
}

impl Fleet {
    /// `threads`: each process's tokio worker threads (0: tokio's default, one per core).
    async fn start(
        disco: &std::path::Path,
        sim: &Simulator,
        vhost: &Vhost,
        global: u32,
        threads: usize,
    ) -> Self {
        let threads = threads.to_string();
        let env: &[(&str, &str)] = if threads == "0" {
            &[]
        } else {
            &[("TOKIO_WORKER_THREADS", &threads)]
        };
        let (proxy_listen, global) = (free_address(), global.to_string());
        let proxy_args = [
            "rest-proxy",
            "--rest-proxy-listen",
            &proxy_listen.to_string(),
            "--rest-global-limit",
            &global,
        ];
        let (proxy, proxy_admin) = start_role(disco, &proxy_args, env, sim, vhost).await;
        let proxy_url = format!("http://{proxy_listen}");
        let mut processes = vec![proxy];
        let role = |name| [name, "--shard-total", "2", "--rest-proxy-url", &proxy_url];
        for _ in 0..2 {
            processes.push(
                start_role(disco, &role("command-worker"), env, sim, vhost)
                    .await
                    .0,
            );
        }
        until_queues(vhost, &["disco.command-worker"]).await;
        let (gateway, gateway_admin) =
            start_role(disco, &role("gateway-shard"), env, sim, vhost).await;
        processes.push(gateway);
        Self {
            processes,
            gateway_admin,
            proxy_admin,
        }
    }

    fn cpu_seconds(&self) -> f64 {
        self.by_role().iter().sum()
    }

    /// CPU seconds of the rest-proxy, the workers (together) and the gateway.
    fn by_role(&self) -> [f64; 3] {
        let cpu = |n: usize| self.processes[n].id().map_or(0.0, cpu_seconds);
        [cpu(0), cpu(1) + cpu(2), cpu(3)]
    }

    /// Context switches of the rest-proxy, the workers (together) and the gateway.
    fn switches_by_role(&self) -> [u64; 3] {
        let switches = |n: usize| self.processes[n].id().map_or(0, context_switches);
        [switches(0), switches(1) + switches(2), switches(3)]
    }
}

fn world(channels: u32, latency: u64, global: Option<u32>) -> World {
    let mut world = World::at_scale(2, 1, channels);
    let generous = Limit {
        limit: 1_000_000,
        window_ms: 1_000,
    };
    world.rate_limits.messages_per_channel = generous;
    if let Some(limit) = global {
        world.rate_limits.global = Limit {
            limit,
            window_ms: 1_000,
        };
    }
    world.rest_latency_ms = latency;
    world
}

fn main() {
    let (latency, count, channels) = (
        setting("LATENCY", 20),
        setting("COUNT", 2_000_usize),
        setting("CHANNELS", 4_usize),
    );
    let (rate, threads) = (setting("RATE", 40), setting("THREADS", 1));
    let (latency_rate, seconds) = (
        setting("LATENCY_RATE", 500_usize),
        setting("SECONDS", 10_usize),
    );
    let Some(disco) = release_disco("bench-fleet") else {
        return;
    };
    let broker = broker_pid().expect("RabbitMQ runs on this machine");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Cost.
        let total = count;
        let (sim, control) =
            tests::simulate(world(u32::try_from(channels).unwrap(), latency, None)).await;
        let vhost = Vhost::new("bench-fleet");
        let fleet = Fleet::start(&disco, &sim, &vhost, 50, threads).await;
        let (idle, broker_idle) = quiet(|| fleet.cpu_seconds(), broker).await;
        let gateway = |name: &'static str| tests::metric(fleet.gateway_admin, name, &[]);
        let before = (
            fleet.cpu_seconds(),
            cpu_seconds(broker),
            gateway("disco_gateway_shard_events_published_total").await,
        );
        let (roles_before, switches_before) = (fleet.by_role(), fleet.switches_by_role());
        let elapsed = tests::pings_answered(&sim, &control, count, rate).await;
        let (roles, switches) = (fleet.by_role(), fleet.switches_by_role());
        let ours = (fleet.cpu_seconds() - before.0 - idle * elapsed) * 1e3 / total as f64;
        let rabbit = (cpu_seconds(broker) - before.1 - broker_idle * elapsed) * 1e3 / total as f64;
        let published = gateway("disco_gateway_shard_events_published_total").await - before.2;
        let (own, unrouted) = (
            gateway("disco_gateway_shard_own_messages_total").await,
            gateway("disco_gateway_shard_events_unrouted_total").await,
        );
        println!(
            "fleet: {total} ~~ping over {channels} channels at {rate}/s (0: at once), Discord \
             answering after {latency} ms with its global limit (50/s): {elapsed:.1} s"
        );
        println!(
            "  Disco (gateway, 2 workers, rest-proxy): {ours:.3} ms CPU per command; RabbitMQ: \
             {rabbit:.3} ms (idle subtracted: {:.1} and {:.1} ms/s)",
            idle * 1e3,
            broker_idle * 1e3
        );
        let share = |n: usize| (roles[n] - roles_before[n]) * 1e3 / total as f64;
        let switched =
            |n: usize| switches[n].saturating_sub(switches_before[n]) as f64 / total as f64;
        println!(
            "    by role (idle not subtracted): gateway {:.3} ms, workers {:.3} ms, rest-proxy \
             {:.3} ms; context switches per command: {:.1}, {:.1}, {:.1}",
            share(2),
            share(1),
            share(0),
            switched(2),
            switched(1),
            switched(0)
        );
        println!(
            "  the gateway published {:.2} events per command; read and not published: {own} of \
             the bot's own messages, {unrouted} events no consumer binds",
            published / total as f64
        );
        drop(fleet);
        sim.stop().await.unwrap();

        let (sim, control) =
            tests::simulate(world(u32::try_from(channels).unwrap(), latency, None)).await;
        if let Some(bot) = python_bot(&sim).await {
            let pid = bot.id().unwrap();
            let (idle, _) = quiet(|| cpu_seconds(pid), broker).await;
            let (before, switches_before) = (cpu_seconds(pid), context_switches(pid));
            let elapsed = tests::pings_answered(&sim, &control, count, rate).await;
            let theirs = (cpu_seconds(pid) - before - idle * elapsed) * 1e3 / total as f64;
            let switched = context_switches(pid).saturating_sub(switches_before);
            println!(
                "  discord.py: {theirs:.3} ms CPU per command: {:.1}x Disco's processes, {:.1}x \
                 with RabbitMQ; {:.1} context switches per command",
                theirs / ours,
                theirs / (ours + rabbit),
                switched as f64 / total as f64
            );
        }
        sim.stop().await.unwrap();

        // Latency.
        let (sim, control) = tests::simulate(world(64, latency, Some(1_000_000))).await;
        let vhost = Vhost::new("bench-fleet-latency");
        let fleet = Fleet::start(&disco, &sim, &vhost, 100_000, threads).await;
        let member = sim.world.guilds[0].members[0].id;
        // Warm: a ~~ping in each channel first. The proxy learns a channel's bucket from
        // Discord's first answer and holds the channel's other requests until it comes (as
        // twilight does); a running bot knows the buckets of the channels it is busy in.
        let warm = sim.world.guilds.len();
        if setting("WARM", 1) == 1 {
            for guild in &sim.world.guilds {
                tests::pings_in(&control, guild.channels[0].id, member, 1).await;
            }
            let (sent, _) = until_sent_or_quiet(&control, warm, Duration::from_secs(10)).await;
            assert_eq!(sent.len(), warm, "every warm-up ping answered");
        }
        let warmed = messages_sent(&control).await.len();
        let before = (fleet.cpu_seconds(), cpu_seconds(broker));
        let started = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(10));
        let per_tick = (latency_rate / 100).max(1);
        for n in 0..seconds * 100 {
            tick.tick().await;
            let channel = sim.world.guilds[n % sim.world.guilds.len()].channels[0].id;
            tests::pings_in(&control, channel, member, per_tick).await;
        }
        let (sent, _) = until_sent_or_quiet(
            &control,
            warmed + per_tick * seconds * 100,
            Duration::from_secs(10),
        )
        .await;
        let elapsed = started.elapsed().as_secs_f64();
        let latencies = reply_latencies_ms(&sent[warmed..], latency);
        assert_eq!(latencies.len(), sent.len() - warmed, "every reply carries its nonce");
        let at = |p: f64| quantile(&latencies, p);
        let n = latencies.len() as f64;
        println!(
            "latency ({}): {} ~~ping at {latency_rate}/s over 64 channels in {elapsed:.1} s; dispatch to \
             reply reaching Discord (its {latency} ms subtracted): p50 {} ms, p99 {} ms, max {} \
             ms; CPU per command: Disco {:.3} ms, RabbitMQ {:.3} ms",
            if warmed > 0 { "buckets known" } else { "cold: WARM=0" },
            latencies.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            (fleet.cpu_seconds() - before.0) * 1e3 / n,
            (cpu_seconds(broker) - before.1) * 1e3 / n,
        );
        // Where the slowest waited: the broker's confirm, the proxy's queue, Discord's answer.
        let discord = latency as f64 / 1e3;
        let slow = [
            (fleet.gateway_admin, "disco_gateway_shard_publish_confirm_seconds", 0.0),
            (fleet.proxy_admin, "disco_rest_proxy_wait_seconds", 0.0),
            (fleet.proxy_admin, "disco_rest_proxy_discord_seconds", discord),
        ];
        let mut over = Vec::new();
        for (admin, histogram, expected) in slow {
            let (slow, all) = observed_over(admin, histogram, 0.05 + expected).await;
            over.push(format!("{histogram} {slow} of {all}"));
        }
        println!(
            "  over 50 ms (for Discord's answer: over its {latency} ms + 50): {}",
            over.join(", ")
        );
        drop(fleet);
        sim.stop().await.unwrap();
    });
}

/// How many observations of a histogram a role exports were above `seconds` (counted from the
/// smallest bucket bound at or above it), and how many there were.
async fn observed_over(admin: std::net::SocketAddr, histogram: &str, seconds: f64) -> (u64, u64) {
    let text = tests::admin_get(admin, "/metrics")
        .await
        .unwrap_or_default();
    let (mut within, mut all) = (None, 0);
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(histogram) else {
            continue;
        };
        let count = || line.rsplit(' ').next()?.parse::<f64>().ok();
        if let Some(bound) = rest
            .strip_prefix("_bucket{le=\"")
            .and_then(|rest| rest.split('"').next()?.parse::<f64>().ok())
        {
            if bound >= seconds && within.is_none() {
                within = count();
            }
        } else if rest.starts_with("_count") {
            all = count().unwrap_or_default() as u64;
        }
    }
    (all - within.unwrap_or(all as f64) as u64, all)
}

/// CPU per second of `cpu` and of the broker over 10 s of quiet.
async fn quiet(cpu: impl Fn() -> f64, broker: u32) -> (f64, f64) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = (cpu(), cpu_seconds(broker));
    tokio::time::sleep(Duration::from_secs(10)).await;
    (
        (cpu() - before.0) / 10.0,
        (cpu_seconds(broker) - before.1) / 10.0,
    )
}
