//! Discord's REST API through twilight-http, with Disco's failure rules: twilight's rate
//! limiter waits out 429s; 5xx and timeouts are retried a bounded number of times with
//! backoff; any other 4xx is final.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use twilight_http::error::ErrorType;
use twilight_http::request::Request;
use twilight_http::response::marker::EmptyBody;
use twilight_http::routing::Route;

use crate::metrics::{Metrics, RestLabel};

/// Tries after the first, for 5xx and timeouts.
const RETRIES: u32 = 3;

/// Why a call did not go through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// Discord refused it (4xx): trying again would not help.
    #[error("{route} refused with {status}: {body}")]
    Refused {
        route: &'static str,
        status: u16,
        /// Discord's JSON error code, when given (40060: already acknowledged).
        code: Option<u64>,
        body: String,
    },
    /// 5xx or timeouts, after every retry.
    #[error("{route} failed after {RETRIES} retries: {last}")]
    Unavailable { route: &'static str, last: String },
}

#[derive(Debug)]
pub(crate) struct Discord {
    http: Arc<twilight_http::Client>,
    pub(crate) application_id: u64,
    metrics: Metrics,
}

impl Discord {
    pub(crate) fn new(
        http: Arc<twilight_http::Client>,
        application_id: u64,
        metrics: Metrics,
    ) -> Self {
        Self {
            http,
            application_id,
            metrics,
        }
    }

    async fn call(
        &self,
        route_name: &'static str,
        route: &Route<'_>,
        body: &Value,
    ) -> Result<(), CallError> {
        let mut backoff = Duration::from_millis(250);
        let mut attempt = 0;
        loop {
            let request =
                Request::builder(route)
                    .json(body)
                    .build()
                    .map_err(|e| CallError::Refused {
                        route: route_name,
                        status: 0,
                        code: None,
                        body: e.to_string(),
                    })?;
            let result = self.http.request::<EmptyBody>(request).await;
            let (status, retryable, detail, code) = match result {
                Ok(response) => {
                    self.count(route_name, response.status().get());
                    return Ok(());
                }
                Err(error) => match error.kind() {
                    ErrorType::Response { status, body, .. } => {
                        let text = String::from_utf8_lossy(body).into_owned();
                        let code = serde_json::from_slice::<Value>(body)
                            .ok()
                            .and_then(|v| v["code"].as_u64());
                        (status.get(), status.get() >= 500, text, code)
                    }
                    ErrorType::RequestTimedOut | ErrorType::RequestError => {
                        (0, true, error.to_string(), None)
                    }
                    _ => (0, false, error.to_string(), None),
                },
            };
            self.count(route_name, status);
            if !retryable {
                return Err(CallError::Refused {
                    route: route_name,
                    status,
                    code,
                    body: detail,
                });
            }
            if attempt == RETRIES {
                return Err(CallError::Unavailable {
                    route: route_name,
                    last: detail,
                });
            }
            attempt += 1;
            self.metrics.retries.inc();
            tracing::warn!(
                route = route_name,
                status,
                attempt,
                ?backoff,
                "discord failed, retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }

    /// A GET whose JSON body is wanted (tools; no retries).
    pub(crate) async fn get_json(
        &self,
        route_name: &'static str,
        route: &Route<'_>,
    ) -> Result<Value, CallError> {
        let refused = |status: u16, body: String| CallError::Refused {
            route: route_name,
            status,
            code: None,
            body,
        };
        let request = Request::builder(route)
            .build()
            .map_err(|e| refused(0, e.to_string()))?;
        let response = self
            .http
            .request::<Value>(request)
            .await
            .map_err(|e| refused(0, e.to_string()))?;
        self.count(route_name, response.status().get());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| refused(0, e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| refused(0, format!("not JSON: {e}")))
    }

    /// A PUT with a JSON body (tools; no retries).
    pub(crate) async fn put_json(
        &self,
        route_name: &'static str,
        route: &Route<'_>,
        body: &Value,
    ) -> Result<(), CallError> {
        self.call(route_name, route, body).await
    }

    fn count(&self, route: &'static str, status: u16) {
        self.metrics
            .rest
            .get_or_create(&RestLabel { route, status })
            .inc();
    }

    pub(crate) async fn create_message(
        &self,
        channel_id: u64,
        body: &Value,
    ) -> Result<(), CallError> {
        self.call("create_message", &Route::CreateMessage { channel_id }, body)
            .await
    }

    pub(crate) async fn interaction_callback(
        &self,
        id: u64,
        token: &str,
        body: &Value,
    ) -> Result<(), CallError> {
        let route = Route::InteractionCallback {
            interaction_id: id,
            interaction_token: token,
            with_response: false,
        };
        self.call("interaction_callback", &route, body).await
    }

    pub(crate) async fn edit_original(&self, token: &str, body: &Value) -> Result<(), CallError> {
        let route = Route::UpdateInteractionOriginal {
            application_id: self.application_id,
            interaction_token: token,
        };
        self.call("edit_original", &route, body).await
    }
}
