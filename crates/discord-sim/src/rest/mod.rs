//! REST API v10: the routes Disco uses, with Discord's authentication, rate-limit headers, 429s,
//! error bodies and rules (nonces, interaction deadlines, command validation).
//!
//! # Map
//! - here: the router, Discord's error bodies, and the small routes (gateway, users,
//!   applications, voice states).
//! - `admit`: who may call and how often (token, faults, rate limits, 429s); a new Discord
//!   limit goes here.
//! - `messages`: Create Message; `commands`: application commands; `interactions`: initial
//!   responses, the original message, edits and follow-ups.

// A refused request is answered with the response itself; it is built once per refusal, so
// its size does not matter.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

mod admit;
mod commands;
mod edge;
mod interactions;
mod messages;

use admit::{admit, bot_route, with_headers};
use commands::{
    create_global_command, create_guild_command, list_global_commands, list_guild_commands,
    overwrite_global_commands, overwrite_guild_commands,
};
pub(crate) use edge::invalid_requests;
pub(crate) use interactions::initial_response;
use interactions::{delete_original, edit_original, followup, get_original, interaction_callback};
use messages::create_message;

use crate::payload::{self};
use crate::state::Sim;

/// How long after its creation an interaction accepts its initial response.
pub(crate) const INTERACTION_DEADLINE: Duration = Duration::from_secs(3);
/// How long an interaction token stays valid for edits and follow-ups.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// How long Discord remembers a nonce for `enforce_nonce`.
const NONCE_MEMORY: Duration = Duration::from_secs(5 * 60);

pub(crate) fn router(sim: &Arc<Sim>) -> Router<Arc<Sim>> {
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
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(sim),
            edge::edge,
        ))
}

/// Discord's refusal of a request (its error body, or a 429 with the rate-limit headers):
/// what a route answers instead of doing the work. Routes return `Result<Response, SimError>`,
/// so a check's refusal is passed on with `?`.
#[derive(Debug)]
pub(crate) struct SimError(Response);

impl IntoResponse for SimError {
    fn into_response(self) -> Response {
        self.0
    }
}

impl From<Response> for SimError {
    fn from(response: Response) -> Self {
        Self(response)
    }
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

async fn gateway(State(sim): State<Arc<Sim>>) -> Response {
    axum::Json(json!({"url": sim.urls.gateway})).into_response()
}

async fn gateway_bot(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let route = bot_route(&sim, "other", "gateway/bot".to_owned(), &headers);
    let headers = admit(&sim, &route)?;
    let world = &sim.world;
    let remaining = world
        .session_start_limit
        .saturating_sub(sim.lock().gateway.sessions_started);
    Ok(with_headers(
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
    ))
}

async fn current_user(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let route = bot_route(&sim, "other", "users/@me".to_owned(), &headers);
    let headers = admit(&sim, &route)?;
    Ok(with_headers(
        headers,
        StatusCode::OK,
        payload::current_user(&sim.world),
    ))
}

/// Get User Voice State: where a member is in voice, or 404 Unknown Voice State.
async fn user_voice_state(
    State(sim): State<Arc<Sim>>,
    Path((guild_id, user_id)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let route = bot_route(
        &sim,
        "other",
        format!("guilds/{guild_id}/voice-states"),
        &headers,
    );
    let headers = admit(&sim, &route)?;
    let Some(guild) = sim.world.guild(guild_id) else {
        return Ok(error(StatusCode::NOT_FOUND, 10004, "Unknown Guild"));
    };
    let Some(user) = guild
        .members
        .iter()
        .chain(std::iter::once(&sim.world.bot))
        .find(|m| m.id == user_id)
    else {
        return Ok(error(StatusCode::NOT_FOUND, 10013, "Unknown User"));
    };
    let channel = sim.lock().voice.get(&(guild_id, user_id)).copied();
    Ok(match channel {
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
    })
}

async fn current_application(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let route = bot_route(&sim, "other", "applications/@me".to_owned(), &headers);
    let headers = admit(&sim, &route)?;
    let world = &sim.world;
    let owner = world
        .guilds
        .first()
        .and_then(|g| g.members.first())
        .unwrap_or(&world.bot);
    Ok(with_headers(
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
    ))
}
