//! `shoal-bench schedule`: placements per second for many instances on many hosts, with the
//! real servers (three `shoald` voters on the test bed) and hollow agents (simulated hosts
//! that join, heartbeat, follow their part of the state and report placed instances
//! Running without running containers; see `shoal_node::hollow`), as Kubernetes' kubemark
//! does. Launches go through the public API over mutual TLS from many clients at once;
//! each is placed by the member that takes it (filter and score over every host), committed
//! through Raft with a compare-and-set on the plan, and answered by its hollow host.
//!
//! The reference is Nomad's C1M figure (about 3,750 placements per second, on large
//! machines); Nomad is not packaged for Debian, so it cannot run beside Shoal here and the
//! published figure stands in for it.

use anyhow::{bail, Context, Result};
use shoal_node::hollow::{join_hollow, HollowSpec, HollowStats};
use shoal_proto::api::cluster_client::ClusterClient;
use shoal_proto::api::instances_client::InstancesClient;
use shoal_proto::api::{
    CreateInstanceRequest, CreateTokenRequest, ListInstancesRequest, ListMembersRequest,
};
use shoal_raft::Capacity;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tonic::transport::Channel;

use super::moves::preflight;
use super::raft::shoal::{read_cli_config, Api};
use super::stats::{ms, summarize};
use crate::testbed::Testbed;

/// Nomad's C1M: placements per second (published; not runnable here).
pub const NOMAD_C1M_PER_SEC: f64 = 3750.0;

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub hosts: usize,
    pub instances: usize,
    /// Concurrent API clients.
    pub clients: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            hosts: 1000,
            instances: 10_000,
            clients: 64,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub hosts: usize,
    pub placed: usize,
    pub refused: usize,
    pub place_time: Duration,
    pub per_sec: f64,
    pub create_median: Duration,
    pub create_p90: Duration,
    /// From the first launch until every placed instance was reported Running.
    pub all_running: Duration,
    pub join_time: Duration,
    /// Instances per host: fewest and most.
    pub spread: (usize, usize),
}

