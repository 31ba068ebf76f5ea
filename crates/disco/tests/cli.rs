//! The `disco` binary as users run it: settings refused with the name of the setting, and a
//! message published by one OS process reaching another through RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use bus::{Bus, Destination, Message, RabbitConfig};
use disco_proto::v1::GatewayEvent;
use disco_proto::{Secret, Versioned};
use tokio::io::{AsyncBufReadExt, BufReader};

const TOKEN: &str = "MTA5ODc2NTQzMjEwOTg3NjU0Mw.GhJkLm.sEcReTsEcReTsEcReT";
const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn amqp_url() -> String {
    std::env::var("DISCO_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// `disco` with a clean environment: only what the test gives it.
fn disco(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_disco"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("disco runs")
}

#[test]
fn bad_settings_stop_start_up_and_name_the_setting() {
    let full = [
        ("DISCORD_TOKEN", TOKEN),
        ("DISCO_APPLICATION_ID", "1"),
        ("DISCO_PUBLIC_KEY", KEY),
    ];
    let with = |name: &str, value: &'static str| -> Vec<(&'static str, &'static str)> {
        full.iter()
            .map(|&(n, v)| if n == name { (n, value) } else { (n, v) })
            .collect()
    };
    type Env = Vec<(&'static str, &'static str)>;
    let rows: Vec<(Vec<&str>, Env, &str)> = vec![
        (vec!["up"], vec![], "missing DISCORD_TOKEN (--token)"),
        (vec![], vec![], "`disco demo`"),
        (
            vec!["up"],
            with("DISCORD_TOKEN", "not a token"),
            "invalid DISCORD_TOKEN (--token)",
        ),
        (
            vec!["up"],
            with("DISCO_PUBLIC_KEY", "abc"),
            "invalid DISCO_PUBLIC_KEY (--public-key): expected 64 hexadecimal characters",
        ),
        (
            vec!["up"],
            with("DISCO_APPLICATION_ID", "x"),
            "invalid DISCO_APPLICATION_ID (--application-id)",
        ),
        (
            vec!["command-worker"],
            [
                full.to_vec(),
                vec![("DISCO_AMQP_URL", "amqp://guest:sEcReT@host:notaport")],
            ]
            .concat(),
            "invalid DISCO_AMQP_URL (--amqp-url)",
        ),
        (
            vec!["up"],
            [full.to_vec(), vec![("DISCO_LOG", "==")]].concat(),
            "invalid DISCO_LOG (--log)",
        ),
        (
            vec!["up"],
            [full.to_vec(), vec![("TOKIO_WORKER_THREADS", "0")]].concat(),
            "invalid TOKIO_WORKER_THREADS: \"0\"",
        ),
        (
            vec!["command-worker"],
            [full.to_vec(), vec![("TOKIO_WORKER_THREADS", "two")]].concat(),
            "invalid TOKIO_WORKER_THREADS: \"two\"",
        ),
        (
            vec!["conductor"],
            full.to_vec(),
            "unrecognized subcommand 'conductor'",
        ),
        (
            vec!["up", "--metrics-listen", "nowhere"],
            full.to_vec(),
            "--metrics-listen",
        ),
    ];
    for (args, env, want) in rows {
        let output = disco(&args, &env);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{args:?}: {stderr:?} should say {want:?}"
        );
        assert!(
            !stderr.contains("sEcReT"),
            "{args:?} leaked a secret: {stderr}"
        );
    }
}

#[test]
fn help_lists_every_setting_with_its_variable_but_no_secret() {
    let output = disco(
        &["--help"],
        &[
            ("DISCORD_TOKEN", TOKEN),
            ("DISCO_AMQP_URL", "amqp://u:sEcReT@h"),
        ],
    );
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "DISCORD_TOKEN",
        "DISCO_APPLICATION_ID",
        "DISCO_PUBLIC_KEY",
        "DISCO_AMQP_URL",
        "DISCO_DISCORD_API_URL",
        "DISCO_DISCORD_GATEWAY_URL",
        "DISCO_METRICS_LISTEN",
        "DISCO_LOG_FORMAT",
    ] {
        assert!(help.contains(variable), "--help names {variable}");
    }
    assert!(!help.contains("sEcReT"), "--help shows a secret: {help}");
}

