//! Messages to and from AMQP: headers, correlation id, reply address, expiry, and the
//! delivery count quorum queues keep.

use std::collections::BTreeMap;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::Message;

pub(super) fn properties_of(message: &Message) -> BasicProperties {
    let mut properties = BasicProperties::default().with_delivery_mode(2);
    if !message.headers.is_empty() {
        let mut headers = FieldTable::default();
        for (name, value) in &message.headers {
            headers.insert(
                ShortString::from(name.as_str()),
                AMQPValue::LongString(LongString::from(value.as_str())),
            );
        }
        properties = properties.with_headers(headers);
    }
    if let Some(id) = &message.correlation_id {
        properties = properties.with_correlation_id(id.as_str().into());
    }
    if let Some(reply_to) = &message.reply_to {
        properties = properties.with_reply_to(reply_to.as_str().into());
    }
    if let Some(after) = message.expires_after {
        properties = properties.with_expiration(after.as_millis().to_string().into());
    }
    properties
}

pub(super) fn message_of(properties: &BasicProperties, body: Vec<u8>) -> Message {
    let mut headers = BTreeMap::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            let text = match value {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                _ => continue,
            };
            headers.insert(name.to_string(), text);
        }
    }
    Message {
        body: body.into(),
        headers,
        correlation_id: properties
            .correlation_id()
            .as_ref()
            .map(ToString::to_string),
        reply_to: properties.reply_to().as_ref().map(ToString::to_string),
        // What is left of it does not matter once delivered.
        expires_after: None,
    }
}

/// Quorum queues count earlier deliveries in `x-delivery-count`; other queues only say
/// whether the message was delivered before.
pub(super) fn delivery_count(properties: &BasicProperties, redelivered: bool) -> u32 {
    let counted = properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("x-delivery-count"))
        .and_then(|value| match value {
            AMQPValue::LongLongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongInt(n) => u32::try_from(*n).ok(),
            AMQPValue::LongUInt(n) => Some(*n),
            AMQPValue::ShortInt(n) => u32::try_from(*n).ok(),
            _ => None,
        });
    counted.unwrap_or(u32::from(redelivered))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

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
        assert_eq!(properties.delivery_mode(), &Some(2), "persistent");
        assert_eq!(
            properties.expiration().as_ref().map(ToString::to_string),
            Some("1500".to_owned())
        );
        let back = message_of(&properties, b"body".to_vec());
        assert_eq!(back.body, message.body);
        assert_eq!(back.headers, message.headers);
        assert_eq!(back.correlation_id, message.correlation_id);
        assert_eq!(back.reply_to, message.reply_to);
        assert_eq!(
            back.expires_after, None,
            "expiry means nothing once delivered"
        );
    }

    #[test]
    fn the_delivery_count_comes_from_quorum_queues_or_the_redelivered_flag() {
        let with_count = |value: AMQPValue| {
            let mut headers = FieldTable::default();
            headers.insert("x-delivery-count".into(), value);
            BasicProperties::default().with_headers(headers)
        };
        let rows = [
            (with_count(AMQPValue::LongLongInt(3)), false, 3),
            (with_count(AMQPValue::LongInt(2)), false, 2),
            (with_count(AMQPValue::LongUInt(4)), true, 4),
            (with_count(AMQPValue::ShortInt(1)), false, 1),
            (with_count(AMQPValue::LongLongInt(-1)), true, 1),
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
