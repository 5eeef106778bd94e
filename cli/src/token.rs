//! Reading the tokens `shoal cluster add` and `shoal cluster trust add` print.
//!
//! A token is `base64url_nopad(JSON)` of
//! `{v, name, secret, fingerprint, addresses, expires_at_ms, ca_pem?}`. A client
//! enrolling with one trusts nothing it has not checked: the CA certificate the
//! token carries must hash (sha256 of its DER) to the token's fingerprint, and
//! the token must not have expired, before any connection is made.

use base64::Engine;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::output::rfc3339_ms;

/// Why a token cannot be used.
#[derive(Debug, Error)]
pub(crate) enum TokenError {
    #[error("the token is damaged: it is not base64url text ({0}); copy it again, whole")]
    Base64(base64::DecodeError),
    #[error("the token is damaged: {0}; copy it again, whole")]
    Json(serde_json::Error),
    #[error("the token is of version {0}; this shoal understands version 1")]
    Version(u32),
    #[error("the token is damaged: its {field} is not hex")]
    NotHex { field: &'static str },
    #[error("the token for {name:?} expired at {at}: ask an admin for a new one")]
    Expired { name: String, at: String },
    #[error("the token carries no CA certificate: it is a host join token (for `shoald --join`), not a client token (from `shoal cluster trust add`)")]
    NoCa,
    #[error("the CA certificate in the token is not a PEM certificate")]
    CaPem,
    #[error("the CA certificate does not match the token's fingerprint (token {expected}, certificate {actual}): refusing to trust it")]
    Fingerprint { expected: String, actual: String },
}

/// The decoded contents of a token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Token {
    pub(crate) v: u32,
    /// The host or client name it was issued for.
    pub(crate) name: String,
    /// The one-time secret, hex.
    pub(crate) secret: String,
    /// sha256 of the cluster CA certificate (DER), hex.
    pub(crate) fingerprint: String,
    /// API addresses of the members when it was issued.
    #[serde(default)]
    pub(crate) addresses: Vec<String>,
    /// Unix milliseconds.
    pub(crate) expires_at_ms: i64,
    /// The cluster CA certificate; client tokens carry it.
    #[serde(default)]
    pub(crate) ca_pem: Option<String>,
}

impl Token {
    /// Parses the printed form; whitespace anywhere (a wrapped paste) is ignored.
    pub(crate) fn decode(text: &str) -> Result<Token, TokenError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(compact.trim_end_matches('='))
            .map_err(TokenError::Base64)?;
        let t: Token = serde_json::from_slice(&bytes).map_err(TokenError::Json)?;
        if t.v != 1 {
            return Err(TokenError::Version(t.v));
        }
        if t.secret.is_empty() || hex::decode(&t.secret).is_err() {
            return Err(TokenError::NotHex { field: "secret" });
        }
        if t.fingerprint.len() != 64 || hex::decode(&t.fingerprint).is_err() {
            return Err(TokenError::NotHex {
                field: "fingerprint",
            });
        }
        Ok(t)
    }

    /// Refuses a token whose expiry is not after `now_ms`.
    pub(crate) fn check_expiry(&self, now_ms: i64) -> Result<(), TokenError> {
        if self.expires_at_ms <= now_ms {
            return Err(TokenError::Expired {
                name: self.name.clone(),
                at: rfc3339_ms(self.expires_at_ms)
                    .unwrap_or_else(|| self.expires_at_ms.to_string()),
            });
        }
        Ok(())
    }

    /// The token's CA certificate, once it is checked against the fingerprint.
    pub(crate) fn verified_ca(&self) -> Result<&str, TokenError> {
        let pem = self.ca_pem.as_deref().filter(|p| !p.trim().is_empty());
        let pem = pem.ok_or(TokenError::NoCa)?;
        check_fingerprint(pem, &self.fingerprint)?;
        Ok(pem)
    }
}

/// sha256 (hex) of the DER of the first certificate in `pem`.
pub(crate) fn fingerprint_of_pem(pem: &str) -> Result<String, TokenError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|_| TokenError::CaPem)?;
    Ok(hex::encode(Sha256::digest(der.as_ref())))
}

/// Refuses `pem` unless its fingerprint is `expected`.
pub(crate) fn check_fingerprint(pem: &str, expected: &str) -> Result<(), TokenError> {
    let actual = fingerprint_of_pem(pem)?;
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(TokenError::Fingerprint {
            expected: expected.to_string(),
            actual,
        });
    }
    Ok(())
}

