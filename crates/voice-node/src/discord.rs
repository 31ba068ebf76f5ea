//! The one REST call the node makes: Get User Voice State, for a member of a guild whose
//! GUILD_CREATE the node did not see (it started after the gateway, in a rollout, say).

use std::sync::Arc;

use serde::Deserialize;
use twilight_http::error::ErrorType;
use twilight_model::id::Id;
use twilight_model::id::marker::ChannelMarker;

#[derive(Debug)]
pub(crate) struct Rest {
    http: Arc<twilight_http::Client>,
}

/// The part of a voice state the node reads.
#[derive(Deserialize)]
struct State {
    #[serde(default)]
    channel_id: Option<Id<ChannelMarker>>,
}

impl Rest {
    pub(crate) fn new(http: Arc<twilight_http::Client>) -> Self {
        Self { http }
    }

    /// The voice channel `user` is in, `None` if not in voice (Discord's 404 Unknown Voice
    /// State).
    pub(crate) async fn voice_channel(&self, guild: u64, user: u64) -> Result<Option<u64>, String> {
        let (Some(guild), Some(user)) = (Id::new_checked(guild), Id::new_checked(user)) else {
            return Err("get user voice state: an id is 0".to_owned());
        };
        let response = match self.http.user_voice_state(guild, user).await {
            Ok(response) => response,
            Err(error) => {
                return match error.kind() {
                    ErrorType::Response { status, .. } if status.get() == 404 => Ok(None),
                    _ => Err(format!("get user voice state: {error}")),
                };
            }
        };
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("get user voice state: {e}"))?;
        let state: State =
            serde_json::from_slice(&body).map_err(|e| format!("get user voice state: {e}"))?;
        Ok(state.channel_id.map(Id::get))
    }
}
