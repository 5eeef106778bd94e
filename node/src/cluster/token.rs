//! Join and enrolment tokens: what `shoal cluster add` prints and `shoald --join` or
//! `shoal remote add --token` consume.
//!
//! A token is base64url(JSON) of the name it was issued for, a random secret, the cluster
//! CA's sha256 fingerprint, the members' addresses and the expiry. The cluster keeps only
//! sha256(secret), consumes it once, and refuses it after the expiry.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Errors reading a token.
#[derive(Debug, Error)]
pub enum TokenError {
    #[error("the token is not valid base64: {0}")]
    Base64(base64::DecodeError),
    #[error("the token is damaged: {0}")]
    Json(serde_json::Error),
    #[error("the token is of version {0}; this shoal understands version 1")]
    Version(u32),
    #[error("reading random bytes for a secret: {0}")]
    Random(std::io::Error),
}

/// The decoded contents of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub v: u32,
    /// The member (or client) name it was issued for.
    pub name: String,
    /// The secret, hex; only its hash is stored by the cluster.
    pub secret: String,
    /// sha256 of the cluster CA certificate (DER), hex.
    pub fingerprint: String,
    /// API addresses of the members when it was issued.
    pub addresses: Vec<String>,
    /// Unix milliseconds.
    pub expires_at_ms: i64,
    /// The CA certificate itself, in client tokens (a client has no way to fetch and pin it
    /// the way a joining host does; the fingerprint is checked against it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
}

/// sha256 as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A fresh random secret (32 bytes from the kernel), hex.
pub fn new_secret() -> Result<String, TokenError> {
    let mut buf = [0u8; 32];
    use std::io::Read;
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .map_err(TokenError::Random)?;
    Ok(hex::encode(buf))
}

impl JoinToken {
    /// The hash the cluster stores for this token.
    pub fn secret_hash(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }

    /// The printable form.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("tokens serialize");
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses the printable form.
    pub fn decode(s: &str) -> Result<Self, TokenError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.trim())
            .map_err(TokenError::Base64)?;
        let t: JoinToken = serde_json::from_slice(&bytes).map_err(TokenError::Json)?;
        if t.v != 1 {
            return Err(TokenError::Version(t.v));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let t = JoinToken {
            v: 1,
            name: "b".into(),
            secret: new_secret().unwrap(),
            fingerprint: "ab".repeat(32),
            addresses: vec!["198.18.1.2:8443".into()],
            expires_at_ms: 5,
            ca_pem: None,
        };
        let s = t.encode();
        assert_eq!(JoinToken::decode(&s).unwrap(), t);
        assert_ne!(t.secret_hash(), t.secret);
        assert!(JoinToken::decode("not a token!").is_err());
        let mut bad = s.clone();
        bad.truncate(s.len() / 2);
        assert!(JoinToken::decode(&bad).is_err());
    }
}
