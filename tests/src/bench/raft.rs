//! `shoal-bench raft`: durable writes of cluster-state changes on a 3-voter Shoal cluster of
//! the test bed (image aliases through the public API, each one committed Raft entry,
//! acknowledged once applied), beside 3 etcd members in the same host namespaces on the same
//! disk (puts over etcd's gRPC API), in one invocation: one sequential client, then many
//! concurrent ones, with writes/s, median and p99 latency and the ratio Shoal/etcd.
//!
//! Keys cycle through a small set (`bench-0` .. `bench-63`, all made during the warm-up) on
//! both systems: every write is still a new committed entry, but Shoal's SetAlias reply (the
//! image with all its aliases) and both state sizes stay constant, so figures do not drift
//! with N.

use anyhow::{bail, Context, Result};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::testbed::{bin_dir, is_root, Testbed};
use etcd::{EtcdCluster, Host, PutWriter};
use shoal::{AliasWriter, Api};

#[path = "raft_etcd.rs"]
pub mod etcd;
#[path = "raft_shoal.rs"]
pub mod shoal;

/// Distinct keys each workload cycles through.
const KEYS: usize = 64;
/// Unmeasured writes before each system's runs (connections, caches, every key made once).
const WARMUP: usize = KEYS;
/// Connections (HTTP/2) the concurrent clients share.
const CONNECTIONS: usize = 4;
/// Writes of the extra sequential run through a follower (at most).
const FOLLOWER_WRITES: usize = 500;

/// One durable write, boxed so writers can be trait objects shared by tasks.
pub type WriteFuture<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Something that makes one durable write of `key`.
pub trait Writer: Send + Sync + 'static {
    /// Connections it holds; client `c` uses connection `c % connections()`.
    fn connections(&self) -> usize;
    /// Writes `key` through connection `conn`; resolves once the write is acknowledged.
    fn write(&self, conn: usize, key: String) -> WriteFuture<'_>;
}

/// Settings of one benchmark run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Writes per workload.
    pub writes: usize,
    /// Concurrent clients of the second workload.
    pub clients: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            writes: 2000,
            clients: 32,
        }
    }
}

/// Throughput and latency of one workload.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub system: &'static str,
    pub workload: String,
    pub writes: usize,
    pub elapsed: Duration,
    pub median: Duration,
    pub p99: Duration,
}

impl Outcome {
    fn new(system: &'static str, workload: String, elapsed: Duration, lat: &[Duration]) -> Self {
        Self {
            system,
            workload,
            writes: lat.len(),
            elapsed,
            median: percentile(lat, 0.5),
            p99: percentile(lat, 0.99),
        }
    }

    /// Acknowledged writes per second.
    pub fn rate(&self) -> f64 {
        self.writes as f64 / self.elapsed.as_secs_f64()
    }
}

/// The `q` quantile of `xs` (nearest rank; zero for an empty sample).
pub fn percentile(xs: &[Duration], q: f64) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    let mut v = xs.to_vec();
    v.sort();
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn key(i: usize) -> String {
    format!("bench-{}", i % KEYS)
}

/// `n` writes one after the other from one client.
async fn sequential(w: &dyn Writer, n: usize) -> Result<(Duration, Vec<Duration>)> {
    let mut lat = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        w.write(0, key(i)).await?;
        lat.push(t.elapsed());
    }
    Ok((t0.elapsed(), lat))
}

/// `n` writes in total from `clients` concurrent clients, each waiting for its last write.
async fn concurrent(
    w: Arc<dyn Writer>,
    n: usize,
    clients: usize,
) -> Result<(Duration, Vec<Duration>)> {
    let next = Arc::new(AtomicUsize::new(0));
    let t0 = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for c in 0..clients {
        let (w, next) = (w.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(lat);
                }
                let t = Instant::now();
                w.write(c % w.connections(), key(i)).await?;
                lat.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await.context("client task")??);
    }
    Ok((t0.elapsed(), all))
}

