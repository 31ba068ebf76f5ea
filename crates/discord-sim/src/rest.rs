//! REST API v10: the routes Disco uses, with Discord's authentication, rate-limit headers, 429s,
//! error bodies and rules (nonces, interaction deadlines, command validation).

// A refused request is answered with the response itself; it is built once per refusal, so
// its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::payload::{self, MessageParts, now_ms};
use crate::state::{Sim, Take};
use crate::world::{ChannelKind, Limit};

/// How long after its creation an interaction accepts its initial response.
pub(crate) const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);
/// How long an interaction token stays valid for edits and follow-ups.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long Discord remembers a nonce for `enforce_nonce`.
const NONCE_MEMORY: Duration = Duration::from_secs(5 * 60);

pub(crate) fn router() -> Router<Arc<Sim>> {
    Router::new()
        .route("/gateway", get(gateway))
        .route("/gateway/bot", get(gateway_bot))
        .route("/users/@me", get(current_user))
        .route(
            "/guilds/{guild_id}/voice-states/{user_id}",
            get(user_voice_state),
        )
        .route("/applications/@me", get(current_application))
        .route("/oauth2/applications/@me", get(current_application))
        .route("/channels/{channel_id}/messages", post(create_message))
        .route(
            "/applications/{app}/commands",
            get(list_global_commands)
                .post(create_global_command)
                .put(overwrite_global_commands),
        )
        .route(
            "/applications/{app}/guilds/{guild}/commands",
            get(list_guild_commands)
                .post(create_guild_command)
                .put(overwrite_guild_commands),
        )
        .route(
            "/interactions/{id}/{token}/callback",
            post(interaction_callback),
        )
        .route(
            "/webhooks/{app}/{token}/messages/@original",
            get(get_original)
                .patch(edit_original)
                .delete(delete_original),
        )
        .route("/webhooks/{app}/{token}", post(followup))
        .fallback(|| async { error(StatusCode::NOT_FOUND, 0, "404: Not Found") })
}

/// Discord's error body.
pub(crate) fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"message": message, "code": code})),
    )
        .into_response()
}

/// Discord's answer to a body that is not JSON (or not the JSON the route takes).
fn invalid_json() -> Response {
    error(
        StatusCode::BAD_REQUEST,
        50109,
        "The request body contains invalid JSON.",
    )
}

fn invalid_form(detail: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "message": "Invalid Form Body",
            "code": 50035,
            "errors": {"_errors": [{"code": "BASE_TYPE_INVALID", "message": detail}]},
        })),
    )
        .into_response()
}

fn rate_limited(retry_after: Duration, limit: u32, bucket: &str, global: bool) -> Response {
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

fn bucket_hash(bucket: &str) -> String {
    // Discord's bucket ids are opaque; a stable hash of the route is as good.
    let hash = bucket.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("{hash:016x}")
}

/// Which limits a request counts against.
struct Route<'a> {
    /// Name for injected faults: `messages`, `commands`, `callback`, `webhook`, `other`.
    fault: &'static str,
    /// Rate-limit bucket key and its limit; `None` for unlimited routes.
    bucket: Option<(String, Limit)>,
    /// Whether the bot token is required and the global limit applies.
    bot: bool,
    headers: &'a HeaderMap,
}

