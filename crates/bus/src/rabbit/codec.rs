//! Messages to and from AMQP: headers, correlation id, reply address, expiry, and the
//! delivery count quorum queues keep.

use std::collections::BTreeMap;
use std::time::Duration;

use amqprs::{BasicProperties, DELIVERY_MODE_PERSISTENT, FieldTable, FieldValue};
use tracing::warn;

use super::field;
use crate::Message;

/// When a message with an expiry stops being worth acting on, in ms since the Unix epoch.
/// RabbitMQ drops a message that expires while queued, but not one already delivered to a
/// consumer's prefetch buffer: the consumer checks this header for those.
const EXPIRES_AT_HEADER: &str = "x-disco-expires-at";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub(super) fn properties_of(message: &Message) -> BasicProperties {
    let mut properties = BasicProperties::default();
    properties.with_delivery_mode(DELIVERY_MODE_PERSISTENT);
    let mut headers = FieldTable::new();
    for (name, value) in &message.headers {
        match (name.as_str().try_into(), value.as_str().try_into()) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, FieldValue::S(value));
            }
            _ => warn!(header = %name, "left out a header too long for AMQP"),
        }
    }
    if let Some(after) = message.expires_after {
        let after = u64::try_from(after.as_millis()).unwrap_or(u64::MAX);
        let at = i64::try_from(now_ms().saturating_add(after)).unwrap_or(i64::MAX);
        headers.insert(field(EXPIRES_AT_HEADER), FieldValue::l(at));
    }
    if !headers.as_ref().is_empty() {
        properties.with_headers(headers);
    }
    if let Some(id) = &message.correlation_id {
        properties.with_correlation_id(id);
    }
    if let Some(reply_to) = &message.reply_to {
        properties.with_reply_to(reply_to);
    }
    if let Some(after) = message.expires_after {
        properties.with_expiration(&after.as_millis().to_string());
    }
    properties
}

pub(super) fn message_of(properties: &BasicProperties, body: Vec<u8>) -> Message {
    let mut headers = BTreeMap::new();
    let mut expires_after = None;
    if let Some(table) = properties.headers() {
        for (name, value) in table.as_ref() {
            let name: &String = name.as_ref();
            if name == EXPIRES_AT_HEADER {
                if let FieldValue::l(at) = value {
                    let left = u64::try_from(*at).unwrap_or(0).saturating_sub(now_ms());
                    expires_after = Some(Duration::from_millis(left));
                }
                continue;
            }
            let FieldValue::S(text) = value else {
                continue;
            };
            let text: &String = text.as_ref();
            headers.insert(name.clone(), text.clone());
        }
    }
    Message {
        body: body.into(),
        headers,
        correlation_id: properties.correlation_id().cloned(),
        reply_to: properties.reply_to().cloned(),
        // What is left of it: zero when it expired in a consumer's prefetch buffer.
        expires_after,
    }
}

/// Quorum queues count earlier deliveries in `x-delivery-count`; other queues only say
/// whether the message was delivered before.
pub(super) fn delivery_count(properties: &BasicProperties, redelivered: bool) -> u32 {
    let counted = properties
        .headers()
        .and_then(|headers| headers.get(&field("x-delivery-count")))
        .and_then(|value| match value {
            FieldValue::l(n) => u32::try_from(*n).ok(),
            FieldValue::I(n) => u32::try_from(*n).ok(),
            FieldValue::i(n) => Some(*n),
            FieldValue::s(n) => u32::try_from(*n).ok(),
            _ => None,
        });
    counted.unwrap_or(u32::from(redelivered))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_the_trip_through_amqp_properties() {
        let mut message = Message::new(b"body".to_vec());
        message
            .headers
            .insert("x-disco-reason".to_owned(), "late".to_owned());
        message.correlation_id = Some("c-1".to_owned());
        message.reply_to = Some("amq.rabbitmq.reply-to".to_owned());
        message.expires_after = Some(Duration::from_millis(1500));
        let properties = properties_of(&message);
        assert_eq!(properties.delivery_mode(), Some(2), "persistent");
        assert_eq!(properties.expiration().cloned(), Some("1500".to_owned()));
        let back = message_of(&properties, b"body".to_vec());
        assert_eq!(back.body, message.body);
        assert_eq!(back.headers, message.headers);
        assert_eq!(back.correlation_id, message.correlation_id);
        assert_eq!(back.reply_to, message.reply_to);
        let left = back.expires_after.expect("what is left of the expiry");
        assert!(
            left <= Duration::from_millis(1500) && left > Duration::from_millis(1000),
            "{left:?}"
        );
        let mut expired = properties_of(&message);
        let mut headers = expired.headers().cloned().unwrap_or_default();
        headers.insert(field(EXPIRES_AT_HEADER), FieldValue::l(1));
        expired.with_headers(headers);
        assert_eq!(
            message_of(&expired, Vec::new()).expires_after,
            Some(Duration::ZERO),
            "expired while delivered"
        );
    }

    #[test]
    fn the_delivery_count_comes_from_quorum_queues_or_the_redelivered_flag() {
        let with_count = |value: FieldValue| {
            let mut headers = FieldTable::new();
            headers.insert(field("x-delivery-count"), value);
            BasicProperties::default().with_headers(headers).finish()
        };
        let rows = [
            (with_count(FieldValue::l(3)), false, 3),
            (with_count(FieldValue::I(2)), false, 2),
            (with_count(FieldValue::i(4)), true, 4),
            (with_count(FieldValue::s(1)), false, 1),
            (with_count(FieldValue::l(-1)), true, 1),
            (BasicProperties::default(), true, 1),
            (BasicProperties::default(), false, 0),
        ];
        for (properties, redelivered, want) in rows {
            assert_eq!(
                delivery_count(&properties, redelivered),
                want,
                "{properties:?}"
            );
        }
    }
}
