//! One shard's loop: read dispatches and publish them (at most `buffer` waiting for a confirm,
//! so a slow broker slows the reading and Discord's RESUME covers the gap), send the commands
//! other services ask for, and on shutdown close resumably and save the session.

use std::collections::{BTreeSet, VecDeque};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;
use std::time::{Duration, Instant};

use bus::{Delivery, Destination, Message, Subscription};
use disco_proto::v1::{GatewayEvent, SavedSession, ShardCommand, presence_update, shard_command};
use disco_proto::{Versioned, bytes::Bytes, route};
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use twilight_gateway::{CloseFrame, Message as GatewayMessage, Shard, ShardState};
use twilight_model::gateway::payload::outgoing::{UpdatePresence, UpdateVoiceState};
use twilight_model::gateway::presence::{Activity, ActivityType, MinimalActivity, Status};
use twilight_model::id::Id;

use crate::metrics::{
    CloseLabel, EventLabel, Metrics, STATE_CONNECTING, STATE_DISCONNECTED, STATE_READY, ShardLabel,
};
use crate::queue::BusQueue;
use crate::{Error, frame};

/// A publish waiting for its confirm: the event's name, the outcome, how long it took, and the
/// bytes it holds in the buffer.
type Publish = Pin<
    Box<dyn std::future::Future<Output = (String, Result<(), bus::Error>, Duration, usize)> + Send>,
>;

/// How long Discord accepts an interaction's token (follow-ups, edits).
const INTERACTION_TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

/// How often a shard checkpoints its session (when its confirmed sequence moved), so a process
/// that dies any way at all leaves its successor a session to RESUME.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(2);

/// A shard command that cannot be sent, now or ever: it is dead-lettered with this reason.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadCommand(String);

impl bus::Failure for BadCommand {
    fn is_retryable(&self) -> bool {
        false
    }
}

/// On shutdown, queued shard commands are sent until none has come for this long...
const DRAIN_IDLE: Duration = Duration::from_millis(250);
/// ...or for this long at most.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

pub(crate) struct ShardTask {
    pub(crate) shard: Shard<BusQueue>,
    pub(crate) bus: bus::Bus,
    pub(crate) metrics: Metrics,
    pub(crate) events: Arc<BTreeSet<String>>,
    /// The bot's user id: its own messages are not published.
    pub(crate) bot_id: u64,
    pub(crate) buffer: usize,
    /// The most bytes the publishes waiting for their confirm may hold (a GUILD_CREATE can be
    /// megabytes: a count alone does not bound memory).
    pub(crate) buffer_bytes: usize,
    /// What they hold now.
    pub(crate) buffered_bytes: usize,
    pub(crate) ready: Arc<[AtomicBool]>,
    /// Set when a larger generation replaced this one: the shard stops for good, ending its
    /// session rather than saving it.
    pub(crate) retiring: Arc<AtomicBool>,
    pub(crate) index: usize,
    /// The last sequence published in the current session: a replayed dispatch at or below it
    /// was published already.
    pub(crate) last_sequence: Option<u64>,
    /// The sequences of the publishes waiting for their confirm, oldest first (in the order of
    /// the `in_flight` futures, which complete in order).
    pub(crate) pending: VecDeque<u64>,
    /// The sequence of the last checkpoint sent.
    pub(crate) checkpointed: Option<u64>,
    /// The checkpoint on its way to the broker, if one is.
    pub(crate) checkpointing: Option<tokio::task::JoinHandle<()>>,
    /// The sequence of the first dispatch left unpublished because the publish buffer was full
    /// (the broker is slow or down). The shard goes on reading, so it goes on heartbeating and
    /// its session lives; once the buffer has room, it RESUMEs from just before this sequence
    /// and Discord replays the rest.
    pub(crate) gap: Option<u64>,
}

impl ShardTask {
    fn id(&self) -> u32 {
        self.shard.id().number()
    }

    fn label(&self) -> ShardLabel {
        ShardLabel { shard: self.id() }
    }