/// Authenticates and rate-limits a request. `Ok` carries the rate-limit headers to return.
fn admit(sim: &Sim, route: &Route<'_>) -> Result<HeaderMap, Response> {
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

fn bot_route<'a>(sim: &Sim, fault: &'static str, key: String, headers: &'a HeaderMap) -> Route<'a> {
    Route {
        fault,
        bucket: Some((key, sim.world.rate_limits.per_route)),
        bot: true,
        headers,
    }
}

fn with_headers(headers: HeaderMap, status: StatusCode, body: Value) -> Response {
    (status, headers, axum::Json(body)).into_response()
}

async fn gateway(State(sim): State<Arc<Sim>>) -> Response {
    axum::Json(json!({"url": sim.urls.gateway})).into_response()
}

async fn gateway_bot(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let route = bot_route(&sim, "other", "gateway/bot".to_owned(), &headers);
    let headers = match admit(&sim, &route) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let world = &sim.world;
    let remaining = world
        .session_start_limit
        .saturating_sub(sim.lock().sessions_started);
    with_headers(
        headers,
        StatusCode::OK,
        json!({
            "url": sim.urls.gateway,
            "shards": world.recommended_shards,
            "session_start_limit": {
                "total": world.session_start_limit,
                "remaining": remaining,
                "reset_after": 86_400_000,
                "max_concurrency": world.max_concurrency,
            },
        }),
    )
}

async fn current_user(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let route = bot_route(&sim, "other", "users/@me".to_owned(), &headers);
    match admit(&sim, &route) {
        Ok(headers) => with_headers(headers, StatusCode::OK, payload::current_user(&sim.world)),
        Err(response) => response,
    }
}

/// Get User Voice State: where a member is in voice, or 404 Unknown Voice State.
async fn user_voice_state(
    State(sim): State<Arc<Sim>>,
    Path((guild_id, user_id)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    let route = bot_route(
        &sim,
        "other",
        format!("guilds/{guild_id}/voice-states"),
        &headers,
    );
    let headers = match admit(&sim, &route) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let Some(guild) = sim.world.guild(guild_id) else {
        return error(StatusCode::NOT_FOUND, 10004, "Unknown Guild");
    };
    let Some(user) = guild
        .members
        .iter()
        .chain(std::iter::once(&sim.world.bot))
        .find(|m| m.id == user_id)
    else {
        return error(StatusCode::NOT_FOUND, 10013, "Unknown User");
    };
    let channel = sim.lock().voice.get(&(guild_id, user_id)).copied();
    match channel {
        Some(channel) => {
            let session = format!("{:x}", sim.snowflake());
            let state = payload::voice_state(
                guild_id,
                Some(channel),
                user,
                user.id == sim.world.bot.id,
                &session,
                payload::now_ms(),
            );
            with_headers(headers, StatusCode::OK, state)
        }
        None => error(StatusCode::NOT_FOUND, 10065, "Unknown Voice State"),
    }
}

async fn current_application(State(sim): State<Arc<Sim>>, headers: HeaderMap) -> Response {
    let route = bot_route(&sim, "other", "applications/@me".to_owned(), &headers);
    let headers = match admit(&sim, &route) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let world = &sim.world;
    let owner = world
        .guilds
        .first()
        .and_then(|g| g.members.first())
        .unwrap_or(&world.bot);
    with_headers(
        headers,
        StatusCode::OK,
        json!({
            "id": world.application_id.to_string(),
            "name": world.application_name,
            "icon": null,
            "description": "",
            "bot_public": true,
            "bot_require_code_grant": false,
            "verify_key": sim.public_key_hex(),
            "flags": 0,
            "owner": payload::user(owner, false),
            "team": null,
            "summary": "",
            "bot": payload::user(&world.bot, true),
        }),
    )
}

#[derive(Debug, Deserialize)]
struct NewMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tts: bool,
    #[serde(default)]
    embeds: Option<Vec<Value>>,
    #[serde(default)]
    allowed_mentions: Option<Value>,
    #[serde(default)]
    nonce: Option<Value>,
    #[serde(default)]
    enforce_nonce: bool,
    #[serde(default)]
    message_reference: Option<Value>,
    #[serde(default)]
    flags: Option<u64>,
}

/// Checks content and embeds as Discord does; the message text of the 400 when not.
fn check_content(content: Option<&str>, embeds: Option<&[Value]>) -> Result<(), &'static str> {
    let content = content.unwrap_or_default();
    let embeds = embeds.unwrap_or_default();
    if content.chars().count() > 2000 {
        return Err("content: Must be 2000 or fewer in length.");
    }
    if embeds.len() > 10 {
        return Err("embeds: Must be 10 or fewer in length.");
    }
    if content.is_empty() && embeds.is_empty() {
        return Err("Cannot send an empty message");
    }
    Ok(())
}

