//! A `VoiceCommand` in, a `VoiceReply` out. Commands for one guild take turns; different
//! guilds run side by side.

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bus::Bus;
use disco_proto::v1::voice_command::Action;
use disco_proto::v1::voice_reply::Outcome;
use disco_proto::v1::{VoiceCommand, VoiceReply};
use songbird::tracks::Track;
use tokio_util::sync::CancellationToken;

use crate::calls::{Calls, Guild};
use crate::discord::Rest;
use crate::gateway::GatewayTotal;
use crate::metrics::{CommandLabel, Metrics, TrackLabel};
use crate::source::Source;
use crate::speech::{MAX_TEXT, Speech};
use crate::voices::Voices;

/// How long a playable input lasts, when its container says.
fn length(input: &songbird::input::Input) -> Option<Duration> {
    let songbird::input::Input::Live(songbird::input::LiveInput::Parsed(parsed), _) = input else {
        return None;
    };
    let params = &parsed.format.default_track()?.codec_params;
    let (frames, rate) = (params.n_frames?, params.sample_rate?);
    Some(Duration::from_secs_f64(
        frames as f64 / f64::from(rate.max(1)),
    ))
}

/// `90 min`, or `45 s` below two minutes.
fn minutes(length: Duration) -> String {
    let seconds = length.as_secs();
    if seconds < 120 {
        format!("{seconds} s")
    } else {
        format!("{} min", seconds / 60)
    }
}

/// Stops the track it is attached to (the queue moves on).
struct StopTrack;

#[async_trait::async_trait]
impl songbird::EventHandler for StopTrack {
    async fn act(&self, context: &songbird::EventContext<'_>) -> Option<songbird::Event> {
        if let songbird::EventContext::Track(tracks) = context {
            for (_, handle) in *tracks {
                let _ = handle.stop();
            }
        }
        None
    }
}

/// A queued track's name, kept with the track.
#[derive(Debug)]
struct Title(String);

/// What every command needs.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) user_id: u64,
    pub(crate) shard_total: u32,
    /// The gateway's shard total, which may grow past `shard_total` while the bot reshards.
    pub(crate) gateway: Arc<GatewayTotal>,
    pub(crate) calls: Calls,
    pub(crate) voices: Voices,
    pub(crate) metrics: Metrics,
    speech: Speech,
    media_dir: PathBuf,
    http: reqwest::Client,
    /// The most tracks a guild's queue holds.
    max_queue: usize,
    /// The longest a track plays.
    max_track: Duration,
    rest: Rest,
    /// guild -> its turn: one command at a time per guild, in the order they arrived.
    turns: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
}

fn reply(outcome: Outcome, detail: impl Into<String>) -> VoiceReply {
    VoiceReply {
        outcome: outcome.into(),
        detail: detail.into(),
        ..VoiceReply::default()
    }
}

