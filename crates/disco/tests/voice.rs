//! Voice, end to end, as ops run it: the simulator (with its voice server), a gateway, a
//! command worker and two voice nodes (one per shard) as OS processes on the real RabbitMQ.
//! The voice nodes trust the simulator's voice server through `SSL_CERT_FILE`, as songbird
//! only dials `wss://`. Ends with a rollout: a standby node takes a shard over from a node
//! that died.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use discord_sim::{Config as SimConfig, Control, Simulator};
use serde_json::Value;
use tests::{Vhost, disco_command, reply_to, until_queues, until_shards_connected};

const PATIENCE: Duration = Duration::from_secs(30);

struct Scene {
    sim: Simulator,
    control: Control,
}

impl Scene {
    fn guild(&self, n: usize) -> &discord_sim::world::Guild {
        &self.sim.world.guilds[n]
    }

    fn channel(&self, n: usize, name: &str) -> u64 {
        self.guild(n)
            .channels
            .iter()
            .find(|c| c.name == name)
            .unwrap()
            .id
    }

    fn member(&self, name: &str) -> u64 {
        self.guild(0)
            .members
            .iter()
            .find(|m| m.name == name)
            .unwrap()
            .id
    }

    /// `member` says `text` in guild `n`'s general channel; the bot's reply.
    async fn say(&self, n: usize, member: &str, text: &str) -> String {
        let channel = self.channel(n, "general");
        let reply = reply_to(&self.control, channel, self.member(member), text).await;
        reply["content"].as_str().unwrap().to_owned()
    }

    async fn voice(&self, n: usize) -> Value {
        self.control.voice_stats(self.guild(n).id).await.unwrap()
    }

    /// Waits until guild `n`'s voice stats satisfy `wanted`.
    async fn until_voice(&self, n: usize, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        tests::until_voice(&self.control, self.guild(n).id, PATIENCE, what, wanted).await
    }
}

fn non_silent(stats: &Value) -> f64 {
    stats["non_silent_seconds"].as_f64().unwrap()
}

