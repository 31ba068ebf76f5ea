//! A client for the control API, for Rust tests and tools (`disco sim say`, `disco demo`).

use serde_json::{Value, json};

/// Talks to a simulator's `/_sim` API.
#[derive(Clone, Debug)]
pub struct Control {
    base: String,
}

/// The control API refused a call, or could not be reached.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {problem}")]
pub struct ControlError {
    method: &'static str,
    path: String,
    problem: String,
}

impl Control {
    /// A client for the simulator at `rest_url` (`http://host:port`).
    pub fn new(rest_url: &str) -> Self {
        Self {
            base: rest_url.trim_end_matches('/').to_owned(),
        }
    }

    async fn call(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ControlError> {
        let fail = |problem: String| ControlError {
            method,
            path: path.to_owned(),
            problem,
        };
        let url = format!("{}/_sim{path}", self.base);
        let answer =
            crate::http::request(method, &url, &[], body.map(|b| b.to_string().into_bytes()))
                .await
                .map_err(fail)?;
        if !(200..300).contains(&answer.status) {
            return Err(fail(format!("{} {}", answer.status, answer.body)));
        }
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&answer.body).map_err(|e| fail(format!("not JSON: {e}")))
    }

    /// `GET /_sim{path}`.
    pub async fn get(&self, path: &str) -> Result<Value, ControlError> {
        self.call("GET", path, None).await
    }

    /// `POST /_sim{path}` with a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ControlError> {
        self.call("POST", path, Some(body)).await
    }

    /// A member says `content` in a text channel; the message Discord dispatched.
    pub async fn say(
        &self,
        channel_id: u64,
        author_id: u64,
        content: &str,
    ) -> Result<Value, ControlError> {
        self.post(
            "/messages",
            &json!({"channel_id": channel_id.to_string(), "author_id": author_id.to_string(), "content": content}),
        )
        .await
    }

    /// A member uses a slash command; `options` are `[{"name": ..., "value": ...}]`.
    pub async fn command(
        &self,
        channel_id: u64,
        user_id: u64,
        name: &str,
        options: Value,
    ) -> Result<Value, ControlError> {
        self.post(
            "/interactions",
            &json!({"channel_id": channel_id.to_string(), "user_id": user_id.to_string(), "name": name, "options": options}),
        )
        .await
    }

    /// A member joins a voice channel, or leaves voice with `None`.
    pub async fn voice(
        &self,
        guild_id: u64,
        user_id: u64,
        channel_id: Option<u64>,
    ) -> Result<Value, ControlError> {
        self.post(
            "/voice-states",
            &json!({"guild_id": guild_id.to_string(), "user_id": user_id.to_string(), "channel_id": channel_id.map(|c| c.to_string())}),
        )
        .await
    }

    /// What the voice server heard from the bot in a guild: `connected`, `packets`,
    /// `non_silent_seconds`, `close_codes`, ...
    pub async fn voice_stats(&self, guild_id: u64) -> Result<Value, ControlError> {
        self.get(&format!("/voice/{guild_id}")).await
    }

    /// Everything the bot produced, in order.
    pub async fn sent(&self) -> Result<Vec<Value>, ControlError> {
        self.list("/sent").await
    }

    /// Invalid REST requests (401, 403, 429) in Cloudflare's current window.
    pub async fn invalid_requests(&self) -> Result<u64, ControlError> {
        let answer = self.get("/invalid-requests").await?;
        Ok(answer["in_window"].as_u64().unwrap_or_default())
    }

    /// Every rule the bot broke.
    pub async fn violations(&self) -> Result<Vec<Value>, ControlError> {
        self.list("/violations").await
    }

    async fn list(&self, path: &str) -> Result<Vec<Value>, ControlError> {
        match self.get(path).await? {
            Value::Array(items) => Ok(items),
            other => Err(ControlError {
                method: "GET",
                path: path.to_owned(),
                problem: format!("expected a list, got {other}"),
            }),
        }
    }
}
