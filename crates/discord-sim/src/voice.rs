//! The voice side: a voice gateway on `wss://` and a UDP endpoint, as a voice server is.
//!
//! songbird only dials `wss://`, so the gateway speaks TLS with a certificate from a CA made at
//! start ([`VoiceTls`]); a client trusts it through `SSL_CERT_FILE`. The UDP endpoint answers IP
//! discovery, decrypts RTP (`aead_aes256_gcm_rtpsize`), decodes Opus and counts, per guild, how
//! many packets and how many seconds of non-silent audio arrived (`GET /_sim/voice/{guild}`).
//!
//! Strict where Discord is: IDENTIFY must carry the session and token Discord handed out in
//! VOICE_STATE_UPDATE / VOICE_SERVER_UPDATE (else 4004), must offer DAVE (else 4017), and
//! heartbeats must keep coming (else 4009). The simulator does not run the DAVE (MLS)
//! handshake itself: its session description answers `dave_protocol_version: 0`, so media is
//! transport-encrypted only.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_util::sync::CancellationToken;

use crate::state::Sim;

/// The one encryption mode offered: Discord's required AES-GCM mode.
pub(crate) const MODE: &str = "aead_aes256_gcm_rtpsize";
const HEARTBEAT_INTERVAL_MS: u64 = 13_750;
/// A decoded 20 ms frame counts as heard when its RMS is above this (about -50 dBFS).
const SILENCE_RMS: f64 = 100.0;
/// Opus's "silence" frame, which clients send when they stop speaking.
const SILENCE_FRAME: [u8; 3] = [0xf8, 0xff, 0xfe];
const IP_DISCOVERY_LEN: usize = 74;
const RTP_HEADER_LEN: usize = 12;
const TAG_LEN: usize = 16;
const NONCE_SUFFIX_LEN: usize = 4;

/// The voice gateway's TLS identity: a CA made for this simulator and a certificate it signed
/// for `localhost`, `127.0.0.1` and the simulator's address.
#[derive(Clone)]
pub struct VoiceTls {
    ca_pem: String,
    cert_der: Vec<u8>,
    key_der: Vec<u8>,
}

impl std::fmt::Debug for VoiceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoiceTls").finish_non_exhaustive()
    }
}

impl VoiceTls {
    /// A new CA and a server certificate for `host` (and the loopback names).
    pub fn generate(host: IpAddr) -> Result<Self, rcgen::Error> {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
            KeyUsagePurpose,
        };
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "Disco simulator voice CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
        let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        if !host.is_loopback() && !host.is_unspecified() {
            names.push(host.to_string());
        }
        let key = KeyPair::generate()?;
        let cert = CertificateParams::new(names)?.signed_by(&key, &ca)?;
        Ok(Self {
            ca_pem: ca.pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    /// The CA certificate, PEM: what a client's `SSL_CERT_FILE` should hold.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes the CA (`ca.pem`) and the server's certificate and key into `dir`, so another
    /// process can serve with the same identity ([`VoiceTls::load`]).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::write(dir.join("ca.pem"), &self.ca_pem)?;
        std::fs::write(dir.join("server.der"), &self.cert_der)?;
        std::fs::write(dir.join("server.key.der"), &self.key_der)
    }

    /// Reads what [`VoiceTls::save`] wrote.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            ca_pem: std::fs::read_to_string(dir.join("ca.pem"))?,
            cert_der: std::fs::read(dir.join("server.der"))?,
            key_der: std::fs::read(dir.join("server.key.der"))?,
        })
    }

    fn acceptor(&self) -> std::io::Result<TlsAcceptor> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| {
                builder.with_no_client_auth().with_single_cert(
                    vec![CertificateDer::from(self.cert_der.clone())],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
                )
            })
            .map_err(std::io::Error::other)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// What the voice server knows: the grants Discord handed out, the live connections, and what
/// it heard.
#[derive(Debug)]
pub(crate) struct Hub {
    /// `host:port` of the voice gateway, as VOICE_SERVER_UPDATE names it.
    pub(crate) endpoint: String,
    udp: SocketAddr,
    inner: Mutex<HubState>,
}

