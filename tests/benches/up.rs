//! CPU per command of `disco up` (the release binary, every role in one process) as a newcomer
//! runs it: the simulator answers every REST call after `LATENCY` ms (default 20, as Discord
//! answers in tens of ms), `COUNT` `~~ping`s (default 2,000) arrive at once spread over
//! `CHANNELS` channels (default 16), and Discord's global limit of 50 requests per second paces
//! the replies (the rest-proxy holds it), so the run takes COUNT / 50 seconds and what is
//! measured is what a command costs when commands do not come in one batch. Also: idle CPU and
//! resident memory. Issue #18 compares these with the discord.py bot of the original request.
//!
//! `just bench-up`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use discord_sim::World;
use discord_sim::world::Limit;
use tests::measure::{cpu_seconds, rss_kib};
use tests::{free_address, messages_sent, release_disco, say_many_in, until_ready};

fn main() {
    let env = |name: &str, default: u64| tests::measure::setting(name, default);
    let (latency, count, channels) = (env("LATENCY", 20), env("COUNT", 2_000), env("CHANNELS", 16));
    let Some(disco) = release_disco("bench-up") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut world = World::at_scale(2, 1, u32::try_from(channels).unwrap());
        world.rate_limits.messages_per_channel = Limit {
            limit: 1_000_000,
            window_ms: 1_000,
        };
        world.rest_latency_ms = latency;
        let (sim, control) = tests::simulate(world).await;
        let admin = free_address();
        let mut up = tokio::process::Command::new(&disco)
            .arg("up")
            .env_clear()
            .env("DISCORD_TOKEN", &sim.world.token)
            .env("DISCO_APPLICATION_ID", sim.world.application_id.to_string())
            .env("DISCO_PUBLIC_KEY", &sim.public_key)
            .env("DISCO_DISCORD_API_URL", &sim.rest_url)
            .env("DISCO_DISCORD_GATEWAY_URL", &sim.gateway_url)
            .env("DISCO_SHARD_TOTAL", "2")
            .env("DISCO_METRICS_LISTEN", admin.to_string())
            .env("DISCO_INGRESS_LISTEN", free_address().to_string())
            .env("DISCO_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        until_ready(admin).await;
        let pid = up.id().unwrap();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let idle_before = cpu_seconds(pid);
        tokio::time::sleep(Duration::from_secs(10)).await;
        let idle = (cpu_seconds(pid) - idle_before) / 10.0;
        let idle_rss = rss_kib(pid);

        let member = sim.world.guilds[0].members[0].id;
        let per_channel = usize::try_from(count / channels).unwrap();
        let total = per_channel * sim.world.guilds.len();
        let (before, sim_before) = (cpu_seconds(pid), cpu_seconds(std::process::id()));
        let started = Instant::now();
        for guild in &sim.world.guilds {
            say_many_in(
                &control,
                guild.channels[0].id,
                member,
                "~~ping",
                per_channel,
            )
            .await;
        }
        while messages_sent(&control).await.len() < total {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let (cpu, sim_cpu) = (
            cpu_seconds(pid) - before - idle * elapsed,
            cpu_seconds(std::process::id()) - sim_before,
        );
        println!(
            "up: {total} ~~ping over {channels} channels, Discord answering after {latency} ms, \
             paced by its global limit: {elapsed:.1} s"
        );
        println!(
            "  disco up: {:.3} ms CPU per command (idle subtracted), {:.2} ms CPU per second idle, \
             {} MiB resident idle, {} MiB after",
            cpu * 1e3 / total as f64,
            idle * 1e3,
            idle_rss / 1024,
            rss_kib(pid) / 1024
        );
        println!(
            "  simulator and this bench: {:.3} ms CPU per command",
            sim_cpu * 1e3 / total as f64
        );
        // Each is an HTTP exchange between the worker and the proxy: what a command costs
        // depends on how many it takes.
        let (sent, refused) = (
            tests::metric(
                admin,
                "disco_rest_proxy_requests_total",
                &["origin=\"discord\""],
            )
            .await,
            tests::metric(admin, "disco_rest_proxy_refused_total", &[]).await,
        );
        println!(
            "  rest-proxy: {:.2} requests sent to Discord and {:.2} refused (busy: parked and \
             sent again) per command",
            sent / total as f64,
            refused / total as f64
        );
        up.start_kill().unwrap();
        sim.stop().await.unwrap();
    });
}
