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

/// The metric names in a PromQL expression, as registered (no `_total`, `_bucket`, ...).
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let mut rest = expr;
    while let Some(start) = rest.find("disco_") {
        let name: String = rest[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[start + name.len()..];
        let base = ["_bucket", "_sum", "_count", "_total", "_created"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        into.insert(base);
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
        missing = queried.difference(&exported).cloned().collect();
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
