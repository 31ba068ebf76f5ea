//! One request, as Discord sends it: verify the signature over the raw body, answer a PING at
//! once, publish anything else to the bus as `INTERACTION_CREATE` (the gateway's envelope, with
//! a reply address), and answer with the worker's reply, or, past the deadline, with "deferred"
//! and edit the worker's late answer in. One initial response, always.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bus::{Bus, Destination, Message, PendingReply};
use disco_proto::v1::{GatewayEvent, InteractionReply};
use disco_proto::{Versioned, route};
use serde::Deserialize;
use serde_json::{Value, json};
use std::future::Future;
use tokio_util::task::TaskTracker;
use twilight_http::request::Request as DiscordRequest;
use twilight_http::response::marker::EmptyBody;
use twilight_http::routing::Route;
use twilight_model::id::Id;
use twilight_model::id::marker::{GuildMarker, InteractionMarker};

use crate::Config;
use crate::metrics::{Metrics, OutcomeLabel};

/// A request whose body has not arrived after this long is dropped.
const BODY_TIMEOUT: Duration = Duration::from_secs(5);

/// An interaction as far as the ingress reads it; serde passes over everything else.
#[derive(Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: u8,
    id: Id<InteractionMarker>,
    token: String,
    #[serde(default)]
    guild_id: Option<Id<GuildMarker>>,
}

/// Discord's PING interaction type.
const PING: u8 = 1;
/// Discord's application command interaction type: the only kind the workers answer.
const APPLICATION_COMMAND: u8 = 2;
/// Discord's autocomplete interaction type.
const AUTOCOMPLETE: u8 = 4;

/// The worker's initial response, as far as an edit of a deferred one reads it.
#[derive(Deserialize)]
struct WorkerAnswer {
    #[serde(default)]
    data: ResponseData,
}

#[derive(Default, Deserialize)]
struct ResponseData {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    embeds: Option<Value>,
    #[serde(default)]
    allowed_mentions: Option<Value>,
}

/// The interactions seen within the timestamp window, to refuse a replay: a signed request
/// captured and sent again carries a valid signature and a recent timestamp, and would run its
/// command twice. Bounded: at most [`SEEN_MAX`] ids, the oldest forgotten first.
#[derive(Debug, Default)]
struct Seen {
    order: std::collections::VecDeque<(Instant, u64)>,
    ids: std::collections::HashSet<u64>,
}

/// Interaction ids remembered at most (about 40 MiB).
const SEEN_MAX: usize = 1_000_000;

impl Seen {
    /// Remembers `id`; false if it was seen within `window` already.
    fn first(&mut self, id: u64, window: Duration) -> bool {
        let now = Instant::now();
        while let Some(&(at, old)) = self.order.front() {
            if now.duration_since(at) <= window && self.order.len() < SEEN_MAX {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }
}

#[derive(Debug)]
pub(crate) struct State {
    pub(crate) config: Config,
    seen: std::sync::Mutex<Seen>,
    pub(crate) bus: Bus,
    pub(crate) late: TaskTracker,
    metrics: Metrics,
    /// Editing a deferred response is a webhook call: the interaction token is its
    /// credential, so this client needs no bot token (an ingress alone has none).
    discord: Arc<twilight_http::Client>,
}

impl State {
    pub(crate) fn new(
        config: Config,
        discord: Arc<twilight_http::Client>,
        bus: Bus,
        metrics: Metrics,
    ) -> Self {
        Self {
            config,
            seen: std::sync::Mutex::default(),
            bus,
            late: TaskTracker::new(),
            metrics,
            discord,
        }
    }

    fn count(&self, outcome: &'static str) {
        self.metrics
            .requests
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    }
}

pub(crate) fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", post(interaction))
        .route("/interactions", post(interaction))
        .with_state(state)
}

fn refuse(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn json_response(body: impl Into<Body>) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.into(),
    )
        .into_response()
}