/// How many seconds of `text` espeak-ng voices (20 ms frames above the simulator's silence
/// threshold), measured on its own output.
fn voiced_seconds(text: &str) -> f64 {
    let output = std::process::Command::new("espeak-ng")
        .args(["--stdout", "-v", "en", text])
        .output()
        .expect("espeak-ng is installed");
    let samples: Vec<i16> = output.stdout[44..]
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let frames = samples.chunks(441).filter(|frame| {
        let power: f64 = frame.iter().map(|&s| f64::from(s).powi(2)).sum();
        (power / frame.len() as f64).sqrt() > 100.0
    });
    frames.count() as f64 * 0.02
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_hear_the_bot_speak_and_play_and_it_leaves_when_alone() {
    let mut config = SimConfig::default();
    config.world.recommended_shards = 2;
    let sim = Simulator::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap();
    let control = Control::new(&sim.rest_url);
    let scene = Scene { sim, control };
    let vhost = Vhost::new("voice");
    let ca = tests::VoiceCa::new(&scene.sim, "voice");
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_disco"));
    let disco = |args: &[&str]| {
        let mut command = disco_command(binary, args, &scene.sim, &vhost);
        command
            .env("SSL_CERT_FILE", ca.path())
            .env("DISCO_MEDIA_DIR", tests::MEDIA_DIR)
            .env("DISCO_VOICE_IDLE_TIMEOUT_SECS", "2")
            .env("DISCO_VOICE_MAX_QUEUE", "2")
            .env("DISCO_VOICE_TIMEOUT_MS", "20000");
        command.spawn().unwrap()
    };
    // One node per shard; each owns its shard's guild.
    let _node_0 = disco(&["voice-node", "--shard-total", "2", "--shards", "0..1"]);
    let mut node_1 = disco(&["voice-node", "--shard-total", "2", "--shards", "1..2"]);
    let _worker = disco(&["command-worker", "--shard-total", "2"]);
    // The nodes must bind their shards' events before the gateway sends GUILD_CREATE.
    until_queues(
        &vhost,
        &["disco.voice.0", "disco.voice.1", "disco.command-worker"],
    )
    .await;
    let _gateway = disco(&["gateway-shard", "--shard-total", "2"]);
    until_shards_connected(&scene.control, 2).await;

    // Not in voice: the original request's words.
    let answer = scene.say(0, "bob", "~~voice hello disco").await;
    assert_eq!(answer, "먼저, '음성채널'에 들어와 주세요. ^^");
    assert_eq!(scene.voice(0).await["connections"], 0);

    // In voice: the bot joins alice's channel and says it.
    let (guild, lounge) = (scene.guild(0).id, scene.channel(0, "Lounge"));
    scene
        .control
        .voice(guild, scene.member("alice"), Some(lounge))
        .await
        .unwrap();
    let answer = scene.say(0, "alice", "~~voice hello disco").await;
    assert_eq!(answer, format!("🔊 Speaking in <#{lounge}>."));
    let spoken = voiced_seconds("hello disco");
    assert!(spoken > 0.5, "espeak-ng voices {spoken} s of it");
    let stats = scene
        .until_voice(0, "the speech arrives whole", |s| {
            non_silent(s) >= spoken - 0.1
        })
        .await;
    assert_eq!(stats["connected"], true);
    assert_eq!(stats["channel_id"], lounge.to_string());
    assert_eq!(stats["decrypt_failures"], 0);
    assert!(stats["max_dave_protocol_version"].as_u64().unwrap() >= 1);

    // A bundled file plays whole: at least a second of sound.
    let before = non_silent(&stats);
    let answer = scene.say(0, "alice", "~~play chime.wav").await;
    assert_eq!(answer, format!("▶️ Playing **chime.wav** in <#{lounge}>."));
    scene
        .until_voice(0, "the chime is heard", |s| non_silent(s) >= before + 1.0)
        .await;
    tokio::time::timeout(PATIENCE, async {
        while scene.say(0, "alice", "~~queue").await != "Nothing is playing." {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .expect("the chime ends");

    // Ogg/Vorbis and MP3 (8 s each): queued, listed, skipped, heard, stopped.
    let answer = scene.say(0, "alice", "~~play arpeggio.ogg").await;
    assert_eq!(
        answer,
        format!("▶️ Playing **arpeggio.ogg** in <#{lounge}>.")
    );
    let answer = scene.say(0, "alice", "~~play arpeggio.mp3").await;
    assert_eq!(answer, "Queued **arpeggio.mp3** (position 2).");
    let answer = scene.say(0, "alice", "~~queue").await;
    assert_eq!(
        answer,
        "Now playing, then up next:\n1. arpeggio.ogg\n2. arpeggio.mp3"
    );
    let answer = scene.say(0, "alice", "~~play chime.wav").await;
    assert_eq!(answer, "The queue is full (2 tracks); skip or stop first.");
    let digits = "7".repeat(1_000);
    let answer = scene.say(0, "alice", &format!("~~voice {digits}")).await;
    assert!(answer.contains("too long to say"), "{answer}");
    let answer = scene.say(0, "alice", "~~skip").await;
    assert_eq!(answer, "⏭️ Skipped **arpeggio.ogg**.");
    let answer = scene.say(0, "alice", "~~queue").await;
    assert_eq!(answer, "Now playing, then up next:\n1. arpeggio.mp3");
    let heard = non_silent(&scene.voice(0).await);
    scene
        .until_voice(0, "the MP3 is heard", |s| non_silent(s) >= heard + 0.5)
        .await;

    // End-to-end encrypted (DAVE): what was heard is what alice's client decrypted. bob
    // joining and leaving mid-track is committed by the bot (a new epoch each time), and the
    // track plays on through both.
    let (alice, bob) = (scene.member("alice"), scene.member("bob"));
    let stats = scene.voice(0).await;
    let dave = &stats["dave"];
    assert_eq!(dave["protocol_version"], 1, "{dave}");
    assert_eq!(dave["members"], serde_json::json!([alice.to_string()]));
    assert!(dave["frames_decrypted"].as_u64().unwrap() > 100, "{dave}");
    let code = dave["privacy_code"].as_str().unwrap();
    assert!(
        code.len() == 30 && code.bytes().all(|b| b.is_ascii_digit()),
        "{code}"
    );
    let epoch = dave["epoch"].as_u64().unwrap();
    scene.control.voice(guild, bob, Some(lounge)).await.unwrap();
    let joined = scene
        .until_voice(0, "bob is committed into the group", |s| {
            s["dave"]["members"].as_array().unwrap().len() == 2
        })
        .await;
    assert_eq!(joined["dave"]["epoch"], epoch + 1);
    assert_ne!(
        joined["dave"]["privacy_code"], code,
        "a new epoch, a new code"
    );
    let heard = non_silent(&joined);
    scene
        .until_voice(0, "the MP3 plays on to both", |s| {
            non_silent(s) >= heard + 0.3
        })
        .await;
    scene.control.voice(guild, bob, None).await.unwrap();
    let left = scene
        .until_voice(0, "bob is removed from the group", |s| {
            s["dave"]["members"].as_array().unwrap().len() == 1
        })
        .await;
    assert_eq!(left["dave"]["epoch"], epoch + 2);
    let heard = non_silent(&left);
    let after = scene
        .until_voice(0, "the MP3 plays on after he left", |s| {
            non_silent(s) >= heard + 0.3
        })
        .await;
    let lost = after["dave"]["frames_failed"].as_u64().unwrap();
    println!(
        "DAVE over the call, a join and a leave included: {} packets sent, {} frames \
         decrypted, {lost} lost ({} in transitions), {} in the clear",
        after["packets"],
        after["dave"]["frames_decrypted"],
        after["dave"]["frames_lost_in_transition"],
        after["dave"]["frames_plaintext"]
    );
    assert!(
        lost <= 5,
        "a few frames at most are lost to the changes: {}",
        after["dave"]
    );
    let answer = scene.say(0, "alice", "~~stop").await;
    assert_eq!(answer, "⏹️ Stopped; 1 track(s) cleared.");
    let answer = scene.say(0, "alice", "~~queue").await;
    assert_eq!(answer, "Nothing is playing.");
    let answer = scene.say(0, "alice", "~~play ../../Cargo.toml").await;
    assert!(
        answer.contains("name a file inside the media directory"),
        "{answer}"
    );
    // One call the whole time: the guild's call was reused.
    assert_eq!(scene.voice(0).await["connections"], 1);

    // Leave: the connection ends; nothing left to skip.
    let answer = scene.say(0, "alice", "~~leave").await;
    assert_eq!(answer, "👋 Left the voice channel.");
    scene
        .until_voice(0, "the call ends", |s| s["connected"] == false)
        .await;
    let answer = scene.say(0, "alice", "~~skip").await;
    assert_eq!(answer, "The bot is not connected to a voice channel.");

    // The other shard's guild is the other node's: it speaks there too.
    let (guild_1, lounge_1) = (scene.guild(1).id, scene.channel(1, "Lounge"));
    scene
        .control
        .voice(guild_1, scene.member("alice"), Some(lounge_1))
        .await
        .unwrap();
    let answer = scene.say(1, "alice", "~~voice hello disco").await;
    assert_eq!(answer, format!("🔊 Speaking in <#{lounge_1}>."));
    scene
        .until_voice(1, "the other guild hears it", |s| {
            non_silent(s) >= spoken - 0.1
        })
        .await;

    // Alone in the channel, the bot leaves after the idle time (2 s here).
    scene
        .control
        .voice(guild_1, scene.member("alice"), None)
        .await
        .unwrap();
    scene
        .until_voice(1, "the bot leaves an empty channel", |s| {
            s["connected"] == false
        })
        .await;

    // A rollout: a second node for shard 1 waits while the first plays on; the first dies;
    // the second takes the shard over and finds alice (whose join it never saw) through
    // Discord's REST API.
    scene
        .control
        .voice(guild_1, scene.member("alice"), Some(lounge_1))
        .await
        .unwrap();
    let answer = scene.say(1, "alice", "~~play arpeggio.ogg").await;
    assert_eq!(
        answer,
        format!("▶️ Playing **arpeggio.ogg** in <#{lounge_1}>.")
    );
    let _standby = disco(&["voice-node", "--shard-total", "2", "--shards", "1..2"]);
    let playing = scene.voice(1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let still = scene.voice(1).await;
    assert_eq!(
        still["connections"], playing["connections"],
        "the call was not taken over"
    );
    assert!(
        still["packets"].as_u64() > playing["packets"].as_u64(),
        "the call plays on"
    );
    node_1.start_kill().unwrap();
    node_1.wait().await.unwrap();
    let heard = non_silent(&still);
    let answer = scene.say(1, "alice", "~~voice hello disco").await;
    assert_eq!(answer, format!("🔊 Speaking in <#{lounge_1}>."));
    scene
        .until_voice(1, "the new node speaks", |s| {
            non_silent(s) >= heard + spoken - 0.1
        })
        .await;

    let violations = scene.control.violations().await.unwrap();
    assert!(violations.is_empty(), "{violations:?}");
}
