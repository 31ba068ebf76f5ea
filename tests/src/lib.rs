#![doc = include_str!("../README.md")]

use std::time::Duration;

use bus::{Bus, Limits, RabbitConfig};
use disco_proto::Secret;
use discord_sim::{Config as SimConfig, Control, Simulator};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

pub use disco::Role;

/// How long a scenario waits for something that should happen.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Which bus the platform runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// The in-memory bus of `disco up`.
    Memory,
    /// The real RabbitMQ at `DISCO_AMQP_URL`, in a fresh virtual host.
    RabbitMq,
}

/// A RabbitMQ virtual host of one test, deleted when dropped.
#[derive(Debug)]
pub struct Vhost {
    name: String,
}

impl Vhost {
    /// Creates a virtual host (with `rabbitmqctl`) for `test`.
    ///
    /// # Panics
    /// When `rabbitmqctl` fails: the tests need the real broker.
    pub fn new(test: &str) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("disco-test-{test}-{}-{n}", std::process::id());
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Self { name };
        vhost.allow("guest");
        vhost
    }

    /// Gives `user` every permission on the virtual host (again, after a test took them).
    ///
    /// # Panics
    /// When `rabbitmqctl` fails.
    pub fn allow(&self, user: &str) {
        rabbitmqctl(&["set_permissions", "-p", &self.name, user, ".*", ".*", ".*"]);
    }

    /// The AMQP URL of the virtual host.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// The virtual host's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for Vhost {
    /// Deletes the virtual host, if it is still there (a test may have deleted it, or be
    /// unwinding from a failure: no second panic here).
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// Runs `rabbitmqctl`; its output.
///
/// # Panics
/// When it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (RabbitMQ is installed)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The voice node's bundled media (`DISCO_MEDIA_DIR`).
pub const MEDIA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/voice-node/media");

/// The simulator's voice CA in a file, for a voice node to trust through `SSL_CERT_FILE`
/// (songbird only dials `wss://`); removed when dropped.
#[derive(Debug)]
pub struct VoiceCa {
    path: std::path::PathBuf,
}

impl VoiceCa {
    /// Writes `sim`'s CA to a file named after `name` and this process.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn new(sim: &Simulator, name: &str) -> Self {
        let path = std::env::temp_dir().join(format!("disco-{name}-ca-{}.pem", std::process::id()));
        std::fs::write(&path, sim.voice_tls.ca_pem()).expect("the CA file is written");
        Self { path }
    }

    /// Where it is: the value of `SSL_CERT_FILE`.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

impl Drop for VoiceCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The simulator serving `world` on a free port, and its control API.
///
/// # Panics
/// When the simulator does not start.
pub async fn simulate(world: discord_sim::World) -> (Simulator, Control) {
    let config = SimConfig {
        world,
        ..SimConfig::default()
    };
    let sim = Simulator::start("127.0.0.1:0".parse().expect("an address"), config)
        .await
        .expect("the simulator starts");
    let control = Control::new(&sim.rest_url);
    (sim, control)
}

/// Closes the broker connections of the virtual host whose `column` (a `list_connections`
/// item: `user`, `client_properties`...) contains `matching`; how many there were. Only this
/// virtual host's: `list_connections` lists every connection on the broker, other tests' too.
///
/// # Panics
/// When `rabbitmqctl` fails.
pub fn close_connections(vhost: &Vhost, column: &str, matching: &str, reason: &str) -> usize {
    let listed = rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "vhost",
        column,
    ]);
    let mut closed = 0;
    for line in listed.lines() {
        let mut fields = line.split('\t');
        let (Some(connection), Some(host)) = (fields.next(), fields.next()) else {
            continue;
        };
        if host != vhost.name() || !fields.any(|f| f.contains(matching)) {
            continue;
        }
        rabbitmqctl(&["close_connection", connection, reason]);
        closed += 1;
    }
    closed
}

/// The simulator, a bus, and Disco's roles running on it, started the way `disco up` starts
/// them: through [`disco::run`], with settings parsed from flags, production defaults.
#[derive(Debug)]
pub struct Platform {
    /// The simulated Discord.
    pub sim: Simulator,
    /// Its control API.
    pub control: Control,
    /// The bus the roles share.
    pub bus: Bus,
    stop: CancellationToken,
    running: tokio::task::JoinHandle<Result<(), disco::Failure>>,
    _vhost: Option<Vhost>,
}

