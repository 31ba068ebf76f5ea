//! voice-node's settings: its `Config` fields as flags and `DISCO_*` variables.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use voice_node::Config;

use super::{DiscordArgs, GatewayArgs, SettingsError, Source, refused};

/// voice-node settings.
#[derive(Debug, Args)]
#[command(next_help_heading = "voice-node")]
pub struct VoiceArgs {
    /// Leave a voice channel that has had nobody else in it this long, in seconds.
    #[arg(
        long,
        env = "DISCO_VOICE_IDLE_TIMEOUT_SECS",
        default_value_t = Config::DEFAULT_IDLE_TIMEOUT.as_secs(),
        global = true
    )]
    pub voice_idle_timeout_secs: u64,
    /// How long joining a voice channel may take, in milliseconds.
    #[arg(
        long,
        env = "DISCO_VOICE_JOIN_TIMEOUT_MS",
        default_value_t = Config::DEFAULT_JOIN_TIMEOUT.as_millis() as u64,
        global = true
    )]
    pub voice_join_timeout_ms: u64,
    /// The only directory `play <file>` reads from.
    #[arg(
        long,
        env = "DISCO_MEDIA_DIR",
        default_value = Config::DEFAULT_MEDIA_DIR,
        global = true
    )]
    pub media_dir: PathBuf,
    /// The text-to-speech program.
    #[arg(
        long,
        env = "DISCO_TTS_PROGRAM",
        default_value = Config::DEFAULT_TTS_PROGRAM,
        global = true
    )]
    pub tts_program: PathBuf,
    /// The text-to-speech voice (`espeak-ng --voices` lists them).
    #[arg(
        long,
        env = "DISCO_TTS_VOICE",
        default_value = Config::DEFAULT_TTS_VOICE,
        global = true
    )]
    pub tts_voice: String,
    /// The longest speech `say` makes, in seconds; longer is refused.
    #[arg(
        long,
        env = "DISCO_VOICE_MAX_SPEECH_SECS",
        default_value_t = Config::DEFAULT_MAX_SPEECH.as_secs(),
        global = true
    )]
    pub voice_max_speech_secs: u64,
    /// The most tracks a guild's queue holds.
    #[arg(
        long,
        env = "DISCO_VOICE_MAX_QUEUE",
        default_value_t = Config::DEFAULT_MAX_QUEUE,
        global = true
    )]
    pub voice_max_queue: usize,
    /// The longest a track plays, in seconds: longer ones are refused, or stopped there.
    #[arg(
        long,
        env = "DISCO_VOICE_MAX_TRACK_SECS",
        default_value_t = Config::DEFAULT_MAX_TRACK.as_secs(),
        global = true
    )]
    pub voice_max_track_secs: u64,
}

/// Where each checked field comes from.
const SOURCES: &[Source] = &[
    ("user_id", "DISCO_APPLICATION_ID", "application-id"),
    ("shards", "DISCO_SHARDS", "shards"),
    (
        "idle_timeout",
        "DISCO_VOICE_IDLE_TIMEOUT_SECS",
        "voice-idle-timeout-secs",
    ),
    (
        "join_timeout",
        "DISCO_VOICE_JOIN_TIMEOUT_MS",
        "voice-join-timeout-ms",
    ),
    ("tts_voice", "DISCO_TTS_VOICE", "tts-voice"),
    (
        "max_speech",
        "DISCO_VOICE_MAX_SPEECH_SECS",
        "voice-max-speech-secs",
    ),
    ("max_queue", "DISCO_VOICE_MAX_QUEUE", "voice-max-queue"),
    (
        "max_track",
        "DISCO_VOICE_MAX_TRACK_SECS",
        "voice-max-track-secs",
    ),
];

impl VoiceArgs {
    /// The voice node's settings, checked. The bot's user id is the application id (the same
    /// for every bot application).
    pub fn config(
        &self,
        discord: &DiscordArgs,
        gateway: &GatewayArgs,
        hostname: Option<&str>,
    ) -> Result<Config, SettingsError> {
        let shards = gateway.shard_range(hostname)?;
        let mut config = Config::new(discord.application_id()?, shards.ids(), shards.total());
        config.idle_timeout = Duration::from_secs(self.voice_idle_timeout_secs);
        config.join_timeout = Duration::from_millis(self.voice_join_timeout_ms);
        config.media_dir.clone_from(&self.media_dir);
        config.tts_program.clone_from(&self.tts_program);
        config.tts_voice.clone_from(&self.tts_voice);
        config.max_speech = Duration::from_secs(self.voice_max_speech_secs);
        config.max_queue = self.voice_max_queue;
        config.max_track = Duration::from_secs(self.voice_max_track_secs);
        config
            .validate()
            .map_err(|e| refused(e.field, e.problem, SOURCES))?;
        Ok(config)
    }
}
