//! `disco gateway-shard` as ops run it: OS processes against the simulator and the real
//! RabbitMQ, each test in a RabbitMQ virtual host of its own so that shard queues, saved
//! sessions and identify locks of parallel tests never meet.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use bus::{Bus, Consumer, RabbitConfig, Subscription};
use disco_proto::v1::GatewayEvent;
use disco_proto::{Secret, route};
use discord_sim::{Control, Simulator};
use serde_json::Value;
use tests::{Vhost, rabbitmqctl, say_many, spawn_disco, until_shards_connected};

const PATIENCE: Duration = Duration::from_secs(60);

async fn bus_on(vhost: &Vhost, name: &str) -> Bus {
    Bus::rabbitmq(RabbitConfig::new(Secret::new(vhost.url()), name).unwrap())
        .await
        .expect("RabbitMQ answers")
}

/// A `disco gateway-shard` process, killed if still running when dropped.
struct Gateway {
    child: tokio::process::Child,
}

impl Gateway {
    fn start(sim: &Simulator, vhost: &Vhost, args: &[&str]) -> Self {
        let args = [&["gateway-shard"][..], args].concat();
        let child = spawn_disco(
            std::path::Path::new(env!("CARGO_BIN_EXE_disco")),
            &args,
            sim,
            vhost,
        );
        Self { child }
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    /// SIGTERM, and the exit status once it has saved its sessions.
    async fn terminate(mut self) -> std::process::ExitStatus {
        tests::stop_with(&mut self.child, "-TERM", PATIENCE).await
    }
}

/// The simulator with the default world as `world` changes it, and its control API.
async fn simulate(change: impl FnOnce(&mut discord_sim::World)) -> (Simulator, Control) {
    let mut world = discord_sim::World::default();
    change(&mut world);
    tests::simulate(world).await
}

/// A consumer of every MESSAGE_CREATE published in the virtual host, and its bus.
async fn listening(vhost: &Vhost) -> (Bus, Consumer) {
    let bus = bus_on(vhost, "test").await;
    let messages = bus
        .subscribe(
            Subscription::shared("test.messages")
                .bind(route::every_shard("MESSAGE_CREATE"))
                .prefetch(256),
        )
        .await
        .unwrap();
    (bus, messages)
}

/// Closes the broker connections of process `pid` in the virtual host; how many there were.
fn close_connections(vhost: &Vhost, pid: u32, reason: &str) -> usize {
    tests::close_connections(vhost, "client_properties", &format!("pid {pid}"), reason)
}

async fn shard_logs(control: &Control) -> Vec<Value> {
    control.get("/shards").await.unwrap()["shards"]
        .as_array()
        .unwrap()
        .clone()
}

async fn content(consumer: &mut Consumer) -> String {
    let delivery = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("in time")
        .expect("open");
    let event: GatewayEvent = disco_proto::decode(&delivery.message.body).unwrap();
    delivery.ack().await.unwrap();
    serde_json::from_slice::<Value>(&event.payload).unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_eight_shards_and_a_restart_resumes() {
    let (sim, control) = simulate(|world| {
        world.max_concurrency = 2;
        world.recommended_shards = 8;
    })
    .await;
    let vhost = Vhost::new("split");
    let bus = bus_on(&vhost, "test").await;
    let mut messages = bus
        .subscribe(Subscription::shared("test.messages").bind(route::every_shard("MESSAGE_CREATE")))
        .await
        .unwrap();

    let common = ["--shard-total", "8", "--buckets", "2", "--bucket"];
    let first = Gateway::start(&sim, &vhost, &[&common[..], &["0"]].concat());
    let second = Gateway::start(&sim, &vhost, &[&common[..], &["1"]].concat());
    until_shards_connected(&control, 8).await;

    // Discord's rule across both processes: one IDENTIFY per bucket (shard % 2) per 5 s.
    let mut by_bucket: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for log in shard_logs(&control).await {
        let bucket = log["shard_id"].as_u64().unwrap() % 2;
        by_bucket.entry(bucket).or_default().extend(
            log["identifies"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_u64().unwrap()),
        );
    }
    for times in by_bucket.values_mut() {
        times.sort_unstable();
        assert_eq!(times.len(), 4, "{times:?}");
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= 5_000,
                "identifies {} ms apart in one bucket",
                pair[1] - pair[0]
            );
        }
    }
    assert!(control.violations().await.unwrap().is_empty());

