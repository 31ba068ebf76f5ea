//! Interactions through Discord's webhook: the simulator signs and POSTs them to the ingress,
//! the ingress publishes them, a real worker answers over the bus, and the answer is the HTTP
//! response. Both buses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{Options, Platform, Transport};

async fn slash_commands_work_through_the_webhook(transport: Transport) {
    let options = Options {
        webhook: true,
        ..Options::default()
    };
    let platform = Platform::start(transport, options).await;

    // Discord checks an endpoint with a PING and forgeries before using it.
    let probes = platform
        .control
        .post("/webhook/probe", &json!({}))
        .await
        .unwrap();
    for probe in probes.as_array().unwrap() {
        assert_eq!(probe["ok"], true, "{probe}");
    }

    let (channel, member) = platform.general();
    let ping = platform
        .control
        .command(channel, member, "ping", json!([]))
        .await
        .unwrap();
    assert_eq!(ping["webhook"]["status"], 200, "{ping}");
    let answer: Value = serde_json::from_str(ping["webhook"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(answer["type"], 4);
    assert!(
        answer["data"]["content"]
            .as_str()
            .unwrap()
            .starts_with("pong! ("),
        "{answer}"
    );

    let seed = platform
        .control
        .command(
            channel,
            member,
            "테스트",
            json!([{"name": "옵션", "value": "호빈이"}, {"name": "작성글", "value": "웹훅으로"}]),
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(seed["webhook"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        answer["data"]["content"],
        "호빈이: 웹훅으로 (첫 메시지 발송 추카추카추)"
    );
    assert_eq!(answer["data"]["tts"], true);
    assert_eq!(answer["data"]["allowed_mentions"]["parse"], json!([]));

    let sent = platform.control.sent().await.unwrap();
    assert_eq!(
        sent.len(),
        2,
        "one answer each, through the webhook: {sent:?}"
    );
    assert!(sent.iter().all(|e| e["via"] == "webhook"));
    platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_slash_commands_work_through_the_webhook() {
    slash_commands_work_through_the_webhook(Transport::Memory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_slash_commands_work_through_the_webhook() {
    slash_commands_work_through_the_webhook(Transport::RabbitMq).await;
}
