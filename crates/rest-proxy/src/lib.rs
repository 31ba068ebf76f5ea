#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`RestProxy`]: [`RestProxy::bind`] takes the listener, [`RestProxy::run`] serves until
//!   shutdown; [`Handle`]: the same proxy for callers in its process, without HTTP.
//! - `route`: what a request is: template, major parameter, global or not, deadline.
//! - `limits`: buckets and the global limit, with deadlines.
//! - `budget`: the invalid-request budget: 401 token, 403 channels, the breaker.
//! - `metrics`: `disco_rest_proxy_*`.

mod budget;
mod limits;
mod metrics;
mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use url::Url;

pub use disco_proto::InvalidConfig;

use budget::{Budget, Known};
use limits::{Answer, Limits, Refusal, Turn};
use metrics::{LimitedLabel, Metrics, RefusedLabel, RequestLabel};
use route::Route;

/// The role's name: the same for the crate, the CLI, the metric label and the Kubernetes object.
pub const ROLE: &str = "rest-proxy";

pub use disco_proto::rest::{
    DEADLINE_HEADER, MAX_WAIT_HEADER, REFUSED_BUSY, REFUSED_DEADLINE, REFUSED_HEADER,
    RETRY_AFTER_HEADER, RETURNING_HEADER,
};

/// How long a 403 for a route in a channel is answered by the proxy.
const FORBIDDEN_MEMORY: Duration = Duration::from_secs(10 * 60);
/// Set on a request one replica forwards to the bucket's owner, which sends it itself.
const FORWARDED_HEADER: &str = "x-disco-forwarded";

/// The replica (of `replicas`) that owns bucket `key`: a jump consistent hash, so a change in
/// the number of replicas moves only the buckets it must.
fn owner(key: &str, replicas: usize) -> usize {
    // FNV-1a: the same on every replica and every build.
    let mut hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let (mut bucket, mut next) = (0_i64, 0_i64);
    let replicas = i64::try_from(replicas).unwrap_or(i64::MAX);
    while next < replicas {
        bucket = next;
        hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let jump =
            ((bucket + 1) as f64 * ((1_u64 << 31) as f64 / ((hash >> 33) + 1) as f64)) as i64;
        next = jump;
    }
    usize::try_from(bucket).unwrap_or(0)
}

/// How long requests in hand may finish after shutdown; callers retry the rest elsewhere.
const DRAIN: Duration = Duration::from_secs(20);
/// Tries of one request when Discord answers 429 (each waits for the bucket).
const TRIES: u32 = 3;

/// What the proxy needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Discord's REST base URL (the API lives under `/api/v10`).
    pub upstream: Url,
    /// Requests per second outside interaction routes (Discord raises it for large bots).
    pub global_limit: u32,
    /// Invalid requests in 10 minutes above which failing routes are refused (Cloudflare
    /// bans at 10,000).
    pub invalid_budget: u32,
    /// How long a request without `x-disco-deadline` may wait for its turn.
    pub default_deadline: Duration,
    /// Every replica's base URL, this one's included, in the same order on every replica;
    /// empty for one replica alone. Each bucket is owned by one replica (a consistent hash of
    /// its route and major parameter), which the others forward its requests to; each replica
    /// sends its share of the global limit and of the invalid-request budget.
    pub peers: Vec<Url>,
    /// This replica's place in `peers`.
    pub index: usize,
}

