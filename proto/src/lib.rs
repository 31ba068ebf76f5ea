#![doc = include_str!("../README.md")]
//!
//! # Map
//! - [`v1`]: the generated message types, from `schema/disco/v1/disco.proto`.
//! - [`Versioned`] and [`decode`]: encoding with the schema version checked on the way in.
//! - [`route`]: the names of exchanges, queues and routing keys every service agrees on.
//! - [`generation`]: which shard total the gateway runs by, from its processes' announcements.
//! - [`Secret`]: a string (a token, a key) whose `Debug` and `Display` never show it.
//! - [`InvalidConfig`]: a role's refusal of one of its settings, naming the field.

/// Generated from `schema/disco/v1/disco.proto`.
#[allow(clippy::all, missing_debug_implementations, unreachable_pub)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/disco.v1.rs"));
}

mod config;
pub mod generation;
pub mod rest;
pub mod route;
mod secret;

pub use bytes;
pub use config::InvalidConfig;
pub use prost::Message;
pub use secret::Secret;

/// The schema version this build writes and the only one it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// A message of the contract: it carries the schema version it was written with.
pub trait Versioned: Message + Default + Sized {
    /// The version the message says it was written with.
    fn schema_version(&self) -> u32;

    /// Encodes the message with this build's schema version.
    fn encode_current(mut self) -> Vec<u8> {
        self.set_schema_version(SCHEMA_VERSION);
        self.encode_to_vec()
    }

    #[doc(hidden)]
    fn set_schema_version(&mut self, version: u32);
}

macro_rules! versioned {
    ($($ty:ty),* $(,)?) => {$(
        impl Versioned for $ty {
            fn schema_version(&self) -> u32 {
                self.schema_version
            }
            fn set_schema_version(&mut self, version: u32) {
                self.schema_version = version;
            }
        }
    )*};
}
versioned!(
    v1::GatewayEvent,
    v1::ShardCommand,
    v1::VoiceCommand,
    v1::VoiceReply,
    v1::InteractionReply,
    v1::SavedSession,
    v1::GenerationReady,
);

/// Why bytes from the bus are not a message of the contract.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not protobuf, or not this message.
    #[error("malformed message")]
    Malformed(#[from] prost::DecodeError),
    /// Written by a build with another schema version.
    #[error("unsupported schema version {found} (this build reads {SCHEMA_VERSION})")]
    Version {
        /// The version the message carries.
        found: u32,
    },
}

