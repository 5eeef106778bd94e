//! Enrolling this client with a cluster (`shoal remote add NAME ADDRESS --token T`).
//!
//! ```text
//! token ──decode, expiry, sha256(CA DER) == fingerprint──► trusted CA
//! new key pair + CSR (CN = token name)
//! TLS to ADDRESS trusting only that CA, no client certificate
//!     └─ Cluster.Enroll{secret, name, csr} ──► certificate with the token's role
//! check: certificate is for our key; CA unchanged
//! write <config dir>/<remote>/{ca.crt, client.crt, client.key (0600)}
//! ```
//!
//! The private key never leaves this machine; the token's secret is the only
//! credential sent, and only after the member proved it holds a certificate
//! from the CA the token names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use rcgen::{CertificateParams, DnType, KeyPair};
use shoal_proto::api::EnrollRequest;
use tonic::Code;

use crate::config_edit::write_atomic;
use crate::connect::{connect_enroll, Connection};
use crate::error::status_error;
use crate::token::{check_fingerprint, Token};

/// The DNS name every member certificate carries.
pub(crate) const SERVER_NAME: &str = "shoal";

/// What enrolment returns: the files to write and what the cluster said.
#[derive(Debug)]
pub(crate) struct Credentials {
    pub(crate) ca_pem: String,
    pub(crate) cert_pem: String,
    pub(crate) key_pem: String,
    /// Member addresses the cluster reported.
    pub(crate) addresses: Vec<String>,
    /// The role the certificate carries.
    pub(crate) role: String,
    /// The member that enrolled us.
    pub(crate) address: String,
}

/// Where the credential files of a remote are written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CredentialPaths {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl CredentialPaths {
    /// `<dir>/{ca.crt, client.crt, client.key}`.
    pub(crate) fn under(dir: &Path) -> CredentialPaths {
        CredentialPaths {
            ca: dir.join("ca.crt"),
            cert: dir.join("client.crt"),
            key: dir.join("client.key"),
        }
    }
}

/// A fresh key pair and a CSR naming `name`, as PEM.
pub(crate) fn key_and_csr(name: &str) -> Result<(KeyPair, String)> {
    let key = KeyPair::generate().context("cannot generate a key pair")?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .context("cannot prepare the certificate request")?;
    params.distinguished_name.push(DnType::CommonName, name);
    let csr = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .context("cannot make the certificate request")?;
    Ok((key, csr))
}

/// Refuses a certificate that is not PEM or not for `key`.
pub(crate) fn check_issued(cert_pem: &str, key: &KeyPair) -> Result<()> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| anyhow::anyhow!("the cluster returned a certificate that is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| anyhow::anyhow!("the cluster returned an unreadable certificate: {e}"))?;
    if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        bail!("the cluster returned a certificate for another key");
    }
    Ok(())
}

/// Enrols with the first of `addresses` that answers; `ca_pem` must already be
/// checked against the token.
pub(crate) async fn enroll(
    remote: &str,
    token: &Token,
    ca_pem: &str,
    addresses: &[String],
) -> Result<Credentials> {
    let (key, csr_pem) = key_and_csr(&token.name)?;
    let conn = connect_enroll(remote, addresses, ca_pem, SERVER_NAME).await?;
    let resp = conn
        .cluster()
        .enroll(EnrollRequest {
            secret: token.secret.clone(),
            name: token.name.clone(),
            csr_pem,
        })
        .await
        .map_err(|s| enroll_error(s, &conn))?
        .into_inner();
    check_issued(&resp.cert_pem, &key)?;
    // The cluster may send its CA again; it must be the one the token named.
    if !resp.ca_pem.trim().is_empty() {
        check_fingerprint(&resp.ca_pem, &token.fingerprint)
            .context("the cluster answered with another CA")?;
    }
    Ok(Credentials {
        ca_pem: ca_pem.to_string(),
        cert_pem: resp.cert_pem,
        key_pem: key.serialize_pem(),
        addresses: resp.addresses,
        role: resp.role,
        address: conn.address,
    })
}

/// A refused token is about the token, not the caller's role.
fn enroll_error(status: tonic::Status, conn: &Connection) -> anyhow::Error {
    match status.code() {
        Code::PermissionDenied | Code::Unauthenticated | Code::NotFound => {
            let msg = status.message().trim();
            let msg = if msg.is_empty() {
                "no reason given"
            } else {
                msg
            };
            anyhow::anyhow!(
                "the cluster refused the token: {msg} (tokens are single-use and expire: ask an admin for a new one)"
            )
        }
        _ => status_error(status, conn),
    }
}

/// Writes the credentials into `dir` (created 0700): the key 0600, the rest 0644.
pub(crate) fn write_credentials(dir: &Path, creds: &Credentials) -> Result<CredentialPaths> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let paths = CredentialPaths::under(dir);
    write_atomic(&paths.key, creds.key_pem.as_bytes(), Some(0o600))?;
    write_atomic(&paths.cert, creds.cert_pem.as_bytes(), Some(0o644))?;
    write_atomic(&paths.ca, creds.ca_pem.as_bytes(), Some(0o644))?;
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, IsCa, Issuer};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn csr_names_the_client_and_a_signed_certificate_matches_the_key() {
        let (key, csr) = key_and_csr("alice").unwrap();
        assert!(
            csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"),
            "{csr}"
        );
        let req = rcgen::CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let cn = req.params.distinguished_name.get(&DnType::CommonName);
        assert!(
            matches!(cn, Some(rcgen::DnValue::Utf8String(s)) if s == "alice"),
            "{cn:?}"
        );

        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = Issuer::new(ca, ca_key);
        let cert = req.signed_by(&issuer).unwrap().pem();
        check_issued(&cert, &key).unwrap();
        let (other, _) = key_and_csr("bob").unwrap();
        let err = check_issued(&cert, &other).unwrap_err().to_string();
        assert!(err.contains("another key"), "{err}");
        assert!(check_issued("junk", &key).is_err());
    }

    #[test]
    fn credentials_are_written_with_tight_modes() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("lab");
        let creds = Credentials {
            ca_pem: "ca".into(),
            cert_pem: "cert".into(),
            key_pem: "key".into(),
            addresses: vec![],
            role: "viewer".into(),
            address: "127.0.0.1:1".into(),
        };
        let p = write_credentials(&target, &creds).unwrap();
        assert_eq!(p, CredentialPaths::under(&target));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p.key), 0o600);
        assert_eq!(mode(&p.cert), 0o644);
        assert_eq!(mode(&target), 0o700);
        assert_eq!(std::fs::read_to_string(&p.key).unwrap(), "key");
    }
}