/// Runs both workloads (and `extra`, a sequential run through another writer) on one system.
async fn workloads(
    system: &'static str,
    w: Arc<dyn Writer>,
    opts: Options,
    out: &mut Vec<Outcome>,
) -> Result<()> {
    sequential(w.as_ref(), WARMUP).await?;
    eprintln!("shoal-bench: {system}: {} sequential writes", opts.writes);
    let (el, lat) = sequential(w.as_ref(), opts.writes).await?;
    out.push(Outcome::new(system, "1 client, leader".into(), el, &lat));
    eprintln!(
        "shoal-bench: {system}: {} writes from {} clients",
        opts.writes, opts.clients
    );
    let (el, lat) = concurrent(w, opts.writes, opts.clients).await?;
    let name = format!("{} clients, leader", opts.clients);
    out.push(Outcome::new(system, name, el, &lat));
    Ok(())
}

async fn measure_shoal(tb: &Testbed, opts: Options, out: &mut Vec<Outcome>) -> Result<Vec<Host>> {
    let remote = shoal::read_cli_config(tb.config())?;
    let api = Api::new(&remote)?;
    let (members, leader) = shoal::members_and_leader(api.connect_any(&remote.addresses).await?)
        .await
        .context("asking the test bed for its leader")?;
    let voters: Vec<_> = members
        .iter()
        .filter(|m| m.roles.iter().any(|r| r == "voter"))
        .collect();
    if voters.len() != 3 {
        bail!("expected 3 voters in the test bed, found {}", voters.len());
    }
    let addr_of = |name: &str| {
        members
            .iter()
            .find(|m| m.name == name)
            .map(|m| m.address.clone())
            .with_context(|| format!("the leader {name} is not in the member list"))
    };
    let leader_addr = addr_of(&leader)?;
    eprintln!("shoal-bench: shoal leader is {leader} at {leader_addr}");
    let w: Arc<dyn Writer> = Arc::new(AliasWriter::open(&api, &leader_addr, CONNECTIONS).await?);
    workloads("shoal", w, opts, out).await?;

    if let Some(f) = voters.iter().find(|m| m.name != leader) {
        let n = opts.writes.min(FOLLOWER_WRITES);
        eprintln!(
            "shoal-bench: shoal: {n} sequential writes through follower {}",
            f.name
        );
        let w = AliasWriter::open(&api, &f.address, 1).await?;
        sequential(&w, WARMUP).await?;
        let (el, lat) = sequential(&w, n).await?;
        out.push(Outcome::new("shoal", "1 client, follower".into(), el, &lat));
    }

    let hosts = voters
        .iter()
        .map(|m| {
            Ok(Host {
                name: m.name.clone(),
                netns: format!("/run/netns/{}-{}", tb.prefix(), m.name).into(),
                ip: shoal::bed_ip(&m.address)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(hosts)
}

async fn measure_etcd(hosts: &[Host], opts: Options, out: &mut Vec<Outcome>) -> Result<()> {
    eprintln!("shoal-bench: starting 3 etcd members in the test bed's namespaces");
    let mut cluster = EtcdCluster::start(hosts)?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    eprintln!("shoal-bench: etcd leader is at {leader}");
    let w: Arc<dyn Writer> = Arc::new(PutWriter::open(leader, CONNECTIONS).await?);
    workloads("etcd", w, opts, out).await?;
    drop(cluster);
    Ok(())
}

async fn measure_both(tb: &Testbed, opts: Options) -> Result<Vec<Outcome>> {
    let mut out = Vec::new();
    let hosts = measure_shoal(tb, opts, &mut out).await?;
    measure_etcd(&hosts, opts, &mut out).await?;
    Ok(out)
}

/// The result table and the ratios, as text.
pub fn report(out: &[Outcome]) -> String {
    let mut s = format!(
        "{:<7} {:<22} {:>7} {:>10} {:>10} {:>10}\n",
        "system", "workload", "writes", "writes/s", "median ms", "p99 ms"
    );
    for o in out {
        s += &format!(
            "{:<7} {:<22} {:>7} {:>10.0} {:>10.2} {:>10.2}\n",
            o.system,
            o.workload,
            o.writes,
            o.rate(),
            o.median.as_secs_f64() * 1e3,
            o.p99.as_secs_f64() * 1e3
        );
    }
    for o in out.iter().filter(|o| o.system == "shoal") {
        if let Some(e) = out
            .iter()
            .find(|e| e.system == "etcd" && e.workload == o.workload)
        {
            s += &format!(
                "shoal/etcd writes/s, {}: {:.2}\n",
                o.workload,
                o.rate() / e.rate()
            );
        }
    }
    s
}

/// Runs the whole benchmark and prints the table.
pub fn run(opts: Options) -> Result<()> {
    let out = measure(opts)?;
    print(&out);
    Ok(())
}

/// Prints the result table and the ratios.
pub fn print(out: &[Outcome]) {
    print!("{}", report(out));
}

/// The shoal and etcd outcomes of workload `name` (as [`Outcome::workload`]), if both ran.
pub fn pair<'a>(out: &'a [Outcome], workload: &str) -> Option<(&'a Outcome, &'a Outcome)> {
    let find = |system: &str| {
        out.iter()
            .find(|o| o.system == system && o.workload == workload)
    };
    Some((find("shoal")?, find("etcd")?))
}

/// Measures the whole benchmark: test bed up, Shoal, etcd; everything torn down after.
pub fn measure(opts: Options) -> Result<Vec<Outcome>> {
    if !is_root() {
        bail!("shoal-bench raft needs root (network namespaces, the test bed)");
    }
    if opts.writes == 0 || opts.clients == 0 {
        bail!("--writes and the number of clients must be positive");
    }
    for b in ["shoald", "shoal"] {
        let p = bin_dir().join(b);
        if !p.is_file() {
            bail!(
                "{} is missing: build it next to shoal-bench (cargo build --release --bins)",
                p.display()
            );
        }
    }
    if which("nsenter").is_none() {
        bail!("nsenter is missing (install util-linux)");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    etcd::ensure_installed()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    // Caught from here on, so an interrupted run still tears everything down (a `local-cluster
    // up` that dies of the same Ctrl-C makes `Testbed::up` run `down` and fail).
    let (mut int, mut term) = {
        use tokio::signal::unix::{signal, SignalKind};
        let _in = rt.enter();
        let int = signal(SignalKind::interrupt()).context("catching SIGINT")?;
        (
            int,
            signal(SignalKind::terminate()).context("catching SIGTERM")?,
        )
    };
    eprintln!("shoal-bench: bringing up a 3-host test bed");
    let tb = Testbed::up(3).context("bringing up the test bed")?;
    let out = rt.block_on(async {
        tokio::select! {
            r = measure_both(&tb, opts) => r,
            _ = int.recv() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    });
    if let Err(e) = &out {
        eprintln!("shoal-bench: {e:#}");
    }
    drop(rt);
    eprintln!("shoal-bench: tearing the test bed down");
    tb.down();
    out
}

pub(crate) fn which(cmd: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(cmd))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let xs: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(percentile(&xs, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&xs, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn keys_cycle() {
        assert_eq!(key(3), "bench-3");
        assert_eq!(key(KEYS + 3), "bench-3");
    }

    #[test]
    fn report_has_ratios() {
        let o = |system, rate_ms: u64| Outcome {
            system,
            workload: "1 client, leader".into(),
            writes: 1000,
            elapsed: Duration::from_millis(rate_ms),
            median: Duration::from_micros(500),
            p99: Duration::from_millis(2),
        };
        let text = report(&[o("shoal", 500), o("etcd", 1000)]);
        assert!(text.contains("2000"), "{text}");
        assert!(
            text.contains("shoal/etcd writes/s, 1 client, leader: 2.00"),
            "{text}"
        );
    }
}
