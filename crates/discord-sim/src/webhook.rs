//! Interactions delivered to an "Interactions Endpoint URL", signed as Discord signs them:
//! Ed25519 over the timestamp followed by the body, hex in `X-Signature-Ed25519`, the timestamp
//! (Unix seconds) in `X-Signature-Timestamp`. Also the forged requests Discord sends to check
//! that an endpoint refuses them.

use ed25519_dalek::Signer;
use serde::Serialize;

use crate::http::{Answer, post};
use crate::payload::now_ms;
use crate::state::Sim;

fn signature(sim: &Sim, timestamp: &str, body: &[u8]) -> String {
    let mut message = timestamp.as_bytes().to_vec();
    message.extend_from_slice(body);
    hex::encode(sim.signing.sign(&message).to_bytes())
}

/// Delivers `body` signed, as Discord does.
pub(crate) async fn deliver(sim: &Sim, url: &str, body: Vec<u8>) -> Result<Answer, String> {
    let timestamp = (now_ms() / 1000).to_string();
    let headers = [
        ("x-signature-ed25519", signature(sim, &timestamp, &body)),
        ("x-signature-timestamp", timestamp),
    ];
    post(url, &headers, body).await
}

/// An answer, or why there is none, as JSON: `{"status", "body", "elapsed_ms"}` or
/// `{"error"}`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub(crate) enum Outcome {
    Answer(Answer),
    Error { error: String },
}

impl From<Result<Answer, String>> for Outcome {
    fn from(result: Result<Answer, String>) -> Self {
        match result {
            Ok(answer) => Self::Answer(answer),
            Err(error) => Self::Error { error },
        }
    }
}

/// The result of one probe request.
#[derive(Debug, Serialize)]
pub(crate) struct Probe {
    pub(crate) case: &'static str,
    /// Whether a correct endpoint accepts it (only the signed PING).
    pub(crate) should_accept: bool,
    /// What the endpoint answered, or why it could not be asked.
    #[serde(flatten)]
    pub(crate) answer: Outcome,
    /// Whether the endpoint did what it should.
    pub(crate) ok: bool,
}

/// Sends a signed PING and the forgeries Discord uses to test an endpoint; records a
/// violation for every forgery accepted and for a PING not answered with `{"type":1}`.
pub(crate) async fn probe(sim: &Sim, url: &str) -> Vec<Probe> {
    let ping = br#"{"type":1,"id":"1","application_id":"1","token":"probe","version":1}"#.to_vec();
    let now = (now_ms() / 1000).to_string();
    let stale = (now_ms() / 1000 - 15 * 60).to_string();
    let good = signature(sim, &now, &ping);
    let mut tampered_body = ping.clone();
    tampered_body.extend_from_slice(b" ");
    let forged_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let mut message = now.as_bytes().to_vec();
    message.extend_from_slice(&ping);
    let wrong_key = hex::encode(forged_key.sign(&message).to_bytes());

    type Case<'a> = (&'static str, bool, Vec<(&'a str, String)>, Vec<u8>);
    let cases: Vec<Case<'_>> = vec![
        (
            "signed ping",
            true,
            vec![
                ("x-signature-ed25519", good.clone()),
                ("x-signature-timestamp", now.clone()),
            ],
            ping.clone(),
        ),
        (
            "signature by another key",
            false,
            vec![
                ("x-signature-ed25519", wrong_key),
                ("x-signature-timestamp", now.clone()),
            ],
            ping.clone(),
        ),
        (
            "tampered body",
            false,
            vec![
                ("x-signature-ed25519", good.clone()),
                ("x-signature-timestamp", now.clone()),
            ],
            tampered_body,
        ),
        (
            "tampered timestamp",
            false,
            vec![
                ("x-signature-ed25519", good.clone()),
                ("x-signature-timestamp", (now_ms() / 1000 + 1).to_string()),
            ],
            ping.clone(),
        ),
        (
            "stale timestamp",
            false,
            vec![
                ("x-signature-ed25519", signature(sim, &stale, &ping)),
                ("x-signature-timestamp", stale),
            ],
            ping.clone(),
        ),
        (
            "missing signature",
            false,
            vec![("x-signature-timestamp", now.clone())],
            ping.clone(),
        ),
        (
            "missing timestamp",
            false,
            vec![("x-signature-ed25519", good.clone())],
            ping.clone(),
        ),
        (
            "signature not hex",
            false,
            vec![
                ("x-signature-ed25519", "z".repeat(128)),
                ("x-signature-timestamp", now.clone()),
            ],
            ping.clone(),
        ),
        (
            "signature too short",
            false,
            vec![
                ("x-signature-ed25519", good[..64].to_owned()),
                ("x-signature-timestamp", now),
            ],
            ping,
        ),
    ];
    let mut probes = Vec::new();
    for (case, should_accept, headers, body) in cases {
        let answer = post(url, &headers, body).await;
        let ok = match &answer {
            Ok(answer) if should_accept => {
                answer.status == 200
                    && serde_json::from_str::<serde_json::Value>(&answer.body)
                        .is_ok_and(|v| v == serde_json::json!({"type": 1}))
            }
            Ok(answer) => answer.status == 401,
            Err(_) => false,
        };
        if !ok {
            let detail = match &answer {
                Ok(answer) => format!("{case}: answered {} {}", answer.status, answer.body),
                Err(error) => format!("{case}: {error}"),
            };
            sim.lock().violate("interactions endpoint", detail);
        }
        probes.push(Probe {
            case,
            should_accept,
            answer: answer.into(),
            ok,
        });
    }
    probes
}
