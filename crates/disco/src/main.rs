//! The one Disco binary: `disco <role>` runs one role on RabbitMQ, `disco up` (the default)
//! runs every role in one process on the in-memory bus; both through [`disco::run`].
//!
//! # Map
//! - `demo`: `disco demo`, the simulator and every role with a scripted session.
//! - `tail`: `disco tail`, the bus as it flows.
//! - `dead_letters`: `disco dead-letters`, what no consumer could handle.
//! - here: arguments, signals, and the tools (`sim`, `commands sync`, `invite-url`).

mod dead_letters;
#[cfg(feature = "sim")]
mod demo;
mod tail;

use std::process::ExitCode;

use anyhow::Context;
use bus::Bus;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use disco::settings::{self, Cli, Command, SettingsError};
use disco::{Failure, Role};

/// Exit code for a configuration problem (clap uses it for bad arguments too).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(problem) = disco::init_logs(&cli.telemetry) {
        eprintln!("error: {problem}");
        return ExitCode::from(EXIT_CONFIG);
    }
    #[cfg(feature = "sim")]
    if let Some(Command::Demo(args)) = &cli.command
        && args.voice_tls.is_none()
    {
        // Only returns if running itself again failed.
        let error = demo::trust_voice_ca(args);
        eprintln!("error: {error:#}");
        return ExitCode::FAILURE;
    }
    // amqprs and songbird both bring rustls; exactly one crypto provider must be chosen.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let outcome =
        runtime(cli.command.as_ref().unwrap_or(&Command::Up)).and_then(|rt| rt.block_on(run(cli)));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(problem)) => {
            eprintln!("error: {problem}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Runtime(error)) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The async runtime: one worker thread per core (as tokio does by default), or as many as
/// `TOKIO_WORKER_THREADS` says; `disco up` runs on one unless told otherwise. With a second
/// worker, tokio wakes it to take the tasks each command wakes, which then run on the other
/// core with its caches cold: a paced `~~ping` cost `disco up` 0.36-0.46 ms of CPU on two
/// workers against 0.27-0.28 ms on one (5.4 context switches per command against 3.1). One
/// core holds thousands of commands a second; a bot that needs more runs the roles as separate
/// processes (docs/design.md, "Cost per command").
fn runtime(command: &Command) -> Result<tokio::runtime::Runtime, Failure> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    let workers = match std::env::var("TOKIO_WORKER_THREADS") {
        Ok(value) => match value.trim().parse::<usize>() {
            Ok(workers) if workers > 0 => Some(workers),
            _ => {
                return Err(Failure::Config(format!(
                    "invalid TOKIO_WORKER_THREADS: {value:?} is not a number of threads (1 or more)"
                )));
            }
        },
        Err(std::env::VarError::NotPresent) => matches!(command, Command::Up).then_some(1),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(Failure::Config(
                "invalid TOKIO_WORKER_THREADS: not a number of threads".to_owned(),
            ));
        }
    };
    if let Some(workers) = workers {
        builder.worker_threads(workers);
    }
    builder.enable_all().build().map_err(|error| {
        Failure::Runtime(anyhow::anyhow!("cannot start the async runtime: {error}"))
    })
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let shutdown = CancellationToken::new();
    tokio::spawn(watch_signals(shutdown.clone()));
    match cli.command.as_ref().unwrap_or(&Command::Up) {
        Command::Up => {
            let discord = cli.discord.validate().map_err(|error| match error {
                SettingsError::Missing(missing) => Failure::Config(format!(
                    "{missing}\n\n\
                     `disco up` serves a real Discord application, so it needs DISCORD_TOKEN,\n\
                     DISCO_APPLICATION_ID and DISCO_PUBLIC_KEY from the application's page in\n\
                     Discord's developer portal. Without one, try everything offline against Disco's\n\
                     own Discord simulator: `disco demo`."
                )),
                invalid => invalid.into(),
            })?;
            tracing::debug!(?discord, "settings checked");
            let bus = Bus::in_memory(bus::Limits::default());
            disco::run(&Role::START, &bus, &cli, shutdown).await
        }
        Command::GatewayShard => one_role(Role::GatewayShard, &cli, shutdown).await,
        Command::CommandWorker => one_role(Role::CommandWorker, &cli, shutdown).await,
        Command::VoiceNode => one_role(Role::VoiceNode, &cli, shutdown).await,
        Command::InteractionsIngress => one_role(Role::InteractionsIngress, &cli, shutdown).await,
        // The proxy keeps its state in memory and needs no broker.
        Command::RestProxy => {
            let bus = Bus::in_memory(bus::Limits::default());
            disco::run(&[Role::RestProxy], &bus, &cli, shutdown).await
        }
        #[cfg(feature = "sim")]
        Command::Sim(args) => sim(args, shutdown).await,
        #[cfg(feature = "sim")]
        Command::Demo(args) => {
            match demo::run(args, cli.telemetry.metrics_listen, shutdown).await? {
                true => Ok(()),
                false => Err(Failure::Runtime(anyhow::anyhow!(
                    "a demo step did not get its answer"
                ))),
            }
        }
        Command::Commands(settings::CommandsCommand::Sync { guild, dry_run }) => {
            commands_sync(&cli, *guild, *dry_run).await
        }
        Command::InviteUrl => {
            let application_id = cli.discord.application_id()?;
            println!(
                "{}",
                invite_url(
                    application_id,
                    command_worker::Commands::standard().permissions()
                )
            );
            Ok(())
        }
        Command::Tail(args) => {
            let bus = tool_bus(&cli, "disco-tail").await?;
            let result = tail::run(&bus, args, shutdown).await;
            bus.close().await;
            Ok(result?)
        }
        Command::DeadLetters(command) => {
            let bus = tool_bus(&cli, "disco-dead-letters").await?;
            let result = dead_letters::run(&bus, command).await;
            bus.close().await;
            Ok(result?)
        }
    }
}