async fn interaction(Extract(state): Extract<Arc<State>>, request: Request) -> Response {
    state.metrics.in_flight.inc();
    let response = handle(&state, request).await;
    state.metrics.in_flight.dec();
    response
}

async fn handle(state: &Arc<State>, request: Request) -> Response {
    // Discord's 3 s run from when it sent the request: the clock starts before anything else.
    let arrived = Instant::now();
    let (parts, body) = request.into_parts();
    let limit = state.config.max_body;
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        state.count("too_large");
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
    }
    let body = match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(body)) => body,
        Ok(Err(_)) => {
            state.count("too_large");
            return refuse(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
        Err(_) => {
            state.count("bad_request");
            return refuse(StatusCode::REQUEST_TIMEOUT, "request body too slow");
        }
    };
    let verifying = Instant::now();
    let verified = verify(&state.config, &parts.headers, &body);
    state
        .metrics
        .verify_seconds
        .observe(verifying.elapsed().as_secs_f64());
    if !verified {
        state.count("unauthorized");
        return refuse(StatusCode::UNAUTHORIZED, "invalid request signature");
    }
    let Ok(interaction) = serde_json::from_slice::<Interaction>(&body) else {
        state.count("bad_request");
        return refuse(StatusCode::BAD_REQUEST, "not an interaction");
    };
    if interaction.kind == PING {
        state.count("pong");
        return json_response(r#"{"type":1}"#);
    }
    let first = state
        .seen
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .first(interaction.id.get(), state.config.timestamp_window);
    if !first {
        state.count("replayed");
        return refuse(StatusCode::UNAUTHORIZED, "interaction already received");
    }
    // Disco sends no components or modals and offers no autocomplete; a worker would ignore
    // them, and Discord would show the member a failure after 3 s. Answered here instead.
    if interaction.kind == AUTOCOMPLETE {
        state.count("not_a_command");
        return json_response(r#"{"type":8,"data":{"choices":[]}}"#);
    }
    if interaction.kind != APPLICATION_COMMAND {
        state.count("not_a_command");
        return json_response(
            r#"{"type":4,"data":{"content":"Disco does not handle this here.","flags":64,"allowed_mentions":{"parse":[]}}}"#,
        );
    }
    let guild_id = interaction.guild_id.map(Id::get);
    let forwarding = Arc::clone(state);
    let reply: Reply = Box::pin(async move {
        let pending = forward(&forwarding, body, guild_id, arrived).await?;
        pending.await
    });
    answer(state, reply, interaction.token, arrived).await
}

/// The worker's answer, once the interaction is published (which, while the bus is down, can
/// take any time: the deadline is kept around both).
type Reply = std::pin::Pin<Box<dyn Future<Output = Result<Message, bus::Error>> + Send>>;

/// Said to the member, in place of an answer that cannot come.
const APOLOGY: &str = "Disco cannot answer right now; please try again.";

/// Checks the headers and the signature over timestamp + raw body, and the timestamp's age.
fn verify(config: &Config, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
    ) else {
        return false;
    };
    let Ok(sent) = timestamp.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if sent.abs_diff(now) > config.timestamp_window.as_secs() {
        return false;
    }
    config.public_key.verify(signature, timestamp, body)
}

/// Publishes the interaction as the gateway would, asking for an answer. It expires when the
/// ingress stops waiting for that answer, so that no worker runs it after the member was told
/// it failed.
async fn forward(
    state: &State,
    body: Bytes,
    guild_id: Option<u64>,
    arrived: Instant,
) -> Result<PendingReply, bus::Error> {
    let shard = guild_id.map_or(0, |g| {
        route::shard_for_guild(g, state.config.shard_total.max(1))
    });
    let received_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let event = GatewayEvent {
        shard_id: shard,
        event_name: "INTERACTION_CREATE".to_owned(),
        guild_id,
        received_at_ms,
        payload: body,
        ..Default::default()
    };
    let key = route::event_key("INTERACTION_CREATE", shard);
    let left = state.config.late_answer.saturating_sub(arrived.elapsed());
    state
        .bus
        .request(
            Destination::Event(key),
            Message::new(event.encode_current()).expiring_after(left),
        )
        .await
}

/// The worker's answer if it comes within the deadline (counted from the request's arrival,
/// whatever the bus does meanwhile); otherwise "deferred", and the late answer, or an apology if
/// none comes, edited in.
async fn answer(state: &Arc<State>, mut reply: Reply, token: String, arrived: Instant) -> Response {
    let deadline = tokio::time::Instant::from_std(arrived + state.config.deadline);
    match tokio::time::timeout_at(deadline, &mut reply).await {
        Ok(Ok(reply)) => {
            state
                .metrics
                .reply_seconds
                .observe(arrived.elapsed().as_secs_f64());
            match disco_proto::decode::<InteractionReply>(&reply.body) {
                Ok(reply) => {
                    state.count("answered");
                    json_response(reply.response)
                }
                Err(error) => {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "the worker's answer is not an InteractionReply"
                    );
                    state.count("unavailable");
                    json_response(
                        r#"{"type":4,"data":{"content":"Something went wrong.","flags":64}}"#,
                    )
                }
            }
        }
        Ok(Err(error)) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot forward an interaction, or its answer was lost"
            );
            state.count("unavailable");
            // Still one answer for Discord: an apology only the member sees.
            json_response(
                json!({"type": 4, "data": {"content": APOLOGY, "flags": 64, "allowed_mentions": {"parse": []}}})
                    .to_string(),
            )
        }
        Err(_) => {
            state.count("deferred");
            state.metrics.deadline_misses.inc();
            let state_for_edit = Arc::clone(state);
            state
                .late
                .spawn(async move { edit_late(&state_for_edit, reply, &token, arrived).await });
            json_response(r#"{"type":5}"#)
        }
    }
}

