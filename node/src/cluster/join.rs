//! The joining side: a new host with a token fetches the cluster CA (checked against the
//! token's fingerprint), sends a certificate signing request with the token's secret, and
//! receives its member certificate and Raft node id.

use shoal_proto::internal as ipb;
use std::time::Duration;
use thiserror::Error;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

use super::pki::{self, PkiError};
use super::token::{JoinToken, TokenError};
use super::trust::{self, TrustError};

/// Why joining failed.
#[derive(Debug, Error)]
pub enum JoinError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("the token was issued for '{issued}', not '{name}': create one with `shoal cluster add {name}`")]
    WrongName { issued: String, name: String },
    #[error("the token expired; create a new one with `shoal cluster add {0}`")]
    Expired(String),
    #[error("no member named in the token could be reached or trusted: {0}")]
    Unreachable(String),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("the cluster refused the join: {0}")]
    Refused(String),
}

/// What a successful join hands back.
#[derive(Debug, Clone)]
pub struct Joined {
    pub node_id: u64,
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub addresses: Vec<String>,
}

/// Joins the cluster named by `token` as member `name`, serving at `address`.
pub async fn join(
    token: &str,
    name: &str,
    address: &str,
    failure_domain: &str,
    now_ms: i64,
) -> Result<Joined, JoinError> {
    let t = JoinToken::decode(token)?;
    if t.name != name {
        return Err(JoinError::WrongName {
            issued: t.name,
            name: name.into(),
        });
    }
    if t.expires_at_ms <= now_ms {
        return Err(JoinError::Expired(name.into()));
    }
    let mut errors = Vec::new();
    for addr in &t.addresses {
        let ca_pem = match trust::fetch_ca(addr, &t.fingerprint).await {
            Ok(ca) => ca,
            Err(e @ TrustError::Mismatch { .. }) => return Err(e.into()),
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        let (key_pem, csr_pem) = pki::new_csr(name)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca_pem))
            .domain_name(pki::SERVER_NAME);
        let endpoint = match Endpoint::from_shared(format!("https://{addr}"))
            .and_then(|e| e.tls_config(tls))
        {
            Ok(e) => e.connect_timeout(Duration::from_secs(3)),
            Err(e) => {
                errors.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let channel = match endpoint.connect().await {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("{addr}: {e}"));
                continue;
            }
        };
        let mut client = ipb::membership_client::MembershipClient::new(channel);
        let req = ipb::JoinRequest {
            secret: t.secret.clone(),
            name: name.into(),
            address: address.into(),
            csr_pem,
            failure_domain: failure_domain.into(),
            architecture: std::env::consts::ARCH.into(),
        };
        return match client.join(req).await {
            Ok(r) => {
                let r = r.into_inner();
                Ok(Joined {
                    node_id: r.node_id,
                    ca_pem: r.ca_pem,
                    cert_pem: r.cert_pem,
                    key_pem,
                    addresses: r.addresses,
                })
            }
            Err(s) if s.code() == tonic::Code::Unavailable => {
                errors.push(format!("{addr}: {}", s.message()));
                continue;
            }
            Err(s) => Err(JoinError::Refused(s.message().to_string())),
        };
    }
    Err(JoinError::Unreachable(errors.join("; ")))
}