#[derive(Debug, Default)]
struct HubState {
    /// guild -> the voice session and token handed out with the bot's last join.
    grants: HashMap<u64, Grant>,
    /// guild -> the live voice connection, to end it when the bot leaves.
    links: HashMap<u64, Link>,
    /// ssrc -> the receiving end of a connection.
    receivers: HashMap<u32, Receiver>,
    stats: BTreeMap<u64, VoiceStats>,
    next_ssrc: u32,
}

/// A voice gateway connection, told apart from the one that replaced it.
#[derive(Debug)]
struct Link {
    id: u64,
    stop: CancellationToken,
}

impl HubState {
    /// `link` becomes the guild's connection; the one it replaces is ended.
    fn take_over(&mut self, guild_id: u64, link: Link) {
        if let Some(old) = self.links.insert(guild_id, link) {
            old.stop.cancel();
        }
    }
}

#[derive(Clone, Debug)]
struct Grant {
    channel_id: u64,
    session_id: String,
    token: String,
}

struct Receiver {
    guild_id: u64,
    cipher: Option<Aes256Gcm>,
    decoder: opus2::Decoder,
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
}

impl Hub {
    pub(crate) fn new(endpoint: String, udp: SocketAddr) -> Self {
        Self {
            endpoint,
            udp,
            inner: Mutex::new(HubState {
                next_ssrc: 1000,
                ..HubState::default()
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
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
        if let Some(link) = hub.links.remove(&guild_id) {
            link.stop.cancel();
        }
    }

    pub(crate) fn stats(&self, guild_id: u64) -> VoiceStats {
        self.lock()
            .stats
            .get(&guild_id)
            .cloned()
            .unwrap_or_default()
    }
}

/// Serves the voice gateway (TLS) and the UDP endpoint until `shutdown`.
pub(crate) async fn serve(
    sim: Arc<Sim>,
    gateway: TcpListener,
    udp: UdpSocket,
    tls: &VoiceTls,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tls.acceptor()?;
    tokio::spawn(receive(Arc::clone(&sim), udp, shutdown.clone()));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            accepted = gateway.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "voice gateway accept failed");
                    continue;
                }
            },
        };
        let sim = Arc::clone(&sim);
        let acceptor = acceptor.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(error) = connection(&sim, acceptor, stream, shutdown).await {
                tracing::debug!(%error, "voice gateway connection ended");
            }
        });
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::server::TlsStream<TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a voice gateway connection ends.
enum End {
    Close(u16, &'static str),
    Gone,
}

// tungstenite's handshake callback returns its own (large) error type.
#[allow(clippy::result_large_err)]
async fn connection(
    sim: &Sim,
    acceptor: TlsAcceptor,
    stream: TcpStream,
    shutdown: CancellationToken,
) -> Result<(), BoxError> {
    let stream = acceptor.accept(stream).await?;
    let mut query = String::new();
    let mut ws = tokio_tungstenite::accept_hdr_async(
        stream,
        |request: &tokio_tungstenite::tungstenite::handshake::server::Request, response| {
            query = request.uri().query().unwrap_or_default().to_owned();
            Ok(response)
        },
    )
    .await?;
    let version = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("v="))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(0);
    let mut session = VoiceSession {
        version,
        seq: 0,
        link: sim.conn_id(),
        guild_id: None,
        ssrc: 0,
    };
    let end = if (4..=8).contains(&version) {
        session.run(sim, &mut ws, &shutdown).await
    } else {
        sim.lock().violate(
            "voice gateway",
            format!("asked for voice gateway version {version:?}; Discord serves 4 to 8"),
        );
        End::Close(4020, "Bad request.")
    };
    if let Some(guild_id) = session.guild_id {
        let mut hub = sim.voice.lock();
        // A connection replaced by a newer one (a RESUME, a new IDENTIFY) leaves the call to
        // it; any other end (the client left, the bot left, a rule broken) ends the call.
        let replaced = hub
            .links
            .get(&guild_id)
            .is_some_and(|l| l.id != session.link);
        if !replaced {
            hub.links.remove(&guild_id);
            // A client that went away may RESUME with the same ssrc and key; a connection the
            // server closed may not.
            if matches!(end, End::Close(..)) {
                hub.receivers.remove(&session.ssrc);
            }
        }
        if let Some(stats) = hub.stats.get_mut(&guild_id) {
            stats.connected &= replaced;
            if let End::Close(code, _) = &end {
                stats.close_codes.push(*code);
            }
        }
    }
    if let End::Close(code, reason) = end {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        ws.close(Some(frame)).await.ok();
    }
    Ok(())
}

