//! Discord's REST API through twilight-http, with Disco's failure rules: each call carries the
//! time its answer stops being useful (`x-disco-deadline`), which the rest-proxy holds it to;
//! 5xx, timeouts and an unreachable proxy are retried with backoff until that deadline; any
//! other 4xx is final. Through the proxy, a reply whose channel is busy for longer than the
//! caller will wait comes back as [`CallError::Later`], so the reply can wait parked, without
//! the worker's capacity.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use disco_proto::bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use serde::Serialize;
use serde_json::Value;
use twilight_http::error::ErrorType;
use twilight_http::request::Request;
use twilight_http::response::marker::EmptyBody;
use twilight_http::routing::Route;

use crate::metrics::{Metrics, RestLabel};

/// The longest pause between tries.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// The longest a call is held for its turn by the rest-proxy: well under the REST client's
/// timeout (twilight's 10 s), so a call is never still held when the client gives up and sends
/// it again.
const HOLD: Duration = Duration::from_secs(5);

/// When a call's answer stops being useful, and how long it may wait for its turn in a
/// rate-limited channel before the caller would rather park it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Due {
    pub(crate) deadline: SystemTime,
    /// At most [`HOLD`]; `None`: [`HOLD`].
    pub(crate) max_wait: Option<Duration>,
    /// Sent again at the turn a busy answer promised: it takes that place in line.
    pub(crate) returning: bool,
}