/// Edits a deferred response: with the worker's answer if it comes while the ingress still
/// waits, with an apology otherwise (never left "thinking").
async fn edit_late(state: &State, reply: Reply, token: &str, arrived: Instant) {
    let waited = state.config.late_answer.saturating_sub(arrived.elapsed());
    let answered = match tokio::time::timeout(waited, reply).await {
        Ok(Ok(reply)) => disco_proto::decode::<InteractionReply>(&reply.body)
            .map_err(|error| format!("the worker's answer is not an InteractionReply: {error}")),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err(format!("no answer within {:?}", state.config.late_answer)),
    };
    let (edit, success) = match answered {
        Ok(reply) => {
            state
                .metrics
                .reply_seconds
                .observe(arrived.elapsed().as_secs_f64());
            let data = serde_json::from_slice::<WorkerAnswer>(&reply.response)
                .map(|r| r.data)
                .unwrap_or_default();
            let edit = json!({
                "content": data.content,
                "embeds": data.embeds.unwrap_or_else(|| json!([])),
                "allowed_mentions": data.allowed_mentions.unwrap_or_else(|| json!({"parse": []})),
            });
            (edit, "edited")
        }
        Err(error) => {
            tracing::warn!(%error, "no answer for a deferred interaction; apologizing");
            let edit = json!({"content": APOLOGY, "embeds": [], "allowed_mentions": {"parse": []}});
            (edit, "apologized")
        }
    };
    let outcome = |outcome: &'static str| {
        state
            .metrics
            .late_edits
            .get_or_create(&OutcomeLabel { outcome })
            .inc();
    };
    let route = Route::UpdateInteractionOriginal {
        application_id: state.config.application_id,
        interaction_token: token,
    };
    let request = match DiscordRequest::builder(&route)
        .json(&edit)
        .use_authorization_token(false)
        .build()
    {
        Ok(request) => request,
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot build the edit"
            );
            outcome("failed");
            return;
        }
    };
    match state.discord.request::<EmptyBody>(request).await {
        Ok(_) => outcome(success),
        Err(error) => {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot edit a deferred response"
            );
            outcome("failed");
        }
    }
}