/// Capacity of every hollow host: 16 cores, 64 GiB.
fn hollow_capacity() -> Capacity {
    Capacity {
        cpu_millicores: 16_000,
        memory_bytes: 64 << 30,
        processes: 100_000,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The name of hollow host `i`.
fn host_name(i: usize) -> String {
    format!("h{i:04}")
}

/// Runs the benchmark and prints the figures.
pub fn run(opts: Options) -> Result<()> {
    preflight("schedule")?;
    let out = measure(opts)?;
    print(&out);
    Ok(())
}

/// Prints one run's figures.
pub fn print(o: &Outcome) {
    println!(
        "schedule: {} instances on {} hollow hosts (+3 voters), placed in {:.2} s",
        o.placed,
        o.hosts,
        o.place_time.as_secs_f64()
    );
    println!(
        "  shoal : {:.0} placements/s; launch call median {} p90 {}; all Running after {:.2} s",
        o.per_sec,
        ms(o.create_median),
        ms(o.create_p90),
        o.all_running.as_secs_f64()
    );
    println!("  nomad : {NOMAD_C1M_PER_SEC:.0} placements/s (C1M, published; Nomad is not packaged here)");
    println!(
        "  ratio shoal/nomad: {:.2}; {} hosts joined in {:.1} s; per host {}..{} instances; {} refused",
        o.per_sec / NOMAD_C1M_PER_SEC,
        o.hosts,
        o.join_time.as_secs_f64(),
        o.spread.0,
        o.spread.1,
        o.refused
    );
}

/// Brings up the servers, joins the hollow hosts, places the instances and checks where
/// they went.
pub fn measure(opts: Options) -> Result<Outcome> {
    let tb = Testbed::up(3).context("bringing up the three servers")?;
    let remote = read_cli_config(tb.config())?;
    let api = Api::new(&remote)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = rt.block_on(async {
        let mut channels = Vec::new();
        for a in &remote.addresses {
            for _ in 0..4 {
                channels.push(api.connect(a).await?);
            }
        }
        let stats = Arc::new(HollowStats::default());
        let t_join = Instant::now();
        let agents = join_all(&channels, opts.hosts, stats.clone()).await?;
        wait_online(&channels[0], opts.hosts).await?;
        while (stats.registered.load(Ordering::Relaxed) as usize) < opts.hosts {
            if t_join.elapsed() > Duration::from_secs(300) {
                bail!("hollow hosts did not all register their capacity within 300 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let join_time = t_join.elapsed();
        eprintln!(
            "schedule: {} hollow hosts joined and online in {:.1} s",
            opts.hosts,
            join_time.as_secs_f64()
        );
        let out = place_all(&channels, opts, &stats, join_time).await;
        for a in agents {
            a.abort();
        }
        out
    });
    drop(rt);
    tb.down();
    out
}

/// Creates a token per hollow host and joins them, a few at a time; each then runs on.
async fn join_all(
    channels: &[Channel],
    hosts: usize,
    stats: Arc<HollowStats>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let gate = Arc::new(Semaphore::new(16));
    let mut joins = Vec::new();
    for i in 0..hosts {
        let gate = gate.clone();
        let ch = channels[i % channels.len()].clone();
        joins.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("semaphore");
            let name = host_name(i);
            let token = ClusterClient::new(ch)
                .create_token(CreateTokenRequest {
                    name: name.clone(),
                    kind: "member".into(),
                    ..Default::default()
                })
                .await
                .map_err(|s| anyhow::anyhow!("token for {name}: {}", s.message()))?
                .into_inner()
                .token;
            let spec = HollowSpec {
                name: name.clone(),
                // Loopback: nothing dials an agent without images or containers, and if
                // something did, it would stay on the host.
                address: format!("127.77.{}.{}:9", i / 250, i % 250 + 1),
                failure_domain: format!("rack{}", i % 20),
                capacity: hollow_capacity(),
                groups: ["hollow".to_string()].into(),
            };
            let agent = join_hollow(&token, spec, now_ms())
                .await
                .with_context(|| format!("joining {name}"))?;
            anyhow::Ok(agent)
        }));
    }
    let mut running = Vec::new();
    for j in joins {
        let agent = j.await??;
        running.push(tokio::spawn(agent.run(stats.clone())));
    }
    Ok(running)
}

/// Waits until every hollow host is Online (its capacity registration follows at once).
async fn wait_online(ch: &Channel, hosts: usize) -> Result<()> {
    let t0 = Instant::now();
    loop {
        let members = ClusterClient::new(ch.clone())
            .list_members(ListMembersRequest {})
            .await
            .map(|r| r.into_inner().members)
            .unwrap_or_default();
        let online = members
            .iter()
            .filter(|m| m.name.starts_with('h') && m.status == "Online")
            .count();
        if online >= hosts {
            return Ok(());
        }
        if t0.elapsed() > Duration::from_secs(300) {
            bail!("only {online} of {hosts} hollow hosts are Online after 300 s");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn place_all(
    channels: &[Channel],
    opts: Options,
    stats: &Arc<HollowStats>,
    join_time: Duration,
) -> Result<Outcome> {
    let next = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(opts.instances)));
    let refused = Arc::new(Mutex::new(Vec::<String>::new()));
    let t0 = Instant::now();
    let mut clients = Vec::new();
    for c in 0..opts.clients {
        let ch = channels[c % channels.len()].clone();
        let (next, latencies, refused) = (next.clone(), latencies.clone(), refused.clone());
        clients.push(tokio::spawn(async move {
            let mut api = InstancesClient::new(ch);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.instances {
                    return;
                }
                let config = BTreeMap::from([
                    ("limits.cpu".to_string(), "1".to_string()),
                    ("limits.memory".to_string(), "2GiB".to_string()),
                ]);
                let start = Instant::now();
                let r = api
                    .create(CreateInstanceRequest {
                        name: format!("s{i:05}"),
                        image: "busybox".into(),
                        config: config.into_iter().collect(),
                        start: true,
                        // The hollow hosts only: the three servers are real hosts.
                        target: "@hollow".into(),
                    })
                    .await;
                match r {
                    Ok(_) => latencies.lock().unwrap().push(start.elapsed()),
                    Err(s) => refused
                        .lock()
                        .unwrap()
                        .push(format!("s{i:05}: {}", s.message())),
                }
            }
        }));
    }
    for c in clients {
        c.await?;
    }
    let place_time = t0.elapsed();
    let latencies = latencies.lock().unwrap().clone();
    let refused = refused.lock().unwrap().clone();
    if let Some(first) = refused.first() {
        eprintln!(
            "schedule: {} launches refused, first: {first}",
            refused.len()
        );
    }
    if latencies.is_empty() {
        bail!("no launch succeeded");
    }
    let placed = latencies.len();
    // Every placed instance reported Running by its hollow host.
    let give_up = Instant::now() + Duration::from_secs(300);
    while (stats.running.load(Ordering::Relaxed) as usize) < placed {
        if Instant::now() > give_up {
            bail!(
                "only {} of {placed} instances Running after 300 s ({} reports, {} refused)",
                stats.running.load(Ordering::Relaxed),
                stats.reports.load(Ordering::Relaxed),
                stats.report_errors.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_running = t0.elapsed();
    // Where they went, as the cluster records it.
    let list = InstancesClient::new(channels[0].clone())
        .max_decoding_message_size(256 << 20)
        .list(ListInstancesRequest::default())
        .await
        .context("listing instances")?
        .into_inner()
        .instances;
    let mut per_host: BTreeMap<String, usize> = BTreeMap::new();
    for i in &list {
        *per_host.entry(i.location.clone()).or_default() += 1;
    }
    if list.len() != placed {
        bail!("{} instances listed, {placed} placed", list.len());
    }
    if let Some((h, _)) = per_host.iter().find(|(h, _)| !h.starts_with('h')) {
        bail!("an instance was placed on {h}, outside the group @hollow");
    }
    // 16 cores each: no host may hold more than 16 one-core instances.
    if let Some((h, n)) = per_host.iter().find(|(_, n)| **n > 16) {
        bail!("host {h} holds {n} instances, beyond its 16 cores");
    }
    let fewest = if per_host.len() < opts.hosts {
        0
    } else {
        per_host.values().copied().min().unwrap_or(0)
    };
    let most = per_host.values().copied().max().unwrap_or(0);
    let s = summarize(&latencies);
    Ok(Outcome {
        hosts: opts.hosts,
        placed,
        refused: refused.len(),
        place_time,
        per_sec: placed as f64 / place_time.as_secs_f64(),
        create_median: s.median,
        create_p90: s.p90,
        all_running,
        join_time,
        spread: (fewest, most),
    })
}