impl Config {
    /// Where to listen, unless set.
    pub const DEFAULT_LISTEN: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9300);
    /// Discord's global limit.
    pub const DEFAULT_GLOBAL_LIMIT: u32 = 50;
    /// Half of Cloudflare's 10,000.
    pub const DEFAULT_INVALID_BUDGET: u32 = 5_000;
    /// How long a request without a deadline may wait, unless set.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);

    /// A proxy to `upstream`; every other field at its default.
    pub fn new(upstream: Url) -> Self {
        Self {
            listen: Self::DEFAULT_LISTEN,
            upstream,
            global_limit: Self::DEFAULT_GLOBAL_LIMIT,
            invalid_budget: Self::DEFAULT_INVALID_BUDGET,
            default_deadline: Self::DEFAULT_DEADLINE,
            peers: Vec::new(),
            index: 0,
        }
    }

    /// Replicas sharing the bot's limits (1 without peers).
    pub fn replicas(&self) -> u32 {
        u32::try_from(self.peers.len().max(1)).unwrap_or(u32::MAX)
    }

    /// Refuses a value the proxy cannot run with, naming the field.
    ///
    /// # Errors
    /// The first field found wrong.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if !matches!(self.upstream.scheme(), "http" | "https") {
            return Err(InvalidConfig::new("upstream", "expected an http(s) URL"));
        }
        if self.global_limit == 0 {
            return Err(InvalidConfig::new("global_limit", "expected at least 1"));
        }
        if self.invalid_budget == 0 || self.invalid_budget >= 10_000 {
            return Err(InvalidConfig::new(
                "invalid_budget",
                "expected 1 to 9,999: Cloudflare bans the address at 10,000",
            ));
        }
        if !self.peers.is_empty() && self.index >= self.peers.len() {
            return Err(InvalidConfig::new(
                "index",
                format!("expected 0 to {}: one per peer", self.peers.len() - 1),
            ));
        }
        if self.global_limit < self.replicas() {
            return Err(InvalidConfig::new(
                "global_limit",
                "expected at least one request per second per replica",
            ));
        }
        if self.default_deadline.is_zero() {
            return Err(InvalidConfig::new(
                "default_deadline",
                "expected more than 0",
            ));
        }
        Ok(())
    }
}

/// Why the proxy stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// It could not listen or serve.
    #[error("cannot serve on {address}")]
    Serve {
        address: String,
        #[source]
        source: std::io::Error,
    },
}

/// The REST proxy role.
#[derive(Debug)]
pub struct RestProxy {
    listener: TcpListener,
    shared: Arc<Shared>,
    ready: Arc<AtomicBool>,
}

#[derive(Debug)]
struct Shared {
    /// Discord's API, as configured.
    upstream: Url,
    /// Every replica's base URL (none alone), and this one's place among them.
    peers: Vec<Url>,
    index: usize,
    client: Upstream,
    limits: Limits,
    budget: Budget,
    metrics: Metrics,
    default_deadline: Duration,
}

