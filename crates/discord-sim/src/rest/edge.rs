//! What stands in front of Discord's API: its latency, Google's load balancer (`Via`), and
//! Cloudflare counting invalid requests (401, 403, 429 unless `X-RateLimit-Scope: shared`) per
//! address, banning the address for about an hour after 10,000 in 10 minutes. Every role of a
//! banned bot goes dark, so reaching the ban is a violation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::Sim;

pub(super) async fn edge(State(sim): State<Arc<Sim>>, request: Request, next: Next) -> Response {
    if sim.world.rest_latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(sim.world.rest_latency_ms)).await;
    }
    let banned_until = sim.lock().rest.banned_until;
    if banned_until.is_some_and(|until| Instant::now() < until) {
        return banned();
    }
    let mut response = next.run(request).await;
    // Discord's own answers pass Google's load balancer; Cloudflare's ban page does not.
    // Clients tell a 429 of Discord's from a ban by it (discord.py does).
    response
        .headers_mut()
        .insert("via", axum::http::HeaderValue::from_static("1.1 google"));
    let status = response.status();
    let shared = response
        .headers()
        .get("x-ratelimit-scope")
        .is_some_and(|scope| scope == "shared");
    let invalid = status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || (status == StatusCode::TOO_MANY_REQUESTS && !shared);
    if invalid {
        count_invalid(&sim);
    }
    response
}

fn count_invalid(sim: &Sim) {
    let limit = sim.world.rate_limits.invalid_requests;
    let window = Duration::from_millis(limit.window_ms);
    let now = Instant::now();
    let mut state = sim.lock();
    let invalid = &mut state.rest.invalid;
    invalid.push_back(now);
    while invalid
        .front()
        .is_some_and(|&at| now.duration_since(at) >= window)
    {
        invalid.pop_front();
    }
    let count = invalid.len();
    if count >= limit.limit as usize {
        state.rest.banned_until = Some(now + Duration::from_millis(sim.world.rate_limits.ban_ms));
        state.rest.invalid.clear();
        state.violate(
            "invalid requests",
            format!(
                "{count} invalid requests (401, 403, 429) within {} s: Cloudflare bans the bot's address",
                limit.window_ms / 1000
            ),
        );
    }
}

/// Invalid requests in the current window, and whether the address is banned.
pub(crate) fn invalid_requests(sim: &Sim) -> (usize, bool) {
    let limit = sim.world.rate_limits.invalid_requests;
    let window = Duration::from_millis(limit.window_ms);
    let now = Instant::now();
    let state = sim.lock();
    let count = state
        .rest
        .invalid
        .iter()
        .filter(|&&at| now.duration_since(at) < window)
        .count();
    let banned = state.rest.banned_until.is_some_and(|until| now < until);
    (count, banned)
}

/// Cloudflare's answer to a banned address: a 429 without Discord's headers or JSON.
fn banned() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [("content-type", "text/plain")],
        "error code: 1015",
    )
        .into_response()
}
