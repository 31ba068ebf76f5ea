//! What the voice server knows: the grants Discord handed out with op 4, the live voice
//! connections, and what it heard, per guild.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use aes_gcm::Aes256Gcm;
use serde::Serialize;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::dave::{Call, Change, DaveStats, ExternalSender, Out};

/// What the voice server knows: the grants Discord handed out, the live connections, and what
/// it heard.
#[derive(Debug)]
pub(crate) struct Hub {
    /// `host:port` of the voice gateway, as VOICE_SERVER_UPDATE names it.
    pub(crate) endpoint: String,
    pub(super) udp: SocketAddr,
    /// The voice server's identity as external sender of DAVE groups.
    pub(super) sender: ExternalSender,
    pub(super) inner: Mutex<HubState>,
}

#[derive(Debug, Default)]
pub(super) struct HubState {
    /// guild -> the voice session and token handed out with the bot's last join.
    pub(super) grants: HashMap<u64, Grant>,
    /// guild -> the live voice connection, to end it when the bot leaves.
    pub(super) links: HashMap<u64, Link>,
    /// ssrc -> the receiving end of a connection.
    pub(super) receivers: HashMap<u32, Receiver>,
    pub(super) stats: BTreeMap<u64, VoiceStats>,
    /// guild -> the DAVE group of the bot's call.
    pub(super) calls: HashMap<u64, Call>,
    /// (guild, member) -> the voice channel the member is in: who a call's group holds, kept
    /// under this lock so a member moving while the bot connects is not missed.
    pub(super) seated: BTreeMap<(u64, u64), u64>,
    pub(super) next_ssrc: u32,
}

/// A voice gateway connection, told apart from the one that replaced it.
#[derive(Debug)]
pub(super) struct Link {
    pub(super) id: u64,
    pub(super) stop: CancellationToken,
    /// What the server sends the connection unasked (DAVE proposals when members come and go).
    pub(super) outbox: UnboundedSender<Out>,
}

impl HubState {
    /// The members (not the bot) in the voice channel the bot was granted in `guild_id`.
    pub(super) fn present(&self, guild_id: u64) -> Vec<u64> {
        let Some(channel) = self.grants.get(&guild_id).map(|g| g.channel_id) else {
            return Vec::new();
        };
        self.seated
            .range((guild_id, 0)..=(guild_id, u64::MAX))
            .filter(|(_, in_channel)| **in_channel == channel)
            .map(|((_, user), _)| *user)
            .collect()
    }

