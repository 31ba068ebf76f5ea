//! The names every service agrees on: exchanges, queues and routing keys.
//!
//! Gateway events go to the topic exchange [`EVENTS_EXCHANGE`] with the routing key
//! `<EVENT_NAME>.<shard_id>` ([`event_key`]). Binding `MESSAGE_CREATE.*` takes the event from
//! every shard; binding `VOICE_STATE_UPDATE.7` takes it from shard 7 only, which is how a voice
//! node that owns a range of shards receives the voice events of its guilds and no others.
//!
//! Commands for one shard go to the queue [`shard_queue`]; requests for the voice node that owns
//! a shard's guilds go to [`voice_queue`]. Both are plain durable queues, so a command survives
//! its consumer restarting.

/// Topic exchange for gateway events.
pub const EVENTS_EXCHANGE: &str = "disco.gateway";
/// Exchange (and queue of the same name) for messages that could not be processed.
pub const DEAD_LETTER_EXCHANGE: &str = "disco.dead";
/// The queue all command workers share.
pub const COMMAND_WORKER_QUEUE: &str = "disco.command-worker";

/// The routing key of a gateway event: `<EVENT_NAME>.<shard_id>`.
pub fn event_key(event_name: &str, shard_id: u32) -> String {
    format!("{event_name}.{shard_id}")
}

/// The binding that takes `event_name` from every shard.
pub fn every_shard(event_name: &str) -> String {
    format!("{event_name}.*")
}

/// The queue of gateway commands (opcodes 3 and 4) for one shard of `shard_total`. Keyed by
/// the total too: while the bot reshards, shard 1 of 4 and shard 1 of 8 hold different guilds.
pub fn shard_queue(shard_id: u32, shard_total: u32) -> String {
    format!("disco.shard.{shard_total}.{shard_id}")
}

/// The queue of voice requests for the guilds of one shard.
pub fn voice_queue(shard_id: u32) -> String {
    format!("disco.voice.{shard_id}")
}

/// The queue holding a shard's saved gateway session between two gateway processes. Keyed by the
/// shard total too: while the bot reshards, shard 1 of 4 and shard 1 of 8 are different sessions.
pub fn session_queue(shard_id: u32, shard_total: u32) -> String {
    format!("disco.session.{shard_total}.{shard_id}")
}

/// The event a gateway process publishes while all its shards are READY: the routing key word
/// is the first of its shards ([`event_key`]`(GENERATION_READY, start)`).
pub const GENERATION_READY: &str = "GENERATION_READY";

/// The queue keeping the newest generation of shards that replaced an older one (a
/// `GenerationReady` covering all its shards): a process of an older generation started again
/// (Kubernetes restarts a pod that exited) reads it and stays down instead of identifying.
pub const GENERATION_QUEUE: &str = "disco.generation";

/// The shard that owns a guild, as Discord computes it: `(guild_id >> 22) % shard_total`.
///
/// # Panics
/// If `shard_total` is zero, which no valid configuration allows.
pub fn shard_for_guild(guild_id: u64, shard_total: u32) -> u32 {
    assert!(shard_total > 0, "shard_total must be positive");
    // The remainder is below shard_total, a u32, so the cast cannot truncate.
    ((guild_id >> 22) % u64::from(shard_total)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_pinned() {
        let rows = [
            (event_key("MESSAGE_CREATE", 3), "MESSAGE_CREATE.3"),
            (every_shard("INTERACTION_CREATE"), "INTERACTION_CREATE.*"),
            (shard_queue(12, 16), "disco.shard.16.12"),
            (voice_queue(0), "disco.voice.0"),
            (session_queue(3, 8), "disco.session.8.3"),
        ];
        for (got, want) in rows {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn guilds_map_to_shards_as_discord_does() {
        // 197038439483310086 >> 22 = 46977624770, which is 0 mod 2 and 2 mod 3.
        let rows = [
            (197_038_439_483_310_086_u64, 1, 0),
            (197_038_439_483_310_086, 2, 0),
            (197_038_439_483_310_086, 3, 2),
            (0, 16, 0),
            (u64::MAX, 16, ((u64::MAX >> 22) % 16) as u32),
        ];
        for (guild, total, shard) in rows {
            assert_eq!(
                shard_for_guild(guild, total),
                shard,
                "guild {guild} of {total}"
            );
        }
    }
}