impl Node {
    /// Every second: leave channels that have had nobody else in them for `idle`, and refresh the
    /// call and track gauges.
    pub(crate) async fn sweep(self: Arc<Self>, idle: Duration, shutdown: CancellationToken) {
        let node = self;
        let mut tick = tokio::time::interval(Duration::from_secs(1).min(idle));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (mut calls, mut playing, mut queued) = (0, 0, 0);
            for (guild_id, guild) in node.calls.all() {
                let (channel, tracks) = {
                    let call = guild.call.lock().await;
                    (call.current_channel(), call.queue().len())
                };
                let Some(channel) = channel else {
                    // Not in a channel (a join that failed, or Discord removed the bot), and no
                    // command at work on it: nothing to keep, so the map holds live calls only.
                    node.forget_if_idle(guild_id, &guild);
                    continue;
                };
                calls += 1;
                playing += i64::from(tracks > 0);
                queued += i64::try_from(tracks.saturating_sub(1)).unwrap_or(i64::MAX);
                let alone = node
                    .voices
                    .others_in(guild_id, channel.0.get(), node.user_id)
                    == 0;
                let since = {
                    let mut empty = guild
                        .empty_since
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    match (alone, *empty) {
                        (false, _) => *empty = None,
                        (true, None) => *empty = Some(Instant::now()),
                        (true, Some(_)) => {}
                    }
                    *empty
                };
                if since.is_some_and(|since| since.elapsed() >= idle) {
                    tracing::info!(
                        guild_id,
                        channel = channel.0.get(),
                        "leaving an empty channel"
                    );
                    node.calls.leave(guild_id).await;
                    calls -= 1;
                }
            }
            node.metrics.calls.set(calls);
            let tracks = &node.metrics.tracks;
            tracks
                .get_or_create(&TrackLabel { state: "playing" })
                .set(playing);
            tracks
                .get_or_create(&TrackLabel { state: "queued" })
                .set(queued);
        }
    }

    pub(crate) fn new(
        config: &crate::Config,
        rest: Arc<twilight_http::Client>,
        bus: Bus,
        metrics: Metrics,
    ) -> Self {
        let user_id = NonZeroU64::new(config.user_id).unwrap_or(NonZeroU64::MIN);
        let http = crate::fetch::client(crate::fetch::Lookup::System);
        let gateway = Arc::new(GatewayTotal::new(config.shard_total));
        Self {
            user_id: config.user_id,
            shard_total: config.shard_total,
            gateway: Arc::clone(&gateway),
            calls: Calls::new(bus, user_id, gateway, config.join_timeout, metrics.clone()),
            voices: Voices::default(),
            metrics,
            speech: Speech::new(
                config.tts_program.clone(),
                config.tts_voice.clone(),
                config.max_speech,
            ),
            max_queue: config.max_queue,
            max_track: config.max_track,
            media_dir: config.media_dir.clone(),
            rest: Rest::new(rest),
            http,
            turns: Mutex::default(),
        }
    }

    /// The voice channel a member is in: from the gateway's events, or, for a guild whose
    /// GUILD_CREATE this node did not see, from Discord.
    async fn locate(&self, guild_id: u64, user_id: u64) -> Option<u64> {
        if let Some(channel) = self.voices.channel_of(guild_id, user_id) {
            return Some(channel);
        }
        if self.voices.complete(guild_id) {
            return None;
        }
        match self.rest.voice_channel(guild_id, user_id).await {
            Ok(channel) => {
                if channel.is_some() {
                    self.voices.set(guild_id, user_id, channel);
                }
                channel
            }
            Err(error) => {
                tracing::warn!(%error, guild_id, "cannot ask Discord where the member is");
                None
            }
        }
    }

    fn turn(&self, guild_id: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(turns.entry(guild_id).or_default())
    }

    /// Drops the guild's call if it is in no channel and no command is at work on it or
    /// waiting for it. Checked under the turns' lock, which a command takes before it touches
    /// the call, so no command can be handed the call being dropped.
    fn forget_if_idle(&self, guild_id: u64, guild: &Guild) {
        let turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        if turns.contains_key(&guild_id) {
            return;
        }
        let Ok(call) = guild.call.try_lock() else {
            return;
        };
        if call.current_channel().is_none() {
            drop(call);
            self.calls.forget(guild_id);
        }
    }

    /// Forgets the guild's turn when no other command waits for it, so the map holds the guilds
    /// with commands in hand, not every guild ever seen.
    fn done_with_turn(&self, guild_id: u64, turn: Arc<tokio::sync::Mutex<()>>) {
        let mut turns = self.turns.lock().unwrap_or_else(PoisonError::into_inner);
        // The map's handle and this one: nobody else holds or waits for it.
        if Arc::strong_count(&turn) == 2 {
            turns.remove(&guild_id);
        }
    }

    /// Carries out a command and says how it went.
    pub(crate) async fn handle(&self, command: &VoiceCommand) -> VoiceReply {
        let name = match &command.action {
            Some(Action::Join(_)) => "join",
            Some(Action::Say(_)) => "say",
            Some(Action::Play(_)) => "play",
            Some(Action::Skip(_)) => "skip",
            Some(Action::Stop(_)) => "stop",
            Some(Action::Leave(_)) => "leave",
            Some(Action::Queue(_)) => "queue",
            None => "none",
        };
        let answer = match NonZeroU64::new(command.guild_id) {
            Some(guild_id) => {
                let turn = self.turn(guild_id.get());
                let answer = {
                    let _turn = turn.lock().await;
                    self.act(guild_id, command).await
                };
                self.done_with_turn(guild_id.get(), turn);
                answer
            }
            None => reply(Outcome::Failed, "voice commands work in a server only"),
        };
        let outcome = match answer.outcome() {
            Outcome::Ok => "ok",
            Outcome::NotInVoice => "not_in_voice",
            Outcome::NotConnected => "not_connected",
            Outcome::NothingPlaying => "nothing_playing",
            Outcome::BadSource => "bad_source",
            Outcome::Failed | Outcome::Unspecified => "failed",
        };
        self.metrics
            .commands
            .get_or_create(&CommandLabel {
                command: name,
                outcome,
            })
            .inc();
        answer
    }

    async fn act(&self, guild_id: NonZeroU64, command: &VoiceCommand) -> VoiceReply {
        match &command.action {
            Some(Action::Join(_)) => match self.join(guild_id, command.requester_id).await {
                Ok((_, channel)) => reply(Outcome::Ok, format!("Joined <#{channel}>.")),
                Err(answer) => answer,
            },
            Some(Action::Say(say)) => self.say(guild_id, command.requester_id, &say.text).await,
            Some(Action::Play(play)) => {
                self.play(guild_id, command.requester_id, &play.source)
                    .await
            }
            Some(Action::Skip(_)) => self.skip(guild_id.get()).await,
            Some(Action::Stop(_)) => self.stop(guild_id.get()).await,
            Some(Action::Leave(_)) => {
                if self.calls.leave(guild_id.get()).await {
                    reply(Outcome::Ok, "👋 Left the voice channel.")
                } else {
                    reply(Outcome::NotConnected, "")
                }
            }
            Some(Action::Queue(_)) => self.queue(guild_id.get()).await,
            None => reply(Outcome::Failed, "the command has no action"),
        }
    }

    /// Joins the requester's voice channel, reusing the guild's call; returns the call and the
    /// channel.
    async fn join(
        &self,
        guild_id: NonZeroU64,
        requester: u64,
    ) -> Result<(Arc<Guild>, u64), VoiceReply> {
        let Some(channel) = self
            .locate(guild_id.get(), requester)
            .await
            .and_then(NonZeroU64::new)
        else {
            return Err(reply(Outcome::NotInVoice, ""));
        };
        let guild = self.calls.get_or_create(guild_id);
        let busy_elsewhere = {
            let call = guild.call.lock().await;
            call.current_channel()
                .filter(|current| current.0 != channel && !call.queue().is_empty())
        };
        if let Some(current) = busy_elsewhere {
            return Err(reply(
                Outcome::Failed,
                format!("I'm playing in <#{}>; join me there.", current.0),
            ));
        }
        if let Err(error) = self.calls.connect(&guild, channel).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                guild_id,
                channel,
                "cannot join the voice channel"
            );
            return Err(reply(
                Outcome::Failed,
                format!("I could not join <#{channel}>: {error}."),
            ));
        }
        Ok((guild, channel.get()))
    }

    async fn say(&self, guild_id: NonZeroU64, requester: u64, text: &str) -> VoiceReply {
        let text = text.trim();
        if text.is_empty() {
            return reply(Outcome::Failed, "Say what? Give me some text.");
        }
        if text.chars().count() > MAX_TEXT {
            return reply(
                Outcome::Failed,
                format!("That is too long to say; keep it under {MAX_TEXT} characters."),
            );
        }
        if self.locate(guild_id.get(), requester).await.is_none() {
            return reply(Outcome::NotInVoice, "");
        }
        let started = Instant::now();
        let wav = match self.speech.synthesize(text).await {
            Ok(wav) => wav,
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "text-to-speech failed"
                );
                return reply(Outcome::Failed, error.to_string());
            }
        };
        self.metrics
            .speech_seconds
            .observe(started.elapsed().as_secs_f64());
        let (guild, channel) = match self.join(guild_id, requester).await {
            Ok(joined) => joined,
            Err(answer) => return answer,
        };
        // Speech plays over whatever the queue is playing, rather than waiting behind it.
        guild.call.lock().await.play_input(wav.into());
        reply(Outcome::Ok, format!("🔊 Speaking in <#{channel}>."))
    }

    async fn play(&self, guild_id: NonZeroU64, requester: u64, text: &str) -> VoiceReply {
        let source = match Source::parse(text, &self.media_dir) {
            Ok(source) => source,
            Err(why) => return reply(Outcome::BadSource, why),
        };
        if self.locate(guild_id.get(), requester).await.is_none() {
            return reply(Outcome::NotInVoice, "");
        }
        if let Some(guild) = self.calls.get(guild_id.get()) {
            let queued = guild.call.lock().await.queue().len();
            if queued >= self.max_queue {
                return reply(
                    Outcome::Failed,
                    format!("The queue is full ({queued} tracks); skip or stop first."),
                );
            }
        }
        let input = match source.open(&self.http).await {
            Ok(input) => input,
            Err(why) => return reply(Outcome::BadSource, why),
        };
        if let Some(length) = length(&input)
            && length > self.max_track
        {
            return reply(
                Outcome::BadSource,
                format!(
                    "{} is longer than a track may be ({}).",
                    source.title(),
                    minutes(self.max_track)
                ),
            );
        }
        let (guild, channel) = match self.join(guild_id, requester).await {
            Ok(joined) => joined,
            Err(answer) => return answer,
        };
        let title = source.title();
        let track = Track::new_with_data(input, Arc::new(Title(title.clone())));
        let mut call = guild.call.lock().await;
        let handle = call.enqueue(track).await;
        // A stream that does not say how long it is stops at the bound.
        if let Err(error) = handle.add_event(songbird::Event::Delayed(self.max_track), StopTrack) {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot bound a track"
            );
        }
        let position = call.queue().len();
        if position == 1 {
            reply(
                Outcome::Ok,
                format!("▶️ Playing **{title}** in <#{channel}>."),
            )
        } else {
            reply(
                Outcome::Ok,
                format!("Queued **{title}** (position {position})."),
            )
        }
    }

    async fn skip(&self, guild_id: u64) -> VoiceReply {
        let Some(guild) = self.connected(guild_id).await else {
            return reply(Outcome::NotConnected, "");
        };
        let queue = guild.call.lock().await.queue().clone();
        let Some(current) = queue.current() else {
            return reply(Outcome::NothingPlaying, "");
        };
        let title = current.data::<Title>().0.clone();
        if queue.skip().is_err() {
            return reply(Outcome::Failed, format!("could not skip {title}"));
        }
        // The queue moves on when the driver reports the track ended (within a mixing tick or
        // two); answer once it has, so the next `queue` already shows what plays now.
        for _ in 0..50 {
            if queue
                .current()
                .is_none_or(|now| now.uuid() != current.uuid())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reply(Outcome::Ok, format!("⏭️ Skipped **{title}**."))
    }

    async fn stop(&self, guild_id: u64) -> VoiceReply {
        let Some(guild) = self.connected(guild_id).await else {
            return reply(Outcome::NotConnected, "");
        };
        let mut call = guild.call.lock().await;
        let cleared = call.queue().len();
        call.queue().stop();
        call.stop();
        if cleared == 0 {
            return reply(Outcome::NothingPlaying, "");
        }
        reply(
            Outcome::Ok,
            format!("⏹️ Stopped; {cleared} track(s) cleared."),
        )
    }

    async fn queue(&self, guild_id: u64) -> VoiceReply {
        let Some(guild) = self.connected(guild_id).await else {
            return reply(Outcome::NotConnected, "");
        };
        let titles: Vec<String> = guild
            .call
            .lock()
            .await
            .queue()
            .current_queue()
            .iter()
            .map(|track| track.data::<Title>().0.clone())
            .collect();
        if titles.is_empty() {
            return reply(Outcome::NothingPlaying, "");
        }
        VoiceReply {
            outcome: Outcome::Ok.into(),
            detail: "Now playing, then up next:".to_owned(),
            queue: titles,
            ..VoiceReply::default()
        }
    }

    /// The guild's call if it is in a channel, after the guild's earlier commands.
    async fn connected(&self, guild_id: u64) -> Option<Arc<Guild>> {
        let guild = self.calls.get(guild_id)?;
        let in_channel = guild.call.lock().await.current_channel().is_some();
        in_channel.then_some(guild)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tracks_length_is_read_from_its_container() {
        let media = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("media");
        let http = reqwest::Client::new();
        for (file, at_least, at_most) in [("arpeggio.ogg", 7.0, 9.0), ("chime.wav", 0.5, 3.0)] {
            let input = Source::parse(file, &media)
                .expect("bundled")
                .open(&http)
                .await
                .expect("playable");
            let seconds = length(&input).expect("a length").as_secs_f64();
            assert!(
                (at_least..at_most).contains(&seconds),
                "{file}: {seconds} s"
            );
        }
        assert_eq!(minutes(Duration::from_secs(3600)), "60 min");
        assert_eq!(minutes(Duration::from_secs(5)), "5 s");
    }
}