impl RestProxy {
    /// Listens on `config.listen` (port 0: any free port, see [`RestProxy::address`]) and
    /// registers the metrics. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// The address cannot be listened on.
    pub fn bind(config: &Config, registry: &mut Registry) -> Result<Self, Error> {
        let serve_error = |source| Error::Serve {
            address: config.listen.to_string(),
            source,
        };
        // A deep backlog: every worker's connections may open at once after a restart.
        let socket = if config.listen.is_ipv4() {
            tokio::net::TcpSocket::new_v4()
        } else {
            tokio::net::TcpSocket::new_v6()
        }
        .map_err(serve_error)?;
        socket.set_reuseaddr(true).map_err(serve_error)?;
        socket.bind(config.listen).map_err(serve_error)?;
        let listener = socket.listen(4096).map_err(serve_error)?;
        // Each replica sends its share; the buckets are split by owner.
        let global_share = config.global_limit / config.replicas();
        let budget_share = (config.invalid_budget / config.replicas()).max(1);
        let client = upstream_client().map_err(|e| serve_error(std::io::Error::other(e)))?;
        Ok(Self {
            listener,
            shared: Arc::new(Shared {
                upstream: config.upstream.clone(),
                peers: config.peers.clone(),
                index: config.index,
                client,
                limits: Limits::new(global_share),
                budget: Budget::new(budget_share, FORBIDDEN_MEMORY),
                metrics: Metrics::register(registry, budget_share, global_share),
                default_deadline: config.default_deadline,
            }),
            ready: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Where the proxy listens.
    ///
    /// # Errors
    /// The socket has no local address.
    pub fn address(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The proxy for callers in its own process: requests handed to it directly, not over
    /// HTTP (the same limits, budget and answers).
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// True while the proxy serves.
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let ready = Arc::clone(&self.ready);
        move || ready.load(Ordering::Relaxed)
    }

    /// Serves until `shutdown`, then finishes the requests in hand.
    ///
    /// # Errors
    /// Serving failed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let address = self
            .listener
            .local_addr()
            .map_or_else(|_| "?".to_owned(), |a| a.to_string());
        let app = Router::new()
            .fallback(forward)
            .layer(DefaultBodyLimit::max(25 * 1024 * 1024))
            .with_state(Arc::clone(&self.shared));
        let gauges = tokio::spawn({
            let shared = Arc::clone(&self.shared);
            let stop = shutdown.clone();
            async move {
                while stop
                    .run_until_cancelled(tokio::time::sleep(Duration::from_secs(5)))
                    .await
                    .is_some()
                {
                    shared.update_gauges();
                }
            }
        });
        self.ready.store(true, Ordering::Relaxed);
        tracing::info!(%address, upstream = %self.shared.upstream, "proxying Discord's REST API");
        let serve = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future();
        let drained = async {
            shutdown.cancelled().await;
            tokio::time::sleep(DRAIN).await;
        };
        let served = tokio::select! {
            served = serve => served,
            () = drained => {
                tracing::warn!("requests still in hand after {DRAIN:?}; their callers try again");
                Ok(())
            }
        };
        self.ready.store(false, Ordering::Relaxed);
        gauges.abort();
        served.map_err(|source| Error::Serve { address, source })
    }
}

/// The proxy in its callers' process (see [`RestProxy::handle`]).
#[derive(Clone, Debug)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Handles `request` (its URI the API path, `/api/v10/...`, with the caller's headers) as
    /// the proxy handles one that came over HTTP.
    ///
    /// # Errors
    /// The answer's body could not be read.
    pub async fn send(
        &self,
        request: axum::http::Request<Bytes>,
    ) -> Result<axum::http::Response<Bytes>, String> {
        let (parts, body) = request.into_parts();
        let response = forward(
            State(Arc::clone(&self.shared)),
            parts.method,
            parts.uri,
            parts.headers,
            body,
        )
        .await;
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .map_err(|error| error.to_string())?;
        Ok(axum::http::Response::from_parts(parts, body))
    }
}

impl Shared {
    fn update_gauges(&self) {
        let (spent, open) = self.budget.spent();
        self.metrics
            .invalid
            .set(i64::try_from(spent).unwrap_or(i64::MAX));
        self.metrics.breaker_open.set(i64::from(open));
        self.metrics
            .token_rejected
            .set(i64::from(self.budget.token_rejected()));
        self.metrics
            .buckets
            .set(i64::try_from(self.limits.buckets()).unwrap_or(i64::MAX));
    }

    /// Sends a request to the replica that owns its bucket, and its answer back.
    async fn forward_to(
        &self,
        owner: usize,
        route: &Route,
        method: Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response {
        let mut outgoing = headers.clone();
        outgoing.remove("host");
        outgoing.insert(FORWARDED_HEADER, HeaderValue::from_static("1"));
        let answered = match at(&self.peers[owner], uri) {
            Ok(uri) => {
                let request = outgoing_request(method, uri, outgoing, body);
                send(
                    &self.client,
                    request,
                    Instant::now() + self.default_deadline,
                )
                .await
            }
            Err(error) => Err(Failed::Unsent(error.to_string())),
        };
        match answered {
            Ok((status, headers, body)) => relay(status, headers, body),
            Err(Failed::Unsent(error)) => {
                // Not sent in its place: the owner may be restarting. The caller tries again.
                tracing::warn!(route = %route.template, owner, %error, "the bucket's replica is unreachable");
                self.refused(
                    route,
                    StatusCode::BAD_GATEWAY,
                    "unreachable",
                    "the replica that owns this bucket did not answer",
                    None,
                )
            }
            Err(Failed::BrokeOff(..)) => self.refused(
                route,
                StatusCode::BAD_GATEWAY,
                "unreachable",
                "the owner's answer broke off",
                None,
            ),
        }
    }

    /// The answer to a request the proxy knows would fail.
    fn known(&self, route: &Route, known: Known) -> Response {
        let reason = known.reason();
        match known {
            Known::Unauthorized => self.refused(
                route,
                StatusCode::UNAUTHORIZED,
                reason,
                "401: Unauthorized (Discord refused this token; the proxy sends nothing with it)",
                None,
            ),
            // Discord's own answer, again.
            Known::Forbidden(body) => {
                self.answered_for(route, StatusCode::FORBIDDEN, reason, body, None)
            }
            Known::Breaker => self.refused(
                route,
                StatusCode::SERVICE_UNAVAILABLE,
                reason,
                "the invalid-request budget is spent and this route failed in the last 10 minutes",
                None,
            ),
        }
    }

    /// The proxy's own answer: Discord's error shape, plus `disco: {refused, retry_after_ms}`
    /// (also as headers), so a caller that sees only the body can tell why.
    fn refused(
        &self,
        route: &Route,
        status: StatusCode,
        reason: &'static str,
        text: &str,
        wait: Option<Duration>,
    ) -> Response {
        let wait_ms = wait.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX));
        let body = serde_json::json!({
            "message": text,
            "code": 0,
            "disco": {"refused": reason, "retry_after_ms": wait_ms},
        });
        self.answered_for(
            route,
            status,
            reason,
            Bytes::from(body.to_string()),
            wait_ms,
        )
    }

