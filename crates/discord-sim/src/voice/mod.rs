//! The voice side: a voice gateway on `wss://` and a UDP endpoint, as a voice server is.
//!
//! songbird only dials `wss://`, so the gateway speaks TLS with a certificate from a CA made at
//! start ([`VoiceTls`]); a client trusts it through `SSL_CERT_FILE`. The UDP endpoint answers IP
//! discovery, decrypts RTP (`aead_aes256_gcm_rtpsize`), decodes Opus and counts, per guild, how
//! many packets and how many seconds of non-silent audio arrived (`GET /_sim/voice/{guild}`).
//!
//! Strict where Discord is: IDENTIFY must carry the session and token Discord handed out in
//! VOICE_STATE_UPDATE / VOICE_SERVER_UPDATE (else 4004), must offer DAVE (else 4017), and
//! heartbeats must keep coming (else 4009). Calls are end-to-end encrypted (DAVE v1): the
//! server is the MLS delivery service and external sender, the members in the bot's channel
//! are simulated MLS participants, and what is measured is what they decrypt (`dave`).
//!
//! # Map
//! - `tls`: the CA and certificate; `hub`: grants, connections and what was heard;
//!   `gateway`: the voice websocket; `rtp`: the UDP endpoint; `dave`: the MLS groups.

mod dave;
mod gateway;
pub(crate) mod hub;
mod rtp;
mod tls;

use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::state::Sim;

pub(crate) use hub::Hub;
pub use tls::VoiceTls;

/// The one encryption mode offered: Discord's required AES-GCM mode.
pub(crate) const MODE: &str = "aead_aes256_gcm_rtpsize";
const HEARTBEAT_INTERVAL_MS: u64 = 13_750;

/// Serves the voice gateway (TLS) and the UDP endpoint until `shutdown`.
pub(crate) async fn serve(
    sim: Arc<Sim>,
    gateway: TcpListener,
    udp: UdpSocket,
    tls: &VoiceTls,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = tls.acceptor()?;
    tokio::spawn(rtp::receive(Arc::clone(&sim), udp, shutdown.clone()));
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
            if let Err(error) = gateway::connection(&sim, acceptor, stream, shutdown).await {
                tracing::debug!(%error, "voice gateway connection ended");
            }
        });
    }
}
