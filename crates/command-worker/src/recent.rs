//! The ids of the commands this worker took lately, so a second copy of one is not run again.
//!
//! While the bot reshards, two generations of shards deliver the same message and the same
//! interaction (Discord sends both to every session that owns the guild). A copy that reaches
//! this worker is dropped here; one that reaches another replica still answers once, because
//! Discord keeps a reply single (the message nonce, the interaction's one response).

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// Ids remembered: minutes of commands at a busy bot's rate, about 1.5 MiB.
const REMEMBERED: usize = 65_536;

#[derive(Debug, Default)]
pub(crate) struct Recent {
    ids: Mutex<(HashSet<u64>, VecDeque<u64>)>,
}

impl Recent {
    /// True the first time `id` is offered, false for a copy; the oldest id is forgotten once
    /// [`REMEMBERED`] are held.
    pub(crate) fn first(&self, id: u64) -> bool {
        let mut guard = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if !set.insert(id) {
            return false;
        }
        order.push_back(id);
        if order.len() > REMEMBERED
            && let Some(oldest) = order.pop_front()
        {
            set.remove(&oldest);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_refused_until_the_id_is_forgotten() {
        let recent = Recent::default();
        assert!(recent.first(1));
        assert!(!recent.first(1));
        assert!(recent.first(2));
        for id in 3..(REMEMBERED as u64 + 2) {
            assert!(recent.first(id));
        }
        assert!(!recent.first(2), "still remembered");
        assert!(recent.first(1), "the oldest is forgotten");
    }
}