    fn answered_for(
        &self,
        route: &Route,
        status: StatusCode,
        reason: &'static str,
        body: Bytes,
        wait_ms: Option<u64>,
    ) -> Response {
        self.metrics
            .refused
            .get_or_create(&RefusedLabel {
                route: route.template.clone(),
                reason,
            })
            .inc();
        self.metrics
            .requests
            .get_or_create(&RequestLabel {
                route: route.template.clone(),
                status: status.as_u16(),
                origin: "proxy",
            })
            .inc();
        let mut response = (status, [("content-type", "application/json")], body).into_response();
        let headers = response.headers_mut();
        headers.insert(REFUSED_HEADER, HeaderValue::from_static(reason));
        if let Some(wait) = wait_ms
            && let Ok(value) = HeaderValue::from_str(&wait.to_string())
        {
            headers.insert(RETRY_AFTER_HEADER, value);
        }
        response
    }
}

fn message(text: &str) -> Bytes {
    Bytes::from(serde_json::json!({"message": text, "code": 0}).to_string())
}

/// When the answer to a request stops being useful, on our clock.
fn deadline(headers: &HeaderMap, route: &Route, default: Duration) -> Instant {
    let now = Instant::now();
    let given = headers
        .get(DEADLINE_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
        .or(route.interaction_deadline);
    match given {
        Some(at) => now + at.duration_since(SystemTime::now()).unwrap_or_default(),
        None => now + default,
    }
}

/// Request headers not passed on: hop-by-hop, recomputed, or ours.
fn passed_on(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "host" | "connection" | "content-length" | "transfer-encoding" | "keep-alive" | "upgrade"
    ) && !name.as_str().starts_with("x-disco-")
}

/// `uri`'s path and query under `base`, as the `Uri` hyper sends: joined as text and read by
/// http's parser (no IDNA, no normalisation: `uri` came in as a valid one).
fn at(base: &Url, uri: &Uri) -> Result<Uri, axum::http::uri::InvalidUri> {
    let base = base.as_str().trim_end_matches('/');
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut url = String::with_capacity(base.len() + path.len());
    url.push_str(base);
    url.push_str(path);
    Uri::try_from(url)
}

/// The proxy's HTTP client, to Discord (TLS, webpki's roots) and to its peers (plain): hyper's
/// pool and nothing above it (no redirects, no URL re-parsing: a request is sent as it came).
type Upstream = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

fn upstream_client() -> Result<Upstream, rustls::Error> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    // ring: the one provider the build has (as songbird's and the bus's TLS).
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_timer(TokioTimer::new())
        .build(https))
}

