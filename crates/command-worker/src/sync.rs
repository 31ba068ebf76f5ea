//! `disco commands sync`: registers the commands' slash forms with a bulk overwrite, saying what
//! it added, changed and removed. Running it twice changes nothing the second time.

use std::sync::Arc;

use serde_json::Value;
use twilight_http::routing::Route;

use crate::discord::{CallError, Discord};

/// What a sync found (and, unless a dry run, did).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Commands Discord did not have.
    pub added: Vec<String>,
    /// Commands Discord had in another form.
    pub changed: Vec<String>,
    /// Commands Discord had and Disco no longer defines.
    pub removed: Vec<String>,
    /// Commands already as defined.
    pub unchanged: Vec<String>,
    /// Whether the overwrite was sent.
    pub applied: bool,
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SyncError(#[from] CallError);

/// Compares the definitions of `commands` with what Discord has (globally, or in `guild`) and, unless
/// `dry_run` or nothing differs, overwrites them.
pub async fn sync(
    commands: &crate::Commands,
    rest: Arc<twilight_http::Client>,
    application_id: u64,
    guild: Option<u64>,
    dry_run: bool,
) -> Result<SyncReport, SyncError> {
    let discord = Discord::new(
        rest,
        None,
        application_id,
        crate::metrics::Metrics::register(&mut Default::default()),
    );
    let current = match guild {
        None => {
            discord
                .get_json(
                    "get_commands",
                    &Route::GetGlobalCommands {
                        application_id,
                        with_localizations: Some(true),
                    },
                )
                .await?
        }
        Some(guild_id) => {
            discord
                .get_json(
                    "get_commands",
                    &Route::GetGuildCommands {
                        application_id,
                        guild_id,
                        with_localizations: Some(true),
                    },
                )
                .await?
        }
    };
    let current = current.as_array().cloned().unwrap_or_default();
    let desired = commands.slash();
    let mut report = diff(&current, &desired);
    let differs =
        !(report.added.is_empty() && report.changed.is_empty() && report.removed.is_empty());
    if differs && !dry_run {
        let body = Value::Array(desired);
        match guild {
            None => {
                discord
                    .put_json(
                        "set_commands",
                        &Route::SetGlobalCommands { application_id },
                        &body,
                    )
                    .await?
            }
            Some(guild_id) => {
                discord
                    .put_json(
                        "set_commands",
                        &Route::SetGuildCommands {
                            application_id,
                            guild_id,
                        },
                        &body,
                    )
                    .await?
            }
        }
        report.applied = true;
    }
    Ok(report)
}

/// Sorts commands into added, changed, removed and unchanged, comparing only what Disco sets.
pub(crate) fn diff(current: &[Value], desired: &[Value]) -> SyncReport {
    let mut report = SyncReport::default();
    for want in desired {
        let name = want["name"].as_str().unwrap_or_default().to_owned();
        match current.iter().find(|c| c["name"] == want["name"]) {
            None => report.added.push(name),
            Some(have) if same(have, want) => report.unchanged.push(name),
            Some(_) => report.changed.push(name),
        }
    }
    for have in current {
        if !desired.iter().any(|d| d["name"] == have["name"]) {
            report
                .removed
                .push(have["name"].as_str().unwrap_or_default().to_owned());
        }
    }
    report
}

/// Whether Discord's copy matches the definition, ignoring what Discord adds (ids, versions,
/// defaults such as `required: false`).
fn same(have: &Value, want: &Value) -> bool {
    let field = |command: &Value, key: &str| match &command[key] {
        Value::Null => Value::Null,
        Value::Object(map) if map.is_empty() => Value::Null,
        other => other.clone(),
    };
    let options = |command: &Value| -> Vec<Value> {
        command["options"]
            .as_array()
            .map(|options| {
                options
                    .iter()
                    .map(|o| {
                        serde_json::json!({
                            "type": o["type"],
                            "name": o["name"],
                            "description": o["description"],
                            "required": o["required"].as_bool().unwrap_or(false),
                            "choices": o["choices"].as_array().cloned().unwrap_or_default(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    field(have, "type").as_u64().unwrap_or(1) == field(want, "type").as_u64().unwrap_or(1)
        && have["description"] == want["description"]
        && field(have, "name_localizations") == field(want, "name_localizations")
        && options(have) == options(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_sorts_commands_and_ignores_what_discord_adds() {
        let desired = vec![
            json!({"name": "ping", "description": "Pong", "options": []}),
            json!({"name": "new", "description": "New"}),
            json!({"name": "edited", "description": "After"}),
        ];
        let current = vec![
            json!({"id": "1", "version": "9", "type": 1, "name": "ping", "description": "Pong", "options": [], "name_localizations": null}),
            json!({"id": "2", "name": "edited", "description": "Before"}),
            json!({"id": "3", "name": "gone", "description": "Old"}),
        ];
        let report = diff(&current, &desired);
        assert_eq!(report.unchanged, vec!["ping"]);
        assert_eq!(report.added, vec!["new"]);
        assert_eq!(report.changed, vec!["edited"]);
        assert_eq!(report.removed, vec!["gone"]);
    }
}
