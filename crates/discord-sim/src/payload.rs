//! Discord objects as JSON, in the shape Discord sends them (ids as strings, ISO 8601 times).
//! The tests parse every one of them with twilight-model, so a field a library requires is
//! never missing.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::world::{Guild, User, World};

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An ISO 8601 timestamp (`2026-11-28T17:52:37.123000+00:00`) for Unix milliseconds.
pub(crate) fn timestamp(ms: u64) -> String {
    let secs = ms / 1000;
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}000+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

pub(crate) fn user(user: &User, bot: bool) -> Value {
    json!({
        "id": user.id.to_string(),
        "username": user.name,
        "global_name": user.name,
        "discriminator": "0",
        "avatar": null,
        "bot": bot,
        "public_flags": 0,
    })
}

pub(crate) fn current_user(world: &World) -> Value {
    json!({
        "id": world.bot.id.to_string(),
        "username": world.bot.name,
        "global_name": null,
        "discriminator": "0",
        "avatar": null,
        "bot": true,
        "mfa_enabled": false,
        "verified": true,
        "flags": 0,
        "public_flags": 0,
        "locale": "en-US",
    })
}

pub(crate) fn member(user_obj: &User, bot: bool, joined_ms: u64) -> Value {
    json!({
        "user": user(user_obj, bot),
        "nick": null,
        "avatar": null,
        "roles": [],
        "joined_at": timestamp(joined_ms),
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
    })
}

pub(crate) fn voice_state(
    guild_id: u64,
    channel_id: Option<u64>,
    user_obj: &User,
    bot: bool,
    session_id: &str,
    joined_ms: u64,
) -> Value {
    json!({
        "guild_id": guild_id.to_string(),
        "channel_id": channel_id.map(|id| id.to_string()),
        "user_id": user_obj.id.to_string(),
        "member": member(user_obj, bot, joined_ms),
        "session_id": session_id,
        "deaf": false,
        "mute": false,
        "self_deaf": false,
        "self_mute": false,
        "self_stream": false,
        "self_video": false,
        "suppress": false,
        "request_to_speak_timestamp": null,
    })
}

pub(crate) fn channel(guild_id: u64, channel: &crate::world::Channel, position: usize) -> Value {
    let mut value = json!({
        "id": channel.id.to_string(),
        "guild_id": guild_id.to_string(),
        "type": channel.kind.code(),
        "name": channel.name,
        "position": position,
        "permission_overwrites": [],
        "nsfw": false,
        "parent_id": null,
    });
    if channel.kind == crate::world::ChannelKind::Voice {
        value["bitrate"] = json!(64_000);
        value["user_limit"] = json!(0);
        value["rtc_region"] = Value::Null;
    } else {
        value["topic"] = Value::Null;
        value["last_message_id"] = Value::Null;
        value["rate_limit_per_user"] = json!(0);
    }
    value
}

/// GUILD_CREATE's `d`: the whole guild, with channels, members and voice states.
pub(crate) fn guild_create(
    world: &World,
    guild: &Guild,
    voice_states: &[(u64, u64)],
    joined_ms: u64,
) -> Value {
    let mut members: Vec<Value> = guild
        .members
        .iter()
        .map(|m| member(m, false, joined_ms))
        .collect();
    members.push(member(&world.bot, true, joined_ms));
    let voice: Vec<Value> = voice_states
        .iter()
        .filter_map(|&(user_id, channel_id)| {
            let user_obj = world.user(user_id)?;
            let mut state = voice_state(
                guild.id,
                Some(channel_id),
                user_obj,
                user_id == world.bot.id,
                "0",
                joined_ms,
            );
            // Inside GUILD_CREATE, voice states carry no guild_id and no member.
            if let Some(object) = state.as_object_mut() {
                object.remove("guild_id");
                object.remove("member");
            }
            Some(state)
        })
        .collect();
    json!({
        "id": guild.id.to_string(),
        "name": guild.name,
        "icon": null,
        "splash": null,
        "discovery_splash": null,
        "banner": null,
        "description": null,
        "owner_id": guild.members.first().map_or(world.bot.id, |m| m.id).to_string(),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "nsfw_level": 0,
        "premium_tier": 0,
        "premium_progress_bar_enabled": false,
        "preferred_locale": "ko",
        "system_channel_id": null,
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "public_updates_channel_id": null,
        "safety_alerts_channel_id": null,
        "vanity_url_code": null,
        "features": [],
        "emojis": [],
        "stickers": [],
        "roles": [{
            "id": guild.id.to_string(),
            "name": "@everyone",
            "color": 0,
            "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
            "hoist": false,
            "icon": null,
            "unicode_emoji": null,
            "position": 0,
            "permissions": "104324673",
            "managed": false,
            "mentionable": false,
            "flags": 0,
        }],
        "joined_at": timestamp(joined_ms),
        "large": false,
        "unavailable": false,
        "member_count": guild.members.len() + 1,
        "members": members,
        "channels": guild.channels.iter().enumerate().map(|(i, c)| channel(guild.id, c, i)).collect::<Vec<_>>(),
        "threads": [],
        "presences": [],
        "voice_states": voice,
        "stage_instances": [],
        "guild_scheduled_events": [],
        "max_members": 500_000,
        "max_video_channel_users": 25,
        "premium_subscription_count": 0,
    })
}

