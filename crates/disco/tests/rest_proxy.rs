//! The rest-proxy as ops run it: `disco rest-proxy`, and gateway and workers that send every
//! REST call through it (`DISCO_REST_PROXY_URL`), against a simulator with Discord's limits
//! (5 messages per 5 s per channel, 50 requests/s, Cloudflare's ban on invalid requests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use discord_sim::{Control, Simulator, World};
use tests::{
    Vhost, disco_command, free_address, messages_sent, metric, reply_to, say_many_in,
    start_rest_proxy, until_shards_connected,
};
use tokio::process::Child;

const PATIENCE: Duration = Duration::from_secs(60);

struct Fleet {
    sim: Simulator,
    control: Control,
    vhost: Vhost,
    proxy_listen: SocketAddr,
    proxy_admin: SocketAddr,
    proxy: Option<Child>,
    others: Vec<Child>,
}

fn binary() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_disco"))
}

impl Fleet {
    /// The simulator with `world`, a rest-proxy (with `proxy_args`), `workers` workers and a
    /// gateway, every REST call through the proxy; returns once the shard is connected.
    async fn start(name: &str, world: World, proxy_args: &[&str], workers: usize) -> Self {
        let (sim, control) = tests::simulate(world).await;
        let vhost = Vhost::new(name);
        let mut fleet = Self {
            sim,
            control,
            vhost,
            proxy_listen: free_address(),
            proxy_admin: free_address(),
            proxy: None,
            others: Vec::new(),
        };
        fleet.start_proxy(proxy_args).await;
        let total = fleet.sim.world.recommended_shards.to_string();
        for _ in 0..workers {
            let worker = fleet.role(&["command-worker", "--shard-total", &total], None);
            fleet.others.push(worker);
        }
        // Workers declare the queue; give them a moment before events flow.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let gateway = fleet.role(&["gateway-shard", "--shard-total", &total], None);
        fleet.others.push(gateway);
        until_shards_connected(&fleet.control, fleet.sim.world.recommended_shards as usize).await;
        fleet
    }

    fn role(&self, args: &[&str], token: Option<&str>) -> Child {
        let mut command = disco_command(binary(), args, &self.sim, &self.vhost);
        command
            .env(
                "DISCO_REST_PROXY_URL",
                format!("http://{}", self.proxy_listen),
            )
            // Discord's pace alone keeps the last of 100 replies in a channel waiting ~100 s:
            // the default 120 s reply deadline would drop some on a busy machine, and these
            // tests are about limits, not deadlines.
            .env("DISCO_WORKER_REPLY_DEADLINE_SECS", "600");
        if let Some(token) = token {
            command.env("DISCORD_TOKEN", token);
        }
        command.spawn().expect("disco starts")
    }

    async fn start_proxy(&mut self, args: &[&str]) {
        let addresses = (self.proxy_listen, self.proxy_admin);
        let proxy = start_rest_proxy(binary(), &self.sim, &self.vhost, addresses, args).await;
        self.proxy = Some(proxy);
    }

    async fn proxy_metric(&self, name: &str, labels: &[&str]) -> f64 {
        metric(self.proxy_admin, name, labels).await
    }

    /// `count` messages `content #n` from the first member into `channel`.
    async fn flood(&self, channel: u64, content: &str, count: usize) {
        let member = self.sim.world.guilds[0].members[0].id;
        say_many_in(&self.control, channel, member, content, count).await;
    }

    async fn assert_no_violations(&self) {
        let violations = self.control.violations().await.unwrap();
        assert!(violations.is_empty(), "{violations:?}");
    }
}

