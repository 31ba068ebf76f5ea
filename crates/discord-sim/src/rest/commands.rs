//! Application commands: list, create and bulk-overwrite, globally or per guild, validated as
//! Discord validates them.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::state::Sim;

use super::admit::{Route, admit, with_headers};
use super::{SimError, error, invalid_form, invalid_json};

/// A name Discord accepts for a command or an option: 1 to 32 characters, no upper case,
/// letters (any script), digits, `-` and `_`.
pub(super) fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=32).contains(&count)
        && name
            .chars()
            .all(|c| (c.is_alphanumeric() || c == '-' || c == '_') && !c.is_uppercase())
}

pub(super) fn valid_description(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|d| (1..=100).contains(&d.chars().count()))
}

/// Validates a command definition as Discord does for chat-input commands.
pub(super) fn check_command(command: &Value) -> Result<(), String> {
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
pub(super) fn stored_command(
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

pub(super) fn check_app(sim: &Sim, app: u64) -> Result<(), Response> {
    if app == sim.world.application_id {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, 50001, "Missing Access"))
    }
}

pub(super) fn check_guild(sim: &Sim, guild: u64) -> Result<(), Response> {
    if sim.world.guild(guild).is_some() {
        Ok(())
    } else {
        Err(error(StatusCode::FORBIDDEN, 50001, "Missing Access"))
    }
}

pub(super) fn commands_admit(
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

pub(super) fn list_commands(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    guild: Option<u64>,
) -> Result<Response, SimError> {
    let headers = commands_admit(sim, headers, app, guild)?;
    let state = sim.lock();
    let list = match guild {
        None => state.rest.global_commands.clone(),
        Some(guild) => state
            .rest
            .guild_commands
            .get(&guild)
            .cloned()
            .unwrap_or_default(),
    };
    Ok(with_headers(headers, StatusCode::OK, Value::Array(list)))
}

pub(super) fn create_command(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    guild: Option<u64>,
    body: &[u8],
) -> Result<Response, SimError> {
    let headers = commands_admit(sim, headers, app, guild)?;
    let Ok(command) = serde_json::from_slice::<Value>(body) else {
        return Ok(invalid_json());
    };
    if let Err(problem) = check_command(&command) {
        return Ok(invalid_form(&problem));
    }
    let mut state = sim.lock();
    let list = match guild {
        None => &mut state.rest.global_commands,
        Some(guild) => state.rest.guild_commands.entry(guild).or_default(),
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
    Ok(with_headers(headers, status, stored))
}

pub(super) fn overwrite_commands(
    sim: &Sim,
    headers: &HeaderMap,
    app: u64,
    guild: Option<u64>,
    body: &[u8],
) -> Result<Response, SimError> {
    let headers = commands_admit(sim, headers, app, guild)?;
    let Ok(Value::Array(commands)) = serde_json::from_slice::<Value>(body) else {
        return Ok(invalid_json());
    };
    if commands.len() > 100 {
        return Ok(invalid_form("at most 100 commands"));
    }
    for command in &commands {
        if let Err(problem) = check_command(command) {
            return Ok(invalid_form(&problem));
        }
    }
    let mut names: Vec<&str> = commands.iter().filter_map(|c| c["name"].as_str()).collect();
    names.sort_unstable();
    if names.windows(2).any(|pair| pair[0] == pair[1]) {
        return Ok(invalid_form("command names must be unique"));
    }
    let mut state = sim.lock();
    let list = match guild {
        None => &mut state.rest.global_commands,
        Some(guild) => state.rest.guild_commands.entry(guild).or_default(),
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
    Ok(with_headers(headers, StatusCode::OK, Value::Array(stored)))
}

pub(super) async fn list_global_commands(
    State(sim): State<Arc<Sim>>,
    Path(app): Path<u64>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    list_commands(&sim, &headers, app, None)
}
pub(super) async fn create_global_command(
    State(sim): State<Arc<Sim>>,
    Path(app): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    create_command(&sim, &headers, app, None, &body)
}
pub(super) async fn overwrite_global_commands(
    State(sim): State<Arc<Sim>>,
    Path(app): Path<u64>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    overwrite_commands(&sim, &headers, app, None, &body)
}
pub(super) async fn list_guild_commands(
    State(sim): State<Arc<Sim>>,
    Path((app, guild)): Path<(u64, u64)>,
    headers: HeaderMap,
) -> Result<Response, SimError> {
    list_commands(&sim, &headers, app, Some(guild))
}
pub(super) async fn create_guild_command(
    State(sim): State<Arc<Sim>>,
    Path((app, guild)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    create_command(&sim, &headers, app, Some(guild), &body)
}
pub(super) async fn overwrite_guild_commands(
    State(sim): State<Arc<Sim>>,
    Path((app, guild)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, SimError> {
    overwrite_commands(&sim, &headers, app, Some(guild), &body)
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
}