struct VoiceSession {
    version: u32,
    seq: u64,
    /// This connection's id, to tell it from the one that replaces it.
    link: u64,
    guild_id: Option<u64>,
    ssrc: u32,
}

impl VoiceSession {
    async fn send(&mut self, ws: &mut Ws, op: u8, d: Value) -> Result<(), BoxError> {
        let mut message = json!({"op": op, "d": d});
        if self.version >= 8 {
            self.seq += 1;
            message["seq"] = json!(self.seq);
        }
        ws.send(Message::text(message.to_string())).await?;
        Ok(())
    }

    async fn run(&mut self, sim: &Sim, ws: &mut Ws, shutdown: &CancellationToken) -> End {
        let first = tokio::time::timeout(Duration::from_secs(10), next_json(ws)).await;
        let Ok(Some(first)) = first else {
            return End::Close(4003, "Not authenticated.");
        };
        let link = CancellationToken::new();
        let started = match first.get("op").and_then(Value::as_u64) {
            Some(0) => self.identify(sim, ws, &first["d"], &link).await,
            Some(7) => self.resume(sim, ws, &first["d"], &link).await,
            _ => Err(End::Close(4003, "Not authenticated.")),
        };
        if let Err(end) = started {
            return end;
        }
        let interval = Duration::from_millis(HEARTBEAT_INTERVAL_MS);
        let mut deadline = tokio::time::Instant::now() + interval + interval / 2;
        loop {
            let message = tokio::select! {
                () = shutdown.cancelled() => return End::Close(1001, "Going away."),
                () = link.cancelled() => return End::Close(4014, "Disconnected."),
                () = tokio::time::sleep_until(deadline) => return End::Close(4009, "Session timeout."),
                message = ws.next() => message,
            };
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                // DAVE's binary opcodes: not offered, so nothing to act on.
                Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => return End::Gone,
                Some(Ok(Message::Frame(_))) => continue,
            };
            let Ok(payload) = serde_json::from_str::<Value>(&text) else {
                return End::Close(4002, "Failed to decode payload.");
            };
            let d = &payload["d"];
            let sent = match payload.get("op").and_then(Value::as_u64) {
                Some(1) => match self.select_protocol(sim, d) {
                    Ok(description) => self.send(ws, 4, description).await,
                    Err(end) => return end,
                },
                Some(3) => {
                    deadline = tokio::time::Instant::now() + interval + interval / 2;
                    // v4 sends the nonce itself; v8 sends {t, seq_ack}. The ACK echoes it.
                    let ack = if self.version >= 8 {
                        json!({"t": d.get("t").cloned().unwrap_or(Value::Null)})
                    } else {
                        d.clone()
                    };
                    self.send(ws, 6, ack).await
                }
                Some(5) => Ok(()),
                Some(0 | 7) => return End::Close(4005, "Already authenticated."),
                _ => return End::Close(4001, "Unknown opcode."),
            };
            if sent.is_err() {
                return End::Gone;
            }
        }
    }

    async fn identify(
        &mut self,
        sim: &Sim,
        ws: &mut Ws,
        d: &Value,
        link: &CancellationToken,
    ) -> Result<(), End> {
        let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or_default();
        let guild_id = snowflake(d, "server_id").unwrap_or_default();
        let dave = d
            .get("max_dave_protocol_version")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let ssrc = {
            let mut hub = sim.voice.lock();
            let grant = hub.grants.get(&guild_id).cloned();
            let valid = grant.as_ref().is_some_and(|grant| {
                snowflake(d, "user_id") == Some(sim.world.bot.id)
                    && text("session_id") == grant.session_id
                    && text("token") == grant.token
            });
            let Some(grant) = grant.filter(|_| valid) else {
                drop(hub);
                sim.lock().violate(
                    "voice identify",
                    format!("IDENTIFY for guild {guild_id} without the session and token Discord handed out"),
                );
                return Err(End::Close(4004, "Authentication failed."));
            };
            if dave == 0 {
                drop(hub);
                sim.lock().violate(
                    "dave",
                    format!("IDENTIFY for guild {guild_id} offers no DAVE protocol version; Discord requires end-to-end encryption"),
                );
                return Err(End::Close(4017, "E2EE/DAVE protocol required."));
            }
            hub.next_ssrc += 1;
            let ssrc = hub.next_ssrc;
            // A new session: whatever the guild had before is over.
            hub.receivers.retain(|_, r| r.guild_id != guild_id);
            hub.take_over(
                guild_id,
                Link {
                    id: self.link,
                    stop: link.clone(),
                },
            );
            let decoder = opus2::Decoder::new(48_000, opus2::Channels::Stereo)
                .map_err(|_| End::Close(4000, "Unknown error."))?;
            hub.receivers.insert(
                ssrc,
                Receiver {
                    guild_id,
                    cipher: None,
                    decoder,
                },
            );
            let stats = hub.stats.entry(guild_id).or_default();
            stats.connected = true;
            stats.channel_id = Some(grant.channel_id.to_string());
            stats.connections += 1;
            stats.gateway_version = self.version;
            stats.max_dave_protocol_version = u32::try_from(dave).unwrap_or(u32::MAX);
            ssrc
        };
        self.guild_id = Some(guild_id);
        self.ssrc = ssrc;
        let udp = sim.voice.udp;
        let hello = json!({"heartbeat_interval": HEARTBEAT_INTERVAL_MS});
        let ready = json!({
            "ssrc": ssrc,
            "ip": udp.ip().to_string(),
            "port": udp.port(),
            "modes": [MODE],
            "heartbeat_interval": HEARTBEAT_INTERVAL_MS,
        });
        let sent = async {
            self.send(ws, 8, hello).await?;
            self.send(ws, 2, ready).await
        };
        sent.await.map_err(|_| End::Gone)
    }

    /// RESUME after a dropped connection: the same grant, the same ssrc and key.
    async fn resume(
        &mut self,
        sim: &Sim,
        ws: &mut Ws,
        d: &Value,
        link: &CancellationToken,
    ) -> Result<(), End> {
        let guild_id = snowflake(d, "server_id").unwrap_or_default();
        let text = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or_default();
        {
            let mut hub = sim.voice.lock();
            let valid = hub.grants.get(&guild_id).is_some_and(|grant| {
                text("session_id") == grant.session_id && text("token") == grant.token
            });
            let ssrc = hub
                .receivers
                .iter()
                .find_map(|(ssrc, r)| (r.guild_id == guild_id).then_some(*ssrc));
            let (true, Some(ssrc)) = (valid, ssrc) else {
                return Err(End::Close(4006, "Session no longer valid."));
            };
            hub.take_over(
                guild_id,
                Link {
                    id: self.link,
                    stop: link.clone(),
                },
            );
            let stats = hub.stats.entry(guild_id).or_default();
            stats.connected = true;
            stats.connections += 1;
            self.guild_id = Some(guild_id);
            self.ssrc = ssrc;
        }
        let sent = async {
            self.send(ws, 8, json!({"heartbeat_interval": HEARTBEAT_INTERVAL_MS}))
                .await?;
            self.send(ws, 9, Value::Null).await
        };
        sent.await.map_err(|_| End::Gone)
    }

    /// SELECT_PROTOCOL: UDP with the offered mode; answered with the session description.
    fn select_protocol(&mut self, sim: &Sim, d: &Value) -> Result<Value, End> {
        if d.get("protocol").and_then(Value::as_str) != Some("udp") {
            return Err(End::Close(4012, "Unknown protocol."));
        }
        if d.pointer("/data/mode").and_then(Value::as_str) != Some(MODE) {
            return Err(End::Close(4016, "Unknown encryption mode."));
        }
        let key: [u8; 32] = rand::random();
        let mut hub = sim.voice.lock();
        let Some(receiver) = hub.receivers.get_mut(&self.ssrc) else {
            return Err(End::Close(4006, "Session no longer valid."));
        };
        receiver.cipher = Some(Aes256Gcm::new(&key.into()));
        Ok(json!({
            "mode": MODE,
            "secret_key": key.to_vec(),
            "dave_protocol_version": 0,
        }))
    }
}