    fn set_ready(&self, ready: bool) {
        self.ready[self.index].store(ready, Ordering::Relaxed);
        let state = if ready {
            STATE_READY
        } else if matches!(self.shard.state(), ShardState::Disconnected { .. }) {
            STATE_DISCONNECTED
        } else {
            STATE_CONNECTING
        };
        self.metrics
            .shard_state
            .get_or_create(&self.label())
            .set(state);
    }

    pub(crate) async fn run(mut self, shutdown: CancellationToken) -> Result<(), Error> {
        let id = self.id();
        let mut commands = self
            .bus
            .subscribe(
                Subscription::shared(route::shard_queue(id, self.shard.id().total())).prefetch(32),
            )
            .await?;
        let mut in_flight: FuturesOrdered<Publish> = FuturesOrdered::new();
        self.set_ready(false);
        // On shutdown the shard drains before it closes: commands other roles asked for before
        // they stopped (a voice node leaving its calls sends op 4 through here) still go out,
        // until none has come for a moment, within a bound. twilight sends a command as the
        // shard is polled, so the loop goes on polling meanwhile.
        let mut draining: Option<Instant> = None;
        let drained = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(drained);
        let mut checkpoint = tokio::time::interval(CHECKPOINT_EVERY);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = in_flight.len() < self.buffer && self.buffered_bytes < self.buffer_bytes;
            tokio::select! {
                biased;
                () = shutdown.cancelled(), if draining.is_none() => {
                    let now = Instant::now();
                    draining = Some(now + DRAIN_LIMIT);
                    drained.as_mut().reset((now + DRAIN_IDLE).into());
                    continue;
                }
                () = &mut drained, if draining.is_some() => break,
                Some((event, result, waited, bytes)) = in_flight.next(), if !in_flight.is_empty() => {
                    self.published(&event, result, waited, bytes);
                }
                // Before reading: under load the shard always has something to read.
                _ = checkpoint.tick() => self.checkpoint(),
                // Always read: reading is what heartbeats (twilight heartbeats as it is polled).
                message = self.shard.next() => match message {
                    Some(Ok(GatewayMessage::Text(text))) if room && self.gap.is_none() => {
                        if let Some(publish) = self.on_text(text) {
                            in_flight.push_back(publish);
                        }
                    }
                    Some(Ok(GatewayMessage::Text(text))) => self.defer(text),
                    Some(Ok(GatewayMessage::Close(frame))) => {
                        let code = frame.as_ref().map(|f| f.code);
                        info!(shard = id, ?code, "gateway connection closed");
                        if let Some(code) = code {
                            self.metrics.closes.get_or_create(&CloseLabel { code }).inc();
                        }
                        self.set_ready(false);
                        // 4004, 4010-4014: Discord will not take this shard again as configured.
                        if matches!(self.shard.state(), ShardState::FatallyClosed) {
                            return Err(Error::FatallyClosed { shard: id, code });
                        }
                    }
                    Some(Err(error)) => {
                        if matches!(self.shard.state(), ShardState::FatallyClosed) {
                            return Err(Error::FatallyClosed { shard: id, code: None });
                        }
                        warn!(shard = id, error = &error as &dyn std::error::Error, "gateway error; twilight reconnects");
                        self.set_ready(false);
                    }
                    None => {
                        self.set_ready(false);
                        return Err(Error::FatallyClosed { shard: id, code: None });
                    }
                },
                delivery = commands.next() => match delivery {
                    Some(delivery) => {
                        self.command(delivery).await;
                        if let Some(limit) = draining {
                            drained.as_mut().reset((Instant::now() + DRAIN_IDLE).min(limit).into());
                        }
                    }
                    None => break,
                },
            }
            if self.gap.is_some() && in_flight.len() <= self.buffer / 2 && draining.is_none() {
                self.resume_from_gap().await;
            }
            // The state changes inside twilight (op 7, op 9, reconnects): follow it.
            let active = matches!(self.shard.state(), ShardState::Active);
            if active != self.ready[self.index].load(Ordering::Relaxed) {
                self.set_ready(active);
            }
            if let Some(latency) = self.shard.latency().recent().first() {
                self.metrics
                    .heartbeat_seconds
                    .get_or_create(&self.label())
                    .set(latency.as_secs_f64());
            }
        }
        drop(commands);
        self.stop(in_flight).await
    }

    /// The sequence up to which every dispatch of the session is published (or meant to be
    /// dropped): what a successor may RESUME from without losing anything.
    fn confirmed_sequence(&self) -> Option<u64> {
        let published = match self.pending.front() {
            Some(oldest) => oldest.checked_sub(1).min(self.last_sequence),
            None => self.last_sequence,
        };
        match self.gap {
            Some(gap) => published.min(gap.checked_sub(1)),
            None => published,
        }
    }

    /// A frame read while the publish buffer is full: a dispatch is left for Discord to replay
    /// (the first one opens the gap); a new session (READY) ends any hope of that.
    fn defer(&mut self, text: String) {
        let Some(dispatch) = frame::dispatch(&text) else {
            return;
        };
        match dispatch.event {
            "READY" => {
                if let Some(gap) = self.gap.take() {
                    warn!(
                        shard = self.id(),
                        gap, "a new session began; dispatches from the gap on are lost"
                    );
                }
                let _ = self.on_text(text);
            }
            "RESUMED" => {
                let _ = self.on_text(text);
            }
            _ => {
                if self.gap.is_none() {
                    warn!(
                        shard = self.id(),
                        sequence = dispatch.sequence,
                        "the publish buffer is full: reading on (to keep the session), and Discord will replay from here"
                    );
                    self.gap = Some(dispatch.sequence);
                }
                self.metrics.deferred.inc();
            }
        }
    }

    /// The buffer has room again after a gap: closes the connection resumably and RESUMEs the
    /// session from just before the gap, so Discord replays every dispatch left unpublished.
    async fn resume_from_gap(&mut self) {
        let Some(gap) = self.gap.take() else {
            return;
        };
        let (Some(session), Some(resume_url)) = (self.shard.session(), self.shard.resume_url())
        else {
            return;
        };
        let sequence = gap.saturating_sub(1);
        let (session_id, resume_url) = (session.id().to_owned(), resume_url.to_owned());
        info!(
            shard = self.id(),
            sequence, "the broker keeps up again: resuming so Discord replays the gap"
        );
        self.close(CloseFrame::RESUME, None).await;
        let config = twilight_gateway::ConfigBuilder::from(self.shard.config().clone())
            .session(twilight_gateway::Session::new(sequence, session_id))
            .resume_url(resume_url)
            .build();
        self.shard = Shard::with_config(self.shard.id(), config);
        self.last_sequence = Some(sequence);
        self.set_ready(false);
    }

    /// The session as the next process needs it to RESUME from `sequence`.
    fn saved_session(&self, sequence: u64) -> Option<SavedSession> {
        let (Some(session), Some(resume_url)) = (self.shard.session(), self.shard.resume_url())
        else {
            return None;
        };
        Some(SavedSession {
            shard_id: self.id(),
            shard_total: self.shard.id().total(),
            session_id: session.id().to_owned(),
            sequence,
            resume_url: resume_url.to_owned(),
            saved_at_ms: i64::try_from(unix_ms()).unwrap_or(i64::MAX),
            ..Default::default()
        })
    }

    /// Sends the session, as far as it is confirmed, to the shard's checkpoint queue (which
    /// keeps only the newest): one checkpoint on its way at a time, in the background, so a
    /// slow broker never holds up reading (and heartbeating).
    fn checkpoint(&mut self) {
        let Some(sequence) = self.confirmed_sequence() else {
            return;
        };
        if self.checkpointed == Some(sequence)
            || self
                .checkpointing
                .as_ref()
                .is_some_and(|task| !task.is_finished())
        {
            return;
        }
        let Some(saved) = self.saved_session(sequence) else {
            return;
        };
        self.checkpointed = Some(sequence);
        let (bus, shard, metrics) = (self.bus.clone(), self.id(), self.metrics.clone());
        let queue = route::session_queue(shard, self.shard.id().total());
        let label = self.label();
        self.checkpointing = Some(tokio::spawn(async move {
            let published = bus
                .publish(
                    Destination::Latest(queue),
                    Message::new(saved.encode_current()),
                )
                .await;
            match published {
                Ok(()) => {
                    debug!(shard, sequence, "session checkpointed");
                    metrics
                        .checkpoint_seconds
                        .get_or_create(&label)
                        .set(unix_ms() as f64 / 1000.0);
                }
                Err(error) => warn!(
                    shard,
                    error = &error as &dyn std::error::Error,
                    "cannot checkpoint the session"
                ),
            }
        }));
    }

    /// Reads a text frame; the publish to wait for, if it is a dispatch to publish (counted in
    /// the buffer: the caller waits for every publish this returns).
    fn on_text(&mut self, text: String) -> Option<Publish> {
        let dispatch = frame::dispatch(&text)?;
        match dispatch.event {
            "READY" => {
                self.metrics.identifies.get_or_create(&self.label()).inc();
                self.last_sequence = None;
                self.set_ready(true);
            }
            "RESUMED" => {
                self.metrics.resumes.get_or_create(&self.label()).inc();
                self.set_ready(true);
            }
            _ => {}
        }
        if self
            .last_sequence
            .is_some_and(|last| dispatch.sequence <= last)
        {
            self.metrics.duplicates.inc();
            return None;
        }
        self.last_sequence = Some(dispatch.sequence);
        if !self.events.contains(dispatch.event) {
            return None;
        }
        // The bot's own messages come back as MESSAGE_CREATE: every reply would cost the broker
        // a publish, a delivery and an ack that every consumer ignores.
        if dispatch.event == "MESSAGE_CREATE" && dispatch.author_id == Some(self.bot_id) {
            self.metrics.own_messages.inc();
            return None;
        }
        let event = dispatch.event.to_owned();
        let sequence = dispatch.sequence;
        let guild_id = dispatch.guild_id;
        // The payload is a slice of the frame's own bytes: no copy, no re-serialisation.
        let start = dispatch.data.as_ptr() as usize - text.as_ptr() as usize;
        let end = start + dispatch.data.len();
        let payload = Bytes::from(text).slice(start..end);
        let body = GatewayEvent {
            shard_id: self.id(),
            sequence,
            event_name: event.clone(),
            guild_id,
            received_at_ms: i64::try_from(unix_ms()).unwrap_or(i64::MAX),
            heartbeat_latency_ms: self
                .shard
                .latency()
                .recent()
                .first()
                .map(|l| u32::try_from(l.as_millis()).unwrap_or(u32::MAX)),
            payload,
            ..Default::default()
        }
        .encode_current();
        let bus = self.bus.clone();
        let key = route::event_key(&event, self.id());
        let bytes = body.len();
        self.metrics.buffered.inc();
        self.buffered_bytes += bytes;
        self.pending.push_back(sequence);
        let mut message = Message::new(body);
        if event == "INTERACTION_CREATE" {
            // Its token is worthless after 15 minutes: no queue, dead letters included, keeps
            // it (or the member's input) longer.
            message = message.expiring_after(INTERACTION_TOKEN_LIFETIME);
        }
        Some(Box::pin(async move {
            let started = Instant::now();
            let result = bus.publish(Destination::Event(key), message).await;
            (event, result, started.elapsed(), bytes)
        }))
    }

    /// The oldest publish in flight is settled. One that failed opens a gap, so that no
    /// checkpoint moves past it and Discord replays it (to a RESUME, or to the successor).
    fn published(
        &mut self,
        event: &str,
        result: Result<(), bus::Error>,
        waited: Duration,
        bytes: usize,
    ) {
        let sequence = self.pending.pop_front();
        self.metrics.buffered.dec();
        self.buffered_bytes -= bytes;
        if !self.confirmed(event, result, waited)
            && let Some(sequence) = sequence
        {
            self.gap = Some(self.gap.map_or(sequence, |gap| gap.min(sequence)));
        }
    }

    /// Counts a publish's outcome; false if the dispatch was not published and must be
    /// replayed. (The bus retries through outages, so that is a bus closed under it.)
    fn confirmed(&self, event: &str, result: Result<(), bus::Error>, waited: Duration) -> bool {
        let label = EventLabel {
            event: event.to_owned(),
        };
        match result {
            Ok(()) => {
                self.metrics.published.get_or_create(&label).inc();
                self.metrics.confirm_seconds.observe(waited.as_secs_f64());
                true
            }
            Err(bus::Error::Unroutable(_)) => {
                // No consumer binds this event: nobody would ever read it.
                debug!(event, "no consumer binds this event");
                self.metrics.unrouted.get_or_create(&label).inc();
                true
            }
            Err(error) => {
                warn!(
                    event,
                    error = &error as &dyn std::error::Error,
                    "publish failed; Discord will replay it"
                );
                self.metrics.publish_failures.inc();
                false
            }
        }
    }

    /// Sends a command another service asked for, then acks it: once handed to the shard it is
    /// paced by twilight's 120-per-minute limiter.
    ///
    /// An ack that fails (the connection went) is logged, not fatal: the broker hands the
    /// command out again, and a voice state or presence sent twice says the same thing twice.
    async fn command(&mut self, delivery: Delivery) {
        let outcome = self.send_command(&delivery.message.body);
        match &outcome {
            Ok(()) => self.metrics.commands.inc(),
            Err(_) => self.metrics.bad_commands.inc(),
        };
        if let Err(error) = delivery.settle(outcome).await {
            warn!(
                shard = self.id(),
                error = &error as &dyn std::error::Error,
                "cannot settle a shard command; the broker will hand it out again"
            );
        }
    }

    /// Sends the command `body` holds; a command that cannot be sent never will be.
    fn send_command(&mut self, body: &[u8]) -> Result<(), BadCommand> {
        let id = self.id();
        let command = disco_proto::decode::<ShardCommand>(body)
            .map_err(|error| BadCommand(format!("not a ShardCommand: {error}")))?;
        if command.shard_id != id {
            return Err(BadCommand(format!(
                "a command for shard {} sent to shard {id}",
                command.shard_id
            )));
        }
        match command.command {
            Some(shard_command::Command::VoiceStateUpdate(update)) => {
                let guild = Id::new_checked(update.guild_id)
                    .ok_or_else(|| BadCommand("guild id 0".to_owned()))?;
                let channel = update.channel_id.and_then(Id::new_checked);
                self.shard.command(&UpdateVoiceState::new(
                    guild,
                    channel,
                    update.self_deaf,
                    update.self_mute,
                ));
                Ok(())
            }
            Some(shard_command::Command::PresenceUpdate(presence)) => {
                let command = presence_command(&presence).map_err(BadCommand)?;
                self.shard.command(&command);
                Ok(())
            }
            None => Err(BadCommand("an empty command".to_owned())),
        }
    }

    /// Closes the connection with `frame` (the resume code, unless the session ends for good)
    /// and polls until the close is on its way, and no further: twilight reconnects (and would
    /// RESUME) as soon as the server's echo closes the socket. What is read meanwhile is published into `in_flight`, or, without one, left
    /// for Discord to replay. A close that does not get out is no loss: Discord keeps a session
    /// resumable after an abnormal closure too.
    async fn close(
        &mut self,
        frame: CloseFrame<'static>,
        mut in_flight: Option<&mut FuturesOrdered<Publish>>,
    ) {
        self.shard.close(frame);
        let closing = std::future::poll_fn(|cx| {
            loop {
                match self.shard.poll_next_unpin(cx) {
                    Poll::Ready(Some(Ok(GatewayMessage::Text(text)))) => {
                        if let Some(in_flight) = in_flight.as_deref_mut()
                            && let Some(publish) = self.on_text(text)
                        {
                            in_flight.push_back(publish);
                        }
                    }
                    Poll::Ready(Some(Ok(GatewayMessage::Close(_)) | Err(_)) | None) => {
                        return Poll::Ready(());
                    }
                    Poll::Pending
                        if matches!(self.shard.state(), ShardState::Disconnected { .. }) =>
                    {
                        return Poll::Ready(());
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        });
        if tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .is_err()
        {
            warn!(shard = self.id(), "the shard did not close in 5 s");
        }
    }

    /// Closes resumably, publishes what is still waiting, and saves the session for the next
    /// process that owns this shard; or, retiring, ends the session and saves nothing.
    async fn stop(mut self, mut in_flight: FuturesOrdered<Publish>) -> Result<(), Error> {
        let id = self.id();
        let retiring = self.retiring.load(Ordering::Relaxed);
        let frame = if retiring {
            CloseFrame::NORMAL
        } else {
            CloseFrame::RESUME
        };
        // Anything left in a gap is replayed to the successor, which RESUMEs from before it.
        let publish_meanwhile = self.gap.is_none();
        self.close(frame, publish_meanwhile.then_some(&mut in_flight))
            .await;
        while let Some((event, result, waited, bytes)) = in_flight.next().await {
            self.published(&event, result, waited, bytes);
        }
        self.pending.clear();
        self.buffered_bytes = 0;
        self.set_ready(false);
        // A checkpoint still on its way must not land after (and over) this last one.
        if let Some(running) = self.checkpointing.take() {
            let _ = running.await;
        }
        if retiring {
            // The new generation has every guild: no process of this one resumes this session.
            // Its checkpoint is dropped too, or a process of this generation started again
            // would resume a session that ended.
            let queue = route::session_queue(id, self.shard.id().total());
            crate::drain_latest::<SavedSession>(&self.bus, &queue).await?;
            info!(
                shard = id,
                "session ended: a larger generation replaced this one"
            );
            return Ok(());
        }
        let Some(saved) = self
            .confirmed_sequence()
            .and_then(|sequence| self.saved_session(sequence))
        else {
            info!(shard = id, "no session to save");
            return Ok(());
        };
        let sequence = saved.sequence;
        self.bus
            .publish(
                Destination::Latest(route::session_queue(id, self.shard.id().total())),
                Message::new(saved.encode_current()),
            )
            .await?;
        info!(shard = id, sequence, "session saved for the next process");
        Ok(())
    }
}

fn presence_command(presence: &disco_proto::v1::PresenceUpdate) -> Result<UpdatePresence, String> {
    let status = match presence.status() {
        presence_update::Status::Online => Status::Online,
        presence_update::Status::Idle => Status::Idle,
        presence_update::Status::Dnd => Status::DoNotDisturb,
        presence_update::Status::Invisible => Status::Invisible,
    };
    let kind = match presence.activity_kind() {
        presence_update::ActivityKind::Playing => ActivityType::Playing,
        presence_update::ActivityKind::Listening => ActivityType::Listening,
        presence_update::ActivityKind::Watching => ActivityType::Watching,
        presence_update::ActivityKind::Custom => ActivityType::Custom,
        presence_update::ActivityKind::Competing => ActivityType::Competing,
    };
    let activities: Vec<Activity> = if presence.activity_name.is_empty() {
        Vec::new()
    } else {
        vec![
            MinimalActivity {
                kind,
                name: presence.activity_name.clone(),
                url: None,
            }
            .into(),
        ]
    };
    UpdatePresence::new(activities, presence.afk, None, status)
        .map_err(|e| format!("invalid presence: {e}"))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
