//! etcd's side of `shoal-bench raft`: Debian's etcd-server as 3 members in the test bed's
//! host namespaces (same kind of isolation, same disk as Shoal's data), driven over etcd's
//! own gRPC API (a minimal copy of its proto in tests/proto/etcd). The members are children
//! of the benchmark; dropping [`EtcdCluster`] stops them and removes their data.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};

use super::{WriteFuture, Writer};

/// The wire types and clients of etcd's v3 API that the benchmark uses.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::maintenance_client::MaintenanceClient;
use pb::{PutRequest, StatusRequest};

const ETCD: &str = "/usr/bin/etcd";
const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;
/// The value of every put: as long as Shoal's image name.
const VALUE: &[u8] = b"busybox";

/// Installs Debian's etcd-server and etcd-client when `/usr/bin/etcd` is missing.
pub fn ensure_installed() -> Result<()> {
    if Path::new(ETCD).exists() {
        return Ok(());
    }
    eprintln!("shoal-bench: installing Debian's etcd-server and etcd-client");
    let apt = |args: &[&str]| -> Result<()> {
        let st = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .context("running apt-get")?;
        if !st.success() {
            bail!("apt-get {} failed ({st})", args.join(" "));
        }
        Ok(())
    };
    apt(&["update", "-qq"])?;
    apt(&["install", "-y", "-qq", "etcd-server", "etcd-client"])?;
    if !Path::new(ETCD).exists() {
        bail!("{ETCD} is still missing after installing etcd-server");
    }
    Ok(())
}

/// Where one member runs: a test-bed host's network namespace and address.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub netns: PathBuf,
    pub ip: IpAddr,
}

/// A running 3-member etcd cluster; stopped and deleted on drop.
pub struct EtcdCluster {
    children: Vec<(String, Child)>,
    hosts: Vec<Host>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts one member per host, data directories in a fresh directory under the
    /// temporary directory (the file system the test bed lives on).
    pub fn start(hosts: &[Host]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-bench-etcd-")
            .tempdir()
            .context("creating the etcd directory")?;
        let initial = hosts
            .iter()
            .map(|h| format!("{}=http://{}:{PEER_PORT}", h.name, h.ip))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("shoal-bench-{}", std::process::id());
        let mut me = Self {
            children: Vec::new(),
            hosts: hosts.to_vec(),
            dir,
        };
        for h in hosts {
            if !h.netns.exists() {
                bail!("network namespace {} is missing", h.netns.display());
            }
            let log_path = me.log_path(&h.name);
            let log = File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let peer = format!("http://{}:{PEER_PORT}", h.ip);
            let client = format!("http://{}:{CLIENT_PORT}", h.ip);
            let child = Command::new("nsenter")
                .arg(format!("--net={}", h.netns.display()))
                .arg("--")
                .arg(ETCD)
                .arg("--name")
                .arg(&h.name)
                .arg("--data-dir")
                .arg(me.dir.path().join(&h.name))
                .args(["--listen-peer-urls", &peer])
                .args(["--initial-advertise-peer-urls", &peer])
                .args(["--listen-client-urls", &client])
                .args(["--advertise-client-urls", &client])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-token", &token])
                .args(["--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .args(["--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().context("duplicating the log file")?)
                .stderr(log)
                // Its own process group: Ctrl-C reaches only the benchmark, which stops it.
                .process_group(0)
                .spawn()
                .context("starting etcd with nsenter")?;
            me.children.push((h.name.clone(), child));
        }
        Ok(me)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("{name}.log"))
    }

    /// Fails with the member's log if any member has exited.
    fn check_alive(&mut self) -> Result<()> {
        for i in 0..self.children.len() {
            let (name, child) = &mut self.children[i];
            if let Some(st) = child.try_wait().context("checking etcd")? {
                let name = name.clone();
                let log = std::fs::read_to_string(self.log_path(&name)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                bail!("etcd member {name} exited ({st}):\n{}", tail.join("\n"));
            }
        }
        Ok(())
    }

    /// Waits until every member answers and they agree on a leader; returns its address.
    pub async fn wait_leader(&mut self, limit: Duration) -> Result<IpAddr> {
        let t0 = Instant::now();
        loop {
            self.check_alive()?;
            match self.leader().await {
                Ok(Some(ip)) => return Ok(ip),
                Ok(None) | Err(_) if t0.elapsed() < limit => {}
                Ok(None) => bail!("etcd elected no leader within {limit:?}"),
                Err(e) => return Err(e.context(format!("etcd not healthy within {limit:?}"))),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader every member reports, if they all answer and agree.
    async fn leader(&self) -> Result<Option<IpAddr>> {
        let mut leader = None;
        let mut at = None;
        for h in &self.hosts {
            let ch = connect(h.ip).await?;
            let st = MaintenanceClient::new(ch)
                .status(StatusRequest {})
                .await
                .with_context(|| format!("etcd Status of {}", h.name))?
                .into_inner();
            if st.leader == 0 || leader.is_some_and(|l| l != st.leader) {
                return Ok(None);
            }
            leader = Some(st.leader);
            if st.header.map(|hd| hd.member_id) == Some(st.leader) {
                at = Some(h.ip);
            }
        }
        Ok(at)
    }

    fn stop(&mut self) {
        use nix::sys::signal::{kill, Signal};
        use nix::unistd::Pid;
        for (_, child) in &mut self.children {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        }
        // A leader stopping while its peers stop too waits for a leadership transfer that
        // cannot happen; its data is thrown away, so it gets SIGKILL after a short grace.
        let deadline = Instant::now() + Duration::from_secs(2);
        for (_, child) in &mut self.children {
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        self.stop();
        // `dir` (the data directories and logs) is removed when the field drops.
    }
}

/// One plaintext HTTP/2 connection to the member at `ip`.
pub async fn connect(ip: IpAddr) -> Result<Channel> {
    let uri = match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{CLIENT_PORT}"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{CLIENT_PORT}"),
    };
    Endpoint::from_shared(uri.clone())
        .context("building the endpoint")?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("connecting to etcd at {uri}"))
}

/// Puts keys through a fixed set of connections to one member.
pub struct PutWriter {
    conns: Vec<KvClient<Channel>>,
}

impl PutWriter {
    /// Opens `connections` connections to the member at `ip`.
    pub async fn open(ip: IpAddr, connections: usize) -> Result<Self> {
        let mut conns = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            conns.push(KvClient::new(connect(ip).await?));
        }
        Ok(Self { conns })
    }
}

impl Writer for PutWriter {
    fn connections(&self) -> usize {
        self.conns.len()
    }

    fn write(&self, conn: usize, key: String) -> WriteFuture<'_> {
        let mut c = self.conns[conn % self.conns.len()].clone();
        Box::pin(async move {
            c.put(PutRequest {
                key: key.clone().into_bytes(),
                value: VALUE.to_vec(),
                ..Default::default()
            })
            .await
            .with_context(|| format!("etcd Put {key}"))?;
            Ok(())
        })
    }
}