fn nonce_key(nonce: &Value) -> Option<String> {
    match nonce {
        Value::String(s) if s.len() <= 25 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

async fn create_message(
    State(sim): State<Arc<Sim>>,
    Path(channel_id): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = Route {
        fault: "messages",
        bucket: Some((
            format!("channels/{channel_id}/messages"),
            sim.world.rate_limits.messages_per_channel,
        )),
        bot: true,
        headers: &headers,
    };
    let headers = match admit(&sim, &route) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let Ok(new) = serde_json::from_slice::<NewMessage>(&body) else {
        return invalid_json();
    };
    let world = &sim.world;
    let Some((guild, channel)) = world.channel(channel_id) else {
        return error(StatusCode::NOT_FOUND, 10003, "Unknown Channel");
    };
    if channel.kind != ChannelKind::Text {
        return error(
            StatusCode::BAD_REQUEST,
            50008,
            "Cannot send messages in a non-text channel",
        );
    }
    if let Err(problem) = check_content(new.content.as_deref(), new.embeds.as_deref()) {
        return error(StatusCode::BAD_REQUEST, 50006, problem);
    }
    let nonce = match &new.nonce {
        None => None,
        Some(value) => match nonce_key(value) {
            Some(key) => Some(key),
            None => {
                return invalid_form(
                    "nonce: must be an integer or a string of at most 25 characters",
                );
            }
        },
    };
    if new.enforce_nonce && nonce.is_none() {
        return invalid_form("enforce_nonce requires a nonce");
    }
    let mut state = sim.lock();
    if new.enforce_nonce
        && let Some(key) = &nonce
        && let Some((existing, at)) = state.nonces.get(&(channel_id, key.clone()))
        && at.elapsed() < NONCE_MEMORY
        && let Some((_, message)) = state.messages.get(existing)
    {
        // Discord returns the message the nonce already created, and creates nothing.
        return with_headers(headers, StatusCode::OK, message.clone());
    }
    let id = sim.snowflake();
    let content = new.content.unwrap_or_default();
    let message = payload::message(&MessageParts {
        id,
        channel_id,
        guild_id: Some(guild.id),
        author: &world.bot,
        author_is_bot: true,
        content: &content,
        tts: new.tts,
        embeds: Value::Array(new.embeds.unwrap_or_default()),
        nonce: new.nonce.clone(),
        timestamp_ms: now_ms(),
        edited_ms: None,
        mentions: Vec::new(),
        mention_everyone: false,
        interaction_id: None,
        webhook_id: None,
    });
    state.messages.insert(id, (channel_id, message.clone()));
    if let Some(key) = nonce {
        state.nonces.insert((channel_id, key), (id, Instant::now()));
    }
    state.sent.push(json!({
        "kind": "message",
        "at_ms": now_ms(),
        "channel_id": channel_id.to_string(),
        "message_id": id.to_string(),
        "content": content,
        "tts": new.tts,
        "embeds": message["embeds"],
        "allowed_mentions": new.allowed_mentions,
        "nonce": new.nonce,
        "enforce_nonce": new.enforce_nonce,
        "message_reference": new.message_reference,
        "flags": new.flags,
    }));
    with_headers(headers, StatusCode::OK, message)
}

// --- Application commands ---------------------------------------------------------------

/// A name Discord accepts for a command or an option: 1 to 32 characters, no upper case,
/// letters (any script), digits, `-` and `_`.
fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=32).contains(&count)
        && name
            .chars()
            .all(|c| (c.is_alphanumeric() || c == '-' || c == '_') && !c.is_uppercase())
}

fn valid_description(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|d| (1..=100).contains(&d.chars().count()))
}

/// Validates a command definition as Discord does for chat-input commands.
fn check_command(command: &Value) -> Result<(), String> {
    let name = command
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !valid_name(name) {
        return Err(format!(
            "name {name:?}: 1-32 lower-case letters, digits, '-' or '_'"
        ));
    }
    let kind = command.get("type").and_then(Value::as_u64).unwrap_or(1);
    if kind == 1 && !command.get("description").is_some_and(valid_description) {
        return Err(format!("{name}: description must be 1-100 characters"));
    }
    let options = command
        .get("options")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if options.len() > 25 {
        return Err(format!("{name}: at most 25 options"));
    }
    let mut optional_seen = false;
    for option in options {
        let option_name = option
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !valid_name(option_name) {
            return Err(format!("{name}.{option_name:?}: invalid option name"));
        }
        if !option.get("description").is_some_and(valid_description) {
            return Err(format!(
                "{name}.{option_name}: description must be 1-100 characters"
            ));
        }
        if !option
            .get("type")
            .and_then(Value::as_u64)
            .is_some_and(|t| (1..=11).contains(&t))
        {
            return Err(format!("{name}.{option_name}: option type must be 1-11"));
        }
        let required = option
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        if required && optional_seen {
            return Err(format!(
                "{name}.{option_name}: required options must come before optional ones"
            ));
        }
        optional_seen |= !required;
        let choices = option
            .get("choices")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if choices.len() > 25 {
            return Err(format!("{name}.{option_name}: at most 25 choices"));
        }
        for choice in choices {
            let choice_name = choice
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !(1..=100).contains(&choice_name.chars().count()) || choice.get("value").is_none() {
                return Err(format!(
                    "{name}.{option_name}: every choice needs a name of 1-100 characters and a value"
                ));
            }
        }
    }
    Ok(())
}

