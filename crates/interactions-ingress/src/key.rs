//! The application's public key, and Discord's request signatures.

use ed25519_dalek::{Signature, VerifyingKey};

/// The application's Ed25519 public key, which signs every interaction Discord delivers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// Why a public key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not 64 hexadecimal characters.
    #[error("expected 64 hexadecimal characters, got {0} characters")]
    Length(usize),
    /// 64 characters, but not all hexadecimal.
    #[error("expected hexadecimal characters only")]
    NotHex,
    /// Decodes to 32 bytes that are not a point on the curve.
    #[error("not a valid Ed25519 public key")]
    NotAKey,
}

impl PublicKey {
    /// Parses the key as the developer portal shows it: 64 hexadecimal characters.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let text = text.trim();
        if text.len() != 64 {
            return Err(KeyError::Length(text.chars().count()));
        }
        let mut bytes = [0_u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyError::NotHex)?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| KeyError::NotAKey)
    }

    /// The key, for verifying signatures.
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.0
    }

    /// Whether `signature_hex` is this key's Ed25519 signature (strictly verified) of
    /// `timestamp` followed by `body`, as Discord signs interactions. Any malformed input is
    /// simply not a valid signature.
    pub fn verify(&self, signature_hex: &str, timestamp: &str, body: &[u8]) -> bool {
        let mut bytes = [0_u8; 64];
        if signature_hex.len() != 128 || hex::decode_to_slice(signature_hex, &mut bytes).is_err() {
            return false;
        }
        let mut message = Vec::with_capacity(timestamp.len() + body.len());
        message.extend_from_slice(timestamp.as_bytes());
        message.extend_from_slice(body);
        self.0
            .verify_strict(&message, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::{KeyError, PublicKey};

    #[test]
    fn public_keys_are_checked() {
        // RFC 8032, test 1.
        let valid = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let rows = [
            (valid, None),
            ("d75a98", Some(KeyError::Length(6))),
            (&"z".repeat(64), Some(KeyError::NotHex)),
            ("", Some(KeyError::Length(0))),
        ];
        for (text, want) in rows {
            assert_eq!(PublicKey::from_hex(text).err(), want, "{text}");
        }
        assert_eq!(
            PublicKey::from_hex(valid)
                .expect("valid")
                .verifying_key()
                .as_bytes()[0],
            0xd7
        );
    }
}
