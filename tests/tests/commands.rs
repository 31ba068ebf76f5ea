//! Server members using commands, end to end: simulator -> gateway -> bus -> worker -> REST.
//! Every scenario runs on the in-memory bus and on RabbitMQ.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};
use tests::{Options, Platform, Role, Transport};

fn is_pong(content: &Value) -> bool {
    content
        .as_str()
        .and_then(|c| c.strip_prefix("pong! ("))
        .and_then(|c| c.strip_suffix("ms)"))
        .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

async fn ping_answers_in_both_forms(transport: Transport) {
    let platform = Platform::start(transport, Options::default()).await;
    let reply = platform.say("~~ping").await;
    assert!(is_pong(&reply["content"]), "{reply}");
    assert_eq!(reply["allowed_mentions"]["parse"], json!([]));
    assert_eq!(reply["enforce_nonce"], true);

    let id = platform.slash("ping", json!([])).await;
    let answer = platform
        .until_sent(|e| e["interaction_id"] == id.as_str())
        .await;
    assert_eq!(answer["response_type"], 4);
    assert!(is_pong(&answer["content"]), "{answer}");
    platform.stop().await;
}

async fn the_seed_command_works_in_both_forms(transport: Transport) {
    let platform = Platform::start(transport, Options::default()).await;
    let reply = platform.say("~~테스트 찬구 첫 글입니다").await;
    assert_eq!(
        reply["content"],
        "찬구: 첫 글입니다 (첫 메시지 발송 추카추카추)"
    );
    assert_eq!(reply["tts"], true);

    let id = platform
        .slash(
            "테스트",
            json!([{"name": "옵션", "value": "카밀라"}, {"name": "작성글", "value": "슬래시 글"}]),
        )
        .await;
    let answer = platform
        .until_sent(|e| e["interaction_id"] == id.as_str())
        .await;
    assert_eq!(
        answer["content"],
        "카밀라: 슬래시 글 (첫 메시지 발송 추카추카추)"
    );
    assert_eq!(answer["tts"], true);
    assert_eq!(answer["allowed_mentions"]["parse"], json!([]));
    platform.stop().await;
}

async fn mistakes_get_helpful_replies(transport: Transport) {
    let platform = Platform::start(transport, Options::default()).await;
    // Not one of ours (another bot's, or a typo): no answer, as discord.py's commands give none.
    let (channel, member) = platform.general();
    platform
        .control
        .say(channel, member, "~~nope")
        .await
        .unwrap();
    let missing = platform.say("~~테스트 찬구").await;
    assert_eq!(
        missing["content"],
        "missing `작성글`. Usage: `~~테스트 <옵션: 호빈이|찬구|카밀라> <작성글>`"
    );
    let help = platform.say("~~help").await;
    assert!(
        help["embeds"][0]["description"]
            .as_str()
            .unwrap()
            .contains("~~voice <text>"),
        "{help}"
    );
    // Not a command: no answer at all.
    platform
        .control
        .say(channel, member, "just chatting")
        .await
        .unwrap();
    let everyone = platform.say("~~ping @everyone").await;
    assert_eq!(
        everyone["content"],
        "unexpected `@everyone`. Usage: `~~ping`"
    );
    assert_eq!(everyone["allowed_mentions"]["parse"], json!([]));
    let sent = platform.control.sent().await.unwrap();
    assert_eq!(
        sent.len(),
        3,
        "one answer per known command, none for chat or an unknown command: {sent:?}"
    );
    platform.stop().await;
}

async fn voice_commands_say_when_no_voice_node_answers(transport: Transport) {
    let options = Options {
        roles: vec![Role::CommandWorker, Role::GatewayShard],
        ..Options::default()
    };
    let platform = Platform::start(transport, options).await;
    let reply = platform.say("~~voice hello disco").await;
    assert_eq!(reply["content"], command_worker::voice::NO_ANSWER);
    // The slash form is slow, so it is deferred first and then edited.
    let id = platform
        .slash("voice", json!([{"name": "text", "value": "hello"}]))
        .await;
    platform
        .until_sent(|e| e["interaction_id"] == id.as_str() && e["kind"] == "edit")
        .await;
    let kinds: Vec<Value> = platform
        .sent_for_interaction(&id)
        .await
        .iter()
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("interaction_response"), json!("edit")]);
    let first = &platform.sent_for_interaction(&id).await[0];
    assert_eq!(first["response_type"], 5);
    platform.stop().await;
}

async fn discord_429s_are_waited_out(transport: Transport) {
    let platform = Platform::start(transport, Options::default()).await;
    platform
        .control
        .post(
            "/faults",
            &json!({"status": 429, "route": "messages", "count": 2, "retry_after": 0.3}),
        )
        .await
        .unwrap();
    let reply = platform.say("~~ping").await;
    assert!(is_pong(&reply["content"]), "{reply}");
    // stop() checks that no 429 was ignored.
    platform.stop().await;
}

async fn a_5xx_is_retried(transport: Transport) {
    let platform = Platform::start(transport, Options::default()).await;
    platform
        .control
        .post(
            "/faults",
            &json!({"status": 502, "route": "messages", "count": 2}),
        )
        .await
        .unwrap();
    let reply = platform.say("~~ping").await;
    assert!(is_pong(&reply["content"]), "{reply}");
    platform.stop().await;
}

macro_rules! on_both_buses {
    ($($scenario:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(tests::Transport::Memory).await;
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(tests::Transport::RabbitMq).await;
                }
            )*
        }
    };
}

on_both_buses!(
    ping_answers_in_both_forms,
    the_seed_command_works_in_both_forms,
    mistakes_get_helpful_replies,
    voice_commands_say_when_no_voice_node_answers,
    discord_429s_are_waited_out,
    a_5xx_is_retried,
);
