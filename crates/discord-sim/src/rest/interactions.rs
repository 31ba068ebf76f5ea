//! Interactions: the initial response (callback, or the webhook's HTTP answer), within
//! Discord's deadline and only once; the original message, its edits, and follow-ups.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::payload::{self, MessageParts, now_ms};
use crate::state::{Sent, Sim};

use super::admit::{Route, admit};
use super::commands::check_app;
use super::messages::{NewMessage, check_content};
use super::{INTERACTION_DEADLINE, SimError, TOKEN_LIFETIME, error, invalid_form, invalid_json};

#[derive(Debug, Deserialize)]
pub(super) struct CallbackQuery {
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
) -> Result<Sent, Response> {
    let kind = response.get("type").and_then(Value::as_u64).unwrap_or(0);
    let data = response.get("data").cloned().unwrap_or(Value::Null);
    let mut state = sim.lock();
    let Some(interaction) = state.rest.interactions.get(&interaction_id) else {
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
        state
            .rest
            .messages
            .insert(message_id, (channel_id, message));
    }
    if let Some(interaction) = state.rest.interactions.get_mut(&interaction_id) {
        interaction.responded = u8::try_from(kind).ok();
        interaction.original = message_id;
    }
    let entry = Sent::InteractionResponse {
        at_ms: now_ms(),
        via: via.to_owned(),
        interaction_id: interaction_id.to_string(),
        channel_id: channel_id.to_string(),
        message_id: message_id.map(|id| id.to_string()),
        response_type: kind,
        content: data.get("content").cloned(),
        tts: data.get("tts").and_then(Value::as_bool).unwrap_or(false),
        embeds: data.get("embeds").cloned().unwrap_or(json!([])),
        allowed_mentions: data.get("allowed_mentions").cloned(),
        flags: data.get("flags").cloned(),
        latency_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
    };
    state.record.sent.push(entry.clone());
    Ok(entry)
}

pub(super) async fn interaction_callback(
    State(sim): State<Arc<Sim>>,
    Path((id, token)): Path<(u64, String)>,
    Query(query): Query<CallbackQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    let route = Route {
        fault: "callback",
        bucket: None,
        bot: false,
        headers: &headers,
    };
    admit(&sim, &route)?;
    if sim
        .lock()
        .rest
        .interactions
        .get(&id)
        .is_none_or(|i| i.token != token)
    {
        return Ok(error(StatusCode::NOT_FOUND, 10062, "Unknown interaction"));
    }
    let Ok(response) = serde_json::from_slice::<Value>(&body) else {
        return Ok(invalid_json());
    };
    let entry = initial_response(&sim, id, &response, "callback")?;
    Ok(if query.with_response {
        axum::Json(json!({"interaction": {"id": id.to_string(), "type": 2}, "resource": entry}))
            .into_response()
    } else {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Finds the interaction behind a webhook token, checking the application and the token's age.
pub(super) fn webhook_interaction(sim: &Sim, app: u64, token: &str) -> Result<u64, Response> {
    check_app(sim, app)?;
    let state = sim.lock();
    let id = state
        .rest
        .interaction_tokens
        .get(token)
        .copied()
        .ok_or_else(|| error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"))?;
    let interaction = state
        .rest
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

pub(super) fn webhook_admit(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    token: &str,
) -> Result<u64, Response> {
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

pub(super) async fn get_original(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let id = webhook_admit(&sim, &headers, app, &token)?;
    let state = sim.lock();
    let original = state
        .rest
        .interactions
        .get(&id)
        .and_then(|i| i.original)
        .and_then(|m| state.rest.messages.get(&m));
    Ok(match original {
        Some((_, message)) => axum::Json(message.clone()).into_response(),
        None => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
    })
}

pub(super) async fn edit_original(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    let id = webhook_admit(&sim, &headers, app, &token)?;
    let Ok(edit) = serde_json::from_slice::<Value>(&body) else {
        return Ok(invalid_json());
    };
    let mut state = sim.lock();
    let Some(message_id) = state.rest.interactions.get(&id).and_then(|i| i.original) else {
        return Ok(error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
    };
    let Some((channel_id, message)) = state.rest.messages.get_mut(&message_id) else {
        return Ok(error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
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
        return Ok(error(StatusCode::BAD_REQUEST, 50006, problem));
    }
    message["edited_timestamp"] = json!(payload::timestamp(now_ms()));
    let message = message.clone();
    let channel_id = *channel_id;
    state.record.sent.push(Sent::Edit {
        at_ms: now_ms(),
        interaction_id: id.to_string(),
        channel_id: channel_id.to_string(),
        message_id: message_id.to_string(),
        content: message["content"].clone(),
        embeds: message["embeds"].clone(),
        allowed_mentions: edit.get("allowed_mentions").cloned(),
    });
    Ok(axum::Json(message).into_response())
}

pub(super) async fn delete_original(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    let id = webhook_admit(&sim, &headers, app, &token)?;
    let mut state = sim.lock();
    let Some(message_id) = state.rest.interactions.get(&id).and_then(|i| i.original) else {
        return Ok(error(StatusCode::NOT_FOUND, 10008, "Unknown Message"));
    };
    state.rest.messages.remove(&message_id);
    state.record.sent.push(Sent::Delete {
        at_ms: now_ms(),
        interaction_id: id.to_string(),
        message_id: message_id.to_string(),
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn followup(
    State(sim): State<Arc<Sim>>,
    Path((app, token)): Path<(u64, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    let id = webhook_admit(&sim, &headers, app, &token)?;
    let Ok(new) = serde_json::from_slice::<NewMessage>(&body) else {
        return Ok(invalid_json());
    };
    if let Err(problem) = check_content(new.content.as_deref(), new.embeds.as_deref()) {
        return Ok(error(StatusCode::BAD_REQUEST, 50006, problem));
    }
    let mut state = sim.lock();
    let Some(interaction) = state.rest.interactions.get(&id) else {
        return Ok(error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"));
    };
    if interaction.responded.is_none() {
        state.violate(
            "interaction",
            format!("follow-up to interaction {id} before its initial response"),
        );
        return Ok(error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has not been acknowledged.",
        ));
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
        .rest
        .messages
        .insert(message_id, (channel_id, message.clone()));
    state.record.sent.push(Sent::Followup {
        at_ms: now_ms(),
        interaction_id: id.to_string(),
        channel_id: channel_id.to_string(),
        message_id: message_id.to_string(),
        content,
        tts: new.tts,
        embeds: message["embeds"].clone(),
        allowed_mentions: new.allowed_mentions,
    });
    Ok(axum::Json(message).into_response())
}
