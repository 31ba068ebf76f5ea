//! `deploy/` against the code: every metric a Grafana panel or an alert rule queries is one the
//! roles export (scraped from a running `disco demo`), and the dashboards are valid, portable
//! Grafana JSON.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy().join("grafana/dashboards");
    let mut boards: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let board =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                board,
            )
        })
        .collect();
    boards.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(boards.len() >= 4, "an overview and one dashboard per role");
    boards
}

/// The suffixes a sample's name adds to the name a metric is registered (and typed) under.
const SAMPLE_SUFFIXES: [&str; 6] = ["_bucket", "_sum", "_count", "_total", "_created", "_info"];

/// Whether a queried sample name belongs to an exported metric: its own name (a gauge named
/// `..._count`) or its name less a sample suffix.
fn is_exported(name: &str, exported: &BTreeSet<String>) -> bool {
    exported.contains(name)
        || SAMPLE_SUFFIXES
            .iter()
            .filter_map(|suffix| name.strip_suffix(suffix))
            .any(|base| exported.contains(base))
}

/// The metric names in a PromQL expression, as queried.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(start) = rest.find("disco_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        into.insert(name);
    }
}

async fn scrape(address: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test]
async fn every_queried_metric_is_exported() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_disco"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--ingress-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            &metrics,
            "--log",
            "error",
        ])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    let mut simulator = String::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("Disco demo: a local Discord simulator on ") {
                simulator = rest.split_whitespace().next().unwrap().to_owned();
            }
            if line.starts_with("Disco keeps running") {
                return;
            }
        }
        panic!("the demo ended early");
    })
    .await
    .expect("the demo runs");
    // Some metrics exist once something happened: a reconnect (closes) and a heartbeat.
    let control = discord_sim::Control::new(&format!("http://{simulator}"));
    control
        .post(
            "/shards/0/disconnect",
            &serde_json::json!({"code": 4000, "resume": true}),
        )
        .await
        .unwrap();
    // ... and Discord's limits pushing back: a 429, and a burst in one channel (5 per 5 s)
    // that the rest-proxy answers `busy` for.
    control
        .post(
            "/faults",
            &serde_json::json!({"status": 429, "route": "messages", "retry_after": 0.1}),
        )
        .await
        .unwrap();
    let info = control.get("/info").await.unwrap();
    let guild = &info["guilds"][0];
    let (channel, member) = (
        guild["channels"][0]["id"].as_u64().unwrap(),
        guild["members"][0]["id"].as_u64().unwrap(),
    );
    tests::say_many_in(&control, channel, member, "~~ping", 20).await;

    let mut queried = BTreeSet::new();
    for (_, board) in dashboards() {
        for panel in board["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                metric_names(target["expr"].as_str().unwrap(), &mut queried);
            }
        }
    }
    let rules = std::fs::read_to_string(deploy().join("base/monitoring.yaml")).unwrap();
    metric_names(&rules, &mut queried);
    assert!(queried.len() > 15, "{queried:?}");

    let mut missing = Vec::new();
    for _ in 0..100 {
        let scraped = scrape(&metrics).await;
        let exported: BTreeSet<String> = scraped
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect();
        missing = queried
            .iter()
            .filter(|name| !is_exported(name, &exported))
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
    demo.kill().await.unwrap();
}

#[test]
fn dashboards_are_valid_and_portable() {
    for (name, board) in dashboards() {
        assert!(
            board["uid"]
                .as_str()
                .is_some_and(|u| u.starts_with("disco-")),
            "{name}: uid"
        );
        let variables = board["templating"]["list"].as_array().unwrap();
        assert!(
            variables
                .iter()
                .any(|v| v["type"] == "datasource" && v["name"] == "datasource"),
            "{name}: a datasource variable"
        );
        let mut ids = BTreeSet::new();
        for panel in board["panels"].as_array().unwrap() {
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{name}: duplicate panel id"
            );
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{name}: no hard-coded datasource"
            );
            for target in panel["targets"].as_array().unwrap() {
                assert_eq!(target["datasource"]["uid"], "${datasource}", "{name}");
                assert!(
                    target["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{name}"
                );
            }
        }
    }
}

