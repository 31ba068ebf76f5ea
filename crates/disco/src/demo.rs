//! `disco demo`: the Discord simulator and every role in one process on the in-memory bus, and
//! a short scripted session a newcomer can watch: a member types `~~ping`, uses the slash
//! command `/테스트`, then joins a voice channel and has the bot speak and play a tune. Then it
//! stays up for the user's own messages (or, with `--once`, exits 0 only if every step got the
//! answer it should).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use discord_sim::{Control, Simulator};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use disco::Role;
use disco::settings::{Cli, DemoArgs};

/// songbird dials the voice server over `wss://` and trusts only what `SSL_CERT_FILE` names
/// (read as the process connects). Nothing may write this process's environment, so the demo
/// makes its voice CA first, then runs itself again with `SSL_CERT_FILE` set. Returns only if
/// that failed.
pub(crate) fn trust_voice_ca(args: &DemoArgs) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let made = || -> anyhow::Result<std::path::PathBuf> {
        let tls = discord_sim::VoiceTls::generate(args.listen.ip())
            .context("cannot make the voice server's certificate")?;
        let dir = std::env::temp_dir().join(format!("disco-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .and_then(|()| tls.save(&dir))
            .with_context(|| format!("cannot write {}", dir.display()))?;
        Ok(dir)
    };
    let dir = match made() {
        Ok(dir) => dir,
        Err(error) => return error,
    };
    let program = match std::env::current_exe() {
        Ok(program) => program,
        Err(error) => return anyhow::Error::new(error).context("cannot find the disco binary"),
    };
    let error = std::process::Command::new(program)
        .args(std::env::args_os().skip(1))
        .env("SSL_CERT_FILE", dir.join("ca.pem"))
        .env("DISCO_DEMO_VOICE_TLS", &dir)
        .exec();
    anyhow::Error::new(error).context("cannot run disco demo again")
}

const PATIENCE: Duration = Duration::from_secs(20);

/// Runs the demo; `Ok(false)` when a step did not get its answer.
pub(crate) async fn run(
    args: &DemoArgs,
    metrics_listen: std::net::SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<bool> {
    // Heartbeats every 2 s, so `~~ping` soon shows a measured latency; both shards identify
    // at once.
    let world = discord_sim::World {
        heartbeat_interval_ms: 2_000,
        max_concurrency: 2,
        ..discord_sim::World::default()
    };
    let voice_tls = match &args.voice_tls {
        Some(dir) => Some(
            discord_sim::VoiceTls::load(dir)
                .with_context(|| format!("cannot read the voice TLS in {}", dir.display()))?,
        ),
        None => None,
    };
    let sim = Simulator::start(
        args.listen,
        discord_sim::Config {
            world,
            interactions_url: None,
            voice_tls,
        },
    )
    .await
    .with_context(|| format!("cannot listen on {}", args.listen))?;
    let control = Control::new(&sim.rest_url);
    println!(
        "Disco demo: a local Discord simulator on {} and every role of Disco in this process.",
        sim.address
    );

    let world = &sim.world;
    let flags: Vec<String> = vec![
        "disco".into(),
        "up".into(),
        "--token".into(),
        world.token.clone(),
        "--application-id".into(),
        world.application_id.to_string(),
        "--public-key".into(),
        sim.public_key.clone(),
        "--discord-api-url".into(),
        sim.rest_url.clone(),
        "--discord-gateway-url".into(),
        sim.gateway_url.clone(),
        "--shard-total".into(),
        world.recommended_shards.to_string(),
        "--metrics-listen".into(),
        metrics_listen.to_string(),
        "--ingress-listen".into(),
        args.ingress_listen.to_string(),
        "--voice-timeout-ms".into(),
        "8000".into(),
        "--media-dir".into(),
        media_dir(),
    ];
    let cli = Cli::try_parse_from(flags).context("the demo's own settings")?;
    let report = command_worker::sync(
        &command_worker::Commands::standard(),
        cli.discord.rest().context("the demo's own settings")?,
        world.application_id,
        None,
        false,
    )
    .await
    .context("registering the slash commands")?;
    println!(
        "  registered the slash commands: {}",
        report.added.join(", ")
    );

    let stop = shutdown.child_token();
    let roles = tokio::spawn({
        let stop = stop.clone();
        async move {
            let bus = bus::Bus::in_memory(bus::Limits::default());
            disco::run(&Role::START, &bus, &cli, stop).await
        }
    });
    wait_connected(&control, world.recommended_shards).await?;
    println!(
        "  every shard is connected; metrics and health on http://{}/metrics, /healthz, /readyz",
        metrics_listen
    );
    println!();

    let guild = &world.guilds[0];
    let (channel, alice) = (guild.channels[0].id, &guild.members[0]);
    let mut passed = true;

    println!(
        "{} types in #{}: ~~ping",
        alice.name, guild.channels[0].name
    );
    let reply = reply_to(&control, channel, alice.id, "~~ping").await?;
    passed &= step(reply.as_ref(), |content| {
        content.starts_with("pong! (") && content.ends_with("ms)")
    });

    println!(
        "{} runs the slash command /테스트 옵션:찬구 작성글:첫 글입니다",
        alice.name
    );
    let options =
        json!([{"name": "옵션", "value": "찬구"}, {"name": "작성글", "value": "첫 글입니다"}]);
    let created = control
        .command(channel, alice.id, "테스트", options)
        .await?;
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let reply = until(&control, |e| e["interaction_id"] == id.as_str()).await;
    passed &= step(reply.as_ref(), |content| {
        content.starts_with("찬구: 첫 글입니다")
    });

    let lounge = guild
        .channels
        .iter()
        .find(|c| c.kind == discord_sim::world::ChannelKind::Voice)
        .context("the demo world has a voice channel")?;
    println!(
        "{} joins the voice channel {} and types ~~voice hello disco",
        alice.name, lounge.name
    );
    control.voice(guild.id, alice.id, Some(lounge.id)).await?;
    let reply = reply_to(&control, channel, alice.id, "~~voice hello disco").await?;
    passed &= step(reply.as_ref(), |content| {
        content.starts_with("🔊 Speaking in")
    });
    passed &= heard(&control, guild.id, 0.5).await;

    println!("{} types ~~play chime.wav", alice.name);
    let reply = reply_to(&control, channel, alice.id, "~~play chime.wav").await?;
    passed &= step(reply.as_ref(), |content| content.contains("chime.wav"));
    passed &= heard(&control, guild.id, 1.5).await;
    println!();

    if args.once {
        stop.cancel();
        roles
            .await
            .context("the roles panicked")?
            .map_err(|_| anyhow::anyhow!("a role failed"))?;
        sim.stop().await?;
        remove_voice_tls(args);
        return Ok(passed);
    }
    println!("Disco keeps running. Talk to it yourself:");
    println!(
        "  curl -s {}/_sim/messages -H 'content-type: application/json' -d '{{\"channel_id\":\"{channel}\",\"author_id\":\"{}\",\"content\":\"~~help\"}}'",
        sim.rest_url, alice.id
    );
    println!(
        "  curl -s {}/_sim/sent     # everything the bot said",
        sim.rest_url
    );
    println!("Ctrl-C stops it.");
    roles
        .await
        .context("the roles panicked")?
        .map_err(|_| anyhow::anyhow!("a role failed"))?;
    sim.stop().await?;
    remove_voice_tls(args);
    Ok(passed)
}

fn remove_voice_tls(args: &DemoArgs) {
    if let Some(dir) = &args.voice_tls {
        std::fs::remove_dir_all(dir).ok();
    }
}

/// The bundled audio files, where the build tree has them.
fn media_dir() -> String {
    let bundled = concat!(env!("CARGO_MANIFEST_DIR"), "/../voice-node/media");
    match std::path::Path::new(bundled).canonicalize() {
        Ok(path) => path.display().to_string(),
        Err(_) => "media".to_owned(),
    }
}

/// Waits until the simulated voice server has heard `seconds` of sound in the guild, in all.
async fn heard(control: &Control, guild_id: u64, seconds: f64) -> bool {
    let heard = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(stats) = control.voice_stats(guild_id).await {
                let heard = stats["non_silent_seconds"].as_f64().unwrap_or_default();
                if heard >= seconds {
                    return heard;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    match heard {
        Ok(heard) => {
            println!("  the voice channel hears it: {heard:.2} s of sound so far");
            true
        }
        Err(_) => {
            println!("  the voice channel did not hear {seconds} s of sound");
            false
        }
    }
}

/// Prints the answer and whether it is the one expected.
fn step(reply: Option<&Value>, expected: impl Fn(&str) -> bool) -> bool {
    match reply {
        Some(entry) => {
            let content = entry["content"].as_str().unwrap_or_default();
            let tts = if entry["tts"] == true {
                " (read aloud)"
            } else {
                ""
            };
            println!("  Disco answers{tts}: {content}");
            let ok = expected(content);
            if !ok {
                println!("  that is not the expected answer");
            }
            ok
        }
        None => {
            println!("  no answer within {} s", PATIENCE.as_secs());
            false
        }
    }
}

/// A member says `text`; the bot's reply to it, if one comes in time.
async fn reply_to(
    control: &Control,
    channel: u64,
    author: u64,
    text: &str,
) -> anyhow::Result<Option<Value>> {
    let message = control.say(channel, author, text).await?;
    let nonce = message["id"].as_str().unwrap_or_default().to_owned();
    Ok(until(control, |e| e["nonce"] == nonce.as_str()).await)
}

async fn until(control: &Control, wanted: impl Fn(&Value) -> bool) -> Option<Value> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(sent) = control.sent().await
                && let Some(found) = sent.into_iter().find(|e| wanted(e))
            {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .ok()
}

async fn wait_connected(control: &Control, shards: u32) -> anyhow::Result<()> {
    tokio::time::timeout(PATIENCE, async {
        loop {
            if let Ok(state) = control.get("/shards").await {
                let connected = state["shards"]
                    .as_array()
                    .map_or(0, |s| s.iter().filter(|s| s["connected"] == true).count());
                if connected == shards as usize {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .context("the shards did not connect")
}