/// An id as clients send it: a string, or (some clients) a number.
fn snowflake(d: &Value, key: &str) -> Option<u64> {
    match d.get(key)? {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

async fn next_json(ws: &mut Ws) -> Option<Value> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// The UDP endpoint: IP discovery, then RTP.
async fn receive(sim: Arc<Sim>, udp: UdpSocket, shutdown: CancellationToken) {
    let mut buffer = vec![0_u8; 2048];
    let mut pcm = vec![0_i16; 5760 * 2];
    loop {
        let (len, peer) = tokio::select! {
            () = shutdown.cancelled() => return,
            received = udp.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "voice udp receive failed");
                    continue;
                }
            },
        };
        let packet = &mut buffer[..len];
        if len == IP_DISCOVERY_LEN && packet[..2] == [0, 1] {
            let answer = discovery_answer(packet, peer);
            udp.send_to(&answer, peer).await.ok();
        } else if is_rtp(packet) {
            heard(&sim.voice, packet, &mut pcm);
        }
    }
}

/// Answers an IP discovery request with the address and port the packet came from.
fn discovery_answer(request: &[u8], peer: SocketAddr) -> [u8; IP_DISCOVERY_LEN] {
    let mut answer = [0_u8; IP_DISCOVERY_LEN];
    answer[..2].copy_from_slice(&[0, 2]);
    answer[2..4].copy_from_slice(&70_u16.to_be_bytes());
    answer[4..8].copy_from_slice(&request[4..8]);
    let address = peer.ip().to_string();
    answer[8..8 + address.len()].copy_from_slice(address.as_bytes());
    answer[72..74].copy_from_slice(&peer.port().to_be_bytes());
    answer
}