/// The stored form of a command: what was sent, plus Discord's ids and defaults.
fn stored_command(
    sim: &Sim,
    mut command: Value,
    guild_id: Option<u64>,
    id: Option<String>,
) -> Value {
    let id = id.unwrap_or_else(|| sim.snowflake().to_string());
    command["id"] = json!(id);
    command["application_id"] = json!(sim.world.application_id.to_string());
    command["version"] = json!(sim.snowflake().to_string());
    if command.get("type").is_none() {
        command["type"] = json!(1);
    }
    if command.get("options").is_none() {
        command["options"] = json!([]);
    }
    for field in [
        "default_member_permissions",
        "name_localizations",
        "description_localizations",
    ] {
        if command.get(field).is_none() {
            command[field] = Value::Null;
        }
    }
    if command.get("nsfw").is_none() {
        command["nsfw"] = json!(false);
    }
    if let Some(guild_id) = guild_id {
        command["guild_id"] = json!(guild_id.to_string());
    }
    command
}

fn check_app(sim: &Sim, app: u64) -> Result<(), Response> {
    if app == sim.world.application_id {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, 50001, "Missing Access"))
    }
}

fn check_guild(sim: &Sim, guild: u64) -> Result<(), Response> {
    if sim.world.guild(guild).is_some() {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, 50001, "Missing Access"))
    }
}

fn commands_admit(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    guild: Option<u64>,
) -> Result<HeaderMap, Response> {
    let key = guild.map_or_else(
        || format!("applications/{app}/commands"),
        |g| format!("applications/{app}/guilds/{g}/commands"),
    );
    let headers = admit(
        sim,
        &Route {
            fault: "commands",
            bucket: Some((key, sim.world.rate_limits.per_route)),
            bot: true,
            headers,
        },
    )?;
    check_app(sim, app)?;
    if let Some(guild) = guild {
        check_guild(sim, guild)?;
    }
    Ok(headers)
}

fn list_commands(sim: &Sim, headers: &HeaderMap, app: u64, guild: Option<u64>) -> Response {
    let headers = match commands_admit(sim, headers, app, guild) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let state = sim.lock();
    let list = match guild {
        None => state.global_commands.clone(),
        Some(guild) => state
            .guild_commands
            .get(&guild)
            .cloned()
            .unwrap_or_default(),
    };
    with_headers(headers, StatusCode::OK, Value::Array(list))
}

fn create_command(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    guild: Option<u64>,
    body: &[u8],
) -> Response {
    let headers = match commands_admit(sim, headers, app, guild) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let Ok(command) = serde_json::from_slice::<Value>(body) else {
        return invalid_json();
    };
    if let Err(problem) = check_command(&command) {
        return invalid_form(&problem);
    }
    let mut state = sim.lock();
    let list = match guild {
        None => &mut state.global_commands,
        Some(guild) => state.guild_commands.entry(guild).or_default(),
    };
    // Discord upserts by name: an existing command keeps its id.
    let existing = list.iter().position(|c| {
        c["name"] == command["name"]
            && c["type"] == command.get("type").cloned().unwrap_or(json!(1))
    });
    let id = existing.map(|i| list[i]["id"].as_str().unwrap_or_default().to_owned());
    let stored = stored_command(sim, command, guild, id);
    let status = match existing {
        Some(index) => {
            list[index] = stored.clone();
            StatusCode::OK
        }
        None => {
            list.push(stored.clone());
            StatusCode::CREATED
        }
    };
    with_headers(headers, status, stored)
}