/// Ways to break `deploy/`, one per defect class `scripts/check-deploy` guards against: the
/// check named first must fail on the broken copy. (check, file under deploy/, from, to)
const BREAKAGES: &[(&str, &str, &str, &str)] = &[
    // Pod templates without the part-of label: the NetworkPolicies select no Disco pod.
    (
        "network",
        "base/kustomization.yaml",
        "includeTemplates: true",
        "includeTemplates: false",
    ),
    // Prometheus's namespace misnamed: nothing may scrape the roles.
    (
        "network",
        "base/network-policies.yaml",
        "kubernetes.io/metadata.name: monitoring",
        "kubernetes.io/metadata.name: prometheus",
    ),
    // Cloud metadata reachable on 80 is fine, on 443 it is not: the HTTPS rule must exclude it.
    (
        "network",
        "base/network-policies.yaml",
        "              - 169.254.0.0/16\n",
        "",
    ),
    (
        "images",
        "overlays/production/kustomization.yaml",
        "newTag: \"0.1.0\"",
        "newTag: latest",
    ),
    (
        "images",
        "Dockerfile",
        "FROM debian:12.12-slim",
        "FROM debian:bookworm-slim",
    ),
    // disco's default features: the simulator and `disco demo` in the production image.
    (
        "images",
        "Dockerfile",
        "scripts/build-release --no-default-features",
        "scripts/build-release",
    ),
    (
        "crd",
        "base/command-worker.yaml",
        "  minReplicaCount: 2\n",
        "  minReplicaCount: 2\n  minReplicas: 2\n",
    ),
    (
        "crd",
        "base/rabbitmq.yaml",
        "            topologyKey: kubernetes.io/hostname",
        "            topologyKey: kubernetes.io/hostname\n            namespace: x",
    ),
    (
        "schema",
        "base/gateway-shard.yaml",
        "periodSeconds: 5",
        "periodSecond: 5",
    ),
    (
        "config",
        "base/kustomization.yaml",
        "configMapGenerator:",
        "generatorOptions:\n  disableNameSuffixHash: true\nconfigMapGenerator:",
    ),
    (
        "buckets",
        "overlays/production/kustomization.yaml",
        "        replicas: 4\n",
        "        replicas: 5\n",
    ),
    (
        "grace",
        "base/interactions-ingress.yaml",
        "terminationGracePeriodSeconds: 45",
        "terminationGracePeriodSeconds: 30",
    ),
    (
        "pods",
        "base/gateway-shard.yaml",
        "podManagementPolicy: Parallel",
        "podManagementPolicy: OrderedReady",
    ),
    (
        "pods",
        "base/interactions-ingress.yaml",
        "            - name: DISCO_PUBLIC_KEY\n",
        "            - name: DISCORD_TOKEN\n              valueFrom:\n                secretKeyRef:\n                  name: disco-discord\n                  key: token\n            - name: DISCO_PUBLIC_KEY\n",
    ),
    (
        "keda",
        "base/command-worker.yaml",
        "  fallback:\n    failureThreshold: 3\n    replicas: 4\n",
        "",
    ),
    (
        "ingress",
        "base/interactions-ingress.yaml",
        "  ingressClassName: nginx\n",
        "",
    ),
    (
        "rabbitmq",
        "base/rabbitmq.yaml",
        "    limits:\n      cpu: \"2\"\n      memory: 2Gi",
        "    limits:\n      cpu: \"4\"\n      memory: 4Gi",
    ),
    (
        "monitoring",
        "base/monitoring.yaml",
        "    release: kube-prometheus-stack\n",
        "",
    ),
    // Not scoped by namespace: the unit test expecting the namespace label fails.
    (
        "alerts",
        "base/monitoring.yaml",
        "sum by (namespace) (disco_gateway_shard_publish_buffer) > 500",
        "sum(disco_gateway_shard_publish_buffer) > 500",
    ),
    // Without the fallback to 0, the alert cannot fire when every voice node is gone.
    (
        "alerts",
        "base/monitoring.yaml",
        "(sum by (namespace) (disco_voice_node_shards_owned) or max by (namespace) (disco_gateway_shard_shard_count) * 0)",
        "sum by (namespace) (disco_voice_node_shards_owned)",
    ),
    (
        "alerts",
        "base/monitoring.yaml",
        "(disco_gateway_shard_publish_buffer) > 500",
        "(disco_gateway_shard_publish_buffer) > > 500",
    ),
    (
        "dashboards",
        "grafana/dashboards/overview.json",
        "sum by (event) (rate(",
        "sum by (event) rate(",
    ),
];

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Runs `scripts/check-deploy` on a copy of `deploy/` changed by `edit`: (passed, stderr).
fn check_copy(name: &str, edit: impl FnOnce(&Path)) -> (bool, String) {
    let repo = deploy().join("..");
    let root =
        std::env::temp_dir().join(format!("disco-check-deploy-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    copy_tree(&deploy(), &root.join("deploy"));
    std::fs::copy(repo.join(".dockerignore"), root.join(".dockerignore")).unwrap();
    edit(&root.join("deploy"));
    let output = std::process::Command::new(repo.join("scripts/check-deploy"))
        .arg("--deploy")
        .arg(root.join("deploy"))
        .output()
        .expect("scripts/check-deploy runs (scripts/install-deps installs what it needs)");
    std::fs::remove_dir_all(&root).unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_deploy_passes_deploy_as_it_is() {
    let (passed, stderr) = check_copy("unchanged", |_| {});
    assert!(passed, "{stderr}");
}

#[test]
fn check_deploy_fails_each_broken_copy_for_its_reason() {
    for (i, (check, file, from, to)) in BREAKAGES.iter().enumerate() {
        let (passed, stderr) = check_copy(&format!("{i}-{check}"), |deploy| {
            let path = deploy.join(file);
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(from), "{file} no longer contains {from:?}");
            std::fs::write(&path, text.replace(from, to)).unwrap();
        });
        assert!(!passed, "breaking {file} ({from:?}) passed check-deploy");
        assert!(
            stderr.contains(&format!("[{check}]")),
            "breaking {file} ({from:?}) should fail [{check}]:\n{stderr}"
        );
    }
}