fn is_rtp(packet: &[u8]) -> bool {
    packet.len() > RTP_HEADER_LEN && packet[0] >> 6 == 2 && packet[1] & 0x7f == 0x78
}

/// Decrypts and decodes one RTP packet and counts it for its guild.
fn heard(hub: &Hub, packet: &mut [u8], pcm: &mut [i16]) {
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let mut state = hub.lock();
    let HubState {
        receivers, stats, ..
    } = &mut *state;
    let Some(receiver) = receivers.get_mut(&ssrc) else {
        return;
    };
    let stats = stats.entry(receiver.guild_id).or_default();
    stats.packets += 1;
    let Some(opus) = receiver
        .cipher
        .as_ref()
        .and_then(|cipher| decrypt(cipher, packet))
    else {
        stats.decrypt_failures += 1;
        return;
    };
    if opus == SILENCE_FRAME {
        stats.audio_seconds += 0.02;
        return;
    }
    match receiver.decoder.decode(opus, pcm, false) {
        Ok(samples) => {
            let frame = &pcm[..samples * 2];
            let seconds = samples as f64 / 48_000.0;
            stats.audio_seconds += seconds;
            if rms(frame) > SILENCE_RMS {
                stats.non_silent_seconds += seconds;
            }
        }
        Err(_) => stats.decode_failures += 1,
    }
}

