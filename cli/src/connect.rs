//! Opening a mutual-TLS gRPC channel to one member of a remote.
//!
//! Every member answers every call, so the client tries the configured
//! addresses in order and keeps the first that completes a TLS handshake.
//! What was tried is kept in [`Connection`] so that errors can say where the
//! client looked.

use std::error::Error as _;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use shoal_proto::api::cluster_client::ClusterClient;
use shoal_proto::api::images_client::ImagesClient;
use shoal_proto::api::instances_client::InstancesClient;
use shoal_proto::api::operations_client::OperationsClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::SelectedRemote;
use crate::error::{error_chain, looks_like_tls, TLS_HINT};

/// Time allowed for the TCP connect, and again for the TLS handshake, per address.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// An open channel and where it leads.
#[derive(Clone, Debug)]
pub(crate) struct Connection {
    pub(crate) channel: Channel,
    /// The remote's name in the configuration.
    pub(crate) remote: String,
    /// The address that answered.
    pub(crate) address: String,
    /// Every address tried, in order, ending with `address`.
    pub(crate) tried: Vec<String>,
}

/// Largest response the client accepts (a long instance list).
const MAX_RESPONSE: usize = 64 << 20;

impl Connection {
    pub(crate) fn instances(&self) -> InstancesClient<Channel> {
        InstancesClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE)
    }

    pub(crate) fn images(&self) -> ImagesClient<Channel> {
        ImagesClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE)
    }

    pub(crate) fn operations(&self) -> OperationsClient<Channel> {
        OperationsClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE)
    }

    pub(crate) fn cluster(&self) -> ClusterClient<Channel> {
        ClusterClient::new(self.channel.clone()).max_decoding_message_size(MAX_RESPONSE)
    }
}

/// Installs rustls' ring provider as the process default. tonic panics if
/// two providers are compiled in and none is chosen, so this runs first.
pub(crate) fn install_crypto_provider() {
    // An error only means a provider is already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connects to the first member of `sel` that answers.
pub(crate) async fn connect(sel: &SelectedRemote) -> Result<Connection> {
    let tls = tls_config(sel)?;
    connect_any(&sel.name, &sel.remote.addresses, tls, TLS_HINT).await
}

/// Connects without a client certificate, trusting only `ca_pem`: the one
/// call a member serves that way is `Enroll`, which makes the certificate.
pub(crate) async fn connect_enroll(
    remote: &str,
    addresses: &[String],
    ca_pem: &str,
    server_name: &str,
) -> Result<Connection> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(server_name.to_string())
        .timeout(CONNECT_TIMEOUT);
    let hint =
        "the member's certificate is not from the token's CA, or the address is not a Shoal member";
    connect_any(remote, addresses, tls, hint).await
}

/// Tries `addresses` in order and keeps the first that completes a handshake.
async fn connect_any(
    remote: &str,
    addresses: &[String],
    tls: ClientTlsConfig,
    tls_hint: &str,
) -> Result<Connection> {
    let mut tried = Vec::new();
    let mut failures = Vec::new();
    for address in addresses {
        tried.push(address.clone());
        match connect_one(address, tls.clone()).await {
            Ok(channel) => {
                return Ok(Connection {
                    channel,
                    remote: remote.to_string(),
                    address: address.clone(),
                    tried,
                })
            }
            Err(e) => failures.push(format!("{address} ({e})")),
        }
    }
    let hint = if failures.iter().any(|f| looks_like_tls(f)) {
        format!(": {tls_hint}")
    } else {
        String::new()
    };
    bail!(
        "cannot reach any member of remote {remote:?}: tried {}{hint}",
        failures.join(", ")
    )
}

/// Builds the TLS settings from the remote's PEM files.
fn tls_config(sel: &SelectedRemote) -> Result<ClientTlsConfig> {
    let r = &sel.remote;
    let ca = read_pem(&r.ca, "CA certificate")?;
    let cert = read_pem(&r.cert, "client certificate")?;
    check_validity(&cert, &r.cert, &sel.name)?;
    let key = read_pem(&r.key, "client key")?;
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key))
        .domain_name(r.server_name.clone())
        .timeout(CONNECT_TIMEOUT))
}

