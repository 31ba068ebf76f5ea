#![doc = include_str!("../README.md")]
#![recursion_limit = "256"]
//!
//! # Map
//! - [`Simulator`]: start one in-process (tests) or [`serve`] it on a listener (`disco sim`).
//! - [`world`]: the application, bot, guilds, channels and members, and the limits.
//! - `gateway`: gateway v10 over WebSocket, sessions, RESUME, close codes.
//! - `rest`: the REST routes, authentication, rate limits, interaction deadlines.
//! - `control`: the `/_sim` API.
//! - `webhook`: signed delivery to an interactions endpoint, and forged probes.
//! - `state`, `payload`, `compress`: shared state, Discord's JSON shapes, transport compression.

mod client;
mod compress;
mod control;
mod gateway;
mod http;
mod payload;
mod rest;
mod state;
mod webhook;
pub mod world;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use client::{Control, ControlError};
pub use world::World;

/// How to start a simulator.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The world; [`World::default`] when not loaded from a file.
    pub world: World,
    /// Where interactions are POSTed, signed, instead of going over the gateway.
    pub interactions_url: Option<String>,
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
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Simulator {
    /// Binds `listen` (port 0 for any) and serves in the background.
    pub async fn start(listen: SocketAddr, config: Config) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let address = listener.local_addr()?;
        let shutdown = CancellationToken::new();
        let world = config.world.clone();
        let sim = sim_for(address, config);
        let public_key = sim.public_key_hex();
        let rest_url = sim.urls.rest.clone();
        let gateway_url = sim.urls.gateway.clone();
        let task = tokio::spawn(serve_sim(listener, sim, shutdown.clone()));
        Ok(Self {
            address,
            rest_url,
            gateway_url,
            world,
            public_key,
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

fn sim_for(address: SocketAddr, config: Config) -> Arc<state::Sim> {
    let urls = state::Urls {
        rest: format!("http://{address}"),
        gateway: format!("ws://{address}/gateway"),
    };
    Arc::new(state::Sim::new(config.world, urls, config.interactions_url))
}

/// Serves a simulator on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let sim = sim_for(listener.local_addr()?, config);
    serve_sim(listener, sim, shutdown).await
}

/// The public key a world signs interactions with, hex.
pub fn public_key(world: &World) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&world.seed());
    hex::encode(key.verifying_key().as_bytes())
}

async fn serve_sim(
    listener: TcpListener,
    sim: Arc<state::Sim>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/gateway", get(gateway::upgrade))
        .route("/gateway/", get(gateway::upgrade))
        .nest("/api/v10", rest::router())
        .nest("/_sim", control::router())
        .with_state(sim);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}
