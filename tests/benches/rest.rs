//! Discord REST through the rest-proxy against going direct: requests per second, and CPU per
//! request of the proxy (the release `disco rest-proxy`) and of the caller (this process), with
//! the simulator answering every call after `LATENCY` ms (default 20, as Discord answers in tens
//! of ms) and `CONCURRENCY` callers (default 64) spread over 64 channels for `SECONDS` (10).
//! Limits are lifted (simulator and proxy): this measures the proxy's cost, not Discord's pace.
//! twilight's own limiter (the direct row) holds a client to Discord's 50 requests/s; the
//! unlimited direct row is what a request costs a caller alone.
//!
//! `just bench-rest`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use discord_sim::world::Limit;
use discord_sim::{Config as SimConfig, Simulator, World};
use tests::measure::cpu_seconds;
use tests::{free_address, release_disco, until_ready};
use twilight_model::id::Id;

fn main() {
    let env = |name: &str, default: u64| tests::measure::setting(name, default);
    let (latency, concurrency, seconds) = (
        env("LATENCY", 20),
        env("CONCURRENCY", 64),
        env("SECONDS", 10),
    );
    let Some(disco) = release_disco("bench-rest") else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut world = World::at_scale(1, 1, 64);
        let generous = Limit { limit: 1_000_000, window_ms: 1_000 };
        world.rate_limits.messages_per_channel = generous;
        world.rate_limits.global = generous;
        world.rest_latency_ms = latency;
        let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig { world, ..SimConfig::default() })
            .await
            .unwrap();
        let channels: Vec<u64> = sim.world.guilds.iter().map(|g| g.channels[0].id).collect();
        println!("rest: {concurrency} callers over {} channels, Discord answering after {latency} ms, {seconds} s each", channels.len());

        let direct = twilight_http::Client::builder()
            .token(sim.world.token.clone())
            .proxy(sim.address.to_string(), true)
            .build();
        let me = std::process::id();
        let before = cpu_seconds(me);
        let sent = load(Arc::new(direct), &channels, concurrency, seconds).await;
        let caller = cpu_seconds(me) - before;
        println!(
            "  direct (twilight's limiter): {:>6.0} requests/s, caller {:>5.0} µs CPU/request",
            sent as f64 / seconds as f64,
            caller * 1e6 / sent as f64
        );

        // The same without any limiter: what a request costs the caller alone.
        let bare = twilight_http::Client::builder()
            .token(sim.world.token.clone())
            .proxy(sim.address.to_string(), true)
            .ratelimiter(None)
            .build();
        let before = cpu_seconds(me);
        let sent = load(Arc::new(bare), &channels, concurrency, seconds).await;
        let caller = cpu_seconds(me) - before;
        println!(
            "  direct, no limiter:          {:>6.0} requests/s, caller {:>5.0} µs CPU/request",
            sent as f64 / seconds as f64,
            caller * 1e6 / sent as f64
        );

        let listen = free_address();
        let admin = free_address();
        let mut proxy = tokio::process::Command::new(&disco)
            .args(["rest-proxy", "--rest-global-limit", "1000000"])
            .env_clear()
            .env("DISCO_DISCORD_API_URL", &sim.rest_url)
            .env("DISCO_REST_PROXY_LISTEN", listen.to_string())
            .env("DISCO_METRICS_LISTEN", admin.to_string())
            .env("DISCO_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        until_ready(admin).await;
        let proxy_pid = proxy.id().unwrap();
        let through = twilight_http::Client::builder()
            .token(sim.world.token.clone())
            .proxy(listen.to_string(), true)
            .ratelimiter(None)
            .build();
        let (before, proxy_before) = (cpu_seconds(me), cpu_seconds(proxy_pid));
        let sent = load(Arc::new(through), &channels, concurrency, seconds).await;
        let (caller, proxy_cpu) = (cpu_seconds(me) - before, cpu_seconds(proxy_pid) - proxy_before);
        println!(
            "  through the rest-proxy:      {:>6.0} requests/s, caller {:>5.0} µs CPU/request, proxy {:>5.0} µs CPU/request",
            sent as f64 / seconds as f64,
            caller * 1e6 / sent as f64,
            proxy_cpu * 1e6 / sent as f64
        );
        proxy.start_kill().unwrap();
        sim.stop().await.unwrap();
    });
}

/// `concurrency` callers each sending Create Message in turn over `channels` for `seconds`;
/// the requests that succeeded.
async fn load(
    http: Arc<twilight_http::Client>,
    channels: &[u64],
    concurrency: u64,
    seconds: u64,
) -> u64 {
    let sent = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..concurrency)
        .map(|n| {
            let (http, sent) = (Arc::clone(&http), Arc::clone(&sent));
            let channels = channels.to_vec();
            tokio::spawn(async move {
                let mut i = n as usize;
                while Instant::now() < until {
                    let channel = Id::new(channels[i % channels.len()]);
                    if http.create_message(channel).content("bench").await.is_ok() {
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    sent.load(Ordering::Relaxed)
}
