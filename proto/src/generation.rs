//! Generations of shards: which shard total the gateway runs by, from what its processes say.
//!
//! Every gateway process says, every few seconds while all its shards are READY, which shards of
//! which total it runs ([`GenerationReady`], the event [`route::GENERATION_READY`]). A total is
//! *covered* once the processes heard from lately hold all of its shards between them: its
//! generation is READY in full. While the bot reshards, the gateway processes of the smaller
//! total retire at that moment, and every service that addresses a shard (a voice node sending
//! op 4, binding a shard's voice events) follows the larger total from then on.
//!
//! [`route::GENERATION_READY`]: crate::route::GENERATION_READY

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::v1::GenerationReady;

/// How often a READY gateway process says so.
pub const ANNOUNCE_EVERY: Duration = Duration::from_secs(2);
/// A process not heard from for this long no longer counts towards its generation's coverage.
pub const FORGET_AFTER: Duration = Duration::from_secs(10);

/// What the gateway processes said, and when.
#[derive(Debug, Default)]
pub struct Coverage {
    /// Per total, per first shard: the end of the range and when it was last heard.
    seen: BTreeMap<u32, BTreeMap<u32, (u32, Instant)>>,
}

impl Coverage {
    /// Notes one announcement; returns its total if that total's shards are now all READY.
    /// An announcement of no shards (or of shards past its total) is ignored.
    pub fn heard(&mut self, ready: &GenerationReady, now: Instant) -> Option<u32> {
        if ready.shard_start >= ready.shard_end || ready.shard_end > ready.shard_total {
            return None;
        }
        let ranges = self.seen.entry(ready.shard_total).or_default();
        ranges.insert(ready.shard_start, (ready.shard_end, now));
        ranges.retain(|_, (_, at)| now.duration_since(*at) < FORGET_AFTER);
        let mut covered = 0;
        for (&start, &(end, _)) in ranges.iter() {
            if start > covered {
                return None;
            }
            covered = covered.max(end);
        }
        (covered >= ready.shard_total).then_some(ready.shard_total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ready(total: u32, start: u32, end: u32) -> GenerationReady {
        GenerationReady {
            schema_version: 1,
            shard_total: total,
            shard_start: start,
            shard_end: end,
        }
    }

    #[test]
    fn a_generation_is_ready_when_its_ranges_cover_every_shard() {
        let now = Instant::now();
        let mut coverage = Coverage::default();
        assert_eq!(coverage.heard(&ready(8, 0, 2), now), None);
        assert_eq!(
            coverage.heard(&ready(8, 4, 6), now),
            None,
            "2..4 is missing"
        );
        assert_eq!(
            coverage.heard(&ready(8, 2, 4), now),
            None,
            "6..8 is missing"
        );
        assert_eq!(coverage.heard(&ready(16, 0, 16), now), Some(16));
        assert_eq!(coverage.heard(&ready(8, 6, 8), now), Some(8));
        assert_eq!(coverage.heard(&ready(8, 6, 9), now), None, "past its total");
        assert_eq!(coverage.heard(&ready(8, 6, 6), now), None, "no shards");
    }

    #[test]
    fn a_process_not_heard_from_lately_does_not_count() {
        let start = Instant::now();
        let mut coverage = Coverage::default();
        assert_eq!(coverage.heard(&ready(4, 0, 2), start), None);
        let later = start + FORGET_AFTER;
        assert_eq!(coverage.heard(&ready(4, 2, 4), later), None);
        assert_eq!(coverage.heard(&ready(4, 0, 2), later), Some(4));
    }
}
