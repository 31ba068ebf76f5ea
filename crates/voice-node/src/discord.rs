//! The one REST call the node makes: Get User Voice State, for a member of a guild whose
//! GUILD_CREATE the node did not see (it started after the gateway, in a rollout, say).

use disco_proto::Secret;
use serde::Deserialize;

#[derive(Debug)]
pub(crate) struct Rest {
    http: reqwest::Client,
    api_url: String,
    token: Secret,
}

#[derive(Deserialize)]
struct State {
    #[serde(default)]
    channel_id: Option<String>,
}

impl Rest {
    pub(crate) fn new(http: reqwest::Client, api_url: &str, token: Secret) -> Self {
        Self {
            http,
            api_url: api_url.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// The voice channel `user` is in, `None` if not in voice (Discord's 404 Unknown Voice
    /// State).
    pub(crate) async fn voice_channel(&self, guild: u64, user: u64) -> Result<Option<u64>, String> {
        let url = format!(
            "{}/api/v10/guilds/{guild}/voice-states/{user}",
            self.api_url
        );
        let response = self
            .http
            .get(url)
            .header("authorization", format!("Bot {}", self.token.expose()))
            .send()
            .await
            .map_err(|e| format!("get user voice state: {}", e.without_url()))?;
        match response.status().as_u16() {
            404 => Ok(None),
            200 => {
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| format!("get user voice state: {}", e.without_url()))?;
                let state: State = serde_json::from_slice(&body)
                    .map_err(|e| format!("get user voice state: {e}"))?;
                Ok(state.channel_id.and_then(|c| c.parse().ok()))
            }
            status => Err(format!("get user voice state: HTTP {status}")),
        }
    }
}
