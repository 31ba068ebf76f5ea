//! The webhook as Discord (and a forger) uses it: every rejection, PING, an answered command, a
//! deferred command edited later, and a burst of 1,000 concurrent commands. A small responder
//! on the in-memory bus plays the worker.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, Limits, Message, Subscription};
use disco_proto::v1::{GatewayEvent, InteractionReply};
use disco_proto::{Versioned, route};
use ed25519_dalek::{Signer, SigningKey};
use interactions_ingress::{Config, Ingress, PublicKey};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

fn config(deadline: Duration) -> Config {
    let mut config = Config::new(
        PublicKey::from_hex(&hex::encode(signing_key().verifying_key().as_bytes())).unwrap(),
        1,
    );
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.max_body = 8 * 1024;
    config.deadline = deadline;
    config.late_answer = Duration::from_secs(10);
    config
}

/// A REST client that reaches nothing: these tests never get as far as an edit.
fn nowhere() -> Arc<twilight_http::Client> {
    Arc::new(
        twilight_http::Client::builder()
            .proxy("127.0.0.1:9".to_owned(), true)
            .build(),
    )
}

async fn start(bus: &Bus, config: Config) -> (SocketAddr, CancellationToken) {
    let ingress = Ingress::new(config, nowhere(), bus.clone(), &mut Registry::default());
    let listener = interactions_ingress::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let address = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let stopping = stop.clone();
    tokio::spawn(async move { ingress.serve(listener, stopping).await.unwrap() });
    (address, stop)
}

/// A worker stand-in: answers each interaction with its `data.name`, after `delay`.
fn responder(bus: &Bus, delay: Duration) {
    let bus = bus.clone();
    tokio::spawn(async move {
        let mut consumer = bus
            .subscribe(
                Subscription::shared("test.worker")
                    .bind(route::every_shard("INTERACTION_CREATE"))
                    .prefetch(2000),
            )
            .await
            .unwrap();
        while let Some(delivery) = consumer.next().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let event: GatewayEvent = disco_proto::decode(&delivery.message.body).unwrap();
                let interaction: Value = serde_json::from_slice(&event.payload).unwrap();
                let response = json!({"type": 4, "data": {"content": interaction["data"]["name"]}});
                let reply = InteractionReply {
                    response: response.to_string().into_bytes().into(),
                    ..Default::default()
                };
                delivery
                    .reply(Message::new(reply.encode_current()))
                    .await
                    .unwrap();
                delivery.ack().await.unwrap();
            });
        }
    });
}

fn now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    hex::encode(signing_key().sign(&message).to_bytes())
}

/// A POST with these headers; (status, content type, body).
async fn post(
    address: SocketAddr,
    headers: &[(&str, String)],
    body: &[u8],
) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let mut request = format!(
        "POST /interactions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // A refused body may be closed on before it is all written; that is fine.
    let _ = stream.write_all(body).await;
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

async fn signed(address: SocketAddr, body: &[u8]) -> (u16, String, String) {
    let timestamp = now();
    let headers = [
        ("x-signature-ed25519", sign(&timestamp, body)),
        ("x-signature-timestamp", timestamp),
    ];
    post(address, &headers, body).await
}

/// A fresh interaction id: the ingress refuses one it has seen.
fn fresh_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        .to_string()
}

fn command(name: &str) -> Vec<u8> {
    json!({"type": 2, "id": fresh_id(), "token": "tok", "application_id": "1", "guild_id": "7", "channel_id": "8", "data": {"name": name}})
        .to_string()
        .into_bytes()
}

