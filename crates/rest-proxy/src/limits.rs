//! Discord's rate limits, held for every sender at once: a bucket per route and major
//! parameter, learned from Discord's headers, and the global limit. A request waits its turn
//! only while its answer is still useful: one that would go out after its deadline, or wait
//! longer than its sender allows, is refused at once with how long it would have waited.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use axum::http::HeaderMap;

/// How much later than Discord's window our window ends: the sender's clock starts before
/// Discord's does, by up to the network's jitter.
const MARGIN: Duration = Duration::from_millis(50);
/// How often a bucket whose limits are not known yet is looked at again while its one probing
/// request runs (its waiters are also woken when it ends), and a global limit held by requests
/// still unanswered.
const PROBE_POLL: Duration = Duration::from_millis(10);

/// Why a request was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its turn comes after its deadline: nobody would want the answer.
    Deadline(Duration),
    /// Its turn comes later than the sender wants to wait (`x-disco-max-wait-ms`): the sender
    /// may park it and try again after this long, keeping its capacity for other channels.
    Busy(Duration),
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Deadline(_) => disco_proto::rest::REFUSED_DEADLINE,
            Self::Busy(_) => disco_proto::rest::REFUSED_BUSY,
        }
    }

    pub(crate) fn wait(self) -> Duration {
        match self {
            Self::Deadline(wait) | Self::Busy(wait) => wait,
        }
    }
}

/// One bucket: `limit` requests per window; what is left of the current one.
#[derive(Debug)]
struct Bucket {
    /// Known once Discord answered a request of this bucket.
    limit: Option<u32>,
    remaining: u32,
    /// When the current window ends, by Discord's last answer (our clock, after it).
    reset_at: Option<Instant>,
    /// The window's length, as Discord's answers show it.
    window: Duration,
    in_flight: u32,
    waiting: u32,
    /// When each request told to come back later (`busy`) is due, oldest first: each is given
    /// a turn in a later window, behind those told before it, so parked work drains in order.
    /// A returning request takes its place back; one that never returns is forgotten two
    /// windows after it was due.
    promised: VecDeque<Instant>,
    /// Wakes the requests waiting for the probe of a bucket whose limits are not known yet.
    probed: Option<Arc<Notify>>,
}

impl Bucket {
    fn new() -> Self {
        Self {
            limit: None,
            remaining: 0,
            reset_at: None,
            window: Duration::from_secs(1),
            in_flight: 0,
            waiting: 0,
            promised: VecDeque::new(),
            probed: None,
        }
    }

    /// The probe ended (answered or not): whoever waits for it looks at the bucket again.
    fn probe_ended(&mut self) {
        if let Some(probed) = self.probed.take() {
            probed.notify_waiters();
        }
    }

