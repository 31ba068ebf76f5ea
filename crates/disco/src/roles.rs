//! The roles the binary composes: built from checked settings (registering their metrics and
//! readiness), started in order, stopped in reverse order.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use axum::http::HeaderValue;
use bus::Bus;
use disco_proto::bytes::Bytes;
use tokio_util::sync::CancellationToken;

use crate::settings::{self, Cli, SettingsError};
use crate::telemetry::Admin;

/// A role's run, waiting for its shutdown token.
pub(crate) type Run = Box<
    dyn FnOnce(CancellationToken) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>
        + Send,
>;

/// Disco's roles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Discord's gateway shards, publishing every dispatch.
    GatewayShard,
    /// Commands answered through Discord's REST API.
    CommandWorker,
    /// Voice calls (songbird).
    VoiceNode,
    /// Discord's interactions webhook.
    InteractionsIngress,
    /// The fleet's one way out to Discord's REST API.
    RestProxy,
}

impl Role {
    /// Every role, in start order: the REST proxy the others call Discord through; consumers
    /// before the gateway that feeds them, so nothing the gateway publishes waits for a
    /// consumer that is not up yet.
    pub const START: [Self; 5] = [
        Self::RestProxy,
        Self::CommandWorker,
        Self::VoiceNode,
        Self::InteractionsIngress,
        Self::GatewayShard,
    ];

    /// Every role, in stop order: the ingress stops taking requests; workers settle what they
    /// hold; voice nodes leave their calls, which takes the gateway (op 4); then the gateway
    /// sends what it was asked, closes resumably and saves its sessions; the REST proxy last,
    /// as every other role may still call Discord while it stops.
    pub const STOP: [Self; 5] = [
        Self::InteractionsIngress,
        Self::CommandWorker,
        Self::VoiceNode,
        Self::GatewayShard,
        Self::RestProxy,
    ];

    /// The role's name, as the CLI, metrics, Kubernetes and the dashboards write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::GatewayShard => gateway_shard::ROLE,
            Self::CommandWorker => command_worker::ROLE,
            Self::VoiceNode => voice_node::ROLE,
            Self::InteractionsIngress => interactions_ingress::ROLE,
            Self::RestProxy => rest_proxy::ROLE,
        }
    }
}