#[tokio::test]
async fn forged_and_malformed_requests_are_refused() {
    let bus = Bus::in_memory(Limits::default());
    let (address, stop) = start(&bus, config(Duration::from_millis(500))).await;
    let ping = br#"{"type":1,"id":"1","token":"t","application_id":"1"}"#;
    let ts = now();
    let good = sign(&ts, ping);
    let stale = (ts.parse::<u64>().unwrap() - 3_600).to_string();
    let other_key = hex::encode(
        SigningKey::from_bytes(&[7; 32])
            .sign(format!("{ts}{}", String::from_utf8_lossy(ping)).as_bytes())
            .to_bytes(),
    );
    let mut tampered = ping.to_vec();
    tampered.push(b' ');
    type Case<'a> = (&'a str, Vec<(&'a str, String)>, Vec<u8>, u16);
    let rows: Vec<Case<'_>> = vec![
        ("no headers", vec![], ping.to_vec(), 401),
        (
            "no signature",
            vec![("x-signature-timestamp", ts.clone())],
            ping.to_vec(),
            401,
        ),
        (
            "no timestamp",
            vec![("x-signature-ed25519", good.clone())],
            ping.to_vec(),
            401,
        ),
        (
            "signature not hex",
            vec![
                ("x-signature-ed25519", "zz".repeat(64)),
                ("x-signature-timestamp", ts.clone()),
            ],
            ping.to_vec(),
            401,
        ),
        (
            "signature too short",
            vec![
                ("x-signature-ed25519", good[..100].to_owned()),
                ("x-signature-timestamp", ts.clone()),
            ],
            ping.to_vec(),
            401,
        ),
        (
            "another key's signature",
            vec![
                ("x-signature-ed25519", other_key),
                ("x-signature-timestamp", ts.clone()),
            ],
            ping.to_vec(),
            401,
        ),
        (
            "tampered body",
            vec![
                ("x-signature-ed25519", good.clone()),
                ("x-signature-timestamp", ts.clone()),
            ],
            tampered,
            401,
        ),
        (
            "tampered timestamp",
            vec![
                ("x-signature-ed25519", good.clone()),
                (
                    "x-signature-timestamp",
                    (ts.parse::<u64>().unwrap() + 1).to_string(),
                ),
            ],
            ping.to_vec(),
            401,
        ),
        (
            "replayed (stale timestamp)",
            vec![
                ("x-signature-ed25519", sign(&stale, ping)),
                ("x-signature-timestamp", stale),
            ],
            ping.to_vec(),
            401,
        ),
        (
            "timestamp not a number",
            vec![
                ("x-signature-ed25519", sign("soon", ping)),
                ("x-signature-timestamp", "soon".to_owned()),
            ],
            ping.to_vec(),
            401,
        ),
    ];
    for (case, headers, body, want) in rows {
        let (status, _, text) = post(address, &headers, &body).await;
        assert_eq!(status, want, "{case}");
        assert_eq!(text, "invalid request signature", "{case}");
    }
    // Too large: refused before the body is read.
    let big = vec![b'x'; 64 * 1024];
    let (status, _, _) = signed(address, &big).await;
    assert_eq!(status, 413);
    // Correctly signed, but not an interaction.
    for body in [&b"not json"[..], br#"{"hello":"world"}"#, br#"[1,2]"#] {
        let (status, _, _) = signed(address, body).await;
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
    }
    stop.cancel();
}

#[tokio::test]
async fn ping_is_answered_locally() {
    let bus = Bus::in_memory(Limits::default());
    // No responder: a PING must not need the bus.
    let (address, stop) = start(&bus, config(Duration::from_millis(500))).await;
    let (status, content_type, body) = signed(
        address,
        br#"{"type":1,"id":"1","token":"t","application_id":"1"}"#,
    )
    .await;
    assert_eq!(
        (status, content_type.as_str(), body.as_str()),
        (200, "application/json", r#"{"type":1}"#)
    );
    stop.cancel();
}

#[tokio::test]
async fn interactions_that_are_not_commands_are_answered_locally() {
    let bus = Bus::in_memory(Limits::default());
    // No responder: the workers answer commands only, so these must not wait for one.
    let (address, stop) = start(&bus, config(Duration::from_millis(500))).await;
    let interaction = |kind: u8| {
        json!({"type": kind, "id": fresh_id(), "token": "tok", "application_id": "1", "guild_id": "7", "data": {"custom_id": "x"}})
            .to_string()
            .into_bytes()
    };
    // Autocomplete: no choices.
    let (status, _, body) = signed(address, &interaction(4)).await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"type":8,"data":{"choices":[]}}"#)
    );
    // A component or a modal: an answer only the member sees, at once.
    for kind in [3, 5] {
        let (status, _, body) = signed(address, &interaction(kind)).await;
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, &answer["type"]), (200, &json!(4)), "{body}");
        assert_eq!(answer["data"]["flags"], 64);
    }
    stop.cancel();
}