impl Due {
    pub(crate) fn by(deadline: SystemTime) -> Self {
        Self {
            deadline,
            max_wait: None,
            returning: false,
        }
    }
}

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
    /// 5xx or timeouts, until the deadline.
    #[error("{route} failed until its deadline: {last}")]
    Unavailable { route: &'static str, last: String },
    /// The rest-proxy: its turn would come after its deadline. Nobody wants the answer now.
    #[error("{route} could not be sent before its deadline")]
    Expired { route: &'static str },
    /// The rest-proxy: its turn comes in this long, more than the caller would wait.
    #[error("{route} must wait {wait:?} for its turn")]
    Later { route: &'static str, wait: Duration },
}

#[derive(Debug)]
pub(crate) struct Discord {
    http: Arc<twilight_http::Client>,
    /// The in-process rest-proxy, when there is one: calls go there instead of through `http`.
    direct: Option<Arc<dyn Direct>>,
    pub(crate) application_id: u64,
    metrics: Metrics,
}

impl Discord {
    pub(crate) fn new(
        http: Arc<twilight_http::Client>,
        direct: Option<Arc<dyn Direct>>,
        application_id: u64,
        metrics: Metrics,
    ) -> Self {
        Self {
            http,
            direct,
            application_id,
            metrics,
        }
    }

    async fn call(
        &self,
        route_name: &'static str,
        route: &Route<'_>,
        body: &impl Serialize,
        due: Due,
    ) -> Result<(), CallError> {
        let mut backoff = Duration::from_millis(250);
        let deadline_ms = due
            .deadline
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let mut headers = vec![(
            HeaderName::from_static(disco_proto::rest::DEADLINE_HEADER),
            HeaderValue::from(u64::try_from(deadline_ms).unwrap_or(u64::MAX)),
        )];
        let max_wait = due.max_wait.map_or(HOLD, |max| max.min(HOLD));
        headers.push((
            HeaderName::from_static(disco_proto::rest::MAX_WAIT_HEADER),
            HeaderValue::from(u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX)),
        ));
        if due.returning {
            headers.push((
                HeaderName::from_static(disco_proto::rest::RETURNING_HEADER),
                HeaderValue::from_static("1"),
            ));
        }
        loop {
            let request = Request::builder(route)
                .json(body)
                .headers(headers.iter().cloned())
                .build()
                .map_err(|e| CallError::Refused {
                    route: route_name,
                    status: 0,
                    code: None,
                    body: e.to_string(),
                })?;
            let sent = match &self.direct {
                Some(direct) => send_direct(direct.as_ref(), request).await,
                None => self.send(request).await,
            };
            let (status, retryable, detail, code) = match sent {
                Sent::Done(status) => {
                    self.count(route_name, status);
                    return Ok(());
                }
                Sent::Failed { retryable, detail } => (0, retryable, detail, None),
                Sent::Answered { status, body } => {
                    let body = &body[..];
                    let json = serde_json::from_slice::<Value>(body).ok();
                    let code = json.as_ref().and_then(|v| v["code"].as_u64());
                    if let Some(refused) = json.as_ref().map(|v| &v["disco"])
                        && let Some(reason) = refused["refused"].as_str()
                    {
                        self.count(route_name, status);
                        let wait = Duration::from_millis(
                            refused["retry_after_ms"].as_u64().unwrap_or(1000),
                        );
                        match reason {
                            disco_proto::rest::REFUSED_DEADLINE => {
                                return Err(CallError::Expired { route: route_name });
                            }
                            disco_proto::rest::REFUSED_BUSY => {
                                return Err(CallError::Later {
                                    route: route_name,
                                    wait,
                                });
                            }
                            _ => {}
                        }
                    }
                    let text = String::from_utf8_lossy(body).into_owned();
                    (status, status >= 500, text, code)
                }
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
            if SystemTime::now() + backoff > due.deadline {
                return Err(CallError::Unavailable {
                    route: route_name,
                    last: detail,
                });
            }
            self.metrics.retries.inc();
            tracing::warn!(
                route = route_name,
                status,
                ?backoff,
                error = %detail,
                "discord failed, retrying"
            );
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sends through twilight's HTTP client.
    async fn send(&self, request: Request) -> Sent {
        match self.http.request::<EmptyBody>(request).await {
            Ok(response) => Sent::Done(response.status().get()),
            Err(error) => match error.kind() {
                ErrorType::Response { status, body, .. } => Sent::Answered {
                    status: status.get(),
                    body: Bytes::copy_from_slice(body),
                },
                ErrorType::RequestTimedOut | ErrorType::RequestError => Sent::Failed {
                    retryable: true,
                    detail: error.to_string(),
                },
                _ => Sent::Failed {
                    retryable: false,
                    detail: error.to_string(),
                },
            },
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
        let due = Due::by(SystemTime::now() + Duration::from_secs(30));
        self.call(route_name, route, body, due).await
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
        body: &impl Serialize,
        due: Due,
    ) -> Result<(), CallError> {
        self.call(
            "create_message",
            &Route::CreateMessage { channel_id },
            body,
            due,
        )
        .await
    }

    pub(crate) async fn interaction_callback(
        &self,
        id: u64,
        token: &str,
        body: &impl Serialize,
    ) -> Result<(), CallError> {
        let route = Route::InteractionCallback {
            interaction_id: id,
            interaction_token: token,
            with_response: false,
        };
        // Discord takes the initial response for 3 s after the interaction.
        let due = Due::by(created(id) + Duration::from_secs(3));
        self.call("interaction_callback", &route, body, due).await
    }

    /// Edits the original response of interaction `id` (its token lasts 15 minutes).
    pub(crate) async fn edit_original(
        &self,
        id: u64,
        token: &str,
        body: &impl Serialize,
    ) -> Result<(), CallError> {
        let route = Route::UpdateInteractionOriginal {
            application_id: self.application_id,
            interaction_token: token,
        };
        let due = Due::by(created(id) + Duration::from_secs(15 * 60));
        self.call("edit_original", &route, body, due).await
    }
}

/// A way to the rest-proxy other than HTTP: `disco up` runs the proxy in the worker's own
/// process and hands it each request directly, which saves an HTTP exchange over loopback per
/// call (a third of the CPU a reply costs, by profile). The request's URI is the API path
/// (`/api/v10/...`) with the worker's headers; the transport adds the bot's authorization.
pub trait Direct: Send + Sync + std::fmt::Debug + 'static {
    /// Sends `request`; `Err` when no answer came (the proxy is stopping).
    fn send(
        &self,
        request: http::Request<Bytes>,
    ) -> BoxFuture<'static, Result<http::Response<Bytes>, String>>;
}

/// What became of one try.
enum Sent {
    /// A 2xx.
    Done(u16),
    /// Any other status, with its body.
    Answered { status: u16, body: Bytes },
    /// No answer: a timeout, or no connection (retryable), or a request that cannot be sent.
    Failed { retryable: bool, detail: String },
}

async fn send_direct(direct: &dyn Direct, request: Request) -> Sent {
    let uri = format!("/api/v{}/{}", twilight_http::API_VERSION, request.path());
    let mut builder = http::Request::builder()
        .method(request.method().name())
        .uri(uri);
    if let Some(headers) = request.headers() {
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
    }
    if request.body().is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    let body = request
        .body()
        .map(Bytes::copy_from_slice)
        .unwrap_or_default();
    let http_request = match builder.body(body) {
        Ok(http_request) => http_request,
        Err(error) => {
            return Sent::Failed {
                retryable: false,
                detail: error.to_string(),
            };
        }
    };
    match direct.send(http_request).await {
        Ok(response) if response.status().is_success() => Sent::Done(response.status().as_u16()),
        Ok(response) => Sent::Answered {
            status: response.status().as_u16(),
            body: response.into_body(),
        },
        Err(detail) => Sent::Failed {
            retryable: true,
            detail,
        },
    }
}

/// When a Discord object was created, from its id (a snowflake).
pub(crate) fn created(id: u64) -> SystemTime {
    const DISCORD_EPOCH_MS: u64 = 1_420_070_400_000;
    UNIX_EPOCH + Duration::from_millis((id >> 22) + DISCORD_EPOCH_MS)
}