    /// Takes a turn, or says how long until one may come.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            // Unknown limits: one request at a time until Discord names them.
            if self.in_flight == 0 {
                self.in_flight += 1;
                return Ok(());
            }
            return Err(PROBE_POLL);
        };
        if let Some(reset_at) = self.reset_at
            && now >= reset_at
        {
            // A new window; requests still in flight may count against it.
            self.remaining = limit.saturating_sub(self.in_flight);
            self.reset_at = None;
        }
        if self.remaining > 0 {
            self.remaining -= 1;
            self.in_flight += 1;
            return Ok(());
        }
        Err(self.reset_at.map_or(PROBE_POLL, |reset_at| {
            reset_at.saturating_duration_since(now)
        }))
    }

    /// How long the request now joining the waiters would wait: the current window, then one
    /// window per `limit` requests ahead of it.
    /// (A returning request is ahead of those promised after it: `behind_promised` false.)
    fn expected_wait(&self, until_turn: Duration, behind_promised: bool) -> Duration {
        match self.limit {
            // Unknown until the probe's answer: no better guess than soon.
            None => until_turn,
            Some(limit) => {
                let promised = if behind_promised {
                    self.promised.len()
                } else {
                    0
                };
                let ahead = self.waiting as usize + promised;
                until_turn
                    + self.window * u32::try_from(ahead / limit.max(1) as usize).unwrap_or(u32::MAX)
            }
        }
    }

    fn learn(&mut self, now: Instant, answer: &Answer) {
        if let Some(limit) = answer.limit {
            if self.limit.is_none() {
                // The probe's answer: what it says is left is what is left.
                self.remaining = answer.remaining.unwrap_or(0);
            }
            self.limit = Some(limit);
        }
        if let Some(remaining) = answer.remaining {
            // Someone else (another replica, the bot elsewhere) may have taken some.
            self.remaining = self.remaining.min(remaining);
        }
        if let Some(after) = answer.reset_after {
            let reset_at = now + after + MARGIN;
            self.reset_at = Some(self.reset_at.map_or(reset_at, |r| r.max(reset_at)));
            self.window = self.window.max(after);
        }
        if let Some(retry_after) = answer.retry_after
            && !answer.global
        {
            self.remaining = 0;
            let until = now + retry_after + MARGIN;
            self.reset_at = Some(self.reset_at.map_or(until, |r| r.max(until)));
        }
    }
}

/// What Discord's answer says about the limits.
#[derive(Debug, Default)]
pub(crate) struct Answer {
    limit: Option<u32>,
    remaining: Option<u32>,
    reset_after: Option<Duration>,
    /// A 429's wait.
    retry_after: Option<Duration>,
    /// A 429 of the global limit.
    global: bool,
    /// `X-RateLimit-Scope`: `user`, `global` or `shared`.
    pub(crate) scope: Option<String>,
}

impl Answer {
    pub(crate) fn read(status: u16, headers: &HeaderMap) -> Self {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let seconds = |name: &str| {
            text(name)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
        };
        let limited = status == 429;
        Self {
            limit: text("x-ratelimit-limit").and_then(|v| v.parse().ok()),
            remaining: text("x-ratelimit-remaining").and_then(|v| v.parse().ok()),
            reset_after: seconds("x-ratelimit-reset-after"),
            retry_after: limited
                .then(|| seconds("retry-after"))
                .flatten()
                .or_else(|| {
                    // Cloudflare's 429 has no headers: wait a while rather than not at all.
                    limited.then_some(Duration::from_secs(1))
                }),
            global: limited && text("x-ratelimit-global").is_some_and(|v| v == "true"),
            scope: text("x-ratelimit-scope").map(str::to_owned),
        }
    }
}

/// The fleet's limits: buckets and the global one.
#[derive(Debug)]
pub(crate) struct Limits {
    state: Mutex<State>,
    /// Requests per second outside interaction routes.
    global_limit: u32,
}

#[derive(Debug)]
struct State {
    buckets: HashMap<String, Bucket>,
    /// Requests of the global limit sent and not yet answered.
    global_in_flight: u32,
    /// When each of the last answers of the global limit came, oldest first. A request holds
    /// its place in the limit from its turn until a second after its answer: Discord counts it
    /// when it arrives, some time between the two, so this holds however late it arrives (a
    /// window counted from the turn lets a request delayed on the way, by a busy machine or
    /// the network, share Discord's second with the 50 after it).
    answered: VecDeque<Instant>,
    /// A global 429 stops everything until then.
    global_blocked_until: Option<Instant>,
}

impl State {
    /// Frees the places a turn held: in the global limit, and among its bucket's requests in
    /// flight (a probe's end wakes those waiting for it). Its bucket, if still held.
    fn release(&mut self, turn: &Turn) -> Option<&mut Bucket> {
        if turn.global {
            self.global_in_flight = self.global_in_flight.saturating_sub(1);
        }
        let bucket = self.buckets.get_mut(&turn.key)?;
        bucket.in_flight = bucket.in_flight.saturating_sub(1);
        if bucket.limit.is_none() {
            bucket.probe_ended();
        }
        Some(bucket)
    }
}