/// Checks each role's settings and builds it, every role with the process's one Discord REST
/// client: through the REST proxy when the process runs one (`disco up`: on a free local port)
/// or `DISCO_REST_PROXY_URL` names one, straight to Discord otherwise.
pub(crate) fn build(
    roles: &[Role],
    cli: &Cli,
    bus: &Bus,
    admin: &mut Admin,
) -> Result<Vec<(Role, Run)>, SettingsError> {
    // Every role but the ingress and the proxy acts as the bot.
    if roles
        .iter()
        .any(|&r| !matches!(r, Role::InteractionsIngress | Role::RestProxy))
    {
        cli.discord.token()?;
    }
    // A StatefulSet pod's name ends in its ordinal: its place among its replicas (`auto`).
    let hostname = std::env::var("HOSTNAME").ok();
    let mut built: Vec<(Role, Run)> = Vec::new();
    let mut rest = cli.discord.rest()?;
    let mut direct: Option<Arc<dyn command_worker::Direct>> = None;
    if roles.contains(&Role::RestProxy) {
        let alone = roles.len() == 1;
        let listen = if alone {
            rest_proxy::Config::DEFAULT_LISTEN
        } else {
            std::net::SocketAddr::from(([127, 0, 0, 1], 0))
        };
        let config = cli
            .proxy
            .config(&cli.discord, listen, hostname.as_deref())?;
        let unusable = |problem: String| {
            settings::invalid("DISCO_REST_PROXY_LISTEN", "rest-proxy-listen", problem)
        };
        let proxy = rest_proxy::RestProxy::bind(&config, admin.registry()).map_err(|error| {
            let source =
                std::error::Error::source(&error).map_or_else(String::new, |s| format!(": {s}"));
            unusable(format!("{error}{source}"))
        })?;
        if !alone {
            let address = proxy.address().map_err(|e| unusable(e.to_string()))?;
            let url = url::Url::parse(&format!("http://{address}"))
                .map_err(|e| unusable(e.to_string()))?;
            rest = cli.discord.rest_through(&url)?;
            // The worker beside it hands its calls over directly, without HTTP.
            let authorization = match cli.discord.authorization()? {
                Some(token) => {
                    let mut value = HeaderValue::from_str(token.expose()).map_err(|_| {
                        settings::invalid("DISCORD_TOKEN", "token", "not a header value")
                    })?;
                    value.set_sensitive(true);
                    Some(value)
                }
                None => None,
            };
            direct = Some(Arc::new(InProcessProxy {
                handle: proxy.handle(),
                authorization,
            }));
        }
        admin.ready_when(Role::RestProxy.name(), proxy.readiness());
        built.push((
            Role::RestProxy,
            Box::new(move |stop| {
                Box::pin(async move { proxy.run(stop).await.context("rest-proxy") })
            }),
        ));
    }
    for &role in roles {
        let run: Run = match role {
            Role::RestProxy => continue,
            Role::GatewayShard => {
                let config = cli.gateway.config(&cli.discord, hostname.as_deref())?;
                let gateway = gateway_shard::GatewayShard::new(
                    config,
                    Arc::clone(&rest),
                    bus.clone(),
                    admin.registry(),
                );
                admin.ready_when(role.name(), gateway.readiness());
                Box::new(move |stop| {
                    Box::pin(async move { gateway.run(stop).await.context("gateway-shard") })
                })
            }
            Role::CommandWorker => {
                let config = cli.worker.config(&cli.discord, cli.gateway.shard_total)?;
                let mut worker = command_worker::CommandWorker::new(
                    config,
                    command_worker::Commands::standard(),
                    Arc::clone(&rest),
                    bus.clone(),
                    admin.registry(),
                );
                if let Some(direct) = direct.clone() {
                    worker = worker.with_direct(direct);
                }
                admin.ready_when(role.name(), worker.readiness());
                Box::new(move |stop| {
                    Box::pin(async move { worker.run(stop).await.context("command-worker") })
                })
            }
            Role::InteractionsIngress => {
                let config = cli.ingress.config(&cli.discord, cli.gateway.shard_total)?;
                let ingress = interactions_ingress::Ingress::new(
                    config,
                    Arc::clone(&rest),
                    bus.clone(),
                    admin.registry(),
                );
                admin.ready_when(role.name(), ingress.readiness());
                Box::new(move |stop| {
                    Box::pin(async move { ingress.run(stop).await.context("interactions-ingress") })
                })
            }
            Role::VoiceNode => {
                let config = cli
                    .voice
                    .config(&cli.discord, &cli.gateway, hostname.as_deref())?;
                let node = voice_node::VoiceNode::new(
                    config,
                    Arc::clone(&rest),
                    bus.clone(),
                    admin.registry(),
                );
                admin.ready_when(role.name(), node.readiness());
                Box::new(move |stop| {
                    Box::pin(async move { node.run(stop).await.context("voice-node") })
                })
            }
        };
        built.push((role, run));
    }
    Ok(built)
}

/// The rest-proxy of this process, as the command worker's way to Discord: the bot's
/// authorization added, as twilight adds it.
#[derive(Debug)]
struct InProcessProxy {
    handle: rest_proxy::Handle,
    /// `Bot <token>`, marked sensitive (its `Debug` shows no token).
    authorization: Option<HeaderValue>,
}

impl command_worker::Direct for InProcessProxy {
    fn send(
        &self,
        mut request: axum::http::Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<axum::http::Response<Bytes>, String>> + Send + 'static>>
    {
        if let Some(authorization) = &self.authorization {
            request
                .headers_mut()
                .insert(axum::http::header::AUTHORIZATION, authorization.clone());
        }
        let handle = self.handle.clone();
        Box::pin(async move { handle.send(request).await })
    }
}

/// Runs the roles until `shutdown` or until one ends (failed, or a gateway generation retired),
/// then stops them in [`Role::STOP`] order, each finishing before the next is told to stop.
pub(crate) async fn run(
    roles: Vec<(Role, Run)>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut running = Vec::new();
    let ended = CancellationToken::new();
    for (role, run) in roles {
        let stop = CancellationToken::new();
        let task = tokio::spawn({
            let stop = stop.clone();
            let ended = ended.clone();
            async move {
                let result = run(stop).await;
                ended.cancel();
                result
            }
        });
        tracing::info!(role = role.name(), "started");
        running.push((role, stop, task));
    }
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = ended.cancelled() => {}
    }
    let mut outcome = Ok(());
    running.sort_by_key(|(role, _, _)| Role::STOP.iter().position(|r| r == role));
    for (role, stop, task) in running {
        stop.cancel();
        let result = task
            .await
            .with_context(|| format!("{} panicked", role.name()))
            .and_then(|r| r);
        match &result {
            Ok(()) => tracing::info!(role = role.name(), "stopped"),
            Err(error) => {
                tracing::error!(role = role.name(), error = format!("{error:#}"), "failed")
            }
        }
        if outcome.is_ok() {
            outcome = result;
        }
    }
    outcome
}