/// `aead_aes256_gcm_rtpsize`: the RTP header (and the extension's 4-byte header) is the
/// associated data; the payload ends with a 16-byte tag and a 4-byte nonce counter.
fn decrypt<'p>(cipher: &Aes256Gcm, packet: &'p mut [u8]) -> Option<&'p [u8]> {
    let csrcs = usize::from(packet[0] & 0x0f);
    let extended = packet[0] & 0x10 != 0;
    let header_len = RTP_HEADER_LEN + 4 * csrcs + if extended { 4 } else { 0 };
    if packet.len() < header_len + TAG_LEN + NONCE_SUFFIX_LEN {
        return None;
    }
    let extension_words = if extended {
        usize::from(u16::from_be_bytes([
            packet[header_len - 2],
            packet[header_len - 1],
        ]))
    } else {
        0
    };
    let (header, rest) = packet.split_at_mut(header_len);
    let nonce_at = rest.len() - NONCE_SUFFIX_LEN;
    let (body, suffix) = rest.split_at_mut(nonce_at);
    let mut nonce = Nonce::default();
    nonce[..NONCE_SUFFIX_LEN].copy_from_slice(suffix);
    let tag_at = body.len() - TAG_LEN;
    let (body, tag) = body.split_at_mut(tag_at);
    let tag = Tag::clone_from_slice(tag);
    cipher
        .decrypt_in_place_detached(&nonce, header, body, &tag)
        .ok()?;
    let body: &'p [u8] = body;
    body.get(extension_words * 4..)
}

fn rms(samples: &[i16]) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let sum: f64 = samples.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
    (sum / samples.len() as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(cipher: &Aes256Gcm, nonce: u32, opus: &[u8]) -> Vec<u8> {
        let mut header = vec![0x80, 0x78, 0, 1, 0, 0, 3, 192, 0, 0, 0x03, 0xe9];
        let mut body = opus.to_vec();
        let mut full_nonce = Nonce::default();
        full_nonce[..4].copy_from_slice(&nonce.to_be_bytes());
        let tag = cipher
            .encrypt_in_place_detached(&full_nonce, &header, &mut body)
            .expect("encrypts");
        header.extend_from_slice(&body);
        header.extend_from_slice(&tag);
        header.extend_from_slice(&nonce.to_be_bytes());
        header
    }

    #[test]
    fn rtpsize_packets_decrypt_and_forgeries_do_not() {
        let cipher = Aes256Gcm::new(&[7_u8; 32].into());
        let mut good = packet(&cipher, 41, b"opus bytes");
        assert!(is_rtp(&good));
        assert_eq!(decrypt(&cipher, &mut good), Some(&b"opus bytes"[..]));

        let mut tampered = packet(&cipher, 42, b"opus bytes");
        tampered[3] ^= 1; // the header is authenticated
        assert_eq!(decrypt(&cipher, &mut tampered), None);

        let other = Aes256Gcm::new(&[8_u8; 32].into());
        let mut wrong_key = packet(&other, 43, b"opus bytes");
        assert_eq!(decrypt(&cipher, &mut wrong_key), None);

        assert_eq!(decrypt(&cipher, &mut [0x80, 0x78, 0, 0]), None);
    }

    #[test]
    fn discovery_answers_with_the_senders_address() {
        let mut request = [0_u8; IP_DISCOVERY_LEN];
        request[..4].copy_from_slice(&[0, 1, 0, 70]);
        request[4..8].copy_from_slice(&1001_u32.to_be_bytes());
        let answer = discovery_answer(&request, "127.0.0.1:40000".parse().expect("address"));
        assert_eq!(&answer[..8], &[0, 2, 0, 70, 0, 0, 0x03, 0xe9]);
        assert_eq!(&answer[8..18], b"127.0.0.1\0");
        assert_eq!(u16::from_be_bytes([answer[72], answer[73]]), 40000);
    }

    #[test]
    fn loudness_separates_a_tone_from_silence() {
        let tone: Vec<i16> = (0..960)
            .map(|n| (f64::from(n) * 0.1).sin().mul_add(8000.0, 0.0) as i16)
            .collect();
        assert!(rms(&tone) > SILENCE_RMS);
        assert!(rms(&[0; 960]) < SILENCE_RMS);
        assert!(rms(&[3; 960]) < SILENCE_RMS);
    }
}
