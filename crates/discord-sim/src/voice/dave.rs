//! DAVE, Discord's end-to-end encryption for voice, as a voice server runs it: the delivery
//! service and external sender of each call's MLS group (<https://daveprotocol.com>).
//!
//! The members in the bot's voice channel are simulated, and each is a real MLS participant (a
//! [`DaveSession`], the implementation songbird itself uses). When the bot's key package
//! arrives (op 26) and someone is there, the first member forms the group and commits the
//! others and the bot in; the bot gets the welcome (op 30). A member who joins or leaves later
//! is proposed by the server, as external sender (op 27), and the bot commits (op 28); the
//! server hands the commit to the members and announces it to the bot (op 29). Every
//! transition ends with the bot's "ready" (op 23) and the server's "execute" (op 22).
//!
//! Media: every member decrypts each of the bot's frames with its own keys; the first
//! member's plaintext is what the voice server decodes and measures. A frame a member cannot
//! decrypt is lost (counted); outside a transition it is a violation, as is media sent
//! without end-to-end encryption once the bot is in the group.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use davey::{DaveSession, MediaType, ProposalsOperationType};
use openmls::prelude::tls_codec::{DeserializeBytes, Serialize as _, VLBytes};
use openmls::prelude::{
    BasicCredential, GroupEpoch, GroupId, KeyPackage, KeyPackageIn, LeafNodeIndex, MlsMessageIn,
    OpenMlsProvider, ProtocolVersion, SenderExtensionIndex, SignatureScheme,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use serde::Serialize;
use serde_json::{Value, json};

/// The DAVE protocol version the server speaks.
pub(crate) const PROTOCOL_VERSION: u16 = davey::DAVE_PROTOCOL_VERSION;
/// A frame that fails this soon after a transition began is lost to it, not a violation.
const TRANSITION_GRACE: Duration = Duration::from_secs(2);
/// How long after the bot is in the group a receiver still takes frames in the clear
/// (passthrough, as clients allow while a call upgrades to DAVE).
const PASSTHROUGH: Duration = Duration::from_secs(2);
/// How every DAVE-encrypted frame ends.
const MARKER: [u8; 2] = [0xFA, 0xFA];
const SILENCE_FRAME: [u8; 3] = [0xf8, 0xff, 0xfe];

/// What the voice server sends the bot: a binary DAVE message (op, payload) or JSON (op, d).
#[derive(Debug)]
pub(crate) enum Out {
    Binary(u8, Vec<u8>),
    Json(u8, Value),
}

/// The voice server's signing identity as external sender of every call's group.
pub(crate) struct ExternalSender {
    signer: SignatureKeyPair,
    /// The TLS-serialized `ExternalSender`, as op 25 carries it.
    package: Vec<u8>,
}

impl std::fmt::Debug for ExternalSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalSender").finish_non_exhaustive()
    }
}

impl ExternalSender {
    pub(crate) fn new() -> Self {
        // DAVE v1's ciphersuite signs with P-256.
        let signer = SignatureKeyPair::new(SignatureScheme::ECDSA_SECP256R1_SHA256)
            .expect("a P-256 key pair is generated");
        let credential = BasicCredential::new(b"discord-sim voice server".to_vec());
        let sender =
            openmls::prelude::ExternalSender::new(signer.public().into(), credential.into());
        let package = sender
            .tls_serialize_detached()
            .expect("an external sender serializes");
        Self { signer, package }
    }

    /// Op 25, `dave_mls_external_sender_package`.
    pub(crate) fn announcement(&self) -> Out {
        Out::Binary(25, self.package.clone())
    }
}

/// DAVE as the voice server saw it in one guild's call, as `GET /_sim/voice/{guild}` shows it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct DaveStats {
    /// The protocol version the session description announced (0 before any).
    pub(crate) protocol_version: u16,
    /// The group's epoch (0 before the group is formed).
    pub(crate) epoch: u64,
    /// The simulated members in the group now.
    pub(crate) members: Vec<String>,
    /// Transitions executed (the group formed, a member joined or left).
    pub(crate) transitions: u32,
    /// Frames of the bot the members decrypted.
    pub(crate) frames_decrypted: u64,
    /// Frames some member could not decrypt (those in a transition included; the others
    /// may have heard them).
    pub(crate) frames_failed: u64,
    /// Of those, the ones within a transition's grace period.
    pub(crate) frames_lost_in_transition: u64,
    /// Frames that came without end-to-end encryption (before the bot was in the group).
    pub(crate) frames_plaintext: u64,
    /// The group's voice privacy code, as the members' clients show it.
    pub(crate) privacy_code: Option<String>,
}

