//! The gateway against the simulator, on the in-memory bus: what it publishes, how it resumes
//! after a restart, and how it handles Discord's reconnects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use bus::{Bus, Consumer, Limits, Subscription};
use disco_proto::v1::GatewayEvent;
use disco_proto::{Secret, route};
use discord_sim::{Config as SimConfig, Control, Simulator};
use gateway_shard::{Config, GatewayShard, ShardRange};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const PATIENCE: Duration = Duration::from_secs(15);

struct Running {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), gateway_shard::Error>>,
    ready: Box<dyn Fn() -> bool + Send + Sync>,
}

impl Running {
    async fn until_ready(&self) {
        tokio::time::timeout(PATIENCE, async {
            while !(self.ready)() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("every shard ready in time");
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn config(sim: &Simulator, shards: ShardRange) -> Config {
    let mut config = Config::new(Secret::new(sim.world.token.clone()), shards);
    config.gateway_url = Some(sim.gateway_url.clone());
    config.publish_buffer = 64;
    config
}

fn start(sim: &Simulator, bus: &Bus, shards: ShardRange) -> Running {
    // RUST_LOG=gateway_shard=debug,twilight_gateway=debug shows what the shards do.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let gateway = GatewayShard::new(
        config(sim, shards),
        sim.bot_client(),
        bus.clone(),
        &mut Registry::default(),
    );
    let ready = Box::new(gateway.readiness());
    let stop = CancellationToken::new();
    let task = tokio::spawn(gateway.run(stop.clone()));
    Running { stop, task, ready }
}

/// A simulator, its control API, an in-memory bus, and a consumer of every MESSAGE_CREATE.
async fn setup() -> (Simulator, Control, Bus, Consumer) {
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let bus = Bus::in_memory(Limits::default());
    let messages = bus
        .subscribe(Subscription::shared("test.messages").bind(route::every_shard("MESSAGE_CREATE")))
        .await
        .unwrap();
    (sim, control, bus, messages)
}

async fn next_event(consumer: &mut Consumer) -> GatewayEvent {
    let delivery = tokio::time::timeout(PATIENCE, consumer.next())
        .await
        .expect("in time")
        .expect("open");
    let event = disco_proto::decode(&delivery.message.body).unwrap();
    delivery.ack().await.unwrap();
    event
}

async fn shards(control: &Control) -> Vec<Value> {
    control.get("/shards").await.unwrap()["shards"]
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn dispatches_are_published_as_discord_sent_them() {
    let (sim, control, bus, mut messages) = setup().await;
    let gateway = start(&sim, &bus, ShardRange::new(0, 2, 2).unwrap());
    gateway.until_ready().await;

    let guild = &sim.world.guilds[1];
    let sent = control
        .say(guild.channels[0].id, guild.members[0].id, "~~ping")
        .await
        .unwrap();
    let event = next_event(&mut messages).await;
    assert_eq!(event.event_name, "MESSAGE_CREATE");
    assert_eq!(event.shard_id, 1, "guild 1 is on shard 1 of 2");
    assert_eq!(event.guild_id, Some(guild.id));
    let payload: Value = serde_json::from_slice(&event.payload).unwrap();
    assert_eq!(payload, sent, "the payload is Discord's `d`, unchanged");
    assert!(event.heartbeat_latency_ms.is_none() || event.heartbeat_latency_ms < Some(1_000));
    gateway.stop().await;
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_gateway_resumes_and_publishes_what_it_missed() {
    let (sim, control, bus, mut messages) = setup().await;
    let range = ShardRange::new(0, 1, 1).unwrap();
    let guild = &sim.world.guilds[0];
    let (channel, alice) = (guild.channels[0].id, guild.members[0].id);

    let first = start(&sim, &bus, range);
    first.until_ready().await;
    control.say(channel, alice, "before").await.unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&next_event(&mut messages).await.payload).unwrap()["content"],
        "before"
    );
    first.stop().await;

    // While no gateway runs, Discord keeps the session's events for RESUME.
    control.say(channel, alice, "while down").await.unwrap();
    let second = start(&sim, &bus, range);
    second.until_ready().await;
    let missed = next_event(&mut messages).await;
    assert_eq!(
        serde_json::from_slice::<Value>(&missed.payload).unwrap()["content"],
        "while down"
    );
    let log = &shards(&control).await[0];
    assert_eq!(
        log["identifies"].as_array().unwrap().len(),
        1,
        "resumed, not identified: {log}"
    );
    assert_eq!(log["resumes"].as_array().unwrap().len(), 1, "{log}");
    second.stop().await;
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn disconnects_reconnects_and_invalid_sessions_are_handled() {
    let (sim, control, bus, mut messages) = setup().await;
    let gateway = start(&sim, &bus, ShardRange::new(0, 1, 1).unwrap());
    gateway.until_ready().await;
    let guild = &sim.world.guilds[0];
    let say = |text: &'static str| {
        let control = control.clone();
        let (channel, alice) = (guild.channels[0].id, guild.members[0].id);
        async move { control.say(channel, alice, text).await.unwrap() }
    };

    for (action, body, text) in [
        (
            "/shards/0/disconnect",
            json!({"code": 4000, "resume": true}),
            "after a disconnect",
        ),
        ("/shards/0/reconnect", json!({}), "after op 7"),
        (
            "/shards/0/invalidate",
            json!({"resumable": false}),
            "after invalid session",
        ),
    ] {
        control.post(action, &body).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        gateway.until_ready().await;
        say(text).await;
        let event = next_event(&mut messages).await;
        assert_eq!(
            serde_json::from_slice::<Value>(&event.payload).unwrap()["content"],
            text
        );
    }
    let log = &shards(&control).await[0];
    assert_eq!(
        log["resumes"].as_array().unwrap().len(),
        2,
        "disconnect and op 7 resume: {log}"
    );
    assert_eq!(
        log["identifies"].as_array().unwrap().len(),
        2,
        "an invalid session identifies again: {log}"
    );
    gateway.stop().await;
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn shard_commands_are_sent_and_bad_ones_dead_lettered() {
    use bus::{Destination, Message};
    use disco_proto::Versioned;
    use disco_proto::v1::{ShardCommand, VoiceStateUpdate, shard_command};

    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), SimConfig::default())
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let bus = Bus::in_memory(Limits::default());
    let mut voice = bus
        .subscribe(
            Subscription::shared("test.voice").bind(route::every_shard("VOICE_SERVER_UPDATE")),
        )
        .await
        .unwrap();
    let mut dead = bus
        .subscribe(Subscription::shared("test.dead").bind_dead_letters(route::shard_queue(0, 1)))
        .await
        .unwrap();
    let gateway = start(&sim, &bus, ShardRange::new(0, 1, 1).unwrap());
    gateway.until_ready().await;

    let guild = &sim.world.guilds[0];
    let join = ShardCommand {
        shard_id: 0,
        command: Some(shard_command::Command::VoiceStateUpdate(VoiceStateUpdate {
            guild_id: guild.id,
            channel_id: Some(guild.channels[2].id),
            self_deaf: true,
            ..Default::default()
        })),
        ..Default::default()
    };
    bus.publish(
        Destination::Queue(route::shard_queue(0, 1)),
        Message::new(join.encode_current()),
    )
    .await
    .unwrap();
    // Discord answers op 4 with VOICE_SERVER_UPDATE, which the gateway publishes.
    let server = next_event(&mut voice).await;
    assert_eq!(server.guild_id, Some(guild.id));

    bus.publish(
        Destination::Queue(route::shard_queue(0, 1)),
        Message::new(&b"garbage"[..]),
    )
    .await
    .unwrap();
    let letter = tokio::time::timeout(PATIENCE, dead.next())
        .await
        .unwrap()
        .unwrap();
    assert!(letter.message.headers[bus::DEAD_REASON_HEADER].starts_with("not a ShardCommand"));
    letter.ack().await.unwrap();
    gateway.stop().await;
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_spent_session_budget_refuses_to_start() {
    let mut config = SimConfig::default();
    config.world.session_start_limit = 1;
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let bus = Bus::in_memory(Limits::default());
    let _ = rustls::crypto::ring::default_provider().install_default();
    let gateway = GatewayShard::new(
        config_for_two(&sim),
        sim.bot_client(),
        bus,
        &mut Registry::default(),
    );
    let error = gateway
        .run(CancellationToken::new())
        .await
        .expect_err("two shards, one identify left");
    assert!(
        error
            .to_string()
            .contains("1 identifies left, 2 shards need one"),
        "{error}"
    );
    sim.stop().await.unwrap();
}

fn config_for_two(sim: &Simulator) -> Config {
    config(sim, ShardRange::new(0, 2, 2).unwrap())
}

/// Discord closes a shard for good (4004: the token is wrong): the gateway stops with the
/// reason, instead of running on "ready" without it, and readiness drops.
#[tokio::test]
async fn a_fatal_close_stops_the_gateway_with_the_reason() {
    let (sim, control, bus, _messages) = setup().await;
    let running = start(&sim, &bus, ShardRange::new(0, 1, 1).unwrap());
    running.until_ready().await;
    control
        .post(
            "/shards/0/disconnect",
            &serde_json::json!({"code": 4004, "resume": false}),
        )
        .await
        .unwrap();
    let error = tokio::time::timeout(PATIENCE, running.task)
        .await
        .expect("the gateway stops")
        .unwrap()
        .expect_err("a fatal close is an error");
    assert!(
        matches!(
            error,
            gateway_shard::Error::FatallyClosed {
                shard: 0,
                code: Some(4004)
            }
        ),
        "{error}"
    );
    assert!(!(running.ready)(), "readiness dropped");
    sim.stop().await.unwrap();
}
