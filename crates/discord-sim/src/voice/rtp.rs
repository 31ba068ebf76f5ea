//! The UDP endpoint: IP discovery, then RTP, decrypted (`aead_aes256_gcm_rtpsize`), decoded
//! (Opus) and measured, per guild.

use std::net::SocketAddr;
use std::sync::Arc;

use aes_gcm::aead::AeadInPlace;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::dave::Heard;
use super::hub::HubState;
use crate::state::Sim;

/// A decoded 20 ms frame counts as heard when its RMS is above this (about -50 dBFS).
const SILENCE_RMS: f64 = 100.0;
/// Opus's "silence" frame, which clients send when they stop speaking.
const SILENCE_FRAME: [u8; 3] = [0xf8, 0xff, 0xfe];
const IP_DISCOVERY_LEN: usize = 74;
const RTP_HEADER_LEN: usize = 12;
const TAG_LEN: usize = 16;
const NONCE_SUFFIX_LEN: usize = 4;

/// The UDP endpoint: IP discovery, then RTP.
pub(super) async fn receive(sim: Arc<Sim>, udp: UdpSocket, shutdown: CancellationToken) {
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
        } else if is_rtp(packet)
            && let Some(broken) = heard(&sim, packet, &mut pcm)
        {
            sim.lock().violate("dave", broken);
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

/// Decrypts (transport, then end-to-end) and decodes one RTP packet and counts it for its
/// guild; the rule it broke, if any.
fn heard(sim: &Sim, packet: &mut [u8], pcm: &mut [i16]) -> Option<String> {
    let ssrc = u32::from_be_bytes([packet[8], packet[9], packet[10], packet[11]]);
    let mut state = sim.voice.lock();
    let HubState {
        receivers,
        stats,
        calls,
        ..
    } = &mut *state;
    let receiver = receivers.get_mut(&ssrc)?;
    let stats = stats.entry(receiver.guild_id).or_default();
    stats.packets += 1;
    let Some(frame) = receiver
        .cipher
        .as_ref()
        .and_then(|cipher| decrypt(cipher, packet))
    else {
        stats.decrypt_failures += 1;
        return None;
    };
    let decrypted;
    let opus = match calls.get_mut(&receiver.guild_id) {
        None => frame,
        Some(call) => match call.frame(frame, &mut stats.dave) {
            Heard::Clear => frame,
            Heard::Decrypted(opus) => {
                decrypted = opus;
                &decrypted
            }
            Heard::Lost => return None,
            Heard::Violation(rule) => return Some(format!("guild {}: {rule}", receiver.guild_id)),
        },
    };
    if opus == SILENCE_FRAME {
        stats.audio_seconds += 0.02;
        return None;
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
    None
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
    use aes_gcm::aead::KeyInit;

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