#[tokio::test]
async fn a_command_is_answered_with_the_workers_reply() {
    let bus = Bus::in_memory(Limits::default());
    responder(&bus, Duration::ZERO);
    let (address, stop) = start(&bus, config(Duration::from_millis(2_500))).await;
    let (status, content_type, body) = signed(address, &command("ping")).await;
    assert_eq!(status, 200);
    assert_eq!(content_type, "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"type": 4, "data": {"content": "ping"}})
    );
    stop.cancel();
}

#[tokio::test]
async fn a_burst_of_1000_concurrent_commands_is_answered_once_each() {
    let bus = Bus::in_memory(Limits::default());
    responder(&bus, Duration::from_millis(5));
    let (address, stop) = start(&bus, config(Duration::from_millis(2_500))).await;
    let mut requests = tokio::task::JoinSet::new();
    for n in 0..1000 {
        requests.spawn(async move {
            let (status, _, body) = signed(address, &command(&format!("c{n}"))).await;
            (n, status, body)
        });
    }
    let mut answered = std::collections::BTreeSet::new();
    while let Some(result) = requests.join_next().await {
        let (n, status, body) = result.unwrap();
        assert_eq!(status, 200, "request {n}");
        let reply: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reply["type"], 4, "request {n} answered in time: {reply}");
        assert_eq!(
            reply["data"]["content"],
            format!("c{n}"),
            "each gets its own answer"
        );
        answered.insert(n);
    }
    assert_eq!(answered.len(), 1000);
    stop.cancel();
}

/// A signed request captured and sent again (valid signature, recent timestamp) is refused:
/// its command runs once.
#[tokio::test]
async fn a_replayed_interaction_is_refused() {
    let bus = Bus::in_memory(Limits::default());
    responder(&bus, Duration::ZERO);
    let (address, stop) = start(&bus, config(Duration::from_millis(2_500))).await;
    let body = command("ping");
    let timestamp = now();
    let headers = [
        ("x-signature-ed25519", sign(&timestamp, &body)),
        ("x-signature-timestamp", timestamp),
    ];
    let (status, _, _) = post(address, &headers, &body).await;
    assert_eq!(status, 200);
    let (status, _, text) = post(address, &headers, &body).await;
    assert_eq!(
        (status, text.as_str()),
        (401, "interaction already received")
    );
    stop.cancel();
}