/// A request's place in its bucket, given back with Discord's answer (or without one).
#[derive(Debug)]
#[must_use]
pub(crate) struct Turn {
    key: String,
    /// It holds a place in the global limit.
    global: bool,
}

/// A bucket's turn taken and not yet handed to the caller: given back unsent when dropped.
struct Held<'a> {
    limits: &'a Limits,
    turn: Option<Turn>,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if let Some(turn) = self.turn.take() {
            self.limits.unused(turn);
        }
    }
}

/// A request counted among its bucket's waiters until dropped.
struct InLine<'a> {
    limits: &'a Limits,
    key: &'a str,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(bucket) = self.limits.lock().buckets.get_mut(self.key) {
            bucket.waiting = bucket.waiting.saturating_sub(1);
        }
    }
}

impl Limits {
    pub(crate) fn new(global_limit: u32) -> Self {
        Self {
            state: Mutex::new(State {
                buckets: HashMap::new(),
                global_in_flight: 0,
                answered: VecDeque::new(),
                global_blocked_until: None,
            }),
            global_limit: global_limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits for the request's turn in bucket `key` (and in the global limit when `global`),
    /// unless it would come after `deadline` or `hold_until` (when its sender stops waiting).
    pub(crate) async fn turn(
        &self,
        key: &str,
        global: bool,
        deadline: Instant,
        hold_until: Option<Instant>,
        returning: bool,
    ) -> Result<Turn, Refusal> {
        let check = |wait: Duration| {
            let now = Instant::now();
            if now + wait > deadline {
                return Err(Refusal::Deadline(wait));
            }
            if hold_until.is_some_and(|until| now + wait > until) {
                return Err(Refusal::Busy(wait));
            }
            Ok(())
        };
        if returning {
            // Back at the turn it was promised: it waits in line, whatever it would wait.
            let mut state = self.lock();
            if let Some(bucket) = state.buckets.get_mut(key) {
                bucket.promised.pop_front();
            }
        }
        // The bucket first, so that a request waiting for its channel takes no global turn.
        loop {
            let (wait, in_line, probed) = {
                let mut state = self.lock();
                let now = Instant::now();
                let bucket = state
                    .buckets
                    .entry(key.to_owned())
                    .or_insert_with(Bucket::new);
                let forget = bucket.window * 2;
                while bucket
                    .promised
                    .front()
                    .is_some_and(|&due| now.saturating_duration_since(due) > forget)
                {
                    bucket.promised.pop_front();
                }
                match bucket.take(now) {
                    Ok(()) => break,
                    Err(until_turn) => {
                        let wait = bucket.expected_wait(until_turn, !returning);
                        if let Err(refusal) = check(wait) {
                            if let Refusal::Busy(wait) = refusal {
                                // A returning request keeps its place ahead of later promises.
                                if returning {
                                    bucket.promised.push_front(now + wait);
                                } else {
                                    bucket.promised.push_back(now + wait);
                                }
                            }
                            return Err(refusal);
                        }
                        // In line, once the bucket's limit is known; until then every
                        // request waits only for the probe's answer, and is judged after it.
                        let in_line = bucket.limit.is_some();
                        if in_line {
                            bucket.waiting += 1;
                        }
                        // Created under the lock, so the probe's end cannot come unseen.
                        let probed = (!in_line).then(|| {
                            Arc::clone(bucket.probed.get_or_insert_with(Default::default))
                                .notified_owned()
                        });
                        (until_turn, in_line, probed)
                    }
                }
            };
            // Out of line again however the wait ends: a caller that goes away (its connection
            // dropped) must not leave a waiter counted forever.
            let _in_line = in_line.then(|| InLine { limits: self, key });
            match probed {
                Some(probed) => {
                    tokio::select! {
                        () = probed => {}
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                None => tokio::time::sleep(wait).await,
            }
        }
        // From here the bucket's turn is held: given back unsent if the global limit refuses
        // it or the caller goes away while it waits for the global limit.
        let mut taken = Held {
            limits: self,
            turn: Some(Turn {
                key: key.to_owned(),
                global: false,
            }),
        };
        if global {
            loop {
                let wait = {
                    let mut state = self.lock();
                    let now = Instant::now();
                    while state.answered.front().is_some_and(|&at| {
                        now.duration_since(at) >= Duration::from_secs(1) + MARGIN
                    }) {
                        state.answered.pop_front();
                    }
                    let blocked = state
                        .global_blocked_until
                        .filter(|&until| until > now)
                        .map(|until| until - now);
                    let held = state.global_in_flight as usize + state.answered.len();
                    let full = (held >= self.global_limit as usize).then(|| {
                        // The oldest answer frees its place first; with every place held by a
                        // request still unanswered, soon.
                        state.answered.front().map_or(PROBE_POLL, |&first| {
                            (first + Duration::from_secs(1) + MARGIN).saturating_duration_since(now)
                        })
                    });
                    match blocked.max(full) {
                        None => {
                            state.global_in_flight += 1;
                            if let Some(turn) = taken.turn.as_mut() {
                                turn.global = true;
                            }
                            break;
                        }
                        Some(wait) => {
                            if let Err(refusal) = check(wait) {
                                drop(state);
                                return Err(refusal);
                            }
                            wait
                        }
                    }
                };
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
            }
        }
        Ok(taken.turn.take().expect("held until here"))
    }

    /// Gives back a turn that was never sent: its place in the bucket's window is free again.
    pub(crate) fn unused(&self, turn: Turn) {
        if let Some(bucket) = self.lock().release(&turn)
            && let Some(limit) = bucket.limit
        {
            bucket.remaining = (bucket.remaining + 1).min(limit);
        }
    }

    /// Gives a turn back with what Discord answered (`None`: no answer came).
    pub(crate) fn done(&self, turn: Turn, answer: Option<&Answer>) {
        let mut state = self.lock();
        let now = Instant::now();
        if turn.global {
            // Answered or not, it may have reached Discord by now: counted from now.
            state.answered.push_back(now);
        }
        if let Some(answer) = answer
            && answer.global
            && let Some(retry_after) = answer.retry_after
        {
            state.global_blocked_until = Some(now + retry_after + MARGIN);
        }
        let evict = {
            let Some(bucket) = state.release(&turn) else {
                return;
            };
            match answer {
                Some(answer) => bucket.learn(now, answer),
                // No answer says when the window ends, and Discord may have counted the
                // request: assume a whole window from now. (Without an end, a window spent by
                // requests that got no answer would never end.) A probe that got no answer
                // teaches nothing; the next request probes again.
                None if bucket.limit.is_some() && bucket.reset_at.is_none() => {
                    bucket.reset_at = Some(now + bucket.window + MARGIN);
                }
                None => {}
            }
            bucket.limit.is_none()
                && bucket.in_flight == 0
                && bucket.waiting == 0
                && bucket.promised.is_empty()
        };
        if evict {
            state.buckets.remove(&turn.key);
        }
        if state.buckets.len() > 50_000 {
            // Idle buckets of past windows hold nothing worth keeping.
            state.buckets.retain(|_, b| {
                b.in_flight > 0
                    || b.waiting > 0
                    || !b.promised.is_empty()
                    || b.reset_at.is_some_and(|r| r > now)
            });
        }
    }

    /// Buckets held (a gauge).
    pub(crate) fn buckets(&self) -> usize {
        self.lock().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().expect("header value"));
        }
        map
    }

    /// Discord's answer in a bucket of 5 per 5 s with `remaining` left.
    fn window(remaining: &str) -> Answer {
        Answer::read(
            200,
            &headers(&[
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", remaining),
                ("x-ratelimit-reset-after", "5.000"),
            ]),
        )
    }

    /// A patient turn in bucket `c`.
    async fn turn(limits: &Limits, deadline: Instant) -> Turn {
        limits
            .turn("c", true, deadline, None, false)
            .await
            .expect("a turn before the deadline")
    }

    #[tokio::test(start_paused = true)]
    async fn requests_waiting_for_a_probe_go_when_its_answer_comes() {
        let limits = Limits::new(50);
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = turn(&limits, deadline).await;
        let started = Instant::now();
        let next = async {
            limits.done(turn(&limits, deadline).await, None);
            started.elapsed()
        };
        let answer = async {
            tokio::time::sleep(Duration::from_millis(3)).await;
            limits.done(probe, Some(&window("4")));
        };
        let (waited, ()) = tokio::join!(next, answer);
        assert_eq!(waited, Duration::from_millis(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_sends_its_limit_per_window_and_refuses_what_would_miss_its_deadline() {
        let limits = Limits::new(50);
        let deadline = Instant::now() + Duration::from_secs(60);
        // The probe learns the bucket: 5 per 5 s, 4 left.
        let probe = turn(&limits, deadline).await;
        limits.done(probe, Some(&window("4")));
        for _ in 0..4 {
            let turn = limits
                .turn("c", true, deadline, None, false)
                .await
                .expect("in window");
            limits.done(turn, None);
        }
        // The sixth would wait for the next window: more than a 1 s deadline allows.
        let soon = Instant::now() + Duration::from_secs(1);
        let refused = limits
            .turn("c", true, soon, None, false)
            .await
            .expect_err("too late");
        assert!(matches!(refused, Refusal::Deadline(wait) if wait > Duration::from_secs(4)));
        // ... and more than a sender that waits at most 100 ms.
        let refused = limits
            .turn(
                "c",
                true,
                deadline,
                Some(Instant::now() + Duration::from_millis(100)),
                false,
            )
            .await
            .expect_err("busy");
        assert!(matches!(refused, Refusal::Busy(_)));
        // Those told to come back later are given turns in order, `limit` per window.
        let mut waits = Vec::new();
        for _ in 0..10 {
            match limits
                .turn("c", true, deadline, Some(Instant::now()), false)
                .await
            {
                Err(Refusal::Busy(wait)) => waits.push(wait.as_secs()),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits, [5, 5, 5, 5, 10, 10, 10, 10, 10, 15]);
        // A patient one waits for the window to end.
        let started = Instant::now();
        let turn = limits
            .turn("c", true, deadline, None, false)
            .await
            .expect("next window");
        assert!(started.elapsed() >= Duration::from_secs(5));
        limits.done(turn, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_that_slips_past_what_its_sender_waits_is_refused() {
        let limits = std::sync::Arc::new(Limits::new(50));
        let deadline = Instant::now() + Duration::from_secs(60);
        let probe = turn(&limits, deadline).await;
        limits.done(probe, Some(&window("4")));
        let mut turns = Vec::new();
        for _ in 0..4 {
            turns.push(
                limits
                    .turn("c", true, deadline, None, false)
                    .await
                    .expect("in window"),
            );
        }
        // A sender that waits 6 s: the window ends in ~5 s, so it waits in line...
        let patient = tokio::spawn({
            let limits = std::sync::Arc::clone(&limits);
            let hold_until = Instant::now() + Duration::from_secs(6);
            async move {
                let asked = Instant::now();
                let turn = limits
                    .turn("c", true, deadline, Some(hold_until), false)
                    .await;
                (turn.map(|turn| limits.done(turn, None)), asked.elapsed())
            }
        });
        // ... until Discord's answer to one still in flight moves the window's end to ~6 s.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for turn in turns {
            limits.done(turn, Some(&window("0")));
        }
        let (turn, held) = patient.await.expect("the patient sender");
        assert!(matches!(turn, Err(Refusal::Busy(_))), "{turn:?}");
        assert!(held <= Duration::from_secs(6), "held {held:?}");
    }

    /// `limits` with bucket `c` learned (5 per 5 s) and its first window spent and over:
    /// the next turn opens a new window.
    async fn a_spent_window(limits: &Limits, deadline: Instant) {
        for n in (0..5).rev() {
            let turn = limits.turn("c", false, deadline, None, false).await;
            limits.done(turn.expect("a turn"), Some(&window(&n.to_string())));
        }
        tokio::time::sleep(Duration::from_secs(6)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn turns_refused_by_the_global_limit_or_given_up_are_not_spent() {
        let limits = Limits::new(1);
        let deadline = Instant::now() + Duration::from_secs(60);
        a_spent_window(&limits, deadline).await;
        // Another bucket holds the one global place.
        let blocker = limits.turn("b", true, deadline, None, false).await;
        let blocker = blocker.expect("the global place");
        // A new window's five turns: each refused by the global limit (its sender waits for
        // nothing), or given up by a caller that went away while it waited there.
        for n in 0..5 {
            if n % 2 == 0 {
                let refused = limits
                    .turn("c", true, deadline, Some(Instant::now()), false)
                    .await;
                assert!(matches!(refused, Err(Refusal::Busy(_))), "{refused:?}");
            } else {
                let gone = tokio::time::timeout(
                    Duration::from_millis(100),
                    limits.turn("c", true, deadline, None, false),
                )
                .await;
                assert!(gone.is_err(), "still waiting for the global limit");
            }
        }
        limits.done(blocker, None);
        // None of them reached Discord: the window's five turns are all still there.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let started = Instant::now();
        for _ in 0..5 {
            let turn = limits.turn("c", false, deadline, None, false).await;
            limits.done(turn.expect("a turn of this window"), None);
        }
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_spent_on_requests_that_got_no_answer_ends() {
        let limits = Limits::new(50);
        let deadline = Instant::now() + Duration::from_secs(60);
        a_spent_window(&limits, deadline).await;
        // A new window's five go out, and no answer comes (Discord unreachable).
        for _ in 0..5 {
            let turn = limits.turn("c", false, deadline, None, false).await;
            limits.done(turn.expect("a turn"), None);
        }
        // Nothing says when that window ends: it is taken to end a window later.
        let started = Instant::now();
        let turn = limits.turn("c", false, deadline, None, false).await;
        limits.done(turn.expect("a turn in the next window"), None);
        assert!(
            started.elapsed() <= Duration::from_secs(6),
            "{:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_answer_holds_its_place_in_the_global_limit_until_a_second_after_it() {
        let limits = Limits::new(3);
        let deadline = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        let mut turns = Vec::new();
        for n in 0..3 {
            turns.push(
                limits
                    .turn(&format!("bucket {n}"), true, deadline, None, false)
                    .await
                    .expect("turn"),
            );
        }
        // Answered half a second later: Discord may have counted them as late as that.
        tokio::time::sleep(Duration::from_millis(500)).await;
        for turn in turns {
            limits.done(turn, None);
        }
        let turn = limits
            .turn("bucket 3", true, deadline, None, false)
            .await
            .expect("turn");
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(1_500), "{waited:?}");
        limits.done(turn, None);
    }

    #[tokio::test(start_paused = true)]
    async fn the_global_limit_spaces_requests_over_any_second() {
        let limits = Limits::new(3);
        let deadline = Instant::now() + Duration::from_secs(60);
        let started = Instant::now();
        for n in 0..7 {
            let turn = limits
                .turn(&format!("bucket {n}"), true, deadline, None, false)
                .await
                .expect("turn");
            limits.done(turn, None);
        }
        // 3 at once, 3 a second later, the 7th a second after that.
        assert!(started.elapsed() >= Duration::from_secs(2));
        // Interaction routes are not counted.
        let turn = limits
            .turn("interaction", false, deadline, None, false)
            .await
            .expect("exempt");
        limits.done(turn, None);
    }
}
