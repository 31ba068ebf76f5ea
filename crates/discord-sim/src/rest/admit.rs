//! Who may call, and how often: the bot token, injected faults, Discord's global and per-route
//! rate limits with their headers and 429s (a client that ignores a 429 is a violation).

use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::payload::now_ms;
use crate::state::{Sim, Take};
use crate::world::Limit;

use super::error;

pub(super) fn rate_limited(
    retry_after: Duration,
    limit: u32,
    bucket: &str,
    global: bool,
) -> Response {
    let seconds = retry_after.as_secs_f64();
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        axum::Json(json!({
            "message": "You are being rate limited.",
            "retry_after": seconds,
            "global": global,
            "code": 0,
        })),
    )
        .into_response();
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    };
    set(headers, "retry-after", format!("{}", seconds.ceil()));
    set(headers, "x-ratelimit-limit", limit.to_string());
    set(headers, "x-ratelimit-remaining", "0".to_owned());
    set(headers, "x-ratelimit-reset-after", format!("{seconds:.3}"));
    set(headers, "x-ratelimit-bucket", bucket_hash(bucket));
    set(
        headers,
        "x-ratelimit-scope",
        if global { "global" } else { "user" }.to_owned(),
    );
    if global {
        set(headers, "x-ratelimit-global", "true".to_owned());
    }
    response
}

pub(super) fn bucket_hash(bucket: &str) -> String {
    // Discord's bucket ids are opaque; a stable hash of the route is as good.
    let hash = bucket.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Which limits a request counts against.
pub(super) struct Route<'a> {
    /// Name for injected faults: `messages`, `commands`, `callback`, `webhook`, `other`.
    pub(super) fault: &'static str,
    /// Rate-limit bucket key and its limit; `None` for unlimited routes.
    pub(super) bucket: Option<(String, Limit)>,
    /// Whether the bot token is required and the global limit applies.
    pub(super) bot: bool,
    pub(super) headers: &'a HeaderMap,
}

/// Authenticates and rate-limits a request. `Ok` carries the rate-limit headers to return.
pub(super) fn admit(sim: &Sim, route: &Route<'_>) -> Result<HeaderMap, Response> {
    let mut state = sim.lock();
    let now = Instant::now();
    if route.bot {
        let expected = format!("Bot {}", sim.world.token);
        let given = route
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if given != Some(expected.as_str()) {
            state.violate(
                "authentication",
                format!("{} request without the bot token", route.fault),
            );
            return Err(error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"));
        }
    }
    if let Some(fault) = state.take_fault(route.fault) {
        if fault.status == 429 {
            let retry_after = Duration::from_secs_f64(fault.retry_after.max(0.0));
            let key = route
                .bucket
                .as_ref()
                .map_or_else(|| route.fault.to_owned(), |(key, _)| key.clone());
            state.bucket(&key, now).block(retry_after, now);
            let limit = route.bucket.as_ref().map_or(1, |(_, limit)| limit.limit);
            return Err(rate_limited(retry_after, limit, &key, false));
        }
        let status =
            StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(error(status, 0, &format!("{status}")));
    }
    if route.bot {
        let global = sim.world.rate_limits.global;
        if let Take::Limited {
            retry_after,
            ignored_429,
        } = state.bucket("global", now).take(global, now)
        {
            if ignored_429 {
                state.violate(
                    "rate limit",
                    "request during a global 429's retry_after".to_owned(),
                );
            }
            return Err(rate_limited(retry_after, global.limit, "global", true));
        }
    }
    let mut headers = HeaderMap::new();
    if let Some((key, limit)) = &route.bucket {
        match state.bucket(key, now).take(*limit, now) {
            Take::Allowed {
                remaining,
                reset_after,
            } => {
                let reset = Duration::from_millis(now_ms()) + reset_after;
                let pairs = [
                    ("x-ratelimit-limit", limit.limit.to_string()),
                    ("x-ratelimit-remaining", remaining.to_string()),
                    ("x-ratelimit-reset", format!("{:.3}", reset.as_secs_f64())),
                    (
                        "x-ratelimit-reset-after",
                        format!("{:.3}", reset_after.as_secs_f64()),
                    ),
                    ("x-ratelimit-bucket", bucket_hash(key)),
                ];
                for (name, value) in pairs {
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(name, value);
                    }
                }
            }
            Take::Limited {
                retry_after,
                ignored_429,
            } => {
                if ignored_429 {
                    state.violate(
                        "rate limit",
                        format!(
                            "request to {key} during its 429's retry_after ({} ms left)",
                            retry_after.as_millis()
                        ),
                    );
                }
                return Err(rate_limited(retry_after, limit.limit, key, false));
            }
        }
    }
    Ok(headers)
}

pub(super) fn bot_route<'a>(
    sim: &Sim,
    fault: &'static str,
    key: String,
    headers: &'a HeaderMap,
) -> Route<'a> {
    Route {
        fault,
        bucket: Some((key, sim.world.rate_limits.per_route)),
        bot: true,
        headers,
    }
}

pub(super) fn with_headers(headers: HeaderMap, status: StatusCode, body: Value) -> Response {
    (status, headers, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_limit_and_catch_a_client_ignoring_429s() {
        let mut state = crate::state::State::default();
        let limit = Limit {
            limit: 2,
            window_ms: 1000,
        };
        let now = Instant::now();
        let bucket = state.bucket("b", now);
        assert!(matches!(
            bucket.take(limit, now),
            Take::Allowed { remaining: 1, .. }
        ));
        assert!(matches!(
            bucket.take(limit, now),
            Take::Allowed { remaining: 0, .. }
        ));
        assert!(matches!(
            bucket.take(limit, now),
            Take::Limited {
                ignored_429: false,
                ..
            }
        ));
        // Asking again before retry_after is ignoring the 429.
        assert!(matches!(
            bucket.take(limit, now + Duration::from_millis(10)),
            Take::Limited {
                ignored_429: true,
                ..
            }
        ));
        // After the window, the bucket is fresh.
        assert!(matches!(
            bucket.take(limit, now + Duration::from_millis(1000)),
            Take::Allowed { remaining: 1, .. }
        ));
    }
}