/// Decodes a message, refusing any schema version other than [`SCHEMA_VERSION`].
pub fn decode<M: Versioned>(bytes: &[u8]) -> Result<M, DecodeError> {
    let message = M::decode(bytes)?;
    match message.schema_version() {
        SCHEMA_VERSION => Ok(message),
        found => Err(DecodeError::Version { found }),
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{
        GatewayEvent, InteractionReply, SavedSession, ShardCommand, VoiceCommand, VoiceReply,
        VoiceStateUpdate, shard_command, voice_command, voice_reply,
    };
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The wire format, pinned: each row is a message and the exact bytes it must encode to.
    /// These bytes are what other services (and other languages) read; a change here is a
    /// change of the contract.
    #[test]
    fn wire_format_is_pinned() {
        let rows: Vec<(&str, Vec<u8>, &str)> = vec![
            (
                "gateway event",
                GatewayEvent {
                    shard_id: 3,
                    sequence: 42,
                    event_name: "MESSAGE_CREATE".into(),
                    guild_id: Some(1),
                    received_at_ms: 1_000,
                    heartbeat_latency_ms: Some(41),
                    payload: bytes::Bytes::from_static(b"{}"),
                    ..Default::default()
                }
                .encode_current(),
                // 08 01: version 1; 10 03: shard 3; 18 2a: sequence 42; 22 0e "MESSAGE_CREATE";
                // 28 01: guild 1; 30 e807: 1000 ms; 38 29: 41 ms; 42 02 "{}".
                "08011003182a220e4d4553534147455f4352454154452801 30e807 3829 42027b7d",
            ),
            (
                "gateway event without guild or latency",
                GatewayEvent {
                    event_name: "READY".into(),
                    ..Default::default()
                }
                .encode_current(),
                "0801 2205 5245414459",
            ),
            (
                "voice state update: join",
                ShardCommand {
                    shard_id: 2,
                    command: Some(shard_command::Command::VoiceStateUpdate(VoiceStateUpdate {
                        guild_id: 5,
                        channel_id: Some(7),
                        self_mute: false,
                        self_deaf: true,
                    })),
                    ..Default::default()
                }
                .encode_current(),
                "0801 1002 1a06 0805 1007 2001",
            ),
            (
                "voice state update: leave",
                ShardCommand {
                    shard_id: 0,
                    command: Some(shard_command::Command::VoiceStateUpdate(VoiceStateUpdate {
                        guild_id: 5,
                        ..Default::default()
                    })),
                    ..Default::default()
                }
                .encode_current(),
                "0801 1a02 0805",
            ),
            (
                "voice command: say",
                VoiceCommand {
                    guild_id: 1,
                    channel_id: 2,
                    requester_id: 3,
                    action: Some(voice_command::Action::Say(voice_command::Say {
                        text: "hi".into(),
                    })),
                    ..Default::default()
                }
                .encode_current(),
                "0801 1001 1802 2003 3204 0a026869",
            ),
            (
                "voice command: leave",
                VoiceCommand {
                    guild_id: 1,
                    action: Some(voice_command::Action::Leave(voice_command::Leave {})),
                    ..Default::default()
                }
                .encode_current(),
                "0801 1001 5200",
            ),
            (
                "voice reply",
                VoiceReply {
                    outcome: voice_reply::Outcome::NotInVoice.into(),
                    detail: "x".into(),
                    queue: vec!["a".into()],
                    ..Default::default()
                }
                .encode_current(),
                "0801 1002 1a0178 220161",
            ),
            (
                "interaction reply",
                InteractionReply {
                    response: bytes::Bytes::from_static(br#"{"type":1}"#),
                    ..Default::default()
                }
                .encode_current(),
                "0801 120a 7b2274797065223a317d",
            ),
            (
                "saved session",
                SavedSession {
                    shard_id: 1,
                    shard_total: 2,
                    session_id: "ab".into(),
                    sequence: 300,
                    resume_url: "ws://x".into(),
                    saved_at_ms: 1,
                    ..Default::default()
                }
                .encode_current(),
                // 28 ac02: sequence 300 (varint); 32 06 "ws://x"; 38 01: saved at 1.
                "0801 1001 1802 22026162 28ac02 3206 77733a2f2f78 3801",
            ),
        ];
        for (name, encoded, expected) in rows {
            assert_eq!(hex(&encoded), expected.replace(' ', ""), "{name}");
        }
    }

    #[test]
    fn decode_round_trips_and_keeps_payload_bytes() {
        // Payload bytes are carried untouched, including odd spacing and key order.
        let raw = br#"{ "b":1,"a" :[ ] }"#;
        let bytes = GatewayEvent {
            event_name: "MESSAGE_CREATE".into(),
            payload: bytes::Bytes::from_static(raw),
            ..Default::default()
        }
        .encode_current();
        let event: GatewayEvent = decode(&bytes).expect("decodes");
        assert_eq!(event.payload.as_ref(), raw);
        assert_eq!(event.schema_version, SCHEMA_VERSION);
    }

    #[test]
    fn decode_refuses_other_versions_and_garbage() {
        for version in [0, 2, 99] {
            let bytes = VoiceReply {
                schema_version: version,
                ..Default::default()
            }
            .encode_to_vec();
            let err = decode::<VoiceReply>(&bytes).expect_err("refused");
            assert!(matches!(err, DecodeError::Version { found } if found == version));
        }
        let err = decode::<GatewayEvent>(&[0xff, 0xff, 0xff]).expect_err("refused");
        assert!(matches!(err, DecodeError::Malformed(_)));
    }
}