#[tokio::test]
async fn a_message_crosses_from_one_process_to_another() {
    let event = format!("XPROC_{}", std::process::id());
    let mut tail = tokio::process::Command::new(env!("CARGO_BIN_EXE_disco"))
        .args(["tail", "--count", "1", &format!("{event}.*")])
        .env_clear()
        .env("DISCO_AMQP_URL", amqp_url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("disco tail starts");

    // Wait until the other process has bound its queue.
    let mut logs = BufReader::new(tail.stderr.take().unwrap()).lines();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = logs.next_line().await.unwrap() {
            if line.contains("tailing the bus") {
                return;
            }
        }
        panic!("disco tail ended before tailing");
    })
    .await
    .expect("disco tail subscribes in time");

    let config = RabbitConfig::new(Secret::new(amqp_url()), "cli-test").unwrap();
    let bus = Bus::rabbitmq(config).await.expect("RabbitMQ answers");
    let body = GatewayEvent {
        shard_id: 4,
        sequence: 17,
        event_name: event.clone(),
        guild_id: Some(99),
        payload: disco_proto::bytes::Bytes::from_static(br#"{"content":"across"}"#),
        ..Default::default()
    }
    .encode_current();
    bus.publish(Destination::Event(format!("{event}.4")), Message::new(body))
        .await
        .unwrap();

    let output = tokio::time::timeout(Duration::from_secs(20), tail.wait_with_output())
        .await
        .expect("disco tail exits after one message")
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("{event}.4 shard=4 seq=17 guild=99 {{\"content\":\"across\"}}\n")
    );
    bus.close().await;
}

#[tokio::test]
async fn disco_sim_prints_how_to_reach_it_and_serves_discord() {
    let mut sim = tokio::process::Command::new(env!("CARGO_BIN_EXE_disco"))
        .args(["sim", "--listen", "127.0.0.1:0"])
        .env_clear()
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("disco sim starts");
    let mut lines = BufReader::new(sim.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let done = line.starts_with("Control API");
            printed.push(line);
            if done {
                return;
            }
        }
    })
    .await
    .expect("disco sim prints its banner");
    let address = printed[0]
        .strip_prefix("Discord simulator on ")
        .expect("the address first")
        .to_owned();
    for setting in [
        "DISCO_DISCORD_API_URL=http://",
        "DISCO_DISCORD_GATEWAY_URL=ws://",
        "DISCORD_TOKEN=",
        "DISCO_APPLICATION_ID=",
        "DISCO_PUBLIC_KEY=",
    ] {
        assert!(
            printed.iter().any(|l| l.contains(setting)),
            "{setting} in {printed:?}"
        );
    }
    let control = discord_sim::Control::new(&format!("http://{address}"));
    let info = control.get("/info").await.expect("the control API answers");
    assert_eq!(info["rest_url"], format!("http://{address}"));
}

#[tokio::test]
async fn commands_sync_is_idempotent_and_the_invite_asks_for_no_administrator() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = discord_sim::Simulator::start(
        "127.0.0.1:0".parse().unwrap(),
        discord_sim::Config::default(),
    )
    .await
    .unwrap();
    let env = [
        ("DISCORD_TOKEN", sim.world.token.clone()),
        ("DISCO_APPLICATION_ID", sim.world.application_id.to_string()),
        ("DISCO_DISCORD_API_URL", sim.rest_url.clone()),
    ];
    let run = |args: &'static [&'static str]| {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            disco(args, &env)
        })
    };
    let dry = run(&["commands", "sync", "--dry-run"]).await.unwrap();
    let dry = String::from_utf8_lossy(&dry.stdout).into_owned();
    assert!(dry.contains("added: ping, 테스트"), "{dry}");
    assert!(dry.contains("dry run: nothing sent"), "{dry}");

    let first = run(&["commands", "sync"]).await.unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let first = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(first.contains("commands registered globally"), "{first}");
    let second = run(&["commands", "sync"]).await.unwrap();
    let second = String::from_utf8_lossy(&second.stdout).into_owned();
    assert!(second.contains("nothing to change globally"), "{second}");
    assert!(
        second
            .lines()
            .all(|l| !l.starts_with("added") && !l.starts_with("changed")),
        "{second}"
    );

    let invite = run(&["invite-url"]).await.unwrap();
    let invite = String::from_utf8_lossy(&invite.stdout).trim().to_owned();
    assert!(
        invite.starts_with("https://discord.com/oauth2/authorize?client_id="),
        "{invite}"
    );
    assert!(
        invite.contains("scope=bot+applications.commands"),
        "{invite}"
    );
    let permissions: u64 = invite
        .rsplit("permissions=")
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(permissions & (1 << 3), 0, "never Administrator");
    for needed in [10, 11, 20, 21] {
        assert_ne!(
            permissions & (1 << needed),
            0,
            "bit {needed} (view, send, connect, speak)"
        );
    }
    sim.stop().await.unwrap();
}

#[test]
fn disco_demo_once_shows_the_answers_and_exits_zero() {
    let output = disco(
        &[
            "demo",
            "--once",
            "--listen",
            "127.0.0.1:0",
            "--ingress-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--log",
            "debug",
        ],
        &[],
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    let logged = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{printed}\n{logged}");
    assert!(
        printed.contains("alice types in #general: ~~ping"),
        "{printed}"
    );
    assert!(printed.contains("  Disco answers: pong! ("), "{printed}");
    assert!(
        printed.contains("Disco answers (read aloud): 찬구: 첫 글입니다"),
        "{printed}"
    );
    // Every role ran with the simulator's token, logging at debug: it appears nowhere.
    let token = discord_sim::World::default().token;
    assert!(logged.lines().count() > 20, "debug logs were written");
    assert!(
        !printed.contains(&token) && !logged.contains(&token),
        "the token leaked"
    );
}