/// The clock, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A self-signed CA certificate, PEM.
    pub(crate) fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.self_signed(&key).unwrap().pem()
    }

    /// Encodes a token as the server does.
    pub(crate) fn encode(v: &serde_json::Value) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    pub(crate) fn client_token(ca: &str, expires_at_ms: i64) -> serde_json::Value {
        serde_json::json!({
            "v": 1,
            "name": "alice",
            "secret": "00ff".repeat(8),
            "fingerprint": fingerprint_of_pem(ca).unwrap(),
            "addresses": ["198.18.0.2:8443", "198.18.0.3:8443"],
            "expires_at_ms": expires_at_ms,
            "ca_pem": ca,
        })
    }

    #[test]
    fn good_token_decodes_and_verifies() {
        let ca = ca_pem();
        let text = encode(&client_token(&ca, 2_000));
        // A paste wrapped over lines still reads.
        let wrapped = format!("{}\n  {}\n", &text[..10], &text[10..]);
        let t = Token::decode(&wrapped).unwrap();
        assert_eq!(t.name, "alice");
        assert_eq!(t.addresses, ["198.18.0.2:8443", "198.18.0.3:8443"]);
        t.check_expiry(1_999).unwrap();
        assert_eq!(t.verified_ca().unwrap(), ca);
        // Unknown fields from a newer server are ignored; a missing ca_pem is a member token.
        let mut v = client_token(&ca, 2_000);
        v["extra"] = serde_json::json!(1);
        v.as_object_mut().unwrap().remove("ca_pem");
        let t = Token::decode(&encode(&v)).unwrap();
        assert!(matches!(t.verified_ca(), Err(TokenError::NoCa)));
        v["ca_pem"] = serde_json::Value::Null;
        assert!(matches!(
            Token::decode(&encode(&v)).unwrap().verified_ca(),
            Err(TokenError::NoCa)
        ));
    }

    #[test]
    fn damaged_tokens_are_refused() {
        let ca = ca_pem();
        let text = encode(&client_token(&ca, 2_000));
        let err = Token::decode("not a token!").unwrap_err();
        assert!(matches!(err, TokenError::Base64(_)), "{err}");
        assert!(err.to_string().starts_with("the token is damaged"), "{err}");
        let err = Token::decode(&text[..text.len() / 2]).unwrap_err();
        assert!(err.to_string().starts_with("the token is damaged"), "{err}");
        assert!(matches!(
            Token::decode("").unwrap_err(),
            TokenError::Json(_)
        ));
        let mut v = client_token(&ca, 2_000);
        v["v"] = serde_json::json!(2);
        assert!(matches!(
            Token::decode(&encode(&v)).unwrap_err(),
            TokenError::Version(2)
        ));
        let mut v = client_token(&ca, 2_000);
        v["secret"] = serde_json::json!("xyz");
        assert!(matches!(
            Token::decode(&encode(&v)).unwrap_err(),
            TokenError::NotHex { field: "secret" }
        ));
        let mut v = client_token(&ca, 2_000);
        v["fingerprint"] = serde_json::json!("abcd");
        assert!(matches!(
            Token::decode(&encode(&v)).unwrap_err(),
            TokenError::NotHex {
                field: "fingerprint"
            }
        ));
    }

    #[test]
    fn expired_token_is_refused() {
        let ca = ca_pem();
        let t = Token::decode(&encode(&client_token(&ca, 1_709_210_096_789))).unwrap();
        let err = t.check_expiry(1_709_210_096_789).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the token for \"alice\" expired at 2024-02-29T12:34:56Z: ask an admin for a new one"
        );
        assert!(t.check_expiry(now_ms()).is_err());
    }

    #[test]
    fn fingerprint_mismatch_is_refused() {
        let ca = ca_pem();
        let other = ca_pem();
        let mut v = client_token(&ca, 2_000);
        v["ca_pem"] = serde_json::json!(other);
        let t = Token::decode(&encode(&v)).unwrap();
        let err = t.verified_ca().unwrap_err();
        assert!(matches!(err, TokenError::Fingerprint { .. }), "{err}");
        assert!(err.to_string().contains("refusing to trust it"), "{err}");
        v["ca_pem"] = serde_json::json!("garbage");
        let t = Token::decode(&encode(&v)).unwrap();
        assert!(matches!(t.verified_ca(), Err(TokenError::CaPem)));
        // Upper-case hex in the token is the same fingerprint.
        let mut v = client_token(&ca, 2_000);
        v["fingerprint"] = serde_json::json!(fingerprint_of_pem(&ca).unwrap().to_uppercase());
        Token::decode(&encode(&v)).unwrap().verified_ca().unwrap();
    }
}
