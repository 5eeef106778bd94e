//! Connections from this member to the others: one reused gRPC channel per address, all
//! with this member's certificate (mutual TLS).

use shoal_proto::internal::membership_client::MembershipClient;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

/// The channel pool.
pub struct Peers {
    tls: ClientTlsConfig,
    channels: Mutex<HashMap<String, Channel>>,
}

impl Peers {
    /// A pool whose connections use `tls` (the cluster CA and this member's identity).
    pub fn new(tls: ClientTlsConfig) -> Self {
        Self {
            tls,
            channels: Mutex::new(HashMap::new()),
        }
    }

    /// The channel to `addr` (host:port), created lazily; it connects on first use and
    /// reconnects by itself.
    pub fn channel(&self, addr: &str) -> Result<Channel, tonic::transport::Error> {
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let ch = Endpoint::from_shared(format!("https://{addr}"))?
            .tls_config(self.tls.clone())?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .connect_lazy();
        map.insert(addr.to_string(), ch.clone());
        Ok(ch)
    }

    /// A client of the internal `Membership` service of the member at `addr`.
    pub fn membership(
        &self,
        addr: &str,
    ) -> Result<MembershipClient<Channel>, tonic::transport::Error> {
        self.channel(addr).map(MembershipClient::new)
    }
}
