//! CPU per command of `disco up` (the release binary, every role in one process) as a newcomer
//! runs it, against the discord.py bot of the original request (`python/bot.py`) in the same
//! run: the simulator answers every REST call after `LATENCY` ms (default 20, as Discord
//! answers in tens of ms) and holds both to Discord's global limit (50 requests per second);
//! `COUNT` `~~ping`s (default 2,000) arrive at `RATE` per second (default 40; 0: all at once)
//! round the `CHANNELS` channels (default 16), so commands do not come in one batch and what is
//! measured is what a command costs when it waits for Discord, and how many context switches
//! (wake-ups, mostly) it takes. Also: idle CPU and resident memory. `ROUNDS` (default 2)
//! alternates the two, each against a fresh simulator; `BOTS` (default `disco,python`) chooses
//! which run; `THREADS` sets disco up's tokio worker threads (default 0: disco up's own
//! default, one). Issue #18.
//!
//! `CALLGRIND=1` runs disco up under valgrind's callgrind and reports the instructions it ran
//! per command instead of its CPU: a count that does not depend on what else the machine does,
//! for comparing two builds (use a `COUNT` of a few hundred: it runs ~50x slower). The
//! profile of the load alone is left in the temporary directory, for `callgrind_annotate`.
//!
//! All at once (`RATE=0`), discord.py sends the replies of all channels together, meets the
//! global limit's 429s and gives a reply up after five of them; Disco's rest-proxy paces them.
//!
//! disco up is stopped with SIGTERM and must exit 0. With `LLVM_PROFILE_FILE` set, an
//! instrumented `DISCO_BIN` writes its profile there: `scripts/build-release` trains its PGO
//! build with `BOTS=disco ROUNDS=1` runs of this bench.
//!
//! `just bench-up`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::world::Limit;
use discord_sim::{Control, Simulator, World};
use tests::measure::{context_switches, cpu_seconds, rss_kib, setting};
use tests::{free_address, pings_answered, python_bot, release_disco, until_ready};

/// What one run of one bot cost.
struct Cost {
    per_command_ms: f64,
    /// Context switches per command, idle subtracted: how often its threads woke.
    switches_per_command: f64,
    idle_ms_per_s: f64,
    idle_rss_mib: u64,
}

fn main() {
    let (latency, count, channels, rate) = (
        setting("LATENCY", 20),
        setting("COUNT", 2_000),
        setting("CHANNELS", 16),
        setting("RATE", 40),
    );
    let bots = setting("BOTS", "disco,python".to_owned());
    // disco up's tokio worker threads (0: its default, one).
    let threads = setting("THREADS", 0_usize);
    let callgrind = setting("CALLGRIND", 0_u8) == 1;
    let Some(disco) = release_disco("bench-up") else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let world = || {
            let mut world = World::at_scale(2, 1, u32::try_from(channels).unwrap());
            world.rate_limits.messages_per_channel = Limit {
                limit: 1_000_000,
                window_ms: 1_000,
            };
            world.rest_latency_ms = latency;
            world
        };
        let pace = if rate == 0 {
            "all at once".to_owned()
        } else {
            format!("{rate}/s")
        };
        println!(
            "up: {count} ~~ping over {channels} channels ({pace}), Discord answering after \
             {latency} ms with its global limit (50/s)"
        );
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..setting("ROUNDS", 2) {
            if !bots.contains("disco") {
                break;
            }
            let (sim, control) = tests::simulate(world()).await;
            let admin = free_address();
            let profile = std::env::temp_dir().join("disco-up.callgrind");
            let dumped = std::path::PathBuf::from(format!("{}.1", profile.display()));
            let mut up = if callgrind {
                // A dump left by an earlier run is not this run's.
                let _ = std::fs::remove_file(&dumped);
                let mut valgrind = tokio::process::Command::new("valgrind");
                valgrind
                    .arg("--tool=callgrind")
                    .arg(format!("--callgrind-out-file={}", profile.display()))
                    .arg(&disco);
                valgrind
            } else {
                tokio::process::Command::new(&disco)
            };
            up.arg("up")
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
                .kill_on_drop(true);
            // A PGO training run (scripts/build-release): where the instrumented binary writes
            // its profile, on a clean exit.
            if let Some(profile) = std::env::var_os("LLVM_PROFILE_FILE") {
                up.env("LLVM_PROFILE_FILE", profile);
            }
            if threads > 0 {
                up.env("TOKIO_WORKER_THREADS", threads.to_string());
            }
            let mut up = up.spawn().unwrap();
            until_ready(admin).await;
            if callgrind {
                let pid = up.id().unwrap();
                tokio::time::sleep(Duration::from_secs(2)).await;
                callgrind_control("--zero", pid);
                pings_answered(&sim, &control, count, rate).await;
                callgrind_control("--dump", pid);
                // The dump after the zeroing: the load alone (complete once it has its totals).
                let mut dump = String::new();
                for _ in 0..100 {
                    dump = std::fs::read_to_string(&dumped).unwrap_or_default();
                    if dump.contains("\ntotals: ") {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let total: f64 = dump
                    .lines()
                    .find_map(|line| line.strip_prefix("summary: "))
                    .expect("a callgrind dump has a summary")
                    .trim()
                    .parse()
                    .unwrap();
                println!(
                    "  disco up: {:.0}k instructions per command (callgrind; profile in {})",
                    total / count as f64 / 1e3,
                    dumped.display()
                );
                up.start_kill().unwrap();
                sim.stop().await.unwrap();
                continue;
            }
            let cost = load(up.id().unwrap(), &sim, &control, count, rate).await;
            report("disco up", &cost);
            // Each is an HTTP exchange between the worker and the proxy: what a command costs
            // depends on how many it takes.
            let total = count as f64;
            let sent = tests::metric(
                admin,
                "disco_rest_proxy_requests_total",
                &["origin=\"discord\""],
            )
            .await;
            let refused = tests::metric(admin, "disco_rest_proxy_refused_total", &[]).await;
            println!(
                "    rest-proxy: {:.2} requests sent to Discord and {:.2} refused (busy: parked \
                 and sent again) per command",
                sent / total,
                refused / total
            );
            ours.push(cost);
            stop(&mut up).await;
            sim.stop().await.unwrap();

            if !bots.contains("python") {
                continue;
            }
            let (sim, control) = tests::simulate(world()).await;
            let Some(mut bot) = python_bot(&sim).await else {
                sim.stop().await.unwrap();
                continue;
            };
            let cost = load(bot.id().unwrap(), &sim, &control, count, rate).await;
            report("discord.py", &cost);
            theirs.push(cost);
            bot.start_kill().unwrap();
            sim.stop().await.unwrap();
        }
        let mean = |costs: &[Cost]| {
            costs.iter().map(|c| c.per_command_ms).sum::<f64>() / costs.len() as f64
        };
        if !theirs.is_empty() && !ours.is_empty() {
            println!(
                "  the discord.py bot spends {:.1}x disco up's CPU per command (means of {} runs)",
                mean(&theirs) / mean(&ours),
                theirs.len()
            );
        }
    });
}