/// RabbitMQ, for a tool: the tools work on what the fleet's broker holds.
async fn tool_bus(cli: &Cli, name: &str) -> Result<Bus, Failure> {
    let rabbit = cli
        .bus
        .rabbit(name)
        .map_err(|e| Failure::Config(e.to_string()))?;
    Ok(Bus::rabbitmq(rabbit)
        .await
        .context("cannot reach RabbitMQ")?)
}

/// `disco commands sync`: registers the slash commands and says what changed.
async fn commands_sync(cli: &Cli, guild: Option<u64>, dry_run: bool) -> Result<(), Failure> {
    cli.discord.token()?;
    let application_id = cli.discord.application_id()?;
    let report = command_worker::sync(
        &command_worker::Commands::standard(),
        cli.discord.rest()?,
        application_id,
        guild,
        dry_run,
    )
    .await
    .context("cannot sync the commands")?;
    let scope = guild.map_or_else(|| "globally".to_owned(), |g| format!("in guild {g}"));
    for (what, names) in [
        ("added", &report.added),
        ("changed", &report.changed),
        ("removed", &report.removed),
        ("unchanged", &report.unchanged),
    ] {
        if !names.is_empty() {
            println!("{what}: {}", names.join(", "));
        }
    }
    match (report.applied, dry_run) {
        (true, _) => println!("commands registered {scope}"),
        (false, true) => println!("dry run: nothing sent"),
        (false, false) => println!("nothing to change {scope}"),
    }
    Ok(())
}

/// The OAuth2 URL that adds the bot with its slash commands and the given permissions.
fn invite_url(application_id: u64, permissions: u64) -> String {
    format!(
        "https://discord.com/oauth2/authorize?client_id={application_id}&scope=bot+applications.commands&permissions={permissions}"
    )
}

