#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`Ingress`]: [`Ingress::new`] registers metrics, [`Ingress::run`] serves until shutdown,
//!   then drains.
//! - [`PublicKey`]: the application's key, and signature checks.
//! - `handler`: one request: verify, PING, publish, wait for the answer or defer.
//! - `metrics`: `disco_interactions_ingress_*`.
//! - `serve`: connections: how many at once, how long a request's head may take.

mod handler;
mod key;
mod metrics;
mod serve;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use disco_proto::InvalidConfig;

pub use key::{KeyError, PublicKey};

/// The role's name: the same for the crate, the CLI, the metric label and the Kubernetes object.
pub const ROLE: &str = "interactions-ingress";

/// What the ingress needs.
#[derive(Clone, Debug)]
pub struct Config {
    /// The application's public key.
    pub public_key: PublicKey,
    /// The application id (edits of deferred responses are addressed by it).
    pub application_id: u64,
    /// Where to listen.
    pub listen: SocketAddr,
    /// The largest body accepted; larger is refused with 413 before it is read.
    pub max_body: usize,
    /// How far a request's timestamp may be from now (replay protection).
    pub timestamp_window: Duration,
    /// How long to wait for the worker before answering "deferred" (Discord allows 3 s).
    pub deadline: Duration,
    /// How long after deferring the worker's answer may still come and be edited in.
    pub late_answer: Duration,
    /// The shard total, to route an interaction like the gateway would.
    pub shard_total: u32,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
}

impl Config {
    /// Where to listen, unless set.
    pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        8080,
    ));
    /// The largest body accepted, unless set.
    pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
    /// The replay window, unless set.
    pub const DEFAULT_TIMESTAMP_WINDOW: Duration = Duration::from_secs(300);
    /// How long to wait for the worker before deferring, unless set.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(2_500);
    /// How long a deferred answer may still come, unless set.
    pub const DEFAULT_LATE_ANSWER: Duration = Duration::from_secs(120);
    /// Connections served at once, unless set.
    pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

    /// The ingress of `application_id`, verifying with `public_key`; every other field at its
    /// default (one shard).
    pub fn new(public_key: PublicKey, application_id: u64) -> Self {
        Self {
            public_key,
            application_id,
            listen: Self::DEFAULT_LISTEN,
            max_body: Self::DEFAULT_MAX_BODY,
            timestamp_window: Self::DEFAULT_TIMESTAMP_WINDOW,
            deadline: Self::DEFAULT_DEADLINE,
            late_answer: Self::DEFAULT_LATE_ANSWER,
            shard_total: 1,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
        }
    }

    /// Refuses a value the ingress cannot run with, naming the field.
    ///
    /// # Errors
    /// The first field found wrong.
    pub fn validate(&self) -> Result<(), InvalidConfig> {
        if self.application_id == 0 {
            return Err(InvalidConfig::new(
                "application_id",
                "expected a Discord id",
            ));
        }
        let deadline = self.deadline.as_millis();
        if !(100..=2_900).contains(&deadline) {
            return Err(InvalidConfig::new(
                "deadline",
                "expected 100 to 2900 ms: Discord drops an interaction not answered within 3 s",
            ));
        }
        if !(1..=900).contains(&self.late_answer.as_secs()) {
            return Err(InvalidConfig::new("late_answer", "expected 1 to 900 s"));
        }
        if self.max_body < 1024 {
            return Err(InvalidConfig::new("max_body", "expected at least 1024"));
        }
        if self.timestamp_window.is_zero() {
            return Err(InvalidConfig::new(
                "timestamp_window",
                "expected more than 0",
            ));
        }
        if self.shard_total == 0 {
            return Err(InvalidConfig::new("shard_total", "expected at least 1"));
        }
        if self.max_connections == 0 {
            return Err(InvalidConfig::new("max_connections", "expected at least 1"));
        }
        Ok(())
    }
}

/// Why the ingress stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listener failed.
    #[error("cannot listen on {address}")]
    Listen {
        /// Where.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// Binds a listener with a backlog deep enough for a burst of interactions arriving at once.
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(4096)
}

/// The interactions webhook.
#[derive(Debug)]
pub struct Ingress {
    state: Arc<handler::State>,
    listen: SocketAddr,
}

impl Ingress {
    /// Prepares the role, editing deferred answers through `rest` (the process's one REST
    /// client), and registers its metrics.
    pub fn new(
        config: Config,
        rest: Arc<twilight_http::Client>,
        bus: bus::Bus,
        registry: &mut Registry,
    ) -> Self {
        let listen = config.listen;
        let state = Arc::new(handler::State::new(
            config,
            rest,
            bus,
            metrics::Metrics::register(registry),
        ));
        Self { state, listen }
    }

    /// Ready while the bus is up: without it, no interaction can be answered, and Discord should
    /// try a healthy replica.
    pub fn readiness(&self) -> impl Fn() -> bool + Send + Sync + 'static {
        let state = Arc::clone(&self.state);
        move || state.bus.is_connected()
    }

    /// Binds the configured address (with [`bind`]'s deep backlog) and serves until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), Error> {
        let listener = bind(self.listen).map_err(|source| Error::Listen {
            address: self.listen,
            source,
        })?;
        self.serve(listener, shutdown).await
    }

    /// Serves on `listener` until `shutdown`: then stops accepting, finishes the requests in
    /// hand, and waits (bounded) for the late answers it still has to edit in.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> Result<(), Error> {
        let address = listener.local_addr().unwrap_or(self.listen);
        tracing::info!(%address, "serving Discord's interactions webhook");
        let late: TaskTracker = self.state.late.clone();
        let app = handler::router(Arc::clone(&self.state));
        let served =
            serve::serve(listener, app, self.state.config.max_connections, &shutdown).await;
        late.close();
        if tokio::time::timeout(self.state.config.late_answer, late.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "late answers still pending at shutdown; their deferred responses stay as they are"
            );
        }
        served.map_err(|source| Error::Listen { address, source })
    }
}