/// A simulated member of the call: a real MLS participant.
struct Member {
    user_id: u64,
    session: DaveSession,
}

impl Member {
    fn new(user_id: u64, channel_id: u64, sender: &ExternalSender) -> Result<Self, String> {
        let version = std::num::NonZeroU16::new(PROTOCOL_VERSION).expect("non-zero version");
        let mut session = DaveSession::new(version, user_id, channel_id, None)
            .map_err(|e| format!("member {user_id}: {e}"))?;
        session
            .set_external_sender(&sender.package)
            .map_err(|e| format!("member {user_id}: {e}"))?;
        Ok(Self { user_id, session })
    }

    fn key_package(&mut self) -> Result<KeyPackage, String> {
        let bytes = self
            .session
            .create_key_package()
            .map_err(|e| format!("member {}: {e}", self.user_id))?;
        validate_key_package(&bytes)
    }
}

/// A change of membership waiting for its turn (one transition at a time).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Change {
    Join(u64),
    Leave(u64),
}

/// What the voice server proposes as external sender.
enum Proposed {
    Add(Box<KeyPackage>),
    Remove(LeafNodeIndex),
}

/// Where the call's current transition is.
enum Pending {
    /// Proposals sent to the bot; its commit is awaited. A joining member waits for the
    /// welcome in it.
    Commit { joining: Option<Box<Member>> },
    /// Commit or welcome sent with this transition id; the bot's "ready" is awaited.
    Ready(u16),
}

