//! Create Message: content and embed rules, `enforce_nonce` de-duplication, mentions.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::Value;

use crate::payload::{self, MessageParts, now_ms};
use crate::state::{Sent, Sim};
use crate::world::ChannelKind;

use super::admit::{Route, admit, with_headers};
use super::{NONCE_MEMORY, SimError, error, invalid_form, invalid_json};

#[derive(Debug, Deserialize)]
pub(super) struct NewMessage {
    #[serde(default)]
    pub(super) content: Option<String>,
    #[serde(default)]
    pub(super) tts: bool,
    #[serde(default)]
    pub(super) embeds: Option<Vec<Value>>,
    #[serde(default)]
    pub(super) allowed_mentions: Option<Value>,
    #[serde(default)]
    pub(super) nonce: Option<Value>,
    #[serde(default)]
    pub(super) enforce_nonce: bool,
    #[serde(default)]
    pub(super) message_reference: Option<Value>,
    #[serde(default)]
    pub(super) flags: Option<u64>,
}

/// Checks content and embeds as Discord does; the message text of the 400 when not.
pub(super) fn check_content(
    content: Option<&str>,
    embeds: Option<&[Value]>,
) -> Result<(), &'static str> {
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

pub(super) fn nonce_key(nonce: &Value) -> Option<String> {
    match nonce {
        Value::String(s) if s.len() <= 25 => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) async fn create_message(
    State(sim): State<Arc<Sim>>,
    Path(channel_id): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    let route = Route {
        fault: "messages",
        bucket: Some((
            format!("channels/{channel_id}/messages"),
            sim.world.rate_limits.messages_per_channel,
        )),
        bot: true,
        headers: &headers,
    };
    let headers = admit(&sim, &route)?;
    let Ok(new) = serde_json::from_slice::<NewMessage>(&body) else {
        return Ok(invalid_json());
    };
    let world = &sim.world;
    let Some((guild, channel)) = world.channel(channel_id) else {
        return Ok(error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"));
    };
    if channel.kind != ChannelKind::Text {
        return Ok(error(
            StatusCode::BAD_REQUEST,
            50008,
            "Cannot send messages in a non-text channel",
        ));
    }
    if channel.read_only {
        return Ok(error(StatusCode::FORBIDDEN, 50013, "Missing Permissions"));
    }
    if let Err(problem) = check_content(new.content.as_deref(), new.embeds.as_deref()) {
        return Ok(error(StatusCode::BAD_REQUEST, 50006, problem));
    }
    let nonce = match &new.nonce {
        None => None,
        Some(value) => match nonce_key(value) {
            Some(key) => Some(key),
            None => {
                return Ok(invalid_form(
                    "nonce: must be an integer or a string of at most 25 characters",
                ));
            }
        },
    };
    if new.enforce_nonce && nonce.is_none() {
        return Ok(invalid_form("enforce_nonce requires a nonce"));
    }
    let mut state = sim.lock();
    if new.enforce_nonce
        && let Some(key) = &nonce
        && let Some((existing, at)) = state.rest.nonces.get(&(channel_id, key.clone()))
        && at.elapsed() < NONCE_MEMORY
        && let Some((_, message)) = state.rest.messages.get(existing)
    {
        // Discord returns the message the nonce already created, and creates nothing.
        return Ok(with_headers(headers, StatusCode::OK, message.clone()));
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
    state
        .rest
        .messages
        .insert(id, (channel_id, message.clone()));
    if let Some(key) = nonce {
        state
            .rest
            .nonces
            .insert((channel_id, key), (id, Instant::now()));
    }
    state.record.sent.push(Sent::Message {
        at_ms: now_ms(),
        channel_id: channel_id.to_string(),
        message_id: id.to_string(),
        content,
        tts: new.tts,
        embeds: message["embeds"].clone(),
        allowed_mentions: new.allowed_mentions,
        nonce: new.nonce,
        enforce_nonce: new.enforce_nonce,
        message_reference: new.message_reference,
        flags: new.flags,
    });
    drop(state);
    // As on Discord, the bot's own message comes back to it on the gateway (with its content:
    // the content intent never hides a bot's own messages from it).
    let mut echo = message.clone();
    echo["member"] = payload::member(&world.bot, true, now_ms());
    if let Some(object) = echo["member"].as_object_mut() {
        object.remove("user");
    }
    sim.dispatch(
        "MESSAGE_CREATE",
        Some(guild.id),
        Some(crate::state::INTENT_GUILD_MESSAGES),
        &echo,
        None,
    );
    Ok(with_headers(headers, StatusCode::OK, message))
}