fn overwrite_commands(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    guild: Option<u64>,
    body: &[u8],
) -> Response {
    let headers = match commands_admit(sim, headers, app, guild) {
        Ok(headers) => headers,
        Err(response) => return response,
    };
    let Ok(Value::Array(commands)) = serde_json::from_slice::<Value>(body) else {
        return invalid_json();
    };
    if commands.len() > 100 {
        return invalid_form("at most 100 commands");
    }
    for command in &commands {
        if let Err(problem) = check_command(command) {
            return invalid_form(&problem);
        }
    }
    let mut names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return invalid_form("command names must be unique");
    }
    let mut state = sim.lock();
    let list = match guild {
        None => &mut state.global_commands,
        Some(guild) => state.guild_commands.entry(guild).or_default(),
    };
    let previous = std::mem::take(list);
    let stored: Vec<Value> = commands
        .into_iter()
        .map(|command| {
            let id = previous
                .iter()
                .find(|c| c["name"] == command["name"])
                .and_then(|c| c["id"].as_str().map(str::to_owned));
            stored_command(sim, command, guild, id)
        })
        .collect();
    list.clone_from(&stored);
    with_headers(headers, StatusCode::OK, Value::Array(stored))
}

async fn list_global_commands(
    State(sim): State<Arc<Sim>>,
    Path(app): Path<u64>,
    headers: HeaderMap,
) -> Response {
    list_commands(&sim, &headers, app, None)
}
async fn create_global_command(
    State(sim): State<Arc<Sim>>,
    Path(app): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_command(&sim, &headers, app, None, &body)
}
async fn overwrite_global_commands(
    State(sim): State<Arc<Sim>>,
    Path(app): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    overwrite_commands(&sim, &headers, app, None, &body)
}
async fn list_guild_commands(
    State(sim): State<Arc<Sim>>,
    Path((app, guild)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Response {
    list_commands(&sim, &headers, app, Some(guild))
}
async fn create_guild_command(
    State(sim): State<Arc<Sim>>,
    Path((app, guild)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    create_command(&sim, &headers, app, Some(guild), &body)
}
async fn overwrite_guild_commands(
    State(sim): State<Arc<Sim>>,
    Path((app, guild)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    overwrite_commands(&sim, &headers, app, Some(guild), &body)
}

// --- Interactions -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    #[serde(default)]
    with_response: bool,
}

/// Applies an initial response to an interaction, from the callback route or from the webhook
/// endpoint's HTTP answer. Returns Discord's error when it must be refused.
pub(crate) fn initial_response(
    sim: &Sim,
    interaction_id: u64,
    response: &Value,
    via: &str,
) -> Result<Value, Response> {
    let kind = response.get("type").and_then(Value::as_u64).unwrap_or(0);
    let data = response.get("data").cloned().unwrap_or(Value::Null);
    let mut state = sim.lock();
    let Some(interaction) = state.interactions.get(&interaction_id) else {
        return Err(error(StatusCode::NOT_FOUND, 10062, "Unknown interaction"));
    };
    if interaction.responded.is_some() {
        state.violate(
            "interaction",
            format!("interaction {interaction_id} answered twice ({via})"),
        );
        return Err(error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        ));
    }
    let age = interaction.created.elapsed();
    if age > INTERACTION_DEADLINE {
        state.violate(
            "interaction",
            format!(
                "interaction {interaction_id} answered after {} ms ({via})",
                age.as_millis()
            ),
        );
        return Err(error(StatusCode::NOT_FOUND, 10062, "Unknown interaction"));
    }
    if !matches!(kind, 4 | 5 | 9) {
        return Err(invalid_form(
            "type: an application command takes response type 4, 5 or 9",
        ));
    }
    if kind == 4
        && let Err(problem) = check_content(
            data.get("content").and_then(Value::as_str),
            data.get("embeds")
                .and_then(Value::as_array)
                .map(Vec::as_slice),
        )
    {
        return Err(error(StatusCode::BAD_REQUEST, 50006, problem));
    }
    let channel_id = interaction.channel_id;
    let guild_id = interaction.guild_id;
    let message_id = (kind != 9).then(|| sim.snowflake());
    let content = data
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if let Some(message_id) = message_id {
        let message = payload::message(&MessageParts {
            id: message_id,
            channel_id,
            guild_id: Some(guild_id),
            author: &sim.world.bot,
            author_is_bot: true,
            content: if kind == 4 { &content } else { "" },
            tts: kind == 4 && data.get("tts").and_then(Value::as_bool).unwrap_or(false),
            embeds: if kind == 4 {
                data.get("embeds").cloned().unwrap_or(json!([]))
            } else {
                json!([])
            },
            nonce: None,
            timestamp_ms: now_ms(),
            edited_ms: None,
            mentions: Vec::new(),
            mention_everyone: false,
            interaction_id: Some(interaction_id),
            webhook_id: Some(sim.world.application_id),
        });
        state.messages.insert(message_id, (channel_id, message));
    }
    if let Some(interaction) = state.interactions.get_mut(&interaction_id) {
        interaction.responded = u8::try_from(kind).ok();
        interaction.original = message_id;
    }
    let entry = json!({
        "kind": "interaction_response",
        "at_ms": now_ms(),
        "via": via,
        "interaction_id": interaction_id.to_string(),
        "channel_id": channel_id.to_string(),
        "message_id": message_id.map(|id| id.to_string()),
        "response_type": kind,
        "content": data.get("content"),
        "tts": data.get("tts").and_then(Value::as_bool).unwrap_or(false),
        "embeds": data.get("embeds").cloned().unwrap_or(json!([])),
        "allowed_mentions": data.get("allowed_mentions"),
        "flags": data.get("flags"),
        "latency_ms": u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
    });
    state.sent.push(entry.clone());
    Ok(entry)
}

async fn interaction_callback(
    State(sim): State<Arc<Sim>>,
    Path((id, token)): Path<(u64, String)>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let route = Route {
        fault: "callback",
        bucket: None,
        bot: false,
        headers: &headers,
    };
    if let Err(response) = admit(&sim, &route) {
        return response;
    }
    if sim
        .lock()
        .interactions
        .get(&id)
        .is_none_or(|i| i.token != token)
    {
        return error(StatusCode::NOT_FOUND, 10062, "Unknown interaction");
    }
    let Ok(response) = serde_json::from_slice::<Value>(&body) else {
        return invalid_json();
    };
    match initial_response(&sim, id, &response, "callback") {
        Ok(entry) if query.with_response => {
            axum::Json(json!({"interaction": {"id": id.to_string(), "type": 2}, "resource": entry}))
                .into_response()
        }
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(response) => response,
    }
}

/// Finds the interaction behind a webhook token, checking the application and the token's age.
fn webhook_interaction(sim: &Sim, app: u64, token: &str) -> Result<u64, Response> {
    check_app(sim, app)?;
    let state = sim.lock();
    let id = state
        .interaction_tokens
        .get(token)
        .copied()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"))?;
    let interaction = state
        .interactions
        .get(&id)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"))?;
    if interaction.created.elapsed() > TOKEN_LIFETIME {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            50027,
            "Invalid Webhook Token",
        ));
    }
    Ok(id)
}

