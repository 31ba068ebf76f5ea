//! The invalid-request budget. Cloudflare bans the bot's address for about an hour after
//! 10,000 invalid requests (401, 403, and 429 unless `X-RateLimit-Scope: shared`) in
//! 10 minutes, and every role goes dark. The proxy counts them in the same sliding window and
//! refuses, without asking Discord, what it knows would fail:
//! - a token Discord answered 401 for: every request with it, until the token changes;
//! - a channel Discord answered 403 for on a route: that route in that channel, for a while
//!   (permissions change rarely; a member typing into a read-only channel costs nothing);
//! - above the threshold, any route and major parameter (channel, guild, webhook) that failed
//!   in the window: the circuit breaker.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::route::Route;

/// Cloudflare's window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10 * 60);

/// Why the proxy answered instead of Discord.
#[derive(Clone, Debug)]
pub(crate) enum Known {
    /// Discord refused this token (401); nothing with it is sent.
    Unauthorized,
    /// Discord answered 403 for this route in this channel: its answer, again.
    Forbidden(Bytes),
    /// Above the threshold, this route and parameter failed in the window.
    Breaker,
}

impl Known {
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Breaker => "breaker",
        }
    }
}

#[derive(Debug)]
pub(crate) struct Budget {
    threshold: usize,
    forbidden_memory: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When each invalid request of the window was answered, and its route and parameter.
    invalid: VecDeque<(Instant, u64)>,
    /// Invalid requests in the window per route and parameter.
    failing: HashMap<u64, u32>,
    /// (route, channel) -> until when, and Discord's 403 body.
    forbidden: HashMap<(String, u64), (Instant, Bytes)>,
    /// The token Discord refused (a hash; the token itself is not kept).
    rejected_token: Option<u64>,
}

fn hash(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The credential a request carries, as a hash: its `Authorization` header.
pub(crate) fn credential(authorization: Option<&[u8]>) -> Option<u64> {
    authorization.map(hash)
}

impl Budget {
    pub(crate) fn new(threshold: u32, forbidden_memory: Duration) -> Self {
        Self {
            threshold: threshold as usize,
            forbidden_memory,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// What the proxy already knows would fail, if anything.
    pub(crate) fn known(&self, route: &Route, credential: Option<u64>) -> Option<Known> {
        let now = Instant::now();
        let mut state = self.lock();
        if credential.is_some() && state.rejected_token == credential {
            return Some(Known::Unauthorized);
        }
        if let Some(channel) = route.channel {
            let key = (route.template.clone(), channel);
            match state.forbidden.get(&key) {
                Some((until, body)) if *until > now => return Some(Known::Forbidden(body.clone())),
                Some(_) => {
                    state.forbidden.remove(&key);
                }
                None => {}
            }
        }
        Self::expire(&mut state, now);
        let over = state.invalid.len() >= self.threshold;
        (over
            && state
                .failing
                .contains_key(&hash((&route.template, &route.major))))
        .then_some(Known::Breaker)
    }

    /// Counts Discord's answer: remembers a 401's token, a 403's channel, and every invalid
    /// request in the window.
    pub(crate) fn record(
        &self,
        route: &Route,
        credential: Option<u64>,
        status: u16,
        scope: Option<&str>,
        body: &Bytes,
    ) {
        let invalid = matches!(status, 401 | 403) || (status == 429 && scope != Some("shared"));
        if !invalid {
            return;
        }
        let now = Instant::now();
        let mut state = self.lock();
        let key = hash((&route.template, &route.major));
        state.invalid.push_back((now, key));
        *state.failing.entry(key).or_default() += 1;
        Self::expire(&mut state, now);
        if status == 401 && credential.is_some() {
            state.rejected_token = credential;
        }
        if status == 403
            && let Some(channel) = route.channel
        {
            if state.forbidden.len() > 100_000 {
                state.forbidden.retain(|_, (until, _)| *until > now);
            }
            state.forbidden.insert(
                (route.template.clone(), channel),
                (now + self.forbidden_memory, body.clone()),
            );
        }
    }

    fn expire(state: &mut State, now: Instant) {
        while let Some(&(at, key)) = state.invalid.front()
            && now.duration_since(at) >= WINDOW
        {
            state.invalid.pop_front();
            if let Some(count) = state.failing.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    state.failing.remove(&key);
                }
            }
        }
    }

    /// Invalid requests in the window, and whether the breaker is open.
    pub(crate) fn spent(&self) -> (usize, bool) {
        let mut state = self.lock();
        Self::expire(&mut state, Instant::now());
        let spent = state.invalid.len();
        (spent, spent >= self.threshold)
    }

    /// Whether a token was refused.
    pub(crate) fn token_rejected(&self) -> bool {
        self.lock().rejected_token.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_channel_and_a_401_token_are_refused_without_asking_discord() {
        let budget = Budget::new(5, Duration::from_secs(60));
        let read_only = Route::classify("POST", "/channels/7/messages");
        let other = Route::classify("POST", "/channels/8/messages");
        let token = credential(Some(b"Bot a.b.c"));
        assert!(budget.known(&read_only, token).is_none());
        let body = Bytes::from_static(b"{\"code\":50013}");
        budget.record(&read_only, token, 403, None, &body);
        assert!(matches!(budget.known(&read_only, token), Some(Known::Forbidden(b)) if b == body));
        assert!(
            budget.known(&other, token).is_none(),
            "another channel is not refused"
        );

        budget.record(&other, token, 401, None, &Bytes::new());
        assert!(matches!(
            budget.known(&other, token),
            Some(Known::Unauthorized)
        ));
        let fixed = credential(Some(b"Bot d.e.f"));
        assert!(
            budget.known(&other, fixed).is_none(),
            "a new token is tried"
        );
        assert_eq!(budget.spent(), (2, false));
    }

    #[test]
    fn above_the_threshold_what_failed_is_refused_and_the_rest_goes() {
        let budget = Budget::new(3, Duration::ZERO);
        let failing = Route::classify("POST", "/channels/7/messages");
        let healthy = Route::classify("POST", "/channels/8/messages");
        for _ in 0..3 {
            assert!(budget.known(&failing, None).is_none());
            budget.record(&failing, None, 429, Some("user"), &Bytes::new());
        }
        // Shared-scope 429s do not count.
        budget.record(&healthy, None, 429, Some("shared"), &Bytes::new());
        assert_eq!(budget.spent(), (3, true));
        assert!(matches!(budget.known(&failing, None), Some(Known::Breaker)));
        assert!(budget.known(&healthy, None).is_none());
    }
}
