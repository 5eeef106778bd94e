//! Trust on first contact, checked by fingerprint: a host joining (or a client enrolling)
//! does not have the cluster CA yet. It opens a TLS connection that records the server's
//! certificate chain without trusting it, takes the CA certificate from the end of the
//! chain, and accepts it only if its sha256 matches the fingerprint in the token. Every
//! later connection verifies normally against that CA.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use thiserror::Error;

use super::token::sha256_hex;

/// Errors fetching the CA.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS handshake with {addr}: {source}")]
    Handshake {
        addr: String,
        source: std::io::Error,
    },
    #[error("{addr} presented no CA certificate")]
    NoChain { addr: String },
    #[error("{addr} presented a CA whose fingerprint {found} does not match the token's {expected}: refusing to trust it")]
    Mismatch {
        addr: String,
        expected: String,
        found: String,
    },
    #[error("timed out talking to {addr}")]
    Timeout { addr: String },
}

#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<Vec<u8>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut c = self.chain.lock().unwrap_or_else(|p| p.into_inner());
        c.push(end_entity.to_vec());
        c.extend(intermediates.iter().map(|i| i.to_vec()));
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Fetches the CA certificate (PEM) that `addr` presents and checks it against
/// `fingerprint` (sha256 of the DER, hex).
pub async fn fetch_ca(addr: &str, fingerprint: &str) -> Result<String, TrustError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let recorder = Arc::new(Recorder {
        chain: Mutex::new(Vec::new()),
        provider: provider.clone(),
    });
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let timeout = Duration::from_secs(5);
    let tcp = tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| TrustError::Timeout { addr: addr.into() })?
        .map_err(|source| TrustError::Connect {
            addr: addr.into(),
            source,
        })?;
    let name = ServerName::try_from("shoal").expect("static name");
    let _tls = tokio::time::timeout(timeout, connector.connect(name, tcp))
        .await
        .map_err(|_| TrustError::Timeout { addr: addr.into() })?
        .map_err(|source| TrustError::Handshake {
            addr: addr.into(),
            source,
        })?;
    let chain = recorder
        .chain
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let ca = chain
        .get(1..)
        .and_then(|rest| rest.last())
        .ok_or_else(|| TrustError::NoChain { addr: addr.into() })?;
    let found = sha256_hex(ca);
    if !found.eq_ignore_ascii_case(fingerprint) {
        return Err(TrustError::Mismatch {
            addr: addr.into(),
            expected: fingerprint.into(),
            found,
        });
    }
    Ok(der_to_pem(ca))
}

/// PEM-encodes a DER certificate.
pub fn der_to_pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        s.push_str(std::str::from_utf8(chunk).expect("base64 is ascii"));
        s.push('\n');
    }
    s.push_str("-----END CERTIFICATE-----\n");
    s
}

/// sha256 (hex) of the first certificate in a PEM string.
pub fn pem_fingerprint(pem: &str) -> Option<String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).ok()?;
    Some(sha256_hex(&p.contents))
}