/// A message object.
pub(crate) struct MessageParts<'a> {
    pub(crate) id: u64,
    pub(crate) channel_id: u64,
    pub(crate) guild_id: Option<u64>,
    pub(crate) author: &'a User,
    pub(crate) author_is_bot: bool,
    pub(crate) content: &'a str,
    pub(crate) tts: bool,
    pub(crate) embeds: Value,
    pub(crate) nonce: Option<Value>,
    pub(crate) timestamp_ms: u64,
    pub(crate) edited_ms: Option<u64>,
    /// The user ids mentioned in the content (`<@id>`).
    pub(crate) mentions: Vec<&'a User>,
    pub(crate) mention_everyone: bool,
    pub(crate) interaction_id: Option<u64>,
    pub(crate) webhook_id: Option<u64>,
}

pub(crate) fn message(parts: &MessageParts<'_>) -> Value {
    let mut value = json!({
        "id": parts.id.to_string(),
        "channel_id": parts.channel_id.to_string(),
        "author": user(parts.author, parts.author_is_bot),
        "content": parts.content,
        "timestamp": timestamp(parts.timestamp_ms),
        "edited_timestamp": parts.edited_ms.map(timestamp),
        "tts": parts.tts,
        "mention_everyone": parts.mention_everyone,
        "mentions": parts.mentions.iter().map(|u| user(u, false)).collect::<Vec<_>>(),
        "mention_roles": [],
        "attachments": [],
        "embeds": parts.embeds,
        "pinned": false,
        "type": if parts.interaction_id.is_some() { 20 } else { 0 },
        "flags": 0,
        "components": [],
    });
    if let Some(guild_id) = parts.guild_id {
        value["guild_id"] = json!(guild_id.to_string());
    }
    if let Some(nonce) = &parts.nonce {
        value["nonce"] = nonce.clone();
    }
    if let Some(webhook_id) = parts.webhook_id {
        value["webhook_id"] = json!(webhook_id.to_string());
    }
    value
}

/// The user ids `<@id>` / `<@!id>` mentions in `content`.
pub(crate) fn mentioned_ids(content: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    let mut rest = content;
    while let Some(start) = rest.find("<@") {
        rest = &rest[start + 2..];
        let digits = rest.strip_prefix('!').unwrap_or(rest);
        let end = digits.find('>').unwrap_or(0);
        if let Ok(id) = digits[..end].parse() {
            ids.push(id);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso_8601() {
        let rows = [
            (0, "1970-01-01T00:00:00.000000+00:00"),
            (1_796_053_957_123, "2026-11-30T15:52:37.123000+00:00"),
            (951_782_400_000, "2000-02-29T00:00:00.000000+00:00"),
        ];
        for (ms, want) in rows {
            assert_eq!(timestamp(ms), want);
        }
    }

    #[test]
    fn mentions_are_found() {
        assert_eq!(
            mentioned_ids("hi <@12> and <@!34>, not <@x> or <#5>"),
            vec![12, 34]
        );
        assert!(mentioned_ids("nobody").is_empty());
    }
}
