//! Shoal's side of `shoal-bench raft`: reads the test bed's CLI configuration, connects to
//! members over the public API with the admin identity (mutual TLS), finds the leader and
//! writes image aliases (one committed Raft entry each, acknowledged once applied).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{WriteFuture, Writer};
use shoal_proto::api::cluster_client::ClusterClient;
use shoal_proto::api::images_client::ImagesClient;
use shoal_proto::api::{ListMembersRequest, Member, SetAliasRequest, ShowClusterRequest};

/// The image every benchmark alias points at (imported by `local-cluster up`).
const IMAGE: &str = "busybox";

/// The remote of a CLI configuration file (`shoal`'s TOML).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Remote {
    pub addresses: Vec<String>,
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub server_name: String,
}

#[derive(Debug, Deserialize)]
struct CliConfig {
    default_remote: Option<String>,
    #[serde(default)]
    remotes: BTreeMap<String, Remote>,
}

/// Picks the default remote (or the only one) of a CLI configuration.
pub fn parse_cli_config(text: &str) -> Result<Remote> {
    let cfg: CliConfig = toml::from_str(text).context("parsing the CLI configuration")?;
    let remote = match &cfg.default_remote {
        Some(name) => cfg
            .remotes
            .get(name)
            .with_context(|| format!("the default remote {name:?} is not defined"))?,
        None if cfg.remotes.len() == 1 => cfg.remotes.values().next().expect("one remote"),
        None => bail!("the CLI configuration names no default remote"),
    };
    if remote.addresses.is_empty() {
        bail!("the remote has no addresses");
    }
    Ok(remote.clone())
}

/// Reads the test bed's CLI configuration.
pub fn read_cli_config(path: &Path) -> Result<Remote> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the CLI configuration {}", path.display()))?;
    parse_cli_config(&text).with_context(|| format!("in {}", path.display()))
}

/// The IP of a `host:port` address, refused unless it is a test-bed (198.18.0.0/15) or
/// loopback address: the benchmark sends traffic nowhere else.
pub fn bed_ip(address: &str) -> Result<IpAddr> {
    let sa: SocketAddr = address
        .trim()
        .parse()
        .with_context(|| format!("address {address:?} is not IP:PORT"))?;
    let ip = sa.ip();
    let ok = match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_loopback() || (o[0] == 198 && (o[1] == 18 || o[1] == 19))
        }
        IpAddr::V6(v6) => v6.is_loopback(),
    };
    if !ok {
        bail!("address {address} is neither a test-bed (198.18.0.0/15) nor a loopback address");
    }
    Ok(ip)
}

/// Connections to members of the cluster with the admin identity.
pub struct Api {
    tls: ClientTlsConfig,
}

impl Api {
    /// Loads the CA and the admin identity named by `remote`.
    pub fn new(remote: &Remote) -> Result<Self> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).with_context(|| format!("reading the {what} {}", p.display()))
        };
        let ca = read(&remote.ca, "CA certificate")?;
        let cert = read(&remote.cert, "admin certificate")?;
        let key = read(&remote.key, "admin key")?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .identity(Identity::from_pem(cert, key))
            .domain_name(remote.server_name.clone());
        Ok(Self { tls })
    }

    /// One HTTP/2 connection to the member at `address` (`host:port`).
    pub async fn connect(&self, address: &str) -> Result<Channel> {
        bed_ip(address)?;
        let ep = Endpoint::from_shared(format!("https://{address}"))
            .context("building the endpoint")?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .tls_config(self.tls.clone())
            .context("tls setup")?;
        ep.connect()
            .await
            .with_context(|| format!("connecting to shoald at {address}"))
    }

    /// The first member of `addresses` that answers.
    pub async fn connect_any(&self, addresses: &[String]) -> Result<Channel> {
        let mut last = None;
        for a in addresses {
            match self.connect(a).await {
                Ok(ch) => return Ok(ch),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no addresses")))
    }
}

/// The members and the leader's name, as a member sees them.
pub async fn members_and_leader(ch: Channel) -> Result<(Vec<Member>, String)> {
    let mut c = ClusterClient::new(ch);
    let show = c
        .show(ShowClusterRequest::default())
        .await
        .context("Cluster.Show")?
        .into_inner();
    let members = c
        .list_members(ListMembersRequest {})
        .await
        .context("Cluster.ListMembers")?
        .into_inner()
        .members;
    if show.leader.is_empty() {
        bail!("the cluster has no leader");
    }
    Ok((members, show.leader))
}

/// Writes aliases through a fixed set of connections to one member.
pub struct AliasWriter {
    conns: Vec<ImagesClient<Channel>>,
}

impl AliasWriter {
    /// Opens `connections` connections to `address`.
    pub async fn open(api: &Api, address: &str, connections: usize) -> Result<Self> {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            conns.push(ImagesClient::new(api.connect(address).await?));
        }
        Ok(Self { conns })
    }
}

impl Writer for AliasWriter {
    fn connections(&self) -> usize {
        self.conns.len()
    }

    fn write(&self, conn: usize, key: String) -> WriteFuture<'_> {
        let mut c = self.conns[conn % self.conns.len()].clone();
        Box::pin(async move {
            c.set_alias(SetAliasRequest {
                alias: key.clone(),
                image: IMAGE.to_string(),
            })
            .await
            .with_context(|| format!("Images.SetAlias {key}"))?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BED: &str = r#"
# written by deploy/local-cluster up
default_remote = "local"

[remotes.local]
addresses = ["198.18.3.2:8443", "198.18.3.3:8443", "198.18.3.4:8443"]
ca = "/tmp/x/bed/hosts/a/tls/ca.crt"
cert = "/tmp/x/bed/hosts/a/tls/admin.crt"
key = "/tmp/x/bed/hosts/a/tls/admin.key"
server_name = "shoal"
"#;

    #[test]
    fn reads_the_test_bed_config() {
        let r = parse_cli_config(BED).unwrap();
        assert_eq!(r.addresses.len(), 3);
        assert_eq!(r.addresses[1], "198.18.3.3:8443");
        assert_eq!(r.key, PathBuf::from("/tmp/x/bed/hosts/a/tls/admin.key"));
        assert_eq!(r.server_name, "shoal");
    }

    #[test]
    fn a_missing_default_remote_is_an_error() {
        let text = BED.replace("default_remote = \"local\"", "default_remote = \"other\"");
        let err = parse_cli_config(&text).unwrap_err().to_string();
        assert!(err.contains("\"other\""), "{err}");
        let none = BED.replace("default_remote = \"local\"", "");
        assert!(parse_cli_config(&none).is_ok());
        assert!(parse_cli_config("default_remote = 3").is_err());
    }

    #[test]
    fn only_test_bed_and_loopback_addresses() {
        assert_eq!(
            bed_ip("198.18.3.2:8443").unwrap(),
            "198.18.3.2".parse::<IpAddr>().unwrap()
        );
        assert!(bed_ip("198.19.0.1:1").is_ok());
        assert!(bed_ip("127.0.0.1:2379").is_ok());
        assert!(bed_ip("[::1]:2379").is_ok());
        assert!(bed_ip("10.0.0.1:8443").is_err());
        assert!(bed_ip("198.20.0.1:8443").is_err());
        assert!(bed_ip("example.com:443").is_err());
    }
}