/// `disco sim`: the simulator alone, with what a client needs to reach it.
#[cfg(feature = "sim")]
async fn sim(args: &settings::SimArgs, shutdown: CancellationToken) -> Result<(), Failure> {
    let mut world = match &args.world {
        Some(path) => discord_sim::World::load(path).map_err(|error| {
            Failure::Config(format!(
                "invalid DISCO_SIM_WORLD (--world) {}: {error}",
                path.display()
            ))
        })?,
        None => discord_sim::World::default(),
    };
    match args.rate_limits {
        Some(settings::SimRateLimits::Discord) => {
            world.rate_limits = discord_sim::world::RateLimits::default();
        }
        Some(settings::SimRateLimits::Off) => {
            let none = discord_sim::world::Limit {
                limit: u32::MAX,
                window_ms: 1,
            };
            world.rate_limits = discord_sim::world::RateLimits {
                messages_per_channel: none,
                per_route: none,
                global: none,
                invalid_requests: none,
                ..discord_sim::world::RateLimits::default()
            };
        }
        None => {}
    }
    if let Some(latency) = args.rest_latency_ms {
        world.rest_latency_ms = latency;
    }
    if let Some(url) = &args.interactions_url
        && !url.starts_with("http://")
    {
        return Err(Failure::Config(
            "invalid DISCO_SIM_INTERACTIONS_URL (--interactions-url): expected an http:// URL"
                .to_owned(),
        ));
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (DISCO_SIM_LISTEN)", args.listen))?;
    let address = listener.local_addr().context("no local address")?;
    let voice_tls = discord_sim::VoiceTls::generate(address.ip())
        .context("cannot make the voice server's certificate")?;
    let tls_dir = args
        .voice_tls_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("disco-sim-{}", address.port())));
    std::fs::create_dir_all(&tls_dir)
        .and_then(|()| voice_tls.save(&tls_dir))
        .with_context(|| {
            format!(
                "cannot write {} (DISCO_SIM_VOICE_TLS_DIR)",
                tls_dir.display()
            )
        })?;
    println!("{}", sim_banner(address, &world, &tls_dir.join("ca.pem")));
    let config = discord_sim::Config {
        world,
        interactions_url: args.interactions_url.clone(),
        voice_tls: Some(voice_tls),
    };
    discord_sim::serve(listener, config, shutdown)
        .await
        .context("the simulator failed")?;
    Ok(())
}

/// What `disco sim` prints: where it is, and the settings that point Disco at it.
#[cfg(feature = "sim")]
fn sim_banner(
    address: std::net::SocketAddr,
    world: &discord_sim::World,
    voice_ca: &std::path::Path,
) -> String {
    format!(
        "Discord simulator on {address}\n\
         \n\
         Point Disco at it with:\n\
         \x20 export DISCO_DISCORD_API_URL=http://{address}\n\
         \x20 export DISCO_DISCORD_GATEWAY_URL=ws://{address}/gateway\n\
         \x20 export DISCORD_TOKEN={token}\n\
         \x20 export DISCO_APPLICATION_ID={application}\n\
         \x20 export DISCO_PUBLIC_KEY={key}\n\
         \x20 export SSL_CERT_FILE={ca}   # the voice node trusts the simulated voice server\n\
         \n\
         Control API: http://{address}/_sim (try: curl -s http://{address}/_sim/info)",
        token = world.token,
        application = world.application_id,
        key = discord_sim::public_key(world),
        ca = voice_ca.display(),
    )
}

async fn one_role(role: Role, cli: &Cli, shutdown: CancellationToken) -> Result<(), Failure> {
    // The connection name tells processes apart in RabbitMQ's connection list.
    let rabbit = cli
        .bus
        .rabbit(&format!("{} pid {}", role.name(), std::process::id()))
        .map_err(|e| Failure::Config(e.to_string()))?;
    let bus = Bus::rabbitmq(rabbit)
        .await
        .context("cannot reach RabbitMQ")?;
    let result = disco::run(&[role], &bus, cli, shutdown).await;
    bus.close().await;
    result
}

/// First SIGINT or SIGTERM: shut down in order. Second: leave now.
async fn watch_signals(shutdown: CancellationToken) {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(error) => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "cannot watch SIGTERM"
                );
                return;
            }
        };
    for round in 0..2 {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        if round == 0 {
            tracing::info!("shutting down (signal again to force)");
            shutdown.cancel();
        } else {
            tracing::warn!("forced exit");
            std::process::exit(130);
        }
    }
}
