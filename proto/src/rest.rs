//! The contract between the roles and the rest-proxy: what a REST call may tell the proxy
//! beyond Discord's own request, and how the proxy says it answered instead of Discord.
//!
//! A refusal is Discord's error shape with a `disco` object:
//! `{"message": "...", "code": 0, "disco": {"refused": "busy", "retry_after_ms": 4200}}`
//! (also as the [`REFUSED_HEADER`] and [`RETRY_AFTER_HEADER`] headers), because REST clients
//! hand their callers the body of an error, not its headers.

/// When the answer stops being useful, as Unix milliseconds. A request whose turn in
/// Discord's rate limits would come later is refused at once as [`REFUSED_DEADLINE`].
pub const DEADLINE_HEADER: &str = "x-disco-deadline";
/// How long the sender will wait for its turn in all, in milliseconds (less than its HTTP
/// client's timeout); a longer wait is refused as [`REFUSED_BUSY`] with the wait, at once or
/// when the turn slips, so the sender can park the work and do other work.
pub const MAX_WAIT_HEADER: &str = "x-disco-max-wait-ms";
/// Set (to `1`) on a request sent again at the time a [`REFUSED_BUSY`] named: it takes back the
/// turn it was promised, ahead of those promised after it (and keeps that place if refused
/// again).
pub const RETURNING_HEADER: &str = "x-disco-returning";
/// Why the proxy answered instead of Discord: one of the `REFUSED_*` reasons, or
/// `unauthorized`, `forbidden`, `breaker`, `unreachable`.
pub const REFUSED_HEADER: &str = "x-disco-refused";
/// How long (ms) the refused request would have waited for its turn.
pub const RETRY_AFTER_HEADER: &str = "x-disco-retry-after-ms";
/// Its turn comes after its deadline.
pub const REFUSED_DEADLINE: &str = "deadline";
/// Its turn comes later than the sender's [`MAX_WAIT_HEADER`].
pub const REFUSED_BUSY: &str = "busy";