/// Discord's limits, one shard, the default guilds.
fn discord_world() -> World {
    World {
        recommended_shards: 1,
        ..World::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_workers_answer_1800_commands_over_30_channels_within_discords_limits() {
    // 30 guilds of one text channel each; Discord's limits: 5 replies per 5 s per channel, so
    // the 60 commands of each channel take ~60 s however many workers there are. (This test
    // caught a proxy whose channel buckets stalled for good once a window's turns were all
    // refused by the global limit: ~100 commands never answered.)
    let world = World::at_scale(1, 1, 30);
    let fleet = Fleet::start("six", world, &[], 6).await;
    let per_channel = 60;
    for guild in &fleet.sim.world.guilds {
        fleet
            .flood(guild.channels[0].id, "~~ping", per_channel)
            .await;
    }
    let total = fleet.sim.world.guilds.len() * per_channel;
    tokio::time::timeout(Duration::from_secs(240), async {
        while messages_sent(&fleet.control).await.len() < total {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await
    .expect("every command answered in time");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_answered_once(&fleet.control, total).await;
    assert_eq!(
        fleet.control.invalid_requests().await.unwrap(),
        0,
        "no 429 from Discord"
    );
    assert_eq!(
        fleet
            .proxy_metric("disco_rest_proxy_rate_limited_total", &[])
            .await,
        0.0
    );
    fleet.assert_no_violations().await;
}

/// Every message the bot sent answers a different command, and there are `total`.
async fn assert_answered_once(control: &Control, total: usize) {
    let sent = control.sent().await.unwrap();
    let mut nonces: Vec<&str> = sent
        .iter()
        .filter(|e| e["kind"] == "message")
        .filter_map(|e| e["nonce"].as_str())
        .collect();
    let all = nonces.len();
    nonces.sort_unstable();
    nonces.dedup();
    assert_eq!(
        (all, nonces.len()),
        (total, total),
        "every command answered exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooded_channel_does_not_hold_up_another() {
    let fleet = Fleet::start("hol", discord_world(), &[], 1).await;
    let guild = &fleet.sim.world.guilds[0];
    let (flooded, quiet, member) = (
        guild.channels[0].id,
        guild.channels[1].id,
        guild.members[0].id,
    );
    fleet.flood(flooded, "~~ping", 1_000).await;
    // The flood is being answered at Discord's pace: 5 per 5 s.
    tokio::time::timeout(PATIENCE, async {
        while fleet
            .proxy_metric("disco_command_worker_parked_total", &[])
            .await
            == 0.0
            && fleet.control.sent().await.unwrap().len() < 5
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the flood reaches the proxy");
    let asked = Instant::now();
    let reply = reply_to(&fleet.control, quiet, member, "~~ping").await;
    let took = asked.elapsed();
    assert!(
        reply["content"].as_str().unwrap().starts_with("pong!"),
        "{reply}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the quiet channel waited {took:?}"
    );
    // Every reply kept Discord's limits: no 429 at all, nothing ignored.
    assert_eq!(fleet.control.invalid_requests().await.unwrap(), 0);
    assert_eq!(
        fleet
            .proxy_metric("disco_rest_proxy_rate_limited_total", &[])
            .await,
        0.0
    );
    assert!(
        fleet
            .proxy_metric("disco_rest_proxy_refused_total", &["reason=\"busy\""])
            .await
            > 0.0
    );
    fleet.assert_no_violations().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spam_in_a_read_only_channel_never_nears_the_ban() {
    // Cloudflare's ban scaled down (10,000 → 100 in the window), and the proxy's budget with it.
    let mut world = discord_world();
    world.guilds[0].channels[1].read_only = true;
    world.rate_limits.invalid_requests.limit = 100;
    let fleet = Fleet::start("readonly", world, &["--rest-invalid-budget", "50"], 1).await;
    let guild = &fleet.sim.world.guilds[0];
    let (general, read_only, member) = (
        guild.channels[0].id,
        guild.channels[1].id,
        guild.members[0].id,
    );
    fleet.flood(read_only, "~~ping", 300).await;
    fleet.flood(read_only, "~~x", 300).await;
    // Every ping (the unknown `~~x` gets no reply at all) is refused, the proxy answering for
    // Discord after the first 403.
    tokio::time::timeout(PATIENCE, async {
        while fleet
            .proxy_metric("disco_rest_proxy_requests_total", &["status=\"403\""])
            .await
            < 300.0
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("every ping refused");
    assert_eq!(
        fleet.control.invalid_requests().await.unwrap(),
        1,
        "Discord saw one 403"
    );
    assert_eq!(
        fleet
            .proxy_metric("disco_rest_proxy_refused_total", &["reason=\"forbidden\""])
            .await,
        299.0
    );
    // The bot still answers elsewhere.
    let reply = reply_to(&fleet.control, general, member, "~~ping").await;
    assert!(
        reply["content"].as_str().unwrap().starts_with("pong!"),
        "{reply}"
    );
    fleet.assert_no_violations().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_stops_every_request_after_the_first() {
    let mut fleet = Fleet::start("unauthorized", discord_world(), &[], 0).await;
    // Three workers with a token Discord does not know (the gateway's is right). twilight stops
    // a client after its own 401; the proxy stops the fleet after the first.
    let wrong = "MTA0OTQ5NzE0MDA0OTQ3NzYw.GdiScO.not-the-simulators-token-at-all";
    for _ in 0..3 {
        let worker = fleet.role(&["command-worker", "--shard-total", "1"], Some(wrong));
        fleet.others.push(worker);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let guild = &fleet.sim.world.guilds[0];
    fleet.flood(guild.channels[0].id, "~~ping", 30).await;
    tokio::time::timeout(PATIENCE, async {
        while fleet
            .proxy_metric("disco_rest_proxy_requests_total", &["status=\"401\""])
            .await
            < 3.0
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("each worker's first reply refused");
    assert_eq!(
        fleet.control.invalid_requests().await.unwrap(),
        1,
        "Discord saw one 401"
    );
    // Every other request with that token, from every worker, the proxy answered itself.
    let refused = fleet
        .proxy_metric(
            "disco_rest_proxy_refused_total",
            &["reason=\"unauthorized\""],
        )
        .await;
    assert!(refused >= 2.0, "{refused}");
    assert_eq!(
        fleet
            .proxy_metric("disco_rest_proxy_token_rejected", &[])
            .await,
        1.0
    );
    let violations = fleet.control.violations().await.unwrap();
    assert_eq!(
        violations.len(),
        1,
        "one request without the bot token: {violations:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_restarted_mid_load_loses_no_reply() {
    // Spread over 4 channels, unthrottled: this test is about the restart, not the pacing.
    let mut world = discord_world();
    tests::unthrottled(&mut world);
    let mut fleet = Fleet::start("restart", world, &[], 2).await;
    let channels: Vec<u64> = fleet
        .sim
        .world
        .guilds
        .iter()
        .flat_map(|g| {
            g.channels
                .iter()
                .filter(|c| c.kind == discord_sim::world::ChannelKind::Text)
        })
        .map(|c| c.id)
        .collect();
    let per_channel = 150;
    for &channel in &channels {
        fleet.flood(channel, "~~ping", per_channel).await;
    }
    let total = channels.len() * per_channel;
    tokio::time::timeout(PATIENCE, async {
        while messages_sent(&fleet.control).await.len() < total / 4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("replies flow");
    let mut proxy = fleet.proxy.take().unwrap();
    proxy.start_kill().unwrap();
    proxy.wait().await.unwrap();
    let during = messages_sent(&fleet.control).await.len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    fleet.start_proxy(&[]).await;
    tokio::time::timeout(PATIENCE, async {
        while messages_sent(&fleet.control).await.len() < total {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("every command answered after the restart");
    assert!(
        during < total,
        "the proxy was killed mid-load ({during} of {total} answered)"
    );
    // A little longer: a reply sent twice would show up now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_answered_once(&fleet.control, total).await;
    fleet.assert_no_violations().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxy_replicas_hold_the_limits_once() {
    // 8 channels under Discord's limits; two workers, each sending through its own replica.
    let (sim, control) = tests::simulate(World::at_scale(1, 1, 8)).await;
    let vhost = Vhost::new("replicas");
    let listen = [free_address(), free_address()];
    let admin = [free_address(), free_address()];
    let peers = format!("http://{},http://{}", listen[0], listen[1]);
    let mut processes = Vec::new();
    for index in 0..2 {
        let place = index.to_string();
        let args = ["--rest-proxy-peers", &peers, "--rest-proxy-index", &place];
        let addresses = (listen[index], admin[index]);
        processes.push(start_rest_proxy(binary(), &sim, &vhost, addresses, &args).await);
    }
    for (index, role) in ["command-worker", "command-worker", "gateway-shard"]
        .into_iter()
        .enumerate()
    {
        let mut command = disco_command(binary(), &[role, "--shard-total", "1"], &sim, &vhost);
        command.env(
            "DISCO_REST_PROXY_URL",
            format!("http://{}", listen[index % 2]),
        );
        processes.push(command.spawn().unwrap());
        if role == "command-worker" && index == 1 {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
    until_shards_connected(&control, 1).await;
    let member = sim.world.guilds[0].members[0].id;
    let per_channel = 20;
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
    let total = sim.world.guilds.len() * per_channel;
    tokio::time::timeout(PATIENCE, async {
        while messages_sent(&control).await.len() < total {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await
    .expect("every command answered in time");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_answered_once(&control, total).await;
    assert_eq!(
        control.invalid_requests().await.unwrap(),
        0,
        "no 429: each channel paced by one replica"
    );
    for replica in admin {
        let sent = metric(
            replica,
            "disco_rest_proxy_requests_total",
            &["origin=\"discord\""],
        )
        .await;
        assert!(sent > 0.0, "each replica owns some buckets");
    }
    let violations = control.violations().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}

/// A caller that goes away while its request is with Discord (its connection dropped) does not
/// cut the exchange short: the proxy reads Discord's answer to its end and learns what it says
/// of the bucket. (Cut short, the next window's timing came from stale knowledge: a 429.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_leaving_mid_request_does_not_cut_the_exchange_short() {
    use tokio::io::AsyncWriteExt;
    let world = World {
        rest_latency_ms: 500,
        ..discord_world()
    };
    let fleet = Fleet::start("caller-leaves", world, &[], 0).await;
    let channel = fleet.sim.world.guilds[0].channels[0].id;
    let body = r#"{"content":"left behind"}"#;
    let request = format!(
        "POST /api/v10/channels/{channel}/messages HTTP/1.1\r\nhost: proxy\r\nauthorization: Bot {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        fleet.sim.world.token,
        body.len()
    );
    let answers = "disco_rest_proxy_discord_seconds_count";
    let before = fleet.proxy_metric(answers, &[]).await;
    let mut stream = tokio::net::TcpStream::connect(fleet.proxy_listen)
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    // Discord's answer read to its end: timed, and the message made.
    tokio::time::timeout(Duration::from_secs(5), async {
        while fleet.proxy_metric(answers, &[]).await < before + 1.0
            || messages_sent(&fleet.control).await.is_empty()
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the exchange was cut short when the caller left"));
    fleet.assert_no_violations().await;
}