fn outgoing_request(
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::http::Request<Full<Bytes>> {
    let mut request = axum::http::Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    request
}

/// Why an exchange gave no answer.
#[derive(Debug)]
enum Failed {
    /// Nothing came back: not connected, or no answer before the deadline.
    Unsent(String),
    /// The answer began (its status and headers) and broke off.
    BrokeOff(StatusCode, HeaderMap),
}

/// Sends `request` and reads its whole answer, both before `deadline`.
async fn send(
    client: &Upstream,
    request: axum::http::Request<Full<Bytes>>,
    deadline: Instant,
) -> Result<(StatusCode, HeaderMap, Bytes), Failed> {
    let response = match tokio::time::timeout_at(deadline, client.request(request)).await {
        Ok(Ok(response)) => response,
        // Its source says why (the error itself only says "client error").
        Ok(Err(error)) => {
            let why = std::error::Error::source(&error)
                .map_or_else(|| error.to_string(), |source| format!("{error}: {source}"));
            return Err(Failed::Unsent(why));
        }
        Err(_) => return Err(Failed::Unsent("no answer before the deadline".to_owned())),
    };
    let (parts, body) = response.into_parts();
    match tokio::time::timeout_at(deadline, body.collect()).await {
        Ok(Ok(body)) => Ok((parts.status, parts.headers, body.to_bytes())),
        _ => Err(Failed::BrokeOff(parts.status, parts.headers)),
    }
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let Some(api) = path
        .strip_prefix("/api/v")
        .and_then(|rest| rest.split_once('/'))
        .map(|(_, api)| api)
    else {
        return (
            StatusCode::NOT_FOUND,
            message("not a Discord API path: /api/v10/..."),
        )
            .into_response();
    };
    let route = Route::classify(method.as_str(), api);
    let credential = budget::credential(headers.get("authorization").map(HeaderValue::as_bytes));
    if let Some(known) = shared.budget.known(&route, credential) {
        return shared.known(&route, known);
    }
    let deadline = deadline(&headers, &route, shared.default_deadline);
    // However long the turns take, the caller is answered within its wait.
    let hold_until = headers
        .get(MAX_WAIT_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let returning = headers.contains_key(RETURNING_HEADER);
    let key = format!("{} {}", route.template, route.major);
    // Another replica's bucket: it holds its limits, so the request goes there. Interaction
    // routes have a bucket per interaction and no global limit: any replica sends them.
    if shared.peers.len() > 1 && route.global && !headers.contains_key(FORWARDED_HEADER) {
        let owner = owner(&key, shared.peers.len());
        if owner != shared.index {
            return shared
                .forward_to(owner, &route, method, &uri, &headers, body)
                .await;
        }
    }
    let url = match at(&shared.upstream, &uri) {
        Ok(url) => url,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                message(&format!("not a URL on Discord's API: {error}")),
            )
                .into_response();
        }
    };
    let mut outgoing = HeaderMap::with_capacity(headers.len());
    for (name, value) in &headers {
        if passed_on(name) {
            outgoing.append(name.clone(), value.clone());
        }
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let waited = Instant::now();
        let turn = match shared
            .limits
            .turn(
                &key,
                route.global,
                deadline,
                hold_until,
                returning && attempt == 1,
            )
            .await
        {
            Ok(turn) => turn,
            Err(refusal) => {
                let text = match refusal {
                    Refusal::Deadline(_) => {
                        "its turn in Discord's rate limits comes after its deadline"
                    }
                    Refusal::Busy(_) => {
                        "its turn in Discord's rate limits comes later than x-disco-max-wait-ms"
                    }
                };
                return shared.refused(
                    &route,
                    StatusCode::SERVICE_UNAVAILABLE,
                    refusal.reason(),
                    text,
                    Some(refusal.wait()),
                );
            }
        };
        shared.metrics.wait.observe(waited.elapsed().as_secs_f64());
        // What was learned while it waited (a 403 for its channel, a 401 for its token).
        if let Some(known) = shared.budget.known(&route, credential) {
            shared.limits.unused(turn);
            return shared.known(&route, known);
        }
        let timeout = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(1));
        let request = outgoing_request(method.clone(), url.clone(), outgoing.clone(), body.clone());
        // Once its turn is taken, the exchange with Discord runs to its end in a task of its
        // own: a caller that goes away (its connection dropped) would otherwise cancel it
        // halfway, and what Discord's answer says of the bucket would never be learned.
        let exchange = tokio::spawn(exchange(
            Arc::clone(&shared),
            turn,
            request,
            Instant::now() + timeout,
            route.clone(),
            credential,
        ));
        let (status_code, answer, response_headers, body) = match exchange.await {
            Ok(Ok(exchanged)) => exchanged,
            Ok(Err(refused)) => return refused,
            Err(_) => return StatusCode::BAD_GATEWAY.into_response(),
        };
        let status = status_code.as_u16();
        shared
            .metrics
            .requests
            .get_or_create(&RequestLabel {
                route: route.template.clone(),
                status,
                origin: "discord",
            })
            .inc();
        if status == 429 {
            shared
                .metrics
                .rate_limited
                .get_or_create(&LimitedLabel {
                    route: route.template.clone(),
                    scope: answer.scope.clone().unwrap_or_else(|| "none".to_owned()),
                })
                .inc();
            if attempt < TRIES {
                tracing::debug!(route = %route.template, attempt, "429 from Discord; waiting for the bucket");
                continue;
            }
        }
        if matches!(status, 401 | 403) {
            shared.update_gauges();
        }
        return relay(status_code, response_headers, body);
    }
}

