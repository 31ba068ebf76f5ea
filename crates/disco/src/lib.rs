//! Disco's one entry point: every way Disco starts (the `disco` binary's roles, `disco up`,
//! `disco demo`, and the end-to-end tests) goes through [`run`], with the same settings, the
//! same defaults, one start order and one stop order.
//!
//! # Map
//! - `settings`: flags and environment, checked before anything starts.
//! - `roles`: the roles, built from checked settings; the start and stop orders.
//! - `telemetry`: logs, and the `/metrics`, `/healthz`, `/readyz` endpoints.
//!
//! Only this crate reads arguments and the environment (and only its binary handles
//! signals); the roles are libraries it composes.

mod roles;
pub mod settings;
mod telemetry;

use anyhow::Context;
use bus::Bus;
use tokio_util::sync::CancellationToken;

pub use roles::Role;
pub use settings::Cli as Settings;
pub use telemetry::init_logs;

use settings::SettingsError;

/// Why Disco stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// A setting is missing or wrong: the message says which.
    #[error("{0}")]
    Config(String),
    /// Something failed while running.
    #[error("{0:#}")]
    Runtime(anyhow::Error),
}

impl From<SettingsError> for Failure {
    fn from(error: SettingsError) -> Self {
        Self::Config(error.to_string())
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self::Runtime(error)
    }
}

/// Runs `roles` on `bus`: builds each from `settings` (a bad setting is refused, named),
/// serves the admin endpoints, starts the roles in [`Role::START`] order and, at `shutdown` (or
/// as soon as one fails), stops them in [`Role::STOP`] order, each finished before the next is
/// told to stop.
pub async fn run(
    roles: &[Role],
    bus: &Bus,
    settings: &Settings,
    shutdown: CancellationToken,
) -> Result<(), Failure> {
    let names: Vec<&str> = roles.iter().map(|role| role.name()).collect();
    let mut admin = telemetry::Admin::new(&names.join(","));
    admin.ready_when("bus", {
        let bus = bus.clone();
        move || bus.is_connected()
    });
    let built = roles::build(roles, settings, bus, &mut admin).map_err(Failure::from)?;
    let listener = tokio::net::TcpListener::bind(settings.telemetry.metrics_listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (DISCO_METRICS_LISTEN)",
                settings.telemetry.metrics_listen
            )
        })?;
    tracing::info!(address = %settings.telemetry.metrics_listen, "serving /metrics, /healthz and /readyz");
    let admin_stop = CancellationToken::new();
    let server = tokio::spawn(telemetry::serve(listener, admin, admin_stop.clone()));
    let result = roles::run(built, shutdown).await;
    admin_stop.cancel();
    server
        .await
        .context("admin server panicked")?
        .context("admin server failed")?;
    Ok(result?)
}