/// Settings a scenario may change.
#[derive(Clone, Debug)]
pub struct Options {
    /// The roles to run (every role by default, as `disco up`).
    pub roles: Vec<Role>,
    /// How long a voice command waits for a voice node.
    pub voice_timeout: Duration,
    /// The simulator's world.
    pub world: discord_sim::World,
    /// Have the simulator deliver interactions to the interactions ingress (signed webhooks)
    /// instead of over the gateway.
    pub webhook: bool,
}

impl Default for Options {
    fn default() -> Self {
        // Heartbeats every second, so shards know their latency soon after connecting; both
        // shards identify at once.
        let world = discord_sim::World {
            heartbeat_interval_ms: 1_000,
            max_concurrency: 2,
            ..discord_sim::World::default()
        };
        Self {
            roles: Role::START.to_vec(),
            voice_timeout: Duration::from_secs(1),
            world,
            webhook: false,
        }
    }
}

/// An address on loopback that was free a moment ago, for a listener Disco binds itself.
///
/// # Panics
/// When no port can be had.
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

impl Platform {
    /// Starts the simulator, registers the commands, and runs `options.roles` on `transport`
    /// through Disco's entry point; returns once `/readyz` says every role is ready.
    ///
    /// # Panics
    /// When something cannot start: a test has nothing to test then.
    pub async fn start(transport: Transport, options: Options) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let ingress = free_address();
        let metrics = free_address();
        let config = SimConfig {
            world: options.world.clone(),
            interactions_url: options
                .webhook
                .then(|| format!("http://{ingress}/interactions")),
            voice_tls: None,
        };
        let sim = Simulator::start("127.0.0.1:0".parse().expect("an address"), config)
            .await
            .expect("the simulator starts");
        let control = Control::new(&sim.rest_url);
        let (bus, vhost) = match transport {
            Transport::Memory => (Bus::in_memory(Limits::default()), None),
            Transport::RabbitMq => {
                let vhost = Vhost::new("e2e");
                let bus = Bus::rabbitmq(
                    RabbitConfig::new(Secret::new(vhost.url()), "e2e").expect("a valid URL"),
                )
                .await
                .expect("RabbitMQ answers");
                (bus, Some(vhost))
            }
        };
        let world = &sim.world;
        let media = concat!(env!("CARGO_MANIFEST_DIR"), "/../crates/voice-node/media");
        let settings = disco::Settings::from_flags([
            "disco".to_owned(),
            "--token".to_owned(),
            world.token.clone(),
            "--application-id".to_owned(),
            world.application_id.to_string(),
            "--public-key".to_owned(),
            sim.public_key.clone(),
            "--discord-api-url".to_owned(),
            sim.rest_url.clone(),
            "--discord-gateway-url".to_owned(),
            sim.gateway_url.clone(),
            "--shard-total".to_owned(),
            world.recommended_shards.to_string(),
            "--metrics-listen".to_owned(),
            metrics.to_string(),
            "--ingress-listen".to_owned(),
            ingress.to_string(),
            "--voice-timeout-ms".to_owned(),
            options.voice_timeout.as_millis().to_string(),
            "--media-dir".to_owned(),
            media.to_owned(),
        ])
        .expect("the platform's settings parse");
        let report = command_worker::sync(
            &command_worker::Commands::standard(),
            settings.discord.rest().expect("the platform's settings"),
            world.application_id,
            None,
            false,
        )
        .await
        .expect("commands sync");
        assert!(report.applied);
        let stop = CancellationToken::new();
        let running = tokio::spawn({
            let roles = options.roles.clone();
            let bus = bus.clone();
            let stop = stop.clone();
            async move { disco::run(&roles, &bus, &settings, stop).await }
        });
        until_ready(metrics).await;
        Self {
            sim,
            control,
            bus,
            stop,
            running,
            _vhost: vhost,
        }
    }

    /// The first guild's general channel and its first member.
    pub fn general(&self) -> (u64, u64) {
        let guild = &self.sim.world.guilds[0];
        (guild.channels[0].id, guild.members[0].id)
    }

    /// A member says `text` in the general channel; the bot's reply to it.
    ///
    /// # Panics
    /// When no reply comes in time.
    pub async fn say(&self, text: &str) -> Value {
        let (channel, member) = self.general();
        reply_to(&self.control, channel, member, text).await
    }

    /// A member uses a slash command in the general channel; the interaction's id.
    ///
    /// # Panics
    /// When the simulator refuses it.
    pub async fn slash(&self, name: &str, options: Value) -> String {
        let (channel, member) = self.general();
        let created = self
            .control
            .command(channel, member, name, options)
            .await
            .expect("the simulator takes it");
        created["id"].as_str().expect("an id").to_owned()
    }

    /// The first thing the bot sent that `wanted` accepts.
    ///
    /// # Panics
    /// When nothing matches in time.
    pub async fn until_sent(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        until_sent(&self.control, wanted).await
    }

    /// Everything the bot sent about interaction `id`, in order.
    ///
    /// # Panics
    /// When the simulator does not answer.
    pub async fn sent_for_interaction(&self, id: &str) -> Vec<Value> {
        self.control
            .get(&format!("/sent?interaction_id={id}"))
            .await
            .expect("the simulator answers")
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Stops the roles (in Disco's stop order) and checks the bot broke no Discord rule.
    ///
    /// # Panics
    /// When a role failed or a rule was broken.
    pub async fn stop(self) {
        self.stop.cancel();
        self.running
            .await
            .expect("the roles did not panic")
            .expect("the roles stopped cleanly");
        let violations = self
            .control
            .violations()
            .await
            .expect("the simulator answers");
        assert!(
            violations.is_empty(),
            "the bot broke Discord's rules: {violations:?}"
        );
        self.bus.close().await;
        self.sim.stop().await.expect("the simulator stops");
    }
}

/// `member` says `text` in `channel`; the bot's reply to that message.
///
/// # Panics
/// When the simulator refuses the message or no reply comes within [`PATIENCE`].
pub async fn reply_to(control: &Control, channel: u64, member: u64, text: &str) -> Value {
    let message = control
        .say(channel, member, text)
        .await
        .expect("the simulator takes it");
    let id = message["id"].as_str().expect("an id").to_owned();
    until_sent(control, |entry| {
        entry["kind"] == "message" && entry["nonce"] == id.as_str()
    })
    .await
}

/// The first thing the bot sent that `wanted` accepts.
///
/// # Panics
/// When nothing matches within [`PATIENCE`].
pub async fn until_sent(control: &Control, wanted: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let sent = control.sent().await.expect("the simulator answers");
            if let Some(entry) = sent.into_iter().find(|e| wanted(e)) {
                return entry;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .expect("the bot answered in time")
}

/// Waits until `count` shards are connected to the simulator with a session.
///
/// # Panics
/// When they are not within [`PATIENCE`] (three times over, for processes starting up).
pub async fn until_shards_connected(control: &Control, count: usize) {
    tokio::time::timeout(PATIENCE * 3, async {
        loop {
            let state = control.get("/shards").await.expect("the simulator answers");
            let connected = state["shards"].as_array().map_or(0, |shards| {
                shards
                    .iter()
                    .filter(|s| s["connected"] == true && s["session_id"].is_string())
                    .count()
            });
            if connected == count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("shards connected in time");
}

/// Waits until RabbitMQ has every queue in `names` in the virtual host (consumers declare
/// their queues when they start).
///
/// # Panics
/// When they are not there within [`PATIENCE`] (three times over, for processes starting up).
pub async fn until_queues(vhost: &Vhost, names: &[&str]) {
    tokio::time::timeout(PATIENCE * 3, async {
        loop {
            let queues = rabbitmqctl(&["list_queues", "-q", "-p", vhost.name(), "name"]);
            if names.iter().all(|n| queues.lines().any(|l| l.trim() == *n)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the queues were declared in time");
}

/// Dispatches `count` messages from the first member of the first guild in its general
/// channel: `content` followed by ` #n`.
///
/// # Panics
/// When the simulator refuses.
pub async fn say_many(sim: &Simulator, content: &str, count: usize) {
    let guild = &sim.world.guilds[0];
    let control = Control::new(&sim.rest_url);
    say_many_in(
        &control,
        guild.channels[0].id,
        guild.members[0].id,
        content,
        count,
    )
    .await;
}

/// Dispatches `count` messages from `member` in `channel`: `content` followed by ` #n`.
///
/// # Panics
/// When the simulator refuses.
pub async fn say_many_in(
    control: &Control,
    channel: u64,
    member: u64,
    content: &str,
    count: usize,
) {
    bulk(control, channel, member, content, count, true).await;
}

/// `count` `~~ping`s from `member` in `channel`, exactly as a member types the command.
///
/// # Panics
/// When the simulator refuses.
pub async fn pings_in(control: &Control, channel: u64, member: u64, count: usize) {
    bulk(control, channel, member, "~~ping", count, false).await;
}

async fn bulk(
    control: &Control,
    channel: u64,
    member: u64,
    content: &str,
    count: usize,
    numbered: bool,
) {
    control
        .post(
            "/messages/bulk",
            &serde_json::json!({
                "channel_id": channel.to_string(),
                "author_id": member.to_string(),
                "content": content,
                "count": count,
                "numbered": numbered,
            }),
        )
        .await
        .expect("the simulator takes them");
}

/// `count` `~~ping`s from a member, round the first channel of every guild: `rate` a second,
/// or all at once when `rate` is 0. Returns once the last is dispatched. Exactly `~~ping`, as
/// a member types it (`~~ping #7` is a usage error to Disco, a pong to discord.py).
///
/// # Panics
/// When the simulator refuses.
pub async fn pings(sim: &Simulator, control: &Control, count: usize, rate: u64) {
    let member = sim.world.guilds[0].members[0].id;
    let channels: Vec<u64> = sim.world.guilds.iter().map(|g| g.channels[0].id).collect();
    if rate == 0 {
        for (n, channel) in channels.iter().enumerate() {
            let share = count / channels.len() + usize::from(n < count % channels.len());
            pings_in(control, *channel, member, share).await;
        }
        return;
    }
    let period = Duration::from_secs(1) / u32::try_from(rate).unwrap_or(u32::MAX);
    let mut tick = tokio::time::interval(period);
    for n in 0..count {
        tick.tick().await;
        pings_in(control, channels[n % channels.len()], member, 1).await;
    }
}

/// Starts `disco rest-proxy` (the binary at `disco`, with `extra` arguments) listening on
/// `listen`, its admin endpoints on `admin`; returns once it is ready. Killed when dropped.
///
/// # Panics
/// When it does not start or become ready.
pub async fn start_rest_proxy(
    disco: &std::path::Path,
    sim: &Simulator,
    vhost: &Vhost,
    (listen, admin): (std::net::SocketAddr, std::net::SocketAddr),
    extra: &[&str],
) -> tokio::process::Child {
    let (listen_text, admin_text) = (listen.to_string(), admin.to_string());
    let args = [
        &[
            "rest-proxy",
            "--rest-proxy-listen",
            &listen_text,
            "--metrics-listen",
            &admin_text,
        ][..],
        extra,
    ]
    .concat();
    let proxy = spawn_disco(disco, &args, sim, vhost);
    until_ready(admin).await;
    proxy
}

/// Starts `disco` with `args` and `env` (beside [`disco_command`]'s settings), its admin
/// endpoints on a free address; returns it and that address once it is ready. Killed when
/// dropped.
///
/// # Panics
/// When it does not start or become ready.
pub async fn start_role(
    disco: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
    sim: &Simulator,
    vhost: &Vhost,
) -> (tokio::process::Child, std::net::SocketAddr) {
    let admin = free_address();
    let mut command = disco_command(disco, args, sim, vhost);
    command.env("DISCO_METRICS_LISTEN", admin.to_string());
    for (name, value) in env {
        command.env(name, value);
    }
    let child = command.spawn().expect("disco starts");
    until_ready(admin).await;
    (child, admin)
}

/// What Discord's webhook call got back for an interaction.
#[derive(Debug)]
pub struct WebhookAnswer {
    /// The interaction's id.
    pub id: String,
    /// The response body, parsed.
    pub body: Value,
    /// How long the endpoint took to answer.
    pub elapsed_ms: u64,
}

/// `member` runs the slash command `name` (no options) in `channel`; the simulator delivers
/// it to the interactions webhook.
///
/// # Panics
/// When the simulator refuses it, or the webhook does not answer 200 with JSON.
pub async fn slash_through_webhook(
    control: &Control,
    channel: u64,
    member: u64,
    name: &str,
) -> WebhookAnswer {
    let created = control
        .command(channel, member, name, Value::Array(Vec::new()))
        .await
        .expect("the simulator takes the command");
    let webhook = &created["webhook"];
    assert_eq!(webhook["status"], 200, "{created}");
    WebhookAnswer {
        id: created["id"].as_str().expect("an id").to_owned(),
        body: serde_json::from_str(webhook["body"].as_str().unwrap_or_default())
            .expect("a JSON answer"),
        elapsed_ms: webhook["elapsed_ms"].as_u64().expect("a time"),
    }
}

/// Every message the bot sent, in order.
///
/// # Panics
/// When the simulator does not answer.
pub async fn messages_sent(control: &Control) -> Vec<Value> {
    control
        .sent()
        .await
        .expect("the simulator answers")
        .into_iter()
        .filter(|e| e["kind"] == "message")
        .collect()
}

/// [`pings`], then [`until_sent_or_quiet`] (10 s), saying how many got no reply: how long
/// from the first ping to the last reply.
///
/// # Panics
/// When the simulator refuses or does not answer, or a reply is not a pong.
pub async fn pings_answered(sim: &Simulator, control: &Control, count: usize, rate: u64) -> f64 {
    let started = std::time::Instant::now();
    pings(sim, control, count, rate).await;
    let (sent, last) = until_sent_or_quiet(control, count, Duration::from_secs(10)).await;
    if sent.len() < count {
        println!(
            "    {} of {count} commands got no reply",
            count - sent.len()
        );
    }
    let not_pong = sent
        .iter()
        .find(|m| !m["content"].as_str().is_some_and(|c| c.starts_with("pong")));
    assert!(
        not_pong.is_none(),
        "every reply is a pong, not {not_pong:?}"
    );
    last.duration_since(started).as_secs_f64()
}

/// Every message the bot sent, once there are `count`, or once none has come for `quiet` (a
/// client that gives up on a request after some 429s never sends it); and when the last came.
///
/// # Panics
/// When the simulator does not answer.
pub async fn until_sent_or_quiet(
    control: &Control,
    count: usize,
    quiet: Duration,
) -> (Vec<Value>, std::time::Instant) {
    let mut last = std::time::Instant::now();
    let mut sent = Vec::new();
    while sent.len() < count && last.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = messages_sent(control).await;
        if now.len() > sent.len() {
            (sent, last) = (now, std::time::Instant::now());
        }
    }
    (sent, last)
}

/// Lifts the world's message rate limits out of the way, for a test about delivery rather
/// than pacing (Discord's limits would stretch thousands of replies over minutes).
pub fn unthrottled(world: &mut discord_sim::World) {
    let generous = discord_sim::world::Limit {
        limit: 100_000,
        window_ms: 1_000,
    };
    world.rate_limits.messages_per_channel = generous;
    world.rate_limits.global = generous;
}

/// The simulator with `world` as `change` makes it, delivering interactions to the webhook at
/// `ingress`, with the standard slash commands registered; and its control API.
///
/// # Panics
/// When the simulator does not start or refuses the commands.
pub async fn webhook_simulator(
    ingress: std::net::SocketAddr,
    change: impl FnOnce(&mut discord_sim::World),
) -> (Simulator, Control) {
    let mut config = discord_sim::Config {
        interactions_url: Some(format!("http://{ingress}/interactions")),
        ..discord_sim::Config::default()
    };
    change(&mut config.world);
    let sim = Simulator::start("127.0.0.1:0".parse().expect("an address"), config)
        .await
        .expect("the simulator starts");
    command_worker::sync(
        &command_worker::Commands::standard(),
        sim.bot_client(),
        sim.world.application_id,
        None,
        false,
    )
    .await
    .expect("the commands are registered");
    let control = Control::new(&sim.rest_url);
    (sim, control)
}

/// Waits until every command in `ids` (a message's id, the nonce of its reply; or an
/// interaction's id) has its answer, then asserts none was answered twice.
///
/// # Panics
/// When some are not answered within `patience` (saying how many), or one is answered twice.
pub async fn until_answered_once(control: &Control, ids: &[String], patience: Duration) {
    let mut answered = std::collections::BTreeMap::new();
    let all = tokio::time::timeout(patience, async {
        loop {
            answered.clear();
            for entry in control.sent().await.expect("the simulator answers") {
                let id = match entry["kind"].as_str() {
                    Some("message") => entry["nonce"].as_str(),
                    Some("interaction_response") => entry["interaction_id"].as_str(),
                    _ => None,
                };
                if let Some(id) = id {
                    *answered.entry(id.to_owned()).or_insert(0_u32) += 1;
                }
            }
            if ids.iter().all(|id| answered.contains_key(id)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await;
    let missing = ids.iter().filter(|id| !answered.contains_key(*id)).count();
    assert!(
        all.is_ok(),
        "{missing} of {} commands were never answered",
        ids.len()
    );
    let twice: Vec<_> = answered.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
}

/// Waits until the simulator's voice stats of `guild` (`GET /_sim/voice/{guild}`) satisfy
/// `wanted`, and returns them.
///
/// # Panics
/// When they do not within `patience`, naming `what` with the last stats seen.
pub async fn until_voice(
    control: &Control,
    guild: u64,
    patience: Duration,
    what: &str,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    let mut last = Value::Null;
    let found = tokio::time::timeout(patience, async {
        loop {
            let stats = control.voice_stats(guild).await.expect("voice stats");
            if wanted(&stats) {
                return stats;
            }
            last = stats;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what}: {last}"))
}

/// Starts `processes` `disco gateway-shard` processes sharing `total` shards in buckets, with
/// `extra` arguments; killed when dropped.
pub fn spawn_gateways(
    disco: &std::path::Path,
    sim: &Simulator,
    vhost: &Vhost,
    total: u32,
    processes: u32,
    extra: &[&str],
) -> Vec<tokio::process::Child> {
    let (total, buckets) = (total.to_string(), processes.to_string());
    (0..processes)
        .map(|bucket| {
            let bucket = bucket.to_string();
            let args = [
                &[
                    "gateway-shard",
                    "--shard-total",
                    &total,
                    "--buckets",
                    &buckets,
                    "--bucket",
                    &bucket,
                ][..],
                extra,
            ]
            .concat();
            spawn_disco(disco, &args, sim, vhost)
        })
        .collect()
}

/// Starts `disco <args>` (the binary at `disco`) pointed at the simulator and at the virtual
/// host, with nothing else from the environment; killed when dropped.
///
/// # Panics
/// When the binary cannot start.
pub fn spawn_disco(
    disco: &std::path::Path,
    args: &[&str],
    sim: &Simulator,
    vhost: &Vhost,
) -> tokio::process::Child {
    disco_command(disco, args, sim, vhost)
        .spawn()
        .expect("disco starts")
}

/// Sends `signal` (`-TERM`, `-KILL`) to `child` with `kill`, as Kubernetes stops a pod, and
/// returns its exit status once it has exited.
///
/// # Panics
/// When the signal cannot be sent, or `child` is still running after `patience`.
pub async fn stop_with(
    child: &mut tokio::process::Child,
    signal: &str,
    patience: Duration,
) -> std::process::ExitStatus {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args([signal, &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "kill {signal} {pid}: {sent}");
    tokio::time::timeout(patience, child.wait())
        .await
        .unwrap_or_else(|_| panic!("exits within {patience:?} of kill {signal}"))
        .expect("waits for the process")
}

/// The command [`spawn_disco`] runs, to add settings to before spawning it. Only `PATH` is
/// kept from the environment (the voice node finds espeak-ng on it).
pub fn disco_command(
    disco: &std::path::Path,
    args: &[&str],
    sim: &Simulator,
    vhost: &Vhost,
) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(disco);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("DISCORD_TOKEN", &sim.world.token)
        .env("DISCO_APPLICATION_ID", sim.world.application_id.to_string())
        .env("DISCO_DISCORD_API_URL", &sim.rest_url)
        .env("DISCO_DISCORD_GATEWAY_URL", &sim.gateway_url)
        .env("DISCO_AMQP_URL", vhost.url())
        .env("DISCO_METRICS_LISTEN", "127.0.0.1:0")
        .env("DISCO_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// The release `disco` beside a benchmark's executable, or `None` (with a line saying how to
/// build it) when it is not built: benchmarks measure the binary ops run. `DISCO_BIN` names
/// another, such as the PGO build of `scripts/build-release`.
///
/// # Panics
/// When `DISCO_BIN` names no file: a benchmark of the wrong binary would mislead.
pub fn release_disco(what: &str) -> Option<std::path::PathBuf> {
    if let Some(named) = std::env::var_os("DISCO_BIN") {
        let named = std::path::PathBuf::from(named);
        assert!(
            named.is_file(),
            "DISCO_BIN={} is not a file",
            named.display()
        );
        println!("{what}: {}", named.display());
        return Some(named);
    }
    let disco = std::env::current_exe()
        .ok()?
        .parent()?
        .parent()?
        .join("disco");
    if disco.exists() {
        return Some(disco);
    }
    println!("{what}: skipped, build the release binary first (cargo build --release --bin disco)");
    None
}

/// The discord.py bot of the original request (`tests/benches/python/bot.py`) against `sim`,
/// once it is READY; `None` (with a line saying why) when discord.py cannot be installed.
/// Benchmarks compare Disco's costs with it in the same run. Killed when dropped.
///
/// # Panics
/// When the bot starts but does not become ready.
pub async fn python_bot(sim: &Simulator) -> Option<tokio::process::Child> {
    use tokio::io::AsyncBufReadExt;
    let python = bench_python()?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut bot = tokio::process::Command::new(python)
        .arg(root.join("tests/benches/python/bot.py"))
        .env_clear()
        .env("DISCORD_TOKEN", &sim.world.token)
        .env("DISCORD_API_URL", &sim.rest_url)
        .env("DISCORD_GATEWAY_URL", &sim.gateway_url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    // It prints its name and id when READY, as the post's bot does.
    let mut lines = tokio::io::BufReader::new(bot.stdout.take().expect("piped")).lines();
    tokio::time::timeout(PATIENCE, lines.next_line())
        .await
        .expect("the discord.py bot is ready in time")
        .expect("its output")
        .expect("a line");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(bot)
}

/// The Flask + PyNaCl interactions endpoint (`tests/benches/python/webhook.py`, under
/// gunicorn with a process per core) on `address`, verifying with `public_key`, once it
/// accepts connections; `None` (with a line saying why) when it cannot be installed.
/// Killed when dropped.
///
/// # Panics
/// When it starts but does not listen.
pub async fn python_webhook(
    address: std::net::SocketAddr,
    public_key: &str,
) -> Option<tokio::process::Child> {
    let python = bench_python()?;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let flask = tokio::process::Command::new(python)
        .args([
            "-m",
            "gunicorn",
            "--log-level",
            "warning",
            "-k",
            "gthread",
            "--threads",
            "16",
        ])
        .arg("-w")
        .arg(cores.to_string())
        .arg("-b")
        .arg(address.to_string())
        .arg("--chdir")
        .arg(root.join("tests/benches/python"))
        .arg("webhook:app")
        .env_clear()
        .env("DISCORD_PUBLIC_KEY", public_key)
        .kill_on_drop(true)
        .spawn()
        .expect("python starts");
    tokio::time::timeout(PATIENCE, async {
        while tokio::net::TcpStream::connect(address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the Flask endpoint listens in time");
    Some(flask)
}

/// A Python with the benchmarks' packages (`scripts/bench-python` installs them), or `None`
/// with a line saying it could not.
fn bench_python() -> Option<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let output = std::process::Command::new(root.join("scripts/bench-python"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .ok()
        .filter(|out| out.status.success());
    if output.is_none() {
        println!("python: skipped, scripts/bench-python could not install its packages");
    }
    Some(String::from_utf8_lossy(&output?.stdout).trim().to_owned())
}

/// What a load on an interactions webhook measured.
#[derive(Debug)]
pub struct Load {
    /// Requests answered 200, per second.
    pub rate: f64,
    /// Latency percentiles, in milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Requests answered.
    pub answered: usize,
}

/// Discord's webhook calls as a load: `connections` keep-alive connections to
/// `POST {address}/interactions` for `length`, each request `body(n)` (n counts every request
/// sent) signed with `key` and a fresh timestamp, as Discord signs them; a connection sends
/// its next request once the last is answered, at most `rate` a second in all if given.
///
/// # Panics
/// When the endpoint answers anything but 200, or closes a connection.
pub async fn webhook_load(
    address: std::net::SocketAddr,
    key: &ed25519_dalek::SigningKey,
    body: impl Fn(u64) -> Vec<u8> + Send + Sync + 'static,
    connections: usize,
    length: Duration,
    rate: Option<f64>,
) -> Load {
    use ed25519_dalek::Signer;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let started = std::time::Instant::now();
    let (key, body, sent) = (
        Arc::new(key.clone()),
        Arc::new(body),
        Arc::new(AtomicU64::new(0)),
    );
    let mut clients = tokio::task::JoinSet::new();
    for n in 0..connections {
        let (key, body, sent) = (Arc::clone(&key), Arc::clone(&body), Arc::clone(&sent));
        // With a target rate, each connection sends at its share of it.
        let interval = rate.map(|r| Duration::from_secs_f64(connections as f64 / r));
        clients.spawn(async move {
            let offset =
                interval.map_or(Duration::ZERO, |i| i.mul_f64(n as f64 / connections as f64));
            tokio::time::sleep(offset).await;
            let stream = tokio::net::TcpStream::connect(address)
                .await
                .expect("connects");
            stream.set_nodelay(true).expect("no delay");
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let mut latencies = Vec::new();
            let mut next = tokio::time::Instant::now();
            while started.elapsed() < length {
                if let Some(interval) = interval {
                    tokio::time::sleep_until(next).await;
                    next += interval;
                }
                let body = body(sent.fetch_add(1, Ordering::Relaxed));
                let timestamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .expect("after 1970")
                    .as_secs()
                    .to_string();
                let signature =
                    hex::encode(key.sign(&[timestamp.as_bytes(), &body].concat()).to_bytes());
                let request = format!(
                    "POST /interactions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                     x-signature-ed25519: {signature}\r\nx-signature-timestamp: {timestamp}\r\n\
                     content-length: {}\r\n\r\n",
                    body.len()
                );
                let at = std::time::Instant::now();
                write
                    .write_all(&[request.as_bytes(), &body].concat())
                    .await
                    .expect("sent");
                let (mut length, mut status) = (0, String::new());
                loop {
                    let mut line = String::new();
                    assert!(read.read_line(&mut line).await.expect("read") > 0, "closed");
                    if status.is_empty() {
                        status.clone_from(&line);
                    }
                    if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length: ")
                    {
                        length = value.trim().parse().expect("a length");
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut response = vec![0; length];
                read.read_exact(&mut response).await.expect("a body");
                assert!(status.starts_with("HTTP/1.1 200"), "{status}");
                latencies.push(at.elapsed());
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(done) = clients.join_next().await {
        latencies.extend(done.expect("a client"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p) as usize].as_secs_f64() * 1000.0;
    Load {
        rate: latencies.len() as f64 / elapsed,
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        answered: latencies.len(),
    }
}

/// What benchmarks read of processes, from `/proc`.
pub mod measure {
    /// A benchmark's setting: the environment variable `name` if it holds a `T`, else
    /// `default`.
    pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(default)
    }

    /// CPU seconds (user + system) a process has used.
    pub fn cpu_seconds(pid: u32) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
        });
        ticks / 100.0
    }

    /// How many times the threads of a process alive now went to sleep or were put off the
    /// CPU (context switches): a paced command costs about one wake-up per switch.
    pub fn context_switches(pid: u32) -> u64 {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return 0;
        };
        tasks
            .flatten()
            .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
            .map(|status| {
                status
                    .lines()
                    .filter(|line| line.contains("ctxt_switches:"))
                    .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
                    .sum::<u64>()
            })
            .sum()
    }

    /// From each command's dispatch to its reply reaching the simulator's REST API, in ms
    /// less Discord's `latency`, sorted. A reply's nonce is its command's id, a snowflake
    /// stamped with when the simulator dispatched it.
    pub fn reply_latencies_ms(sent: &[serde_json::Value], latency: u64) -> Vec<u64> {
        const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
        let mut latencies: Vec<u64> = sent
            .iter()
            .filter_map(|reply| {
                let nonce: u64 = reply["nonce"].as_str()?.parse().ok()?;
                let dispatched = (nonce >> 22) + DISCORD_EPOCH_MS;
                Some(
                    reply["at_ms"]
                        .as_u64()?
                        .saturating_sub(dispatched + latency),
                )
            })
            .collect();
        latencies.sort_unstable();
        latencies
    }

    /// The `p` quantile (0 to 1) of sorted values: `quantile(v, 1.0)` is the largest.
    pub fn quantile(sorted: &[u64], p: f64) -> u64 {
        sorted[((sorted.len() as f64 - 1.0) * p) as usize]
    }

    /// RabbitMQ's process, if it runs on this machine.
    pub fn broker_pid() -> Option<u32> {
        let output = std::process::Command::new("pgrep")
            .args(["-f", "beam.smp.*rabbit"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// A process's resident memory, in KiB.
    pub fn rss_kib(pid: u32) -> u64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

/// Waits until Disco's `/readyz` at `admin` answers 200: every role it runs is ready.
///
/// # Panics
/// When it does not within [`PATIENCE`].
pub async fn until_ready(admin: std::net::SocketAddr) {
    tokio::time::timeout(PATIENCE, async {
        while !is_ready(admin).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("ready in time");
}

/// Whether Disco's `/readyz` at `admin` answers 200.
pub async fn is_ready(admin: std::net::SocketAddr) -> bool {
    admin_get(admin, "/readyz")
        .await
        .is_some_and(|response| response.starts_with("HTTP/1.1 200"))
}

/// The response to `GET <path>` from Disco's admin endpoints at `admin`, whole.
pub async fn admin_get(admin: std::net::SocketAddr, path: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: disco\r\nconnection: close\r\n\r\n");
    let mut response = String::new();
    stream.write_all(request.as_bytes()).await.ok()?;
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}

/// The sum of every sample of metric `name` whose labels contain each of `labels`
/// (`reason="forbidden"`), from `/metrics` at `admin`; 0 when there is none.
pub async fn metric(admin: std::net::SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let text = admin_get(admin, "/metrics").await.unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        // An empty float sum is -0.0, which prints as "-0.00".
        .fold(0.0, |sum, value| sum + value)
}
