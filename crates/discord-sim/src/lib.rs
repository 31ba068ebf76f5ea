#![doc = include_str!("../README.md")]
#![recursion_limit = "256"]
//!
//! # Map
//! - [`Simulator`]: start one in-process (tests) or [`serve`] it on a listener (`disco sim`).
//! - [`world`]: the application, bot, guilds, channels and members, and the limits.
//! - `gateway`: gateway v10 over WebSocket, sessions, RESUME, close codes.
//! - `rest`: the REST routes (`admit`: authentication and rate limits; `messages`,
//!   `commands`, `interactions`), answering a refusal as a `SimError`.
//! - `control`: the `/_sim` API.
//! - `webhook`: signed delivery to an interactions endpoint, and forged probes.
//! - `voice`: `tls` ([`VoiceTls`]), `hub` (grants, connections, what was heard), `gateway`
//!   (`wss://`) and `rtp` (the UDP endpoint that listens).
//! - `state`: the state by owner (gateway, REST, the record of what the bot sent);
//!   `payload`, `compress`: Discord's JSON shapes, transport compression.

mod client;
mod compress;
mod control;
mod gateway;
mod http;
mod payload;
mod rest;
mod state;
mod voice;
mod webhook;
pub mod world;

use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

pub use client::{Control, ControlError};
pub use voice::VoiceTls;
pub use world::World;

/// How to start a simulator.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The world; [`World::default`] when not loaded from a file.
    pub world: World,
    /// Where interactions are POSTed, signed, instead of going over the gateway.
    pub interactions_url: Option<String>,
    /// The voice gateway's TLS identity; a new one is made when `None`.
    pub voice_tls: Option<VoiceTls>,
}

/// A running simulator and what a client needs to reach it.
#[derive(Debug)]
pub struct Simulator {
    /// Where it listens.
    pub address: SocketAddr,
    /// `http://host:port`: the REST base (`/api/v10/...`) and the control API (`/_sim/...`).
    pub rest_url: String,
    /// `ws://host:port/gateway`.
    pub gateway_url: String,
    /// The world it simulates (token, application id, guilds).
    pub world: World,
    /// The Ed25519 public key interactions are signed with, hex.
    pub public_key: String,
    /// `host:port` of the voice gateway (`wss://`), as VOICE_SERVER_UPDATE names it.
    pub voice_endpoint: String,
    /// The voice gateway's identity: clients must trust [`VoiceTls::ca_pem`].
    pub voice_tls: VoiceTls,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Simulator {
    /// A twilight REST client that reaches this simulator, as the bot (with the world's
    /// token): what a test hands a role it builds by hand.
    pub fn bot_client(&self) -> std::sync::Arc<twilight_http::Client> {
        std::sync::Arc::new(
            twilight_http::Client::builder()
                .token(self.world.token.clone())
                .proxy(self.address.to_string(), true)
                .build(),
        )
    }

    /// Binds `listen` (port 0 for any), and the voice gateway and UDP endpoint on other ports
    /// of the same address, and serves in the background.
    pub async fn start(listen: SocketAddr, config: Config) -> std::io::Result<Self> {
        let listeners = Listeners::bind(TcpListener::bind(listen).await?, config).await?;
        let address = listeners.rest.local_addr()?;
        let shutdown = CancellationToken::new();
        let world = listeners.sim.world.clone();
        let public_key = listeners.sim.public_key_hex();
        let rest_url = listeners.sim.urls.rest.clone();
        let gateway_url = listeners.sim.urls.gateway.clone();
        let voice_tls = listeners.tls.clone();
        let voice_endpoint = listeners.sim.voice.endpoint.clone();
        let task = tokio::spawn(listeners.serve(shutdown.clone()));
        Ok(Self {
            address,
            rest_url,
            gateway_url,
            world,
            public_key,
            voice_endpoint,
            voice_tls,
            shutdown,
            task,
        })
    }

    /// Stops serving and waits for it.
    pub async fn stop(self) -> std::io::Result<()> {
        self.shutdown.cancel();
        self.task.await.unwrap_or(Ok(()))
    }
}

/// Everything a simulator listens on, bound, and the simulator behind them.
struct Listeners {
    rest: TcpListener,
    voice_gateway: TcpListener,
    voice_udp: UdpSocket,
    tls: VoiceTls,
    sim: Arc<state::Sim>,
}

impl Listeners {
    async fn bind(rest: TcpListener, config: Config) -> std::io::Result<Self> {
        let address = rest.local_addr()?;
        let voice_gateway = TcpListener::bind((address.ip(), 0)).await?;
        let voice_udp = UdpSocket::bind((address.ip(), 0)).await?;
        let tls = match config.voice_tls {
            Some(tls) => tls,
            None => VoiceTls::generate(address.ip()).map_err(std::io::Error::other)?,
        };
        let urls = state::Urls {
            rest: format!("http://{address}"),
            gateway: format!("ws://{address}/gateway"),
        };
        let hub = voice::Hub::new(
            voice_gateway.local_addr()?.to_string(),
            voice_udp.local_addr()?,
        );
        let sim = Arc::new(state::Sim::new(
            config.world,
            urls,
            config.interactions_url,
            hub,
        ));
        Ok(Self {
            rest,
            voice_gateway,
            voice_udp,
            tls,
            sim,
        })
    }

    async fn serve(self, shutdown: CancellationToken) -> std::io::Result<()> {
        let voice = voice::serve(
            Arc::clone(&self.sim),
            self.voice_gateway,
            self.voice_udp,
            &self.tls,
            shutdown.clone(),
        );
        let app = Router::new()
            .route("/gateway", get(gateway::upgrade))
            .route("/gateway/", get(gateway::upgrade))
            .nest("/api/v10", rest::router(&self.sim))
            .nest("/_sim", control::router())
            .with_state(self.sim);
        let rest = axum::serve(self.rest, app).with_graceful_shutdown(shutdown.cancelled_owned());
        tokio::try_join!(rest.into_future(), voice).map(|_| ())
    }
}

/// Serves a simulator on `listener` (and its voice side on other ports of the same address)
/// until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    Listeners::bind(listener, config)
        .await?
        .serve(shutdown)
        .await
}

/// The public key a world signs interactions with, hex.
pub fn public_key(world: &World) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&world.seed());
    hex::encode(key.verifying_key().as_bytes())
}