/// Refuses a client certificate outside its validity period with a message that says what
/// to do, rather than leaving the member to refuse it in the TLS handshake.
fn check_validity(pem: &[u8], path: &std::path::Path, remote: &str) -> Result<()> {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(pem) else {
        return Ok(());
    };
    let Ok(cert) = p.parse_x509() else {
        return Ok(());
    };
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if v.not_after < now {
        bail!(
            "the client certificate {} of remote {remote:?} expired on {}: ask an admin of the cluster for a new one (`shoal cluster trust add NAME` there), then enrol again with `shoal remote add REMOTE ADDRESS --token TOKEN`",
            path.display(),
            crate::output::rfc3339_ms(v.not_after.timestamp() * 1000).unwrap_or_default()
        );
    }
    if now < v.not_before {
        bail!(
            "the client certificate {} of remote {remote:?} is not valid before {}: check this machine's clock",
            path.display(),
            crate::output::rfc3339_ms(v.not_before.timestamp() * 1000).unwrap_or_default()
        );
    }
    Ok(())
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>> {
    let data =
        std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    if !data.windows(11).any(|w| w == b"-----BEGIN ") {
        bail!("{what} {} is not a PEM file", path.display());
    }
    Ok(data)
}

async fn connect_one(address: &str, tls: ClientTlsConfig) -> Result<Channel, String> {
    let uri = endpoint_uri(address);
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|e| format!("invalid address: {}", error_chain(&e)))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_while_idle(true)
        .tls_config(tls)
        .map_err(|e| format!("tls setup: {}", error_chain(&e)))?;
    // The handshake is bounded by the TLS timeout; this is a backstop.
    match tokio::time::timeout(CONNECT_TIMEOUT * 3, endpoint.connect()).await {
        Ok(Ok(ch)) => Ok(ch),
        // Skip tonic's bare "transport error" and say what failed.
        Ok(Err(e)) => Err(e
            .source()
            .map(error_chain)
            .unwrap_or_else(|| error_chain(&e))),
        Err(_) => Err("timed out".to_string()),
    }
}

/// `host:port` becomes `https://host:port`; a full URI is kept.
pub(crate) fn endpoint_uri(address: &str) -> String {
    let a = address.trim();
    if a.contains("://") {
        a.to_string()
    } else {
        format!("https://{a}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Remote;

    #[test]
    fn uri_gets_a_scheme() {
        assert_eq!(endpoint_uri("198.18.0.2:8443"), "https://198.18.0.2:8443");
        assert_eq!(endpoint_uri("[::1]:8443"), "https://[::1]:8443");
        assert_eq!(endpoint_uri("https://h:1"), "https://h:1");
    }

    fn remote(dir: &std::path::Path) -> SelectedRemote {
        SelectedRemote {
            name: "t".into(),
            remote: Remote {
                addresses: vec!["127.0.0.1:1".into()],
                ca: dir.join("ca.crt"),
                cert: dir.join("c.crt"),
                key: dir.join("c.key"),
                server_name: "shoal".into(),
            },
        }
    }

    #[test]
    fn missing_or_bad_pem_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let sel = remote(dir.path());
        let err = tls_config(&sel).unwrap_err().to_string();
        assert!(err.starts_with("cannot read CA certificate "), "{err}");
        std::fs::write(dir.path().join("ca.crt"), "not pem").unwrap();
        let err = tls_config(&sel).unwrap_err().to_string();
        assert!(err.contains("is not a PEM file"), "{err}");
    }

    #[test]
    fn an_expired_client_certificate_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 2);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join("ca.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("c.crt"), cert.pem()).unwrap();
        std::fs::write(dir.path().join("c.key"), key.serialize_pem()).unwrap();
        let err = tls_config(&remote(dir.path())).unwrap_err().to_string();
        assert!(
            err.contains("expired on 2021-01-02") && err.contains("shoal cluster trust add"),
            "{err}"
        );
    }
}
