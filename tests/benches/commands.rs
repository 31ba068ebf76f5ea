//! Commands answered per second, and latency from Discord's dispatch to the reply reaching
//! Discord, with the gateway, a worker and the simulator in this process and the real RabbitMQ
//! between them. CPU per command is split between this process and the broker.
//!
//! Message replies are bounded by Discord's global limit of 50 requests per second per bot,
//! which twilight-http enforces in the client; a burst above it measures that limit, so the
//! load is paced: `RATE` commands per second (default 40) for `SECONDS` (default 20).
//!
//! `just bench-commands`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use discord_sim::world::Limit;
use serde_json::json;
use tests::measure::{broker_pid, cpu_seconds, quantile, reply_latencies_ms};
use tests::{Options, Platform, Transport};

fn main() {
    let env = |name: &str, default: usize| tests::measure::setting(name, default);
    let (rate, seconds) = (env("RATE", 40), env("SECONDS", 20));
    let count = rate * seconds;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut options = Options::default();
        let generous = Limit { limit: 1_000_000, window_ms: 1_000 };
        options.world.rate_limits.messages_per_channel = generous;
        options.world.rate_limits.global = generous;
        let platform = Platform::start(Transport::RabbitMq, options).await;
        let (channel, member) = platform.general();
        let me = std::process::id();
        let broker = broker_pid();
        let (cpu_before, broker_before) = (cpu_seconds(me), broker.map_or(0.0, cpu_seconds));
        let started = Instant::now();
        // Ten batches a second.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        for _ in 0..seconds * 10 {
            tick.tick().await;
            platform
                .control
                .post("/messages/bulk", &json!({
                    "channel_id": channel.to_string(),
                    "author_id": member.to_string(),
                    "content": "~~테스트 찬구",
                    "count": rate / 10,
                }))
                .await
                .unwrap();
        }
        let sent = loop {
            let sent: Vec<serde_json::Value> = platform
                .control
                .sent()
                .await
                .unwrap()
                .into_iter()
                .filter(|e| e["kind"] == "message")
                .collect();
            if sent.len() >= count {
                break sent;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        };
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(me) - cpu_before;
        let broker_cpu = broker.map_or(0.0, cpu_seconds) - broker_before;
        let latencies = reply_latencies_ms(&sent, 0);
        assert_eq!(latencies.len(), sent.len(), "every reply carries its command's nonce");
        let at = |p: f64| quantile(&latencies, p);
        println!(
            "commands: {count} answered in {elapsed:.2} s = {:.0}/s; dispatch-to-reply latency p50 {} ms, p99 {} ms, max {} ms",
            count as f64 / elapsed,
            at(0.5),
            at(0.99),
            at(1.0)
        );
        println!(
            "  CPU per command: {:.0} us in this process (simulator + gateway + worker), {:.0} us in RabbitMQ",
            cpu / count as f64 * 1e6,
            broker_cpu / count as f64 * 1e6
        );
        println!("  (paced at {rate} commands/s for {seconds} s; Discord allows a bot 50 requests/s)");
        platform.stop().await;
    });
}
