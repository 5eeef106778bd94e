//! The cluster's certificates: a CA created at bootstrap, a certificate per member and per
//! client. A certificate's role is its subject's organizational unit (`member`, `admin`,
//! `operator`, `viewer`); its name is the common name.
//!
//! Files in `<data-dir>/tls/`: `ca.crt`, `ca.key`, `server.crt`, `server.key`, and the first
//! admin client identity `admin.crt`, `admin.key`. Keys are written with mode 0600.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// DNS name that every member certificate carries, so a client can reach any member.
pub const SERVER_NAME: &str = "shoal";

/// Errors while creating or reading certificates.
#[derive(Debug, Error)]
pub enum PkiError {
    #[error("generating {what}: {source}")]
    Generate {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parsing {path}: {source}")]
    Parse { path: PathBuf, source: rcgen::Error },
}

/// What a certificate allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Instances and images.
    Operator,
    /// Everything.
    Admin,
    /// Another member of the cluster (internal API only).
    Member,
}

impl Role {
    /// The role's name as written in certificates.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// Parses a role name.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// Paths of this member's TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
}

impl TlsFiles {
    /// The files under `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
        }
    }
}

fn read(path: &Path) -> Result<String, PkiError> {
    fs::read_to_string(path).map_err(|source| PkiError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn write(path: &Path, data: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(data.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

fn gen(what: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { what, source }
}

/// A loaded CA that can sign certificates.
pub struct CertificateAuthority {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Creates a new CA.
    pub fn generate(cluster: &str) -> Result<(Self, String), PkiError> {
        let key = KeyPair::generate().map_err(gen("the CA key"))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, format!("shoal CA {cluster}"));
        dn.push(DnType::OrganizationName, "shoal");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .map_err(gen("the CA certificate"))?;
        let key_pem = key.serialize_pem();
        Ok((
            Self {
                cert_pem: cert.pem(),
                issuer: Issuer::new(params, key),
            },
            key_pem,
        ))
    }

    /// Loads the CA from PEM files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, PkiError> {
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let parse = |p: &Path| {
            let p = p.to_path_buf();
            move |source| PkiError::Parse { path: p, source }
        };
        let key = KeyPair::from_pem(&key_pem).map_err(parse(key))?;
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(parse(cert))?;
        Ok(Self { cert_pem, issuer })
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Loads the CA from PEM strings (the replicated cluster CA).
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let parse = |source| PkiError::Parse {
            path: PathBuf::from("<cluster state>"),
            source,
        };
        let key = KeyPair::from_pem(key_pem).map_err(parse)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key).map_err(parse)?;
        Ok(Self {
            cert_pem: cert_pem.to_string(),
            issuer,
        })
    }

    /// Issues a certificate for `name` with `role`. Member certificates carry the server
    /// name and the given addresses as subject alternative names. Returns (cert, key) PEM.
    pub fn issue(
        &self,
        name: &str,
        role: Role,
        addresses: &[String],
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate().map_err(gen("a key"))?;
        let params = leaf_params(name, role, addresses)?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(gen("a certificate"))?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Signs a certificate signing request. Only the CSR's public key is used: the subject,
    /// role and names are ours. Returns the certificate PEM.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        name: &str,
        role: Role,
        addresses: &[String],
    ) -> Result<String, PkiError> {
        let mut csr =
            rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(|source| {
                PkiError::Parse {
                    path: PathBuf::from("<certificate signing request>"),
                    source,
                }
            })?;
        csr.params = leaf_params(name, role, addresses)?;
        let cert = csr.signed_by(&self.issuer).map_err(gen("a certificate"))?;
        Ok(cert.pem())
    }
}

/// A new key and a certificate signing request for it: (key PEM, CSR PEM).
pub fn new_csr(name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate().map_err(gen("a key"))?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    let csr = params
        .serialize_request(&key)
        .map_err(gen("a certificate signing request"))?;
    let pem = csr.pem().map_err(gen("a certificate signing request"))?;
    Ok((key.serialize_pem(), pem))
}

fn leaf_params(
    name: &str,
    role: Role,
    addresses: &[String],
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "shoal");
    dn.push(DnType::OrganizationalUnitName, role.as_str());
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if role == Role::Member {
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let mut sans = vec![SERVER_NAME.to_string(), name.to_string()];
        sans.extend(addresses.iter().cloned());
        for s in sans {
            let san = match s.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(s.try_into().map_err(gen("a DNS name"))?),
            };
            params.subject_alt_names.push(san);
        }
    }
    Ok(params)
}

/// Makes sure `dir` holds a CA, this member's certificate and an admin identity, creating
/// what is missing. Returns the paths.
pub fn ensure(dir: &Path, node: &str, addresses: &[String]) -> Result<TlsFiles, PkiError> {
    fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let files = TlsFiles::in_dir(dir);
    let ca = if files.ca_cert.exists() && files.ca_key.exists() {
        CertificateAuthority::load(&files.ca_cert, &files.ca_key)?
    } else {
        let (ca, key_pem) = CertificateAuthority::generate(node)?;
        write(&files.ca_key, &key_pem, 0o600)?;
        write(&files.ca_cert, ca.cert_pem(), 0o644)?;
        ca
    };
    if !(files.server_cert.exists() && files.server_key.exists()) {
        let (cert, key) = ca.issue(node, Role::Member, addresses)?;
        write(&files.server_key, &key, 0o600)?;
        write(&files.server_cert, &cert, 0o644)?;
    }
    if !(files.admin_cert.exists() && files.admin_key.exists()) {
        let (cert, key) = ca.issue("admin", Role::Admin, &[])?;
        write(&files.admin_key, &key, 0o600)?;
        write(&files.admin_cert, &cert, 0o644)?;
    }
    Ok(files)
}

/// The (name, role) a peer certificate (DER) carries, if it names a known role.
pub fn identity_of(cert_der: &[u8]) -> Option<(String, Role)> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der).ok()?;
    let subject = cert.subject();
    let cn = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let ou = subject
        .iter_organizational_unit()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    Some((cn, Role::parse(&ou)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ensure_creates_once_and_roles_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let files = ensure(dir.path(), "a", &["198.18.0.2".into()]).unwrap();
        let ca1 = fs::read(&files.ca_cert).unwrap();
        ensure(dir.path(), "a", &[]).unwrap();
        assert_eq!(
            ca1,
            fs::read(&files.ca_cert).unwrap(),
            "CA must not be regenerated"
        );
        let mode = fs::metadata(&files.ca_key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let pem = fs::read_to_string(&files.admin_cert).unwrap();
        let der = pem_to_der(&pem);
        assert_eq!(identity_of(&der), Some(("admin".into(), Role::Admin)));
        let pem = fs::read_to_string(&files.server_cert).unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&pem)),
            Some(("a".into(), Role::Member))
        );
    }

    #[test]
    fn csr_signing_sets_our_subject_and_role() {
        let (ca, _) = CertificateAuthority::generate("t").unwrap();
        let (_key, csr) = new_csr("b").unwrap();
        let cert = ca
            .sign_csr(&csr, "b", Role::Member, &["198.18.1.3".into()])
            .unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&cert)),
            Some(("b".into(), Role::Member))
        );
        let cert = ca.sign_csr(&csr, "alice", Role::Viewer, &[]).unwrap();
        assert_eq!(
            identity_of(&pem_to_der(&cert)),
            Some(("alice".into(), Role::Viewer))
        );
        assert!(ca.sign_csr("garbage", "x", Role::Admin, &[]).is_err());
    }

    fn pem_to_der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }
}
