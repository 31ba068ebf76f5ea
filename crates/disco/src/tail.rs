//! `disco tail`: a private queue bound to the events exchange, printed as it fills.

use std::io::Write;

use bus::{Bus, Subscription};
use disco_proto::v1::GatewayEvent;
use tokio_util::sync::CancellationToken;

use disco::settings::TailArgs;

/// One line per message: the routing key, then what the envelope says, then the payload.
pub(crate) fn describe(routing_key: &str, body: &[u8]) -> String {
    match disco_proto::decode::<GatewayEvent>(body) {
        Ok(event) => {
            let guild = event
                .guild_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string());
            let payload = String::from_utf8_lossy(&event.payload);
            format!(
                "{routing_key} shard={} seq={} guild={guild} {payload}",
                event.shard_id, event.sequence
            )
        }
        Err(error) => format!(
            "{routing_key} ({} bytes, not a gateway event: {error})",
            body.len()
        ),
    }
}

pub(crate) async fn run(
    bus: &Bus,
    args: &TailArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut subscription = Subscription::private().prefetch(256);
    for pattern in &args.patterns {
        subscription = subscription.bind(pattern.clone());
    }
    let mut consumer = bus.subscribe(subscription).await?;
    tracing::info!(patterns = ?args.patterns, "tailing the bus");
    let mut printed = 0_u64;
    let mut stdout = std::io::stdout().lock();
    while args.count.is_none_or(|count| printed < count) {
        let delivery = tokio::select! {
            delivery = consumer.next() => delivery,
            () = shutdown.cancelled() => None,
        };
        let Some(delivery) = delivery else { break };
        writeln!(
            stdout,
            "{}",
            describe(&delivery.routing_key, &delivery.message.body)
        )?;
        stdout.flush()?;
        delivery.ack().await?;
        printed += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::describe;
    use disco_proto::Versioned;
    use disco_proto::v1::GatewayEvent;

    #[test]
    fn describes_events_and_other_messages() {
        let event = GatewayEvent {
            shard_id: 2,
            sequence: 9,
            event_name: "MESSAGE_CREATE".into(),
            guild_id: Some(77),
            payload: disco_proto::bytes::Bytes::from_static(br#"{"content":"~~ping"}"#),
            ..Default::default()
        }
        .encode_current();
        assert_eq!(
            describe("MESSAGE_CREATE.2", &event),
            r#"MESSAGE_CREATE.2 shard=2 seq=9 guild=77 {"content":"~~ping"}"#
        );
        assert!(describe("x.1", b"\xff\xff").starts_with("x.1 (2 bytes, not a gateway event"));
    }
}