/// What Discord answered: status, what it says of the limits, headers and body.
type Exchanged = (StatusCode, Answer, HeaderMap, Bytes);

/// Sends `request` on `turn` and reads the whole answer, then gives the turn back with what
/// Discord said and records it in the invalid-request budget. `Err`: the answer for the caller
/// when none came.
async fn exchange(
    shared: Arc<Shared>,
    turn: Turn,
    request: axum::http::Request<Full<Bytes>>,
    deadline: Instant,
    route: Route,
    credential: Option<u64>,
) -> Result<Exchanged, Response> {
    let sent = Instant::now();
    let (status_code, headers, body) = match send(&shared.client, request, deadline).await {
        Ok(answered) => answered,
        Err(Failed::Unsent(error)) => {
            shared.limits.done(turn, None);
            // Without its URL: interaction and webhook URLs hold tokens.
            tracing::warn!(route = %route.template, %error, "discord unreachable");
            return Err(shared.refused(
                &route,
                StatusCode::BAD_GATEWAY,
                "unreachable",
                "Discord did not answer",
                None,
            ));
        }
        Err(Failed::BrokeOff(status, headers)) => {
            shared
                .limits
                .done(turn, Some(&Answer::read(status.as_u16(), &headers)));
            tracing::warn!(route = %route.template, "discord's answer broke off");
            return Err(shared.refused(
                &route,
                StatusCode::BAD_GATEWAY,
                "unreachable",
                "Discord's answer broke off",
                None,
            ));
        }
    };
    let answer = Answer::read(status_code.as_u16(), &headers);
    shared.metrics.discord.observe(sent.elapsed().as_secs_f64());
    shared.budget.record(
        &route,
        credential,
        status_code.as_u16(),
        answer.scope.as_deref(),
        &body,
    );
    shared.limits.done(turn, Some(&answer));
    Ok((status_code, answer, headers, body))
}

/// An answer passed back as it came, less its hop-by-hop headers.
fn relay(status: StatusCode, mut headers: HeaderMap, body: Bytes) -> Response {
    for hop in [
        "connection",
        "content-length",
        "transfer-encoding",
        "keep-alive",
    ] {
        headers.remove(hop);
    }
    let mut back = Response::new(axum::body::Body::from(body));
    *back.status_mut() = status;
    *back.headers_mut() = headers;
    back
}

#[cfg(test)]
mod tests {
    use super::owner;

    #[test]
    fn buckets_spread_over_replicas_and_a_new_replica_moves_only_its_share() {
        let keys: Vec<String> = (0..10_000)
            .map(|n| format!("POST /channels/{{id}}/messages channels/{n}"))
            .collect();
        let mut counts = [0_usize; 3];
        for key in &keys {
            counts[owner(key, 3)] += 1;
        }
        assert!(
            counts.iter().all(|&c| (3_000..3_700).contains(&c)),
            "{counts:?}"
        );
        // From 3 replicas to 4: a bucket either stays or moves to the new one.
        let moved = keys
            .iter()
            .filter(|key| owner(key, 3) != owner(key, 4))
            .inspect(|key| assert_eq!(owner(key, 4), 3))
            .count();
        assert!((2_200..2_800).contains(&moved), "{moved}");
        assert_eq!(owner(&keys[0], 1), 0);
    }
}
