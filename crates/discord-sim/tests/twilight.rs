//! The simulator against twilight's own clients: every payload parses with twilight-model, and
//! each scenario behaves as Discord documents it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::{Config, Control, Simulator};
use serde_json::{Value, json};
use twilight_gateway::{
    CloseFrame, Event, EventTypeFlags, Intents, Shard, ShardId, StreamExt as _,
};
use twilight_http::Client;
use twilight_model::id::Id;

/// Generous: one scenario waits out twilight's reconnect backoff and the 5 s identify gap on
/// a loaded machine (it once took just over 10 s with the whole suite running).
const PATIENCE: Duration = Duration::from_secs(30);

fn intents() -> Intents {
    Intents::GUILDS
        | Intents::GUILD_MESSAGES
        | Intents::MESSAGE_CONTENT
        | Intents::GUILD_VOICE_STATES
}

async fn start() -> (Simulator, Control) {
    start_with(Config::default()).await
}

async fn start_with(config: Config) -> (Simulator, Control) {
    // twilight's TLS stack needs one crypto provider chosen, as `disco` does in `main`.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    (sim, control)
}

fn shard(sim: &Simulator, id: u32, total: u32) -> Shard {
    let config = twilight_gateway::ConfigBuilder::new(sim.world.token.clone(), intents())
        .proxy_url(sim.gateway_url.clone())
        .build();
    Shard::with_config(ShardId::new(id, total), config)
}

/// twilight-http as a bot should use it: with its rate limiter.
fn http(sim: &Simulator) -> Client {
    Client::builder()
        .token(sim.world.token.clone())
        .proxy(sim.address.to_string(), true)
        .build()
}

/// The next event `wanted` accepts, skipping others; panics on a gateway error or a timeout.
async fn next_matching<T>(shard: &mut Shard, mut wanted: impl FnMut(&Event) -> Option<T>) -> T {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let event = shard
                .next_event(EventTypeFlags::all())
                .await
                .expect("the shard is open")
                .expect("every event parses with twilight-model");
            if let Some(found) = wanted(&event) {
                return found;
            }
        }
    })
    .await
    .expect("the event in time")
}

async fn until_ready(shard: &mut Shard) -> twilight_model::gateway::payload::incoming::Ready {
    next_matching(shard, |event| match event {
        Event::Ready(ready) => Some(ready.clone()),
        _ => None,
    })
    .await
}

fn ids(value: &Value, key: &str) -> u64 {
    value[key].as_str().unwrap().parse().unwrap()
}