/// Idle for 10 s, then `count` `~~ping`s, `rate` a second (0: at once) round the guilds'
/// channels, until every reply reached the simulator: what the process `pid` spent.
async fn load(pid: u32, sim: &Simulator, control: &Control, count: usize, rate: u64) -> Cost {
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (idle_before, idle_switches_before) = (cpu_seconds(pid), context_switches(pid));
    tokio::time::sleep(Duration::from_secs(10)).await;
    let idle = (cpu_seconds(pid) - idle_before) / 10.0;
    let idle_switches = context_switches(pid).saturating_sub(idle_switches_before) as f64 / 10.0;
    let idle_rss = rss_kib(pid);
    let (before, switches_before) = (cpu_seconds(pid), context_switches(pid));
    let elapsed = pings_answered(sim, control, count, rate).await;
    let cpu = cpu_seconds(pid) - before - idle * elapsed;
    let switches =
        context_switches(pid).saturating_sub(switches_before) as f64 - idle_switches * elapsed;
    Cost {
        per_command_ms: cpu * 1e3 / count as f64,
        switches_per_command: switches / count as f64,
        idle_ms_per_s: idle * 1e3,
        idle_rss_mib: idle_rss / 1024,
    }
}

/// Stops `disco up` as ops do, with SIGTERM, and waits for it to exit 0 (it writes its PGO
/// profile then, when it is an instrumented build).
async fn stop(up: &mut tokio::process::Child) {
    let exited = tests::stop_with(up, "-TERM", Duration::from_secs(30)).await;
    assert!(exited.success(), "disco up exits 0 on SIGTERM: {exited}");
}

/// Asks the callgrind run `pid` to `action` (`--zero`, `--dump`) and waits until it has.
fn callgrind_control(action: &str, pid: u32) {
    let status = std::process::Command::new("callgrind_control")
        .arg(action)
        .arg(pid.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("callgrind_control runs (valgrind is installed)");
    assert!(
        status.success(),
        "callgrind_control {action} {pid}: {status}"
    );
}

fn report(who: &str, cost: &Cost) {
    println!(
        "  {who}: {:.3} ms CPU per command (idle subtracted), {:.1} context switches per \
         command, {:.2} ms CPU per second idle, {} MiB resident idle",
        cost.per_command_ms, cost.switches_per_command, cost.idle_ms_per_s, cost.idle_rss_mib
    );
}