    // The first process (shards 0..4, both guilds of the default world) stops...
    let status = first.terminate().await;
    assert!(status.success(), "{status}");
    // ...people keep talking...
    for (n, guild) in sim.world.guilds.iter().enumerate() {
        control
            .say(
                guild.channels[0].id,
                guild.members[0].id,
                &format!("while down {n}"),
            )
            .await
            .unwrap();
    }
    // ...and its successor resumes and publishes what was said.
    let successor = Gateway::start(&sim, &vhost, &[&common[..], &["0"]].concat());
    let mut heard = BTreeSet::new();
    while heard.len() < 2 {
        heard.insert(content(&mut messages).await);
    }
    assert_eq!(
        heard,
        BTreeSet::from(["while down 0".to_owned(), "while down 1".to_owned()])
    );
    until_shards_connected(&control, 8).await;
    for log in shard_logs(&control).await {
        assert_eq!(
            log["identifies"].as_array().unwrap().len(),
            1,
            "no shard identified twice: {log}"
        );
        let shard = log["shard_id"].as_u64().unwrap();
        let resumes = log["resumes"].as_array().unwrap().len();
        assert_eq!(
            resumes,
            usize::from(shard < 4),
            "shard {shard} resumed {resumes} times"
        );
    }
    assert!(control.violations().await.unwrap().is_empty());

    assert!(successor.terminate().await.success());
    assert!(second.terminate().await.success());
    drop(messages);
    bus.close().await;
    sim.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_outage_mid_stream_loses_nothing() {
    const COUNT: usize = 5_000;
    let (sim, control) = simulate(|world| {
        world.recommended_shards = 1;
    })
    .await;
    let vhost = Vhost::new("outage");
    let (bus, mut messages) = listening(&vhost).await;
    let gateway = Gateway::start(&sim, &vhost, &["--shard-total", "1"]);
    until_shards_connected(&control, 1).await;

    say_many(&sim, "m", COUNT).await;
    let mut seen = BTreeSet::new();
    let mut deliveries = 0;
    let mut closed = 0;
    while seen.len() < COUNT {
        seen.insert(content(&mut messages).await);
        deliveries += 1;
        if deliveries == COUNT / 5 {
            // Close the gateway's broker connection under it, mid-stream.
            closed += close_connections(&vhost, gateway.pid(), "outage test");
        }
    }
    assert_eq!(closed, 1, "the gateway's connection was found and closed");
    assert_eq!(seen.len(), COUNT, "every message reached the consumer");
    let duplicates = deliveries - COUNT;
    eprintln!(
        "{COUNT} messages, {deliveries} deliveries ({duplicates} published twice after lost confirms)"
    );
    assert!(control.violations().await.unwrap().is_empty());
    assert!(gateway.terminate().await.success());
    drop(messages);
    bus.close().await;
    sim.stop().await.unwrap();
}

/// A gateway process killed with SIGKILL (an OOM kill, a lost node) under steady load: its
/// successor RESUMEs the session the dead one last checkpointed, Discord replays what the dead
/// one had not published, and every command is answered exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_gateway_is_resumed_and_no_command_is_lost() {
    let (sim, control) = simulate(|world| {
        world.recommended_shards = 1;
        tests::unthrottled(world);
    })
    .await;
    let vhost = Vhost::new("sigkill");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let _worker = spawn_disco(binary, &["command-worker"], &sim, &vhost);
    tests::until_queues(&vhost, &["disco.command-worker"]).await;
    let mut gateway = Gateway::start(&sim, &vhost, &[]);
    until_shards_connected(&control, 1).await;