/// One guild's call, as its MLS delivery service sees it.
pub(crate) struct Call {
    bot: u64,
    channel_id: u64,
    /// The bot's key package, until the bot is in a group.
    key_package: Option<KeyPackage>,
    members: Vec<Member>,
    bot_in_group: bool,
    epoch: u64,
    pending: Option<Pending>,
    queued: VecDeque<Change>,
    next_transition: u16,
    /// When the last transition began, for the grace given to frames lost in it.
    changed_at: Option<Instant>,
    /// When the bot entered the group.
    joined_at: Option<Instant>,
    /// A broken media rule was reported: the frames after it are counted only.
    reported: bool,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("channel_id", &self.channel_id)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Call {
    pub(crate) fn new(bot: u64, channel_id: u64) -> Self {
        Self {
            bot,
            channel_id,
            key_package: None,
            members: Vec::new(),
            bot_in_group: false,
            epoch: 0,
            pending: None,
            queued: VecDeque::new(),
            next_transition: 0,
            changed_at: None,
            joined_at: None,
            reported: false,
        }
    }

    pub(crate) fn channel_id(&self) -> u64 {
        self.channel_id
    }

    fn transition_id(&mut self) -> u16 {
        // Transition 0 means "now, without a handshake": real transitions start at 1.
        self.next_transition = self.next_transition.wrapping_add(1).max(1);
        self.next_transition
    }

    /// Op 26 from the bot. With members in the channel, the first forms the group with
    /// everyone in it; alone, the bot waits for someone to join.
    pub(crate) fn key_package(
        &mut self,
        bytes: &[u8],
        present: &[u64],
        sender: &ExternalSender,
        stats: &mut DaveStats,
    ) -> Result<Vec<Out>, String> {
        let key_package = validate_key_package(bytes)?;
        let credential = key_package.leaf_node().credential().serialized_content();
        if credential != self.bot.to_be_bytes() {
            return Err("a key package whose credential is not the bot's user id".to_owned());
        }
        self.key_package = Some(key_package);
        // A key package again means a fresh session: whatever group there was is gone for it.
        self.bot_in_group = false;
        self.pending = None;
        self.queued.clear();
        if present.is_empty() {
            self.members.clear();
            stats.members.clear();
            return Ok(Vec::new());
        }
        self.form(present, sender, stats)
    }

    /// The first member commits everyone else and the bot into a new group.
    fn form(
        &mut self,
        present: &[u64],
        sender: &ExternalSender,
        stats: &mut DaveStats,
    ) -> Result<Vec<Out>, String> {
        let Some(bot_package) = self.key_package.take() else {
            return Ok(Vec::new());
        };
        let mut members = present
            .iter()
            .map(|&user| Member::new(user, self.channel_id, sender))
            .collect::<Result<Vec<_>, _>>()?;
        let mut packages = Vec::new();
        for member in &mut members[1..] {
            packages.push(member.key_package()?);
        }
        packages.push(bot_package);
        let epoch = GroupEpoch::from(0);
        let mut proposals = Vec::new();
        for package in packages {
            proposals.extend(self.propose(Proposed::Add(Box::new(package)), epoch, sender)?);
        }
        let (first, rest) = members.split_first_mut().expect("someone is present");
        let commit = first
            .session
            .process_proposals(ProposalsOperationType::APPEND, &vl(proposals), None)
            .map_err(|e| format!("forming the group: {e}"))?
            .ok_or("forming the group: nothing to commit")?;
        let welcome = commit.welcome.ok_or("forming the group: no welcome")?;
        first
            .session
            .process_commit(&commit.commit)
            .map_err(|e| format!("forming the group: {e}"))?;
        self.epoch = first.session.epoch().map_or(1, |e| e.as_u64());
        for member in rest {
            member
                .session
                .process_welcome(&welcome)
                .map_err(|e| format!("member {}: {e}", member.user_id))?;
        }
        self.members = members;
        self.bot_in_group = true;
        self.joined_at = Some(Instant::now());
        self.changed_at = Some(Instant::now());
        let transition = self.transition_id();
        self.pending = Some(Pending::Ready(transition));
        self.sync(stats);
        Ok(vec![Out::Binary(30, with_transition(transition, &welcome))])
    }

    /// An external proposal, signed by the voice server, as an MLS message.
    fn propose(
        &self,
        proposal: Proposed,
        epoch: GroupEpoch,
        sender: &ExternalSender,
    ) -> Result<Vec<u8>, String> {
        use openmls::prelude::ExternalProposal;
        let group = GroupId::from_slice(&self.channel_id.to_be_bytes());
        let index = SenderExtensionIndex::new(0);
        let signer = &sender.signer;
        let message = match proposal {
            Proposed::Add(package) => ExternalProposal::new_add::<OpenMlsRustCrypto>(
                *package, group, epoch, signer, index,
            )
            .map_err(|e| e.to_string()),
            Proposed::Remove(leaf) => {
                ExternalProposal::new_remove::<OpenMlsRustCrypto>(leaf, group, epoch, signer, index)
                    .map_err(|e| e.to_string())
            }
        };
        message
            .and_then(|m| m.tls_serialize_detached().map_err(|e| e.to_string()))
            .map_err(|e| format!("proposing a change: {e}"))
    }

    /// A member moved into the bot's channel (`Join`) or out of it (`Leave`).
    pub(crate) fn change(
        &mut self,
        change: Change,
        sender: &ExternalSender,
        stats: &mut DaveStats,
    ) -> Result<Vec<Out>, String> {
        if !self.bot_in_group {
            // No group yet: the first member to come forms it with the waiting bot.
            if let Change::Join(user) = change
                && self.key_package.is_some()
            {
                return self.form(&[user], sender, stats);
            }
            return Ok(Vec::new());
        }
        if self.pending.is_some() {
            self.queued.push_back(change);
            return Ok(Vec::new());
        }
        let epoch = GroupEpoch::from(self.epoch);
        let (proposal, joining) = match change {
            Change::Join(user) => {
                if self.members.iter().any(|m| m.user_id == user) {
                    return Ok(Vec::new());
                }
                let mut member = Member::new(user, self.channel_id, sender)?;
                let package = member.key_package()?;
                let proposal = self.propose(Proposed::Add(Box::new(package)), epoch, sender)?;
                (proposal, Some(Box::new(member)))
            }
            Change::Leave(user) => {
                let Some(at) = self.members.iter().position(|m| m.user_id == user) else {
                    return Ok(Vec::new());
                };
                let leaving = self.members.remove(at);
                let leaf = leaving
                    .session
                    .own_leaf_index()
                    .ok_or("a member outside the group")?;
                (self.propose(Proposed::Remove(leaf), epoch, sender)?, None)
            }
        };
        let proposals = vl(proposal);
        // The members take the proposal in as well (to read the bot's commit, which refers to
        // it); the commits they would make themselves lose to the bot's.
        for member in &mut self.members {
            member
                .session
                .process_proposals(ProposalsOperationType::APPEND, &proposals, None)
                .map_err(|e| format!("member {}: {e}", member.user_id))?;
        }
        self.changed_at = Some(Instant::now());
        self.pending = Some(Pending::Commit { joining });
        let mut out = vec![match change {
            // The bot takes proposals only for users it was told are in the call.
            Change::Join(user) => Out::Json(11, json!({"user_ids": [user.to_string()]})),
            Change::Leave(user) => Out::Json(13, json!({"user_id": user.to_string()})),
        }];
        let mut payload = vec![0]; // append
        payload.extend_from_slice(&proposals);
        out.push(Out::Binary(27, payload));
        Ok(out)
    }

    /// Op 28 from the bot: its commit (and a welcome, when it adds someone). The members
    /// process it, a joining member is welcomed, and the commit is announced to the bot.
    pub(crate) fn commit(
        &mut self,
        bytes: &[u8],
        stats: &mut DaveStats,
    ) -> Result<Vec<Out>, String> {
        let Some(Pending::Commit { joining }) = self.pending.take() else {
            return Err("a commit with no proposal waiting for one".to_owned());
        };
        let (_, welcome) = MlsMessageIn::tls_deserialize_bytes(bytes)
            .map_err(|e| format!("a commit that does not parse: {e}"))?;
        let commit = &bytes[..bytes.len() - welcome.len()];
        for member in &mut self.members {
            member.session.process_commit(commit).map_err(|e| {
                format!(
                    "member {} cannot process the bot's commit: {e}",
                    member.user_id
                )
            })?;
        }
        if let Some(mut member) = joining {
            if welcome.is_empty() {
                return Err("a commit adding a member without a welcome".to_owned());
            }
            member.session.process_welcome(welcome).map_err(|e| {
                format!(
                    "member {} cannot join with the bot's welcome: {e}",
                    member.user_id
                )
            })?;
            self.members.push(*member);
        }
        self.epoch += 1;
        let transition = self.transition_id();
        self.pending = Some(Pending::Ready(transition));
        self.sync(stats);
        Ok(vec![Out::Binary(29, with_transition(transition, commit))])
    }

    /// Op 23 from the bot: ready for `transition`; the server executes it (op 22) and starts
    /// the next change waiting.
    pub(crate) fn ready(
        &mut self,
        transition: u16,
        sender: &ExternalSender,
        stats: &mut DaveStats,
    ) -> Result<Vec<Out>, String> {
        if !matches!(self.pending, Some(Pending::Ready(t)) if t == transition) {
            return Ok(Vec::new());
        }
        self.pending = None;
        stats.transitions += 1;
        let mut out = vec![Out::Json(22, json!({"transition_id": transition}))];
        while self.pending.is_none()
            && let Some(change) = self.queued.pop_front()
        {
            out.extend(self.change(change, sender, stats)?);
        }
        Ok(out)
    }

    fn sync(&self, stats: &mut DaveStats) {
        stats.epoch = self.epoch;
        stats.privacy_code = self
            .members
            .first()
            .and_then(|m| m.session.voice_privacy_code())
            .map(str::to_owned);
        stats.members = self.members.iter().map(|m| m.user_id.to_string()).collect();
    }

    /// One Opus frame of the bot's, after transport decryption: what the members hear of it.
    pub(crate) fn frame(&mut self, frame: &[u8], stats: &mut DaveStats) -> Heard {
        if !self.bot_in_group || self.members.is_empty() || frame == SILENCE_FRAME {
            return Heard::Clear;
        }
        let now = Instant::now();
        if !frame.ends_with(&MARKER) {
            stats.frames_plaintext += 1;
            let passthrough = self
                .joined_at
                .is_some_and(|at| now.duration_since(at) < PASSTHROUGH);
            return if passthrough {
                Heard::Clear
            } else {
                self.broken("media sent without end-to-end encryption to a DAVE call")
            };
        }
        let mut heard = None;
        let mut failed = false;
        for member in &mut self.members {
            match member.session.decrypt(self.bot, MediaType::AUDIO, frame) {
                Ok(opus) => {
                    heard.get_or_insert(opus);
                }
                Err(_) => failed = true,
            }
        }
        if !failed {
            stats.frames_decrypted += 1;
            return heard.map_or(Heard::Lost, Heard::Decrypted);
        }
        stats.frames_failed += 1;
        let in_transition = self
            .changed_at
            .is_some_and(|at| now.duration_since(at) < TRANSITION_GRACE);
        if in_transition {
            // Lost to some member (one who just joined, say); the others may have heard it.
            stats.frames_lost_in_transition += 1;
            heard.map_or(Heard::Lost, Heard::Decrypted)
        } else {
            self.broken("media a member of the call cannot decrypt")
        }
    }

    /// A frame broke `rule`: reported once per call (50 frames a second would bury the rest).
    fn broken(&mut self, rule: &'static str) -> Heard {
        if std::mem::replace(&mut self.reported, true) {
            Heard::Lost
        } else {
            Heard::Violation(rule)
        }
    }
}

/// What a frame of the bot's was to the members.
pub(crate) enum Heard {
    /// Not end-to-end encrypted, and allowed to be: decode it as it came.
    Clear,
    /// Decrypted: decode this.
    Decrypted(Vec<u8>),
    /// Heard by no member (counted).
    Lost,
    /// Breaks a rule.
    Violation(&'static str),
}

fn validate_key_package(bytes: &[u8]) -> Result<KeyPackage, String> {
    let package = KeyPackageIn::tls_deserialize_exact_bytes(bytes)
        .map_err(|e| format!("a key package that does not parse: {e}"))?;
    package
        .validate(
            OpenMlsRustCrypto::default().crypto(),
            ProtocolVersion::Mls10,
        )
        .map_err(|e| format!("an invalid key package: {e}"))
}

/// Proposals as op 27 carries them: MLS messages back to back, in one variable-length vector.
fn vl(messages: Vec<u8>) -> Vec<u8> {
    VLBytes::new(messages)
        .tls_serialize_detached()
        .expect("a byte vector serializes")
}

fn with_transition(transition: u16, message: &[u8]) -> Vec<u8> {
    let mut payload = transition.to_be_bytes().to_vec();
    payload.extend_from_slice(message);
    payload
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const BOT: u64 = 7;
    const CHANNEL: u64 = 99;
    const ALICE: u64 = 11;
    const BOB: u64 = 12;
    /// An Opus frame (a few bytes of sound; nothing decodes it here).
    const OPUS: [u8; 6] = [0x78, 1, 2, 3, 4, 5];

    /// The bot's side, as songbird runs it: davey's session.
    fn bot(sender: &ExternalSender) -> DaveSession {
        let version = std::num::NonZeroU16::new(PROTOCOL_VERSION).unwrap();
        let mut bot = DaveSession::new(version, BOT, CHANNEL, None).unwrap();
        bot.set_external_sender(&sender.package).unwrap();
        bot
    }

    fn binary(out: &[Out], op: u8) -> &[u8] {
        out.iter()
            .find_map(|o| match o {
                Out::Binary(o, payload) if *o == op => Some(payload.as_slice()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("op {op} in {out:?}"))
    }

    fn transition(payload: &[u8]) -> (u16, &[u8]) {
        (u16::from_be_bytes([payload[0], payload[1]]), &payload[2..])
    }

    #[test]
    fn the_bot_is_welcomed_and_commits_a_member_in_and_out_and_only_its_keys_decrypt() {
        let sender = ExternalSender::new();
        let mut stats = DaveStats::default();
        let mut call = Call::new(BOT, CHANNEL);
        let mut bot = bot(&sender);

        // alice is there: her session forms the group and the bot gets a welcome.
        let package = bot.create_key_package().unwrap();
        let out = call
            .key_package(&package, &[ALICE], &sender, &mut stats)
            .unwrap();
        let (id, welcome) = transition(binary(&out, 30));
        bot.process_welcome(welcome).unwrap();
        assert!(bot.is_ready());
        let out = call.ready(id, &sender, &mut stats).unwrap();
        assert!(matches!(&out[..], [Out::Json(22, d)] if d["transition_id"] == id));
        assert_eq!((stats.epoch, stats.transitions), (1, 1));
        assert_eq!(stats.members, [ALICE.to_string()]);
        assert_eq!(
            stats.privacy_code.as_deref(),
            bot.voice_privacy_code(),
            "both sides show the same code"
        );

        let frame = bot.encrypt_opus(&OPUS).unwrap().into_owned();
        assert!(matches!(call.frame(&frame, &mut stats), Heard::Decrypted(f) if f == OPUS));

        // bob joins: proposed to the bot, which commits him in with a welcome.
        let out = call.change(Change::Join(BOB), &sender, &mut stats).unwrap();
        assert!(matches!(&out[0], Out::Json(11, d) if d["user_ids"] == json!([BOB.to_string()])));
        let proposals = binary(&out, 27);
        assert_eq!(proposals[0], 0, "append");
        let commit = bot
            .process_proposals(
                ProposalsOperationType::APPEND,
                &proposals[1..],
                Some(&[ALICE, BOB]),
            )
            .unwrap()
            .unwrap();
        let mut message = commit.commit.clone();
        message.extend(commit.welcome.unwrap());
        let out = call.commit(&message, &mut stats).unwrap();
        let (id, announced) = transition(binary(&out, 29));
        assert_eq!(announced, commit.commit);
        bot.process_commit(announced).unwrap();
        call.ready(id, &sender, &mut stats).unwrap();
        assert_eq!(stats.members, [ALICE.to_string(), BOB.to_string()]);
        assert_eq!((stats.epoch, stats.transitions), (2, 2));
        let frame = bot.encrypt_opus(&OPUS).unwrap().into_owned();
        assert!(matches!(call.frame(&frame, &mut stats), Heard::Decrypted(f) if f == OPUS));
        assert_eq!((stats.frames_decrypted, stats.frames_failed), (2, 0));

        // bob leaves: a removal, committed by the bot without a welcome.
        let out = call
            .change(Change::Leave(BOB), &sender, &mut stats)
            .unwrap();
        let commit = bot
            .process_proposals(ProposalsOperationType::APPEND, &binary(&out, 27)[1..], None)
            .unwrap()
            .unwrap();
        assert!(commit.welcome.is_none());
        let out = call.commit(&commit.commit, &mut stats).unwrap();
        let (id, announced) = transition(binary(&out, 29));
        bot.process_commit(announced).unwrap();
        call.ready(id, &sender, &mut stats).unwrap();
        assert_eq!(stats.members, [ALICE.to_string()]);
        assert_eq!(stats.epoch, 3);

        // Outside a transition, a frame the members cannot decrypt breaks the rule, and so
        // does one sent in the clear; silence passes.
        call.changed_at = None;
        call.joined_at = None;
        let mut forged = bot.encrypt_opus(&OPUS).unwrap().into_owned();
        forged[1] ^= 1;
        assert!(matches!(
            call.frame(&forged, &mut stats),
            Heard::Violation(_)
        ));
        assert_eq!(stats.frames_failed, 1);
        call.reported = false;
        assert!(matches!(call.frame(&OPUS, &mut stats), Heard::Violation(_)));
        assert!(matches!(
            call.frame(&SILENCE_FRAME, &mut stats),
            Heard::Clear
        ));
    }

    #[test]
    fn a_commit_nobody_asked_for_and_a_foreign_key_package_are_refused() {
        let sender = ExternalSender::new();
        let mut stats = DaveStats::default();
        let mut call = Call::new(BOT, CHANNEL);
        assert!(call.commit(&[0, 1], &mut stats).is_err());
        let version = std::num::NonZeroU16::new(PROTOCOL_VERSION).unwrap();
        let mut stranger = DaveSession::new(version, 1234, CHANNEL, None).unwrap();
        let package = stranger.create_key_package().unwrap();
        let refused = call.key_package(&package, &[ALICE], &sender, &mut stats);
        assert!(refused.unwrap_err().contains("not the bot's"));
        assert!(
            call.key_package(b"junk", &[ALICE], &sender, &mut stats)
                .is_err()
        );
    }
}