fn webhook_admit(sim: &Sim, headers: &HeaderMap, app: u64, token: &str) -> Result<u64, Response> {
    admit(
        sim,
        &Route {
            fault: "webhook",
            bucket: None,
            bot: false,
            headers,
        },
    )?;
    webhook_interaction(sim, app, token)
}

async fn get_original(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    let id = match webhook_admit(&sim, &headers, app, &token) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let state = sim.lock();
    match state
        .interactions
        .get(&id)
        .and_then(|i| i.original)
        .and_then(|m| state.messages.get(&m))
    {
        Some((_, message)) => axum::Json(message.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
    }
}

async fn edit_original(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match webhook_admit(&sim, &headers, app, &token) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let Ok(edit) = serde_json::from_slice::<Value>(&body) else {
        return invalid_json();
    };
    let mut state = sim.lock();
    let Some(message_id) = state.interactions.get(&id).and_then(|i| i.original) else {
        return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    };
    let Some((channel_id, message)) = state.messages.get_mut(&message_id) else {
        return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    };
    if let Some(content) = edit.get("content") {
        message["content"] = if content.is_null() {
            json!("")
        } else {
            content.clone()
        };
    }
    if let Some(embeds) = edit.get("embeds") {
        message["embeds"] = if embeds.is_null() {
            json!([])
        } else {
            embeds.clone()
        };
    }
    if let Err(problem) = check_content(
        message["content"].as_str(),
        message["embeds"].as_array().map(Vec::as_slice),
    ) {
        return error(StatusCode::BAD_REQUEST, 50006, problem);
    }
    message["edited_timestamp"] = json!(payload::timestamp(now_ms()));
    let message = message.clone();
    let channel_id = *channel_id;
    state.sent.push(json!({
        "kind": "edit",
        "at_ms": now_ms(),
        "interaction_id": id.to_string(),
        "channel_id": channel_id.to_string(),
        "message_id": message_id.to_string(),
        "content": message["content"],
        "embeds": message["embeds"],
        "allowed_mentions": edit.get("allowed_mentions"),
    }));
    axum::Json(message).into_response()
}

async fn delete_original(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Response {
    let id = match webhook_admit(&sim, &headers, app, &token) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let mut state = sim.lock();
    let Some(message_id) = state.interactions.get(&id).and_then(|i| i.original) else {
        return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    };
    state.messages.remove(&message_id);
    state.sent.push(json!({"kind": "delete", "at_ms": now_ms(), "interaction_id": id.to_string(), "message_id": message_id.to_string()}));
    StatusCode::NO_CONTENT.into_response()
}

async fn followup(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let id = match webhook_admit(&sim, &headers, app, &token) {
        Ok(id) => id,
        Err(response) => return response,
    };
    let Ok(new) = serde_json::from_slice::<NewMessage>(&body) else {
        return invalid_json();
    };
    if let Err(problem) = check_content(new.content.as_deref(), new.embeds.as_deref()) {
        return error(StatusCode::BAD_REQUEST, 50006, problem);
    }
    let mut state = sim.lock();
    let Some(interaction) = state.interactions.get(&id) else {
        return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    };
    if interaction.responded.is_none() {
        state.violate(
            "interaction",
            format!("follow-up to interaction {id} before its initial response"),
        );
        return error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has not been acknowledged.",
        );
    }
    let (channel_id, guild_id) = (interaction.channel_id, interaction.guild_id);
    let message_id = sim.snowflake();
    let content = new.content.unwrap_or_default();
    let message = payload::message(&MessageParts {
        id: message_id,
        channel_id,
        guild_id: Some(guild_id),
        author: &sim.world.bot,
        author_is_bot: true,
        content: &content,
        tts: new.tts,
        embeds: Value::Array(new.embeds.unwrap_or_default()),
        nonce: None,
        timestamp_ms: now_ms(),
        edited_ms: None,
        mentions: Vec::new(),
        mention_everyone: false,
        interaction_id: Some(id),
        webhook_id: Some(app),
    });
    state
        .messages
        .insert(message_id, (channel_id, message.clone()));
    state.sent.push(json!({
        "kind": "followup",
        "at_ms": now_ms(),
        "interaction_id": id.to_string(),
        "channel_id": channel_id.to_string(),
        "message_id": message_id.to_string(),
        "content": content,
        "tts": new.tts,
        "embeds": message["embeds"],
        "allowed_mentions": new.allowed_mentions,
    }));
    axum::Json(message).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_follow_discords_rules() {
        let rows = [
            ("ping", true),
            ("테스트", true),
            ("옵션", true),
            ("작성글", true),
            ("play-next_2", true),
            ("Ping", false),
            ("", false),
            ("has space", false),
            (&"a".repeat(33), false),
            (&"a".repeat(32), true),
        ];
        for (name, valid) in rows {
            assert_eq!(valid_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn commands_are_validated() {
        let seed = json!({
            "name": "테스트", "description": "test",
            "options": [
                {"name": "옵션", "description": "option", "type": 3, "required": true,
                 "choices": [{"name": "호빈이", "value": "호빈이"}, {"name": "찬구", "value": "찬구"}, {"name": "카밀라", "value": "카밀라"}]},
                {"name": "작성글", "description": "post", "type": 3, "required": true},
            ],
        });
        assert_eq!(check_command(&seed), Ok(()));
        let rows = [
            (json!({"name": "x"}), "description"),
            (
                json!({"name": "x", "description": "d", "options": [{"name": "a", "description": "d", "type": 3}, {"name": "b", "description": "d", "type": 3, "required": true}]}),
                "before optional",
            ),
            (
                json!({"name": "x", "description": "d", "options": [{"name": "a", "description": "d", "type": 12}]}),
                "option type",
            ),
        ];
        for (command, problem) in rows {
            let error = check_command(&command).expect_err(problem);
            assert!(error.contains(problem), "{error}");
        }
    }

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