    // 40 commands a second; the gateway dies two and a half seconds in (after a checkpoint),
    // and its successor starts a second later.
    let guild = &sim.world.guilds[0];
    let (channel, member) = (guild.channels[0].id, guild.members[0].id);
    let mut said = Vec::new();
    let mut successor = None;
    for n in 0..240 {
        let message = control.say(channel, member, "~~ping").await.unwrap();
        said.push(message["id"].as_str().unwrap().to_owned());
        if n == 100 {
            gateway.child.start_kill().unwrap();
            gateway.child.wait().await.unwrap();
        }
        if n == 140 {
            successor = Some(Gateway::start(&sim, &vhost, &[]));
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    tests::until_answered_once(&control, &said, PATIENCE).await;
    let log = &shard_logs(&control).await[0];
    assert_eq!(
        log["identifies"].as_array().unwrap().len(),
        1,
        "the successor resumed, it did not identify: {log}"
    );
    assert_eq!(log["resumes"].as_array().unwrap().len(), 1, "{log}");
    assert!(control.violations().await.unwrap().is_empty());

    assert!(successor.unwrap().terminate().await.success());
    sim.stop().await.unwrap();
}

/// RabbitMQ out of reach for long while members keep talking: the publish buffer fills, and
/// the shard still reads (so it heartbeats: a silent client loses its session, as on Discord),
/// leaves what does not fit for Discord to replay, and once the broker is back RESUMEs from
/// before the gap. The outage is scaled to the world's heartbeat (1 s here; Discord's is about
/// 41 s): 12 s is five times the time a silent connection is allowed, as 60 s is on Discord.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_broker_outage_keeps_the_session_and_loses_nothing() {
    const COUNT: usize = 300;
    let (sim, control) = simulate(|world| {
        world.recommended_shards = 1;
        world.heartbeat_interval_ms = 1_000;
    })
    .await;
    let vhost = Vhost::new("long-outage");
    let (bus, mut messages) = listening(&vhost).await;
    // The buffer is bounded in bytes here (a count alone does not bound memory: one
    // GUILD_CREATE can be megabytes): 64 KiB is about a hundred of these messages.
    let admin = tests::free_address();
    let gateway = Gateway::start(
        &sim,
        &vhost,
        &[
            "--publish-buffer",
            "100000",
            "--publish-buffer-bytes",
            "65536",
            "--metrics-listen",
            &admin.to_string(),
        ],
    );
    until_shards_connected(&control, 1).await;

    // The broker refuses the gateway: no permission on the virtual host, its connection closed.
    rabbitmqctl(&["clear_permissions", "-p", vhost.name(), "guest"]);
    close_connections(&vhost, gateway.pid(), "long outage test");
    say_many(&sim, "during", COUNT).await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    vhost.allow("guest");

    let mut seen = BTreeSet::new();
    while seen.len() < COUNT {
        seen.insert(content(&mut messages).await);
    }
    let log = &shard_logs(&control).await[0];
    assert_eq!(
        log["identifies"].as_array().unwrap().len(),
        1,
        "the session outlived the outage: {log}"
    );
    let deferred = tests::metric(admin, "disco_gateway_shard_events_deferred_total", &[]).await;
    assert!(
        deferred > 0.0,
        "the byte bound left dispatches to Discord's replay"
    );
    assert!(control.violations().await.unwrap().is_empty());
    assert!(gateway.terminate().await.success());
    drop(messages);
    bus.close().await;
    sim.stop().await.unwrap();
}

/// A gateway pod in a crash loop (killed as soon as it has a session, 50 times) against a
/// daily budget of 20 identifies with a floor of 10: it RESUMEs from its checkpoint where it
/// can, identifies otherwise, and once the budget is down to the floor it refuses to start,
/// so no more than 10 identifies are ever spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_looping_gateway_never_spends_the_identify_floor() {
    let (sim, control) = simulate(|world| {
        world.recommended_shards = 1;
        world.session_start_limit = 20;
    })
    .await;
    let vhost = Vhost::new("budget");
    let sessions = |log: &Value| {
        log["identifies"].as_array().map_or(0, Vec::len)
            + log["resumes"].as_array().map_or(0, Vec::len)
    };
    let (mut refused, mut resumed_or_identified) = (0, 0);
    for round in 0..50 {
        let before = shard_logs(&control).await.first().map_or(0, sessions);
        let mut gateway = Gateway::start(&sim, &vhost, &["--identify-floor", "10"]);
        let exited = tokio::time::timeout(PATIENCE, async {
            loop {
                if let Some(status) = gateway.child.try_wait().unwrap() {
                    return Some(status);
                }
                if shard_logs(&control).await.first().map_or(0, sessions) > before {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("round {round}: neither a session nor an exit in time"));
        match exited {
            Some(status) => {
                assert!(!status.success(), "a refusal exits non-zero");
                refused += 1;
            }
            None => {
                resumed_or_identified += 1;
                gateway.child.start_kill().unwrap();
                gateway.child.wait().await.unwrap();
            }
        }
    }
    let started = control.get("/shards").await.unwrap()["sessions_started"]
        .as_u64()
        .unwrap();
    assert!(
        started <= 10,
        "{started} identifies spent: the floor (10 of 20) was not kept"
    );
    assert!(refused > 0, "at the floor, the gateway refuses to start");
    eprintln!(
        "{started} identifies, {resumed_or_identified} sessions, {refused} refusals in 50 starts"
    );
    sim.stop().await.unwrap();
}

/// Two gateway processes contend for one identify bucket, as every rollout does: that is how
/// the lock works, not a failure, so nothing is logged as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identify_lock_contention_logs_no_error() {
    let (sim, control) = simulate(|world| {
        world.recommended_shards = 2;
        world.max_concurrency = 1;
    })
    .await;
    let vhost = Vhost::new("contention");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let start = |bucket: &str| {
        let args = [
            "gateway-shard",
            "--shard-total",
            "2",
            "--buckets",
            "2",
            "--bucket",
            bucket,
        ];
        let mut command = tests::disco_command(binary, &args, &sim, &vhost);
        command
            .env_remove("DISCO_LOG")
            .stderr(std::process::Stdio::piped());
        command.spawn().unwrap()
    };
    let gateways = [start("0"), start("1")];
    until_shards_connected(&control, 2).await;
    let mut logs = String::new();
    for gateway in gateways {
        Command::new("kill")
            .args(["-TERM", &gateway.id().unwrap().to_string()])
            .status()
            .unwrap();
        let output = tokio::time::timeout(PATIENCE, gateway.wait_with_output())
            .await
            .expect("exits in time")
            .unwrap();
        assert!(output.status.success());
        logs.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    assert!(
        logs.contains("INFO"),
        "the default filter logs at info: {logs}"
    );
    assert!(!logs.contains("ERROR"), "{logs}");
    sim.stop().await.unwrap();
}

/// A prefix command costs the broker one publish: the command's MESSAGE_CREATE. The bot's reply
/// comes back from Discord as a MESSAGE_CREATE too, which every consumer would ignore; the
/// gateway reads it and does not publish it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bots_own_messages_are_not_published() {
    const COUNT: usize = 20;
    let (sim, control) = simulate(|world| {
        world.recommended_shards = 1;
        tests::unthrottled(world);
    })
    .await;
    let vhost = Vhost::new("own-messages");
    let worker = spawn_disco(
        std::path::Path::new(env!("CARGO_BIN_EXE_disco")),
        &["command-worker"],
        &sim,
        &vhost,
    );
    tests::until_queues(&vhost, &["disco.command-worker"]).await;
    let admin = tests::free_address();
    let gateway = Gateway::start(&sim, &vhost, &["--metrics-listen", &admin.to_string()]);
    until_shards_connected(&control, 1).await;
    say_many(&sim, "~~ping", COUNT).await;
    tokio::time::timeout(PATIENCE, async {
        while tests::messages_sent(&control).await.len() < COUNT {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("every command answered");
    // The echoes of the last replies are read a moment after they are sent.
    let own = tokio::time::timeout(PATIENCE, async {
        loop {
            let own = tests::metric(admin, "disco_gateway_shard_own_messages_total", &[]).await;
            if own >= COUNT as f64 {
                return own;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the replies' echoes are read");
    let published = tests::metric(
        admin,
        "disco_gateway_shard_events_published_total",
        &["event=\"MESSAGE_CREATE\""],
    )
    .await;
    assert_eq!(
        (published, own),
        (COUNT as f64, COUNT as f64),
        "one publish per command; the replies' echoes read, not published"
    );
    assert!(gateway.terminate().await.success());
    drop(worker);
    sim.stop().await.unwrap();
}