async fn shard_log(control: &Control, id: u32) -> Value {
    let shards = control.get("/shards").await.unwrap();
    shards["shards"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["shard_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_shard_connects_identifies_and_receives_guilds_messages_and_voice() {
    let (sim, control) = start().await;
    let mut shard = shard(&sim, 0, 1);
    let ready = until_ready(&mut shard).await;
    assert_eq!(ready.guilds.len(), 2, "one shard of one holds every guild");
    assert_eq!(ready.resume_gateway_url, sim.gateway_url);
    let mut guilds = Vec::new();
    while guilds.len() < 2 {
        let guild = next_matching(&mut shard, |event| match event {
            Event::GuildCreate(guild) => Some(guild.id()),
            _ => None,
        })
        .await;
        guilds.push(guild.get());
    }
    let world_guilds: Vec<u64> = sim.world.guilds.iter().map(|g| g.id).collect();
    assert_eq!(guilds, world_guilds);

    let guild = &sim.world.guilds[0];
    let (channel, alice) = (guild.channels[0].id, guild.members[0].id);
    control.say(channel, alice, "~~ping").await.unwrap();
    let message = next_matching(&mut shard, |event| match event {
        Event::MessageCreate(message) => Some(message.clone()),
        _ => None,
    })
    .await;
    assert_eq!(message.content, "~~ping");
    assert_eq!(message.author.id.get(), alice);
    assert_eq!(message.guild_id.map(Id::get), Some(guild.id));

    let voice_channel = guild.channels[2].id;
    control
        .voice(guild.id, alice, Some(voice_channel))
        .await
        .unwrap();
    let state = next_matching(&mut shard, |event| match event {
        Event::VoiceStateUpdate(update) => Some(update.0.clone()),
        _ => None,
    })
    .await;
    assert_eq!(state.channel_id.map(Id::get), Some(voice_channel));
    assert_eq!(state.user_id.get(), alice);

    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn events_go_to_the_shard_that_owns_the_guild() {
    let mut config = Config::default();
    config.world.max_concurrency = 2;
    let (sim, control) = start_with(config).await;
    let mut zero = shard(&sim, 0, 2);
    let mut one = shard(&sim, 1, 2);
    assert_eq!(until_ready(&mut zero).await.guilds.len(), 1);
    assert_eq!(until_ready(&mut one).await.guilds.len(), 1);
    for (n, guild) in sim.world.guilds.iter().enumerate() {
        control
            .say(
                guild.channels[0].id,
                guild.members[0].id,
                &format!("to {n}"),
            )
            .await
            .unwrap();
    }
    let first = next_matching(&mut zero, |e| match e {
        Event::MessageCreate(m) => Some(m.content.clone()),
        _ => None,
    })
    .await;
    let second = next_matching(&mut one, |e| match e {
        Event::MessageCreate(m) => Some(m.content.clone()),
        _ => None,
    })
    .await;
    assert_eq!((first.as_str(), second.as_str()), ("to 0", "to 1"));
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_forced_disconnect_is_resumed_and_missed_events_replayed() {
    let (sim, control) = start().await;
    let mut shard = shard(&sim, 0, 1);
    until_ready(&mut shard).await;
    let guild = &sim.world.guilds[0];
    control
        .say(guild.channels[0].id, guild.members[0].id, "before")
        .await
        .unwrap();
    next_matching(&mut shard, |e| {
        matches!(e, Event::MessageCreate(m) if m.content == "before").then_some(())
    })
    .await;

    // Drop the connection, and say something while the shard is away.
    control
        .post(
            "/shards/0/disconnect",
            &json!({"code": 4000, "resume": true}),
        )
        .await
        .unwrap();
    control
        .say(guild.channels[0].id, guild.members[0].id, "while away")
        .await
        .unwrap();
    next_matching(&mut shard, |e| matches!(e, Event::Resumed).then_some(())).await;
    // The replayed message may come before RESUMED; either way it comes exactly once.
    control
        .say(guild.channels[0].id, guild.members[0].id, "after")
        .await
        .unwrap();
    let mut seen = Vec::new();
    while !seen.contains(&"after".to_owned()) {
        let content = next_matching(&mut shard, |e| match e {
            Event::MessageCreate(m) => Some(m.content.clone()),
            _ => None,
        })
        .await;
        seen.push(content);
    }
    let log = shard_log(&control, 0).await;
    assert_eq!(
        log["identifies"].as_array().unwrap().len(),
        1,
        "resumed, not re-identified: {log}"
    );
    assert_eq!(log["resumes"].as_array().unwrap().len(), 1, "{log}");
    assert!(
        seen.iter().filter(|c| *c == "while away").count() <= 1,
        "{seen:?}"
    );
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn op7_reconnect_and_invalid_session_are_handled_as_documented() {
    let (sim, control) = start().await;
    let mut shard = shard(&sim, 0, 1);
    until_ready(&mut shard).await;

    control
        .post("/shards/0/reconnect", &json!({}))
        .await
        .unwrap();
    next_matching(&mut shard, |e| matches!(e, Event::Resumed).then_some(())).await;
    assert_eq!(
        shard_log(&control, 0).await["resumes"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A session that cannot be resumed: twilight identifies again, 5 s after the last IDENTIFY.
    control
        .post("/shards/0/invalidate", &json!({"resumable": false}))
        .await
        .unwrap();
    until_ready(&mut shard).await;
    let log = shard_log(&control, 0).await;
    let identifies: Vec<u64> = log["identifies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_u64().unwrap())
        .collect();
    assert_eq!(identifies.len(), 2, "{log}");
    // The log is wall-clock milliseconds (seen 4,993 once); the simulator enforces the 5 s on
    // its monotonic clock, and an early IDENTIFY would be a violation, asserted next.
    assert!(identifies[1] - identifies[0] >= 4_900, "{identifies:?}");
    assert!(control.violations().await.unwrap().is_empty());

    shard.close(CloseFrame::NORMAL);
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn rest_answers_twilight_http_and_deduplicates_nonces() {
    let (sim, control) = start().await;
    let client = http(&sim);
    let me = client.current_user().await.unwrap().model().await.unwrap();
    assert_eq!(me.id.get(), sim.world.bot.id);
    let gateway = client
        .gateway()
        .authed()
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(gateway.url, sim.gateway_url);
    assert_eq!(gateway.session_start_limit.max_concurrency, 1);

    let channel = sim.world.guilds[0].channels[0].id;
    // twilight-http has no `enforce_nonce` setter, so the body is built by hand, as the
    // command worker does.
    let create = || {
        let request = twilight_http::request::Request::builder(
            &twilight_http::routing::Route::CreateMessage {
                channel_id: channel,
            },
        )
        .json(&json!({"content": "pong! (42ms)", "nonce": "7", "enforce_nonce": true}))
        .build()
        .unwrap();
        client.request::<twilight_model::channel::Message>(request)
    };
    let first = create().await.unwrap().model().await.unwrap();
    let again = create().await.unwrap().model().await.unwrap();
    assert_eq!(
        first.id, again.id,
        "the same nonce returns the first message"
    );
    let sent = control.sent().await.unwrap();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["content"], "pong! (42ms)");

    // A wrong token is refused, and noted.
    let stranger = Client::builder()
        .token("abc.def.ghi".to_owned())
        .proxy(sim.address.to_string(), true)
        .ratelimiter(None)
        .build();
    let error = stranger.current_user().await.expect_err("unauthorized");
    assert!(error.to_string().contains("401"), "{error}");
    assert_eq!(control.violations().await.unwrap().len(), 1);
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_429_is_waited_out_by_twilight_and_ignoring_it_is_a_violation() {
    // twilight without its limiter retries a 429 at once, thousands of times a second: enough
    // for Cloudflare's ban, which is not what this test is about.
    let mut config = Config::default();
    config.world.rate_limits.invalid_requests.limit = u32::MAX;
    let (sim, control) = start_with(config).await;
    let channel = Id::new(sim.world.guilds[0].channels[0].id);

    // With its rate limiter, twilight-http waits the 429's retry_after, then succeeds.
    control
        .post(
            "/faults",
            &json!({"status": 429, "route": "messages", "retry_after": 0.3}),
        )
        .await
        .unwrap();
    let started = std::time::Instant::now();
    http(&sim)
        .create_message(channel)
        .content("hi")
        .await
        .unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    assert!(control.violations().await.unwrap().is_empty());

    // Without it, twilight-http sends the request again at once: that ignores the 429.
    let careless = Client::builder()
        .token(sim.world.token.clone())
        .proxy(sim.address.to_string(), true)
        .ratelimiter(None)
        .build();
    control
        .post(
            "/faults",
            &json!({"status": 429, "route": "messages", "retry_after": 0.2}),
        )
        .await
        .unwrap();
    careless
        .create_message(channel)
        .content("hi again")
        .await
        .unwrap();
    let violations = control.violations().await.unwrap();
    assert!(!violations.is_empty());
    assert!(
        violations.iter().all(|v| v["rule"] == "rate limit"),
        "{violations:?}"
    );
    sim.stop().await.unwrap();
}

/// Registers the seed's command with a raw PUT, keeping its JSON exactly as written.
async fn register_seed_command(sim: &Simulator) {
    let body = json!([{
        "name": "테스트", "description": "test",
        "options": [
            {"name": "옵션", "description": "option", "type": 3, "required": true,
             "choices": [{"name": "호빈이", "value": "호빈이"}, {"name": "찬구", "value": "찬구"}, {"name": "카밀라", "value": "카밀라"}]},
            {"name": "작성글", "description": "post", "type": 3, "required": true},
        ],
    }]);
    let url = format!(
        "{}/api/v10/applications/{}/commands",
        sim.rest_url, sim.world.application_id
    );
    let answer = raw("PUT", &url, &sim.world.token, body).await;
    assert_eq!(answer.0, 200, "{}", answer.1);
}

/// A raw REST call with the bot token; (status, body).
async fn raw(method: &str, url: &str, token: &str, body: Value) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let url = url.strip_prefix("http://").unwrap();
    let (host, path) = url.split_at(url.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let body = body.to_string();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nauthorization: Bot {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn interactions_are_answered_once_and_in_time() {
    let (sim, control) = start().await;
    register_seed_command(&sim).await;
    let mut shard = shard(&sim, 0, 1);
    until_ready(&mut shard).await;
    let guild = &sim.world.guilds[0];
    let (channel, alice) = (guild.channels[0].id, guild.members[0].id);

    // Options are checked against the registered definition, as the Discord client does.
    let refused = control
        .command(
            channel,
            alice,
            "테스트",
            json!([{"name": "옵션", "value": "누구"}, {"name": "작성글", "value": "x"}]),
        )
        .await;
    assert!(refused.is_err(), "a value outside the choices is refused");
    let created = control
        .command(
            channel,
            alice,
            "테스트",
            json!([{"name": "옵션", "value": "찬구"}, {"name": "작성글", "value": "첫 글"}]),
        )
        .await
        .unwrap();
    let interaction = next_matching(&mut shard, |e| match e {
        Event::InteractionCreate(i) => Some(i.0.clone()),
        _ => None,
    })
    .await;
    assert_eq!(interaction.id.get(), ids(&created, "id"));

    let client = http(&sim);
    let response = twilight_model::http::interaction::InteractionResponse {
        kind: twilight_model::http::interaction::InteractionResponseType::ChannelMessageWithSource,
        data: Some(twilight_model::http::interaction::InteractionResponseData {
            content: Some("찬구: 첫 글".to_owned()),
            tts: Some(true),
            ..Default::default()
        }),
    };
    let interactions = client.interaction(interaction.application_id);
    interactions
        .create_response(interaction.id, &interaction.token, &response)
        .await
        .unwrap();
    let twice = interactions
        .create_response(interaction.id, &interaction.token, &response)
        .await;
    assert!(
        twice.unwrap_err().to_string().contains("400"),
        "a second initial response is refused"
    );

    // Late: past 3 s, the callback is refused.
    let created = control
        .command(
            channel,
            alice,
            "테스트",
            json!([{"name": "옵션", "value": "카밀라"}, {"name": "작성글", "value": "늦은 글"}]),
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let late = interactions
        .create_response(
            Id::new(ids(&created, "id")),
            created["token"].as_str().unwrap(),
            &response,
        )
        .await;
    assert!(late.unwrap_err().to_string().contains("404"));

    let sent = control
        .get(&format!("/sent?interaction_id={}", interaction.id))
        .await
        .unwrap();
    assert_eq!(sent.as_array().unwrap().len(), 1, "{sent}");
    assert_eq!(sent[0]["response_type"], 4);
    assert_eq!(sent[0]["tts"], true);
    let rules: Vec<String> = control
        .violations()
        .await
        .unwrap()
        .iter()
        .map(|v| v["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(rules.len(), 2, "{rules:?}");
    assert!(rules[0].contains("answered twice"), "{rules:?}");
    assert!(rules[1].contains("answered after"), "{rules:?}");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn deferred_interactions_are_edited_through_the_webhook_route() {
    let (sim, control) = start().await;
    register_seed_command(&sim).await;
    let guild = &sim.world.guilds[0];
    let created = control
        .command(
            guild.channels[0].id,
            guild.members[0].id,
            "테스트",
            json!([{"name": "옵션", "value": "호빈이"}, {"name": "작성글", "value": "글"}]),
        )
        .await
        .unwrap();
    let client = http(&sim);
    let interactions = client.interaction(Id::new(sim.world.application_id));
    let token = created["token"].as_str().unwrap();
    let deferred = twilight_model::http::interaction::InteractionResponse {
        kind: twilight_model::http::interaction::InteractionResponseType::DeferredChannelMessageWithSource,
        data: None,
    };
    interactions
        .create_response(Id::new(ids(&created, "id")), token, &deferred)
        .await
        .unwrap();
    let edited = interactions
        .update_response(token)
        .content(Some("done, a little later"))
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(edited.content, "done, a little later");
    let followup = interactions
        .create_followup(token)
        .content("and one more thing")
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(followup.content, "and one more thing");
    let original = interactions
        .response(token)
        .await
        .unwrap()
        .model()
        .await
        .unwrap();
    assert_eq!(original.content, "done, a little later");
    let kinds: Vec<Value> = control
        .sent()
        .await
        .unwrap()
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![
            json!("interaction_response"),
            json!("edit"),
            json!("followup")
        ]
    );
    assert!(control.violations().await.unwrap().is_empty());
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn commands_are_registered_idempotently_and_validated() {
    let (sim, _control) = start().await;
    let url = format!(
        "{}/api/v10/applications/{}/commands",
        sim.rest_url, sim.world.application_id
    );
    let ping = json!([{"name": "ping", "description": "pong"}]);
    let (status, first) = raw("PUT", &url, &sim.world.token, ping.clone()).await;
    assert_eq!(status, 200);
    let (_, second) = raw("PUT", &url, &sim.world.token, ping).await;
    let id = |body: &str| serde_json::from_str::<Value>(body).unwrap()[0]["id"].clone();
    assert_eq!(
        id(&first),
        id(&second),
        "overwriting with the same command keeps its id"
    );
    let (status, body) = raw(
        "PUT",
        &url,
        &sim.world.token,
        json!([{"name": "Ping", "description": "x"}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // twilight-http reads them back.
    let commands = http(&sim)
        .interaction(Id::new(sim.world.application_id))
        .global_commands()
        .await
        .unwrap()
        .models()
        .await
        .unwrap();
    assert_eq!(commands.len(), 1);
    assert_eq!(commands[0].name, "ping");
    sim.stop().await.unwrap();
}

#[tokio::test]
async fn a_read_only_channel_answers_403_and_too_many_invalid_requests_ban_the_bot() {
    let mut config = Config::default();
    config.world.guilds[0].channels[1].read_only = true;
    config.world.rate_limits.invalid_requests.limit = 5;
    let (sim, control) = start_with(config).await;
    let writable = Id::new(sim.world.guilds[0].channels[0].id);
    let read_only = Id::new(sim.world.guilds[0].channels[1].id);
    // Without twilight's limiter, which would wait out the ban's 429 (for an hour).
    let http = Client::builder()
        .token(sim.world.token.clone())
        .proxy(sim.address.to_string(), true)
        .ratelimiter(None)
        .build();
    let status = |result: Result<_, twilight_http::Error>| match result {
        Ok(_) => 200,
        Err(error) => match error.kind() {
            twilight_http::error::ErrorType::Response { status, .. } => status.get(),
            other => panic!("{other:?}"),
        },
    };
    assert_eq!(
        status(http.create_message(writable).content("hi").await),
        200
    );
    // Discord's own answers come through Google's load balancer (clients such as discord.py
    // tell a 429 of Discord's from Cloudflare's ban by it).
    let (code, head, _) = raw_message(&sim, writable.get()).await;
    assert_eq!(code, 200);
    assert!(head.contains("\r\nvia: 1.1 google\r\n"), "{head}");
    for _ in 0..4 {
        assert_eq!(
            status(http.create_message(read_only).content("no").await),
            403
        );
        assert!(control.violations().await.unwrap().is_empty());
    }
    assert_eq!(control.invalid_requests().await.unwrap(), 4);
    // The fifth invalid request: Cloudflare bans the address, and everything is refused.
    assert_eq!(
        status(http.create_message(read_only).content("no").await),
        403
    );
    // (twilight retries a 429 without end, so this one is sent by hand.)
    let (code, head, body) = raw_message(&sim, writable.get()).await;
    assert_eq!((code, body.as_str()), (429, "error code: 1015"));
    assert!(!head.contains("\r\nvia:"), "{head}");
    let violations = control.violations().await.unwrap();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0]["rule"], "invalid requests");
    sim.stop().await.unwrap();
}

/// Create Message by hand, once: the status, the head and the body.
async fn raw_message(sim: &Simulator, channel: u64) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = r#"{"content":"hi"}"#;
    let request = format!(
        "POST /api/v10/channels/{channel}/messages HTTP/1.1\r\nhost: sim\r\nauthorization: Bot {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        sim.world.token,
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(sim.address).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    let code = answer[9..12].parse().unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    (code, head.to_owned(), body.to_owned())
}