/// Connections that send nothing, or a header a little at a time, hold no slot for long:
/// with every slot taken by such clients, a PING is answered once the head timeout frees
/// one; with room left, 1,000 of them do not slow PINGs down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_hold_the_ingress() {
    let bus = Bus::in_memory(Limits::default());
    let mut limited = config(Duration::from_millis(500));
    limited.max_connections = 20;
    let (address, stop) = start(&bus, limited).await;
    let ping = br#"{"type":1,"id":"1","token":"t","application_id":"1"}"#.to_vec();
    let mut idle = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /interactions HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        idle.push(stream);
    }
    let started = std::time::Instant::now();
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(15), signed(address, &ping))
        .await
        .expect("a slot frees up when the slow heads time out");
    assert_eq!((status, body.as_str()), (200, r#"{"type":1}"#));
    println!(
        "PING answered after {:?} with every slot held",
        started.elapsed()
    );
    for mut stream in idle {
        let mut rest = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
        assert!(closed.is_ok(), "a slow client is closed on");
    }
    stop.cancel();

    let (address, stop) = start(&bus, config(Duration::from_millis(500))).await;
    let mut slow = Vec::new();
    for _ in 0..1_000 {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream
            .write_all(b"POST /interactions HTTP/1.1\r\n")
            .await
            .unwrap();
        slow.push(stream);
    }
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = std::time::Instant::now();
        let (status, _, _) = signed(address, &ping).await;
        assert_eq!(status, 200);
        slowest = slowest.max(started.elapsed());
    }
    println!("slowest of 20 PINGs beside 1,000 slow clients: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(1),
        "PINGs wait for nobody: {slowest:?}"
    );
    drop(slow);
    stop.cancel();
}

/// With the simulator delivering its signed webhooks: a slow worker's answer comes after the
/// deadline, so the ingress answers "deferred" and edits the answer in through the webhook
/// route; the simulator's forgeries are all refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_simulator_a_slow_answer_is_deferred_then_edited() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bus = Bus::in_memory(Limits::default());
    responder(&bus, Duration::from_millis(600));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let sim_config = discord_sim::Config {
        interactions_url: Some(format!("http://{address}/interactions")),
        ..discord_sim::Config::default()
    };
    let sim = discord_sim::Simulator::start("127.0.0.1:0".parse().unwrap(), sim_config)
        .await
        .unwrap();
    let control = discord_sim::Control::new(&sim.rest_url);
    let config = Config {
        public_key: PublicKey::from_hex(&sim.public_key).unwrap(),
        application_id: sim.world.application_id,
        ..config(Duration::from_millis(200))
    };
    let ingress = Ingress::new(
        config,
        sim.bot_client(),
        bus.clone(),
        &mut Registry::default(),
    );
    let stop = CancellationToken::new();
    let serving = tokio::spawn(ingress.serve(listener, stop.clone()));

    let probes = control.post("/webhook/probe", &json!({})).await.unwrap();
    assert!(
        probes.as_array().unwrap().iter().all(|p| p["ok"] == true),
        "{probes}"
    );

    let register = json!([{"name": "ping", "description": "pong"}]);
    put_commands(&sim, &register).await;
    let guild = &sim.world.guilds[0];
    let created = control
        .command(guild.channels[0].id, guild.members[0].id, "ping", json!([]))
        .await
        .unwrap();
    assert_eq!(created["webhook"]["status"], 200);
    assert_eq!(
        serde_json::from_str::<Value>(created["webhook"]["body"].as_str().unwrap()).unwrap(),
        json!({"type": 5})
    );
    let id = created["id"].as_str().unwrap().to_owned();
    let edited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let sent = control
                .get(&format!("/sent?interaction_id={id}"))
                .await
                .unwrap();
            let sent = sent.as_array().unwrap().clone();
            if sent.iter().any(|e| e["kind"] == "edit") {
                return sent;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the late answer is edited in");
    assert_eq!(edited[0]["response_type"], 5);
    assert_eq!(edited[1]["content"], "ping");
    assert_eq!(edited.len(), 2, "one initial response, one edit");
    assert!(control.violations().await.unwrap().is_empty());
    stop.cancel();
    serving.await.unwrap().unwrap();
    sim.stop().await.unwrap();
}

async fn put_commands(sim: &discord_sim::Simulator, body: &Value) {
    let url = sim.rest_url.strip_prefix("http://").unwrap().to_owned();
    let mut stream = tokio::net::TcpStream::connect(&url).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "PUT /api/v10/applications/{}/commands HTTP/1.1\r\nhost: {url}\r\nauthorization: Bot {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        sim.world.application_id,
        sim.world.token,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}
