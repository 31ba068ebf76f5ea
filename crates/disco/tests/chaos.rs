//! The chaos suite: the platform as ops run it (a gateway, two command workers, a voice node and
//! the interactions ingress, each a `disco` process on a virtual host of the real RabbitMQ,
//! against the simulator), a steady load of prefix and slash commands over two guilds, and one
//! fault injected while it runs. Every scenario asserts the same: every command answered exactly
//! once (the simulator checks nonces and single initial responses), every interaction answered
//! within Discord's 3 s (deferred counts, and its edit must follow), no simulator violation,
//! readiness dropped where the fault should drop it and recovered, and every process back.
//!
//! Each fault is a scenario of its own (`cargo nextest run chaos::<name>`), and `all_faults`
//! injects them all, one after the other, into one fleet under one load. `broker_restart` and
//! `all_faults` stop and start the whole broker, which would disturb every other test: they
//! are ignored in the normal run and `scripts/test` runs them alone afterwards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos {
    use std::collections::BTreeMap;
    use std::net::SocketAddr;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use discord_sim::{Control, Simulator};
    use serde_json::Value;
    use tests::{
        Vhost, disco_command, free_address, is_ready, rabbitmqctl, until_answered_once,
        until_ready, until_sent,
    };
    use tokio_util::sync::CancellationToken;

    const DISCO: &str = env!("CARGO_BIN_EXE_disco");
    /// How long every command may take to be answered once the fault is over.
    const SETTLE: Duration = Duration::from_secs(60);

    /// One `disco` process of the fleet, and how to start it again.
    struct Process {
        args: Vec<String>,
        env: Vec<(String, String)>,
        admin: SocketAddr,
        child: tokio::process::Child,
        /// Whether `/readyz` answered anything but 200 since the watch began.
        unready_seen: Arc<std::sync::atomic::AtomicBool>,
    }

    struct Fleet {
        sim: Simulator,
        control: Control,
        vhost: Vhost,
        processes: BTreeMap<&'static str, Process>,
        /// The ingress's own RabbitMQ user, so that it alone can be cut off the bus.
        ingress_user: String,
        _ca: tests::VoiceCa,
    }

    impl Fleet {
        async fn start(name: &str) -> Self {
            let ingress = free_address();
            let (sim, control) = tests::webhook_simulator(ingress, tests::unthrottled).await;
            let vhost = Vhost::new(&format!("chaos-{name}"));
            let ingress_user = format!("{}-ingress", vhost.name());
            rabbitmqctl(&["add_user", &ingress_user, "ingress"]);
            vhost.allow(&ingress_user);
            let ca = tests::VoiceCa::new(&sim, vhost.name());
            let common = [
                ("DISCO_SHARD_TOTAL", "2".to_owned()),
                ("SSL_CERT_FILE", ca.path().display().to_string()),
                ("DISCO_MEDIA_DIR", tests::MEDIA_DIR.to_owned()),
            ];
            let mut fleet = Self {
                sim,
                control,
                vhost,
                processes: BTreeMap::new(),
                ingress_user,
                _ca: ca,
            };
            let env = |extra: &[(&str, String)]| -> Vec<(String, String)> {
                common
                    .iter()
                    .chain(extra)
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect()
            };
            fleet.spawn("voice-node", &["voice-node"], env(&[])).await;
            fleet.spawn("worker-a", &["command-worker"], env(&[])).await;
            fleet.spawn("worker-b", &["command-worker"], env(&[])).await;
            let ingress_url = format!(
                "amqp://{user}:ingress@127.0.0.1:5672/{}",
                fleet.vhost.name(),
                user = fleet.ingress_user
            );
            let ingress_env = env(&[
                ("DISCO_INGRESS_LISTEN", ingress.to_string()),
                ("DISCO_PUBLIC_KEY", fleet.sim.public_key.clone()),
                ("DISCO_AMQP_URL", ingress_url),
                ("DISCO_INGRESS_LATE_ANSWER_SECS", "30".to_owned()),
            ]);
            fleet
                .spawn("ingress", &["interactions-ingress"], ingress_env)
                .await;
            fleet.spawn("gateway", &["gateway-shard"], env(&[])).await;
            tests::until_shards_connected(&fleet.control, 2).await;
            fleet
        }

        async fn spawn(&mut self, name: &'static str, args: &[&str], env: Vec<(String, String)>) {
            let admin = free_address();
            let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
            let child = self.launch(&args, &env, admin);
            self.processes.insert(
                name,
                Process {
                    args,
                    env,
                    admin,
                    child,
                    unready_seen: Arc::default(),
                },
            );
            until_ready(admin).await;
        }

        fn launch(
            &self,
            args: &[String],
            env: &[(String, String)],
            admin: SocketAddr,
        ) -> tokio::process::Child {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut command = disco_command(Path::new(DISCO), &args, &self.sim, &self.vhost);
            command.env("DISCO_METRICS_LISTEN", admin.to_string());
            for (name, value) in env {
                command.env(name, value);
            }
            command.spawn().unwrap()
        }

        /// Kills `name` with `signal`, waits for it to exit, and starts it again, as Kubernetes
        /// would; returns once it is ready.
        async fn restart(&mut self, name: &'static str, signal: &str) {
            let process = self.processes.get_mut(name).unwrap();
            let exited =
                tests::stop_with(&mut process.child, signal, Duration::from_secs(30)).await;
            if signal == "-TERM" {
                assert!(
                    exited.success(),
                    "{name} stops cleanly on SIGTERM: {exited}"
                );
            }
            let process = &self.processes[name];
            let child = self.launch(&process.args, &process.env, process.admin);
            self.processes.get_mut(name).unwrap().child = child;
            until_ready(self.processes[name].admin).await;
        }

        /// Watches every process's readiness in the background, noting any drop.
        fn watch_readiness(&self, stop: &CancellationToken) {
            for process in self.processes.values() {
                let (admin, seen, stop) = (
                    process.admin,
                    Arc::clone(&process.unready_seen),
                    stop.clone(),
                );
                tokio::spawn(async move {
                    while !stop.is_cancelled() {
                        if !is_ready(admin).await {
                            seen.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                });
            }
        }

        fn unready_seen(&self, name: &str) -> bool {
            self.processes[name]
                .unready_seen
                .load(std::sync::atomic::Ordering::Relaxed)
        }

        /// Every process is running and ready.
        async fn all_back(&mut self) {
            for (name, process) in &mut self.processes {
                assert!(
                    process.child.try_wait().unwrap().is_none(),
                    "{name} is running"
                );
                until_ready(process.admin).await;
            }
        }

        async fn finish(mut self, load: Load) {
            let (messages, slash) = load.stop().await;
            let mut ids = messages.clone();
            ids.extend(slash.iter().map(|s| s.id.clone()));
            until_answered_once(&self.control, &ids, SETTLE).await;
            for answer in &slash {
                assert!(
                    answer.elapsed_ms < 3_000,
                    "interaction {} answered after {} ms",
                    answer.id,
                    answer.elapsed_ms
                );
                if answer.kind == 5 {
                    until_sent(&self.control, |e| {
                        e["interaction_id"] == answer.id.as_str() && e["kind"] == "edit"
                    })
                    .await;
                }
            }
            let deferred = slash.iter().filter(|s| s.kind == 5).count();
            println!(
                "{} prefix and {} slash commands answered once each ({deferred} deferred)",
                messages.len(),
                slash.len()
            );
            let violations = self.control.violations().await.unwrap();
            assert!(violations.is_empty(), "{violations:?}");
            self.all_back().await;
            for process in self.processes.values_mut() {
                let _ = process.child.start_kill();
                let _ = process.child.wait().await;
            }
            rabbitmqctl(&["delete_user", &self.ingress_user]);
            self.sim.stop().await.unwrap();
        }
    }

    /// An interaction's webhook answer.
    struct Slash {
        id: String,
        kind: u64,
        elapsed_ms: u64,
    }

    /// A steady load: a `~~ping` every 50 ms over the four text channels of two guilds (two
    /// shards), and a `/ping` through the webhook every 200 ms.
    struct Load {
        stop: CancellationToken,
        messages: Arc<Mutex<Vec<String>>>,
        slash: Arc<Mutex<Vec<Slash>>>,
        tasks: tokio::task::JoinSet<()>,
    }

    impl Load {
        fn start(fleet: &Fleet) -> Self {
            let stop = CancellationToken::new();
            let messages = Arc::new(Mutex::new(Vec::new()));
            let slash = Arc::new(Mutex::new(Vec::new()));
            let mut tasks = tokio::task::JoinSet::new();
            let channels: Vec<(u64, u64)> = fleet
                .sim
                .world
                .guilds
                .iter()
                .flat_map(|g| {
                    let member = g.members[0].id;
                    g.channels
                        .iter()
                        .filter(|c| c.name == "general" || c.name == "bots")
                        .map(move |c| (c.id, member))
                })
                .collect();
            {
                let (control, stop, messages, channels) = (
                    Control::new(&fleet.sim.rest_url),
                    stop.clone(),
                    Arc::clone(&messages),
                    channels.clone(),
                );
                tasks.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(50));
                    for n in 0.. {
                        tick.tick().await;
                        if stop.is_cancelled() {
                            return;
                        }
                        let (channel, member) = channels[n % channels.len()];
                        let sent = control.say(channel, member, "~~ping").await.unwrap();
                        messages
                            .lock()
                            .unwrap()
                            .push(sent["id"].as_str().unwrap().to_owned());
                    }
                });
            }
            {
                let (control, stop, slash) = (
                    Control::new(&fleet.sim.rest_url),
                    stop.clone(),
                    Arc::clone(&slash),
                );
                tasks.spawn(async move {
                    let mut tick = tokio::time::interval(Duration::from_millis(200));
                    for n in 0.. {
                        tick.tick().await;
                        if stop.is_cancelled() {
                            return;
                        }
                        let (channel, member) = channels[n % channels.len()];
                        let answer =
                            tests::slash_through_webhook(&control, channel, member, "ping").await;
                        slash.lock().unwrap().push(Slash {
                            kind: answer.body["type"].as_u64().unwrap(),
                            id: answer.id,
                            elapsed_ms: answer.elapsed_ms,
                        });
                    }
                });
            }
            Self {
                stop,
                messages,
                slash,
                tasks,
            }
        }

        async fn stop(mut self) -> (Vec<String>, Vec<Slash>) {
            self.stop.cancel();
            while let Some(done) = self.tasks.join_next().await {
                done.unwrap();
            }
            let messages = std::mem::take(&mut *self.messages.lock().unwrap());
            let slash = std::mem::take(&mut *self.slash.lock().unwrap());
            (messages, slash)
        }
    }

    /// Load for `before`, the fault, load for `after`.
    async fn under_load(fleet: &Fleet, before: Duration) -> (Load, CancellationToken) {
        let watching = CancellationToken::new();
        fleet.watch_readiness(&watching);
        let load = Load::start(fleet);
        tokio::time::sleep(before).await;
        (load, watching)
    }

    /// Waits until guild `guild`'s call has carried `more` seconds of sound beyond `from`.
    async fn until_heard(control: &Control, guild: u64, from: f64, more: f64) -> f64 {
        let heard = |stats: &Value| stats["non_silent_seconds"].as_f64().unwrap_or(0.0);
        tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let now = heard(&control.voice_stats(guild).await.unwrap());
                if now >= from + more {
                    return now;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .expect("the bot is heard")
    }

    /// A worker SIGKILLed, and started again: what it held unacked goes to the other.
    async fn kill_a_worker(fleet: &mut Fleet) {
        fleet.restart("worker-a", "-KILL").await;
    }

    /// The gateway SIGTERMed and started again: its successor RESUMEs every shard.
    async fn restart_the_gateway(fleet: &mut Fleet) {
        let before = identifies(&fleet.control).await;
        fleet.restart("gateway", "-TERM").await;
        tests::until_shards_connected(&fleet.control, 2).await;
        assert_eq!(
            identifies(&fleet.control).await,
            before,
            "the successor RESUMEd"
        );
        assert!(
            fleet.unready_seen("gateway"),
            "the gateway was not ready while it restarted"
        );
    }

    async fn identifies(control: &Control) -> usize {
        let shards = control.get("/shards").await.unwrap();
        shards["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|log| log["identifies"].as_array().unwrap().len())
            .sum()
    }

    /// The voice node SIGKILLed mid-call (no leave, no goodbye) and started again: the next
    /// voice command joins again and is heard.
    async fn kill_the_voice_node_mid_call(fleet: &mut Fleet) {
        let guild = &fleet.sim.world.guilds[0];
        let (guild_id, general, alice) = (guild.id, guild.channels[0].id, guild.members[0].id);
        let lounge = guild
            .channels
            .iter()
            .find(|c| c.name == "Lounge")
            .unwrap()
            .id;
        fleet
            .control
            .voice(guild_id, alice, Some(lounge))
            .await
            .unwrap();
        let answer = tests::reply_to(&fleet.control, general, alice, "~~play arpeggio.ogg").await;
        assert_eq!(
            answer["content"],
            format!("▶️ Playing **arpeggio.ogg** in <#{lounge}>.")
        );
        let heard = until_heard(&fleet.control, guild_id, 0.0, 1.0).await;
        fleet.restart("voice-node", "-KILL").await;
        let answer = tests::reply_to(&fleet.control, general, alice, "~~voice back again").await;
        assert_eq!(answer["content"], format!("🔊 Speaking in <#{lounge}>."));
        until_heard(&fleet.control, guild_id, heard, 0.5).await;
    }

    /// The ingress cut off the bus for 10 s (its RabbitMQ user loses its permissions and its
    /// connection): interactions are still answered in time, deferred, and edited later.
    async fn cut_the_ingress_off(fleet: &mut Fleet) {
        rabbitmqctl(&[
            "clear_permissions",
            "-p",
            fleet.vhost.name(),
            &fleet.ingress_user,
        ]);
        tests::close_connections(
            &fleet.vhost,
            "user",
            &fleet.ingress_user,
            "chaos: ingress cut off",
        );
        tokio::time::sleep(Duration::from_secs(10)).await;
        fleet.vhost.allow(&fleet.ingress_user);
        until_ready(fleet.processes["ingress"].admin).await;
        assert!(
            fleet.unready_seen("ingress"),
            "the ingress stayed ready without a bus"
        );
    }

    /// RabbitMQ stopped for 5 s (`stop_app`) and started again: every process drops readiness
    /// and is back; how long after the broker answers is printed.
    async fn restart_the_broker(fleet: &mut Fleet) {
        rabbitmqctl(&["stop_app"]);
        tokio::time::sleep(Duration::from_secs(5)).await;
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["await_startup"]);
        let back = std::time::Instant::now();
        for name in fleet.processes.keys() {
            until_ready(fleet.processes[name].admin).await;
        }
        println!(
            "every process ready {} ms after the broker answered again",
            back.elapsed().as_millis()
        );
        for name in fleet.processes.keys() {
            assert!(
                fleet.unready_seen(name),
                "{name} stayed ready without a broker"
            );
        }
    }

    /// One fault in a fleet under load: three seconds of load before, three after.
    macro_rules! scenario {
        ($(#[$attribute:meta])* $name:ident: $($fault:ident),+) => {
            $(#[$attribute])*
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let mut fleet = Fleet::start(stringify!($name)).await;
                let (load, watching) = under_load(&fleet, Duration::from_secs(3)).await;
                $(
                    $fault(&mut fleet).await;
                    tokio::time::sleep(Duration::from_secs(3)).await;
                )+
                watching.cancel();
                fleet.finish(load).await;
            }
        };
    }

    scenario!(worker_killed: kill_a_worker);
    scenario!(gateway_restarted: restart_the_gateway);
    scenario!(voice_node_killed: kill_the_voice_node_mid_call);
    scenario!(ingress_cut_off: cut_the_ingress_off);
    scenario!(
        #[ignore = "restarts RabbitMQ for every test: scripts/test runs it alone, after the rest"]
        broker_restart: restart_the_broker
    );
    scenario!(
        /// Every fault, one after the other, in one fleet under one steady load.
        #[ignore = "restarts RabbitMQ for every test: scripts/test runs it alone, after the rest"]
        all_faults: restart_the_broker, kill_a_worker, restart_the_gateway,
            kill_the_voice_node_mid_call, cut_the_ingress_off
    );
}