    /// `link` becomes the guild's connection; the one it replaces is ended.
    pub(super) fn take_over(&mut self, guild_id: u64, link: Link) {
        if let Some(old) = self.links.insert(guild_id, link) {
            old.stop.cancel();
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Grant {
    pub(super) channel_id: u64,
    pub(super) session_id: String,
    pub(super) token: String,
}

pub(super) struct Receiver {
    pub(super) guild_id: u64,
    pub(super) cipher: Option<Aes256Gcm>,
    pub(super) decoder: opus2::Decoder,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("guild_id", &self.guild_id)
            .finish_non_exhaustive()
    }
}

/// What the voice server saw of one guild's calls, as `GET /_sim/voice/{guild}` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct VoiceStats {
    /// A voice connection is open now.
    pub(crate) connected: bool,
    /// The voice channel of the last connection.
    pub(crate) channel_id: Option<String>,
    /// Voice gateway connections that identified or resumed.
    pub(crate) connections: u32,
    /// The `v` the client asked for.
    pub(crate) gateway_version: u32,
    /// The DAVE version the client offered in IDENTIFY.
    pub(crate) max_dave_protocol_version: u32,
    /// RTP packets received, decrypted or not.
    pub(crate) packets: u64,
    pub(crate) decrypt_failures: u64,
    pub(crate) decode_failures: u64,
    /// Seconds of audio decoded (20 ms per Opus frame), silence included.
    pub(crate) audio_seconds: f64,
    /// Seconds of it above the silence threshold.
    pub(crate) non_silent_seconds: f64,
    /// Close codes the server ended connections with.
    pub(crate) close_codes: Vec<u16>,
    /// End-to-end encryption: the group, and what its members decrypted.
    pub(crate) dave: DaveStats,
}

impl Hub {
    pub(crate) fn new(endpoint: String, udp: SocketAddr) -> Self {
        Self {
            endpoint,
            udp,
            sender: ExternalSender::new(),
            inner: Mutex::new(HubState {
                next_ssrc: 1000,
                ..HubState::default()
            }),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HubState> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bot joined or moved (op 4 with a channel): this session and token may connect.
    pub(crate) fn grant(&self, guild_id: u64, channel_id: u64, session_id: &str, token: &str) {
        self.lock().grants.insert(
            guild_id,
            Grant {
                channel_id,
                session_id: session_id.to_owned(),
                token: token.to_owned(),
            },
        );
    }

    /// The bot left (op 4 without a channel) or was removed: its connection ends with 4014.
    pub(crate) fn revoke(&self, guild_id: u64) {
        let mut hub = self.lock();
        hub.grants.remove(&guild_id);
        hub.receivers.retain(|_, r| r.guild_id != guild_id);
        hub.calls.remove(&guild_id);
        if let Some(link) = hub.links.remove(&guild_id) {
            link.stop.cancel();
        }
    }

    /// A member (not the bot) is in `channel` from the start.
    pub(crate) fn seat(&self, guild_id: u64, user_id: u64, channel: u64) {
        self.lock().seated.insert((guild_id, user_id), channel);
    }

    /// A member moved to `channel` (or out of voice): the DAVE group of the bot's call there
    /// takes them in or lets them go. What breaks a rule is returned, to be recorded.
    pub(crate) fn member_moved(
        &self,
        guild_id: u64,
        user_id: u64,
        channel: Option<u64>,
    ) -> Result<(), String> {
        let mut hub = self.lock();
        match channel {
            Some(channel) => hub.seated.insert((guild_id, user_id), channel),
            None => hub.seated.remove(&(guild_id, user_id)),
        };
        let HubState {
            calls,
            links,
            stats,
            ..
        } = &mut *hub;
        let Some(call) = calls.get_mut(&guild_id) else {
            return Ok(());
        };
        let change = if channel == Some(call.channel_id()) {
            Change::Join(user_id)
        } else {
            Change::Leave(user_id)
        };
        let stats = &mut stats.entry(guild_id).or_default().dave;
        let out = call.change(change, &self.sender, stats)?;
        if let Some(link) = links.get(&guild_id) {
            for message in out {
                link.outbox.send(message).ok();
            }
        }
        Ok(())
    }

    pub(crate) fn stats(&self, guild_id: u64) -> VoiceStats {
        self.lock()
            .stats
            .get(&guild_id)
            .cloned()
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Who a call's group is formed with is read under the lock member moves take, so a
    /// member who comes while the bot connects is in it.
    #[test]
    fn members_moving_are_seen_by_the_call_in_their_channel_only() {
        let (guild, lounge, hall) = (1, 10, 20);
        let hub = Hub::new(
            "voice:443".to_owned(),
            "127.0.0.1:9".parse().expect("address"),
        );
        hub.seat(guild, 100, lounge);
        hub.grant(guild, lounge, "session", "token");
        hub.lock().calls.insert(guild, Call::new(7, lounge));
        hub.member_moved(guild, 200, Some(lounge))
            .expect("no rule broken");
        hub.member_moved(guild, 300, Some(hall))
            .expect("no rule broken");
        assert_eq!(hub.lock().present(guild), [100, 200]);
        hub.member_moved(guild, 100, None).expect("no rule broken");
        assert_eq!(hub.lock().present(guild), [200]);
        assert!(hub.lock().present(2).is_empty(), "another guild");
    }
}
