//! The invariants, as checks that scenarios and `shoal-soak` share. Each returns a
//! violation as an `Err(String)` naming what broke, with the evidence.

use super::bed::Bed;
use crate::checker::{check, Call, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// I1: the register history is linearizable (so no acknowledged write is lost).
pub fn check_history(calls: &[Call]) -> Result<(), String> {
    match check(calls) {
        Verdict::Linearizable => Ok(()),
        v => {
            let key = match &v {
                Verdict::Violation { key } | Verdict::TooLarge { key, .. } => key.clone(),
                Verdict::Linearizable => unreachable!(),
            };
            let mut calls: Vec<&Call> = calls.iter().filter(|c| c.key == key).collect();
            calls.sort_by_key(|c| c.start);
            let shown: Vec<String> = calls
                .iter()
                .take(60)
                .map(|c| format!("[{}..{}] {:?} {:?}", c.start, c.end, c.op, c.outcome))
                .collect();
            Err(format!("I1 {v:?} ({} calls): {shown:#?}", calls.len()))
        }
    }
}

/// I2: samples every member's own (term, leader) view in the background.
pub struct LeaderWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>>,
    samples: Arc<Mutex<u64>>,
}

impl LeaderWatch {
    pub fn start(bed: &Arc<Bed>, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Arc<Mutex<BTreeMap<u64, BTreeSet<String>>>> = Arc::default();
        let samples: Arc<Mutex<u64>> = Arc::default();
        let thread = {
            let (bed, stop, seen, samples) =
                (bed.clone(), stop.clone(), seen.clone(), samples.clone());
            std::thread::spawn(move || {
                let mut hosts = bed.hosts();
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    round += 1;
                    if round.is_multiple_of(10) {
                        let h = bed.hosts();
                        if !h.is_empty() {
                            hosts = h;
                        }
                    }
                    for h in &hosts {
                        let Some(v) = bed.show_local(h) else { continue };
                        let (Some(term), Some(leader)) = (v["term"].as_u64(), v["leader"].as_str())
                        else {
                            continue;
                        };
                        *samples.lock().unwrap() += 1;
                        if !leader.is_empty() {
                            seen.lock()
                                .unwrap()
                                .entry(term)
                                .or_default()
                                .insert(leader.to_string());
                        }
                    }
                    std::thread::sleep(period);
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
            seen,
            samples,
        }
    }

    /// Terms observed with more than one leader.
    pub fn check(&self) -> Result<(), String> {
        let seen = self.seen.lock().unwrap();
        let bad: Vec<_> = seen.iter().filter(|(_, l)| l.len() > 1).collect();
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("I2 two leaders in one term: {bad:?}"))
        }
    }

    /// (samples, distinct terms with a leader).
    pub fn stats(&self) -> (u64, usize) {
        (
            *self.samples.lock().unwrap(),
            self.seen.lock().unwrap().len(),
        )
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeaderWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// I3: waits until every replica answers for itself with the same applied index, then
/// requires the same state digest. Returns (applied index, digest).
pub fn converged(bed: &Bed, limit: Duration) -> Result<(u64, String), String> {
    let t = Instant::now();
    let mut last: String;
    loop {
        let replicas: Vec<String> = bed.replicas().into_iter().map(|(n, _)| n).collect();
        let views: Vec<Option<(u64, String)>> = replicas
            .iter()
            .map(|h| {
                bed.show_local(h).and_then(|v| {
                    Some((
                        v["applied_index"].as_u64()?,
                        v["state_digest"].as_str()?.to_string(),
                    ))
                })
            })
            .collect();
        if !replicas.is_empty() && views.iter().all(Option::is_some) {
            let views: Vec<(u64, String)> = views.into_iter().flatten().collect();
            let idx: BTreeSet<u64> = views.iter().map(|v| v.0).collect();
            if idx.len() == 1 {
                let digests: BTreeSet<&String> = views.iter().map(|v| &v.1).collect();
                if digests.len() != 1 {
                    return Err(format!(
                        "I3 replicas at the same applied index differ: {:?}",
                        replicas.iter().zip(&views).collect::<Vec<_>>()
                    ));
                }
                return Ok(views[0].clone());
            }
            last = format!("{:?}", replicas.iter().zip(&views).collect::<Vec<_>>());
        } else {
            last = format!("replicas {replicas:?} answered {views:?}");
        }
        if t.elapsed() > limit {
            let leader = bed.show().map(|v| v.to_string()).unwrap_or_default();
            return Err(format!(
                "I3 replicas did not converge within {limit:?}: {last}; the leader's view: {leader}"
            ));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Where and when an instance was seen running (from the hosts).
#[derive(Debug, Clone)]
pub struct Seen {
    pub host: String,
    pub first_us: u64,
    pub last_us: u64,
}

#[derive(Default)]
struct HostState {
    runs: BTreeMap<String, Vec<Seen>>,
    violations: Vec<String>,
    scans: u64,
}

/// I4 and I5: scans `/proc` for this test bed's container monitors and their live children
/// (the container), host by host, in the background.
pub struct HostWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    state: Arc<Mutex<HostState>>,
    t0: Instant,
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // The state follows the command name in parentheses.
            let st = s.rsplit(')').next().unwrap_or("").trim_start();
            !st.starts_with('Z') && !st.starts_with('X')
        })
        .unwrap_or(false)
}

/// Running containers of the test bed under `hosts_dir`: (instance, host, live pids).
pub fn running_containers(hosts_dir: &Path) -> Vec<(String, String, Vec<i32>)> {
    let prefix = hosts_dir.to_string_lossy().into_owned() + "/";
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // shoald monitor CONTAINERS_DIR RUN_DIR GROUP NAME
        if args.len() < 6 || args[1] != "monitor" {
            continue;
        }
        let Some(rest) = args[2].strip_prefix(&prefix) else {
            continue;
        };
        let host = rest.split('/').next().unwrap_or("").to_string();
        let children: Vec<i32> =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .filter(|p| alive(*p))
                .collect();
        if !children.is_empty() {
            out.push((args[5].clone(), host, children));
        }
    }
    out
}

impl HostWatch {
    pub fn start(bed: &Bed, period: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let state: Arc<Mutex<HostState>> = Arc::default();
        let hosts_dir = bed.host_dir("a").parent().unwrap().to_path_buf();
        let t0 = bed.t0;
        let thread = {
            let (stop, state) = (stop.clone(), state.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    scan(&hosts_dir, &state, t0);
                    std::thread::sleep(period);
                }
            })
        };
        Self {
            stop,
            thread: Some(thread),
            state,
            t0,
        }
    }

    /// I4: instances seen running on two hosts at the same instant.
    pub fn check(&self) -> Result<(), String> {
        let st = self.state.lock().unwrap();
        if st.violations.is_empty() {
            Ok(())
        } else {
            Err(format!("I4 {}", st.violations.join("; ")))
        }
    }

    pub fn scans(&self) -> u64 {
        self.state.lock().unwrap().scans
    }

    /// Where `name` runs now (as of the last scan), if anywhere.
    pub fn host_of(&self, name: &str) -> Option<String> {
        let st = self.state.lock().unwrap();
        let now = self.t0.elapsed().as_micros() as u64;
        st.runs
            .get(name)?
            .iter()
            .rev()
            .find(|s| now.saturating_sub(s.last_us) < 1_500_000)
            .map(|s| s.host.clone())
    }

    /// I5: waits until each of `names` is seen running on a host other than `victim`,
    /// starting after `since_us`; fails past `bound` (plus a scan of slack). Returns the
    /// slowest time.
    pub fn wait_running_elsewhere(
        &self,
        names: &[String],
        victim: &str,
        since_us: u64,
        bound: Duration,
    ) -> Result<Duration, String> {
        let deadline = since_us + bound.as_micros() as u64 + 1_000_000;
        loop {
            let now = self.t0.elapsed().as_micros() as u64;
            let st = self.state.lock().unwrap();
            let mut worst = 0u64;
            let mut missing = Vec::new();
            for n in names {
                let first = st.runs.get(n).and_then(|v| {
                    v.iter()
                        .find(|s| s.host != victim && s.first_us >= since_us)
                        .map(|s| s.first_us)
                });
                match first {
                    Some(f) => worst = worst.max(f - since_us),
                    None => missing.push(n.clone()),
                }
            }
            if missing.is_empty() {
                if worst > bound.as_micros() as u64 + 1_000_000 {
                    return Err(format!(
                        "I5 recreated after {:?}, beyond the {bound:?} bound",
                        Duration::from_micros(worst)
                    ));
                }
                return Ok(Duration::from_micros(worst));
            }
            if now > deadline {
                return Err(format!(
                    "I5 not running again on another host within {bound:?}: {missing:?}"
                ));
            }
            drop(st);
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HostWatch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn scan(hosts_dir: &Path, state: &Mutex<HostState>, t0: Instant) {
    let found = running_containers(hosts_dir);
    let now = t0.elapsed().as_micros() as u64;
    let mut by_name: BTreeMap<&str, Vec<(&str, &Vec<i32>)>> = BTreeMap::new();
    for (name, host, pids) in &found {
        by_name.entry(name).or_default().push((host, pids));
    }
    let mut st = state.lock().unwrap();
    st.scans += 1;
    for (name, on) in &by_name {
        let hosts: BTreeSet<&str> = on.iter().map(|(h, _)| *h).collect();
        if hosts.len() > 1 {
            // Seen on two hosts during one scan: a violation only if both still run now,
            // after the scan (then they ran at the same instant).
            let still: Vec<(&str, Vec<i32>)> = on
                .iter()
                .map(|(h, p)| {
                    (
                        *h,
                        p.iter().copied().filter(|p| alive(*p)).collect::<Vec<_>>(),
                    )
                })
                .filter(|(_, p)| !p.is_empty())
                .collect();
            let live: BTreeSet<&str> = still.iter().map(|(h, _)| *h).collect();
            if live.len() > 1 {
                st.violations.push(format!(
                    "{name} runs on {live:?} at once at {:.1}s (pids {still:?})",
                    now as f64 / 1e6
                ));
            }
        }
        for host in hosts {
            let runs = st.runs.entry(name.to_string()).or_default();
            match runs.last_mut() {
                Some(s) if s.host == host && now.saturating_sub(s.last_us) < 2_000_000 => {
                    s.last_us = now
                }
                _ => runs.push(Seen {
                    host: host.to_string(),
                    first_us: now,
                    last_us: now,
                }),
            }
        }
    }
}

/// The same hash as `shoald` uses for its run dir and cgroup names (std's SipHash with
/// fixed keys over the data directory path).
fn data_dir_hash(data_dir: &Path) -> u64 {
    use std::hash::{Hash, Hasher};
    #[allow(deprecated)]
    let mut h = std::collections::hash_map::DefaultHasher::new();
    data_dir.hash(&mut h);
    h.finish() & 0xffff_ffff_ffff
}

/// I6: what a test bed may leave behind, noted before `down` and checked after it.
pub struct Leaks {
    prefix: String,
    bed_dir: PathBuf,
    cgroups: Vec<String>,
    run_dirs: Vec<PathBuf>,
    holders: Vec<i32>,
}

impl Leaks {
    /// Notes the names to look for (call while the bed is up).
    pub fn note(bed: &Bed) -> Self {
        let hosts = bed.hosts();
        let mut cgroups = Vec::new();
        let mut run_dirs = Vec::new();
        let mut holders = Vec::new();
        for h in &hosts {
            let d = bed.host_dir(h);
            let hash = data_dir_hash(&d);
            cgroups.push(format!("shoal-{h}-{:08x}", hash & 0xffff_ffff));
            run_dirs.push(PathBuf::from(format!("/run/shoal/{hash:012x}")));
            if let Ok(p) = std::fs::read_to_string(d.join("mntns.pid")) {
                holders.extend(p.trim().parse::<i32>().ok());
            }
        }
        Self {
            prefix: bed.tb.prefix().to_string(),
            bed_dir: bed
                .host_dir("a")
                .parent()
                .unwrap()
                .parent()
                .unwrap()
                .to_path_buf(),
            cgroups,
            run_dirs,
            holders,
        }
    }

    /// Records a mount-namespace holder started later.
    pub fn add_holder(&mut self, pid: i32) {
        self.holders.push(pid);
    }

    /// Checks, after `down`, that nothing is left.
    pub fn check(&self) -> Result<(), String> {
        let mut left = Vec::new();
        let netns = std::process::Command::new("ip")
            .args(["netns", "list"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for l in netns.lines() {
            if l.starts_with(&format!("{}-", self.prefix)) {
                left.push(format!("network namespace {l}"));
            }
        }
        let links = std::process::Command::new("ip")
            .args(["-o", "link", "show"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        for l in links.lines() {
            let name = l.split(':').nth(1).unwrap_or("").trim();
            let name = name.split('@').next().unwrap_or("");
            if name.starts_with(&self.prefix) {
                left.push(format!("interface {name}"));
            }
        }
        let bed = self.bed_dir.to_string_lossy().into_owned();
        for src in ["/proc/self/mountinfo", "/proc/1/mountinfo"] {
            for l in std::fs::read_to_string(src).unwrap_or_default().lines() {
                if l.contains(&bed)
                    || self
                        .run_dirs
                        .iter()
                        .any(|r| l.contains(&*r.to_string_lossy()))
                {
                    left.push(format!("mount ({src}) {l}"));
                }
            }
        }
        // cgroups: beneath this process's own cgroup, in every hierarchy.
        let own: Vec<String> = std::fs::read_to_string("/proc/self/cgroup")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.splitn(3, ':').nth(2).map(str::to_string))
            .collect();
        if let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") {
            let roots: Vec<PathBuf> = roots.flatten().map(|e| e.path()).collect();
            let mut bases: Vec<PathBuf> = vec![PathBuf::from("/sys/fs/cgroup")];
            bases.extend(roots);
            for base in &bases {
                for rel in &own {
                    for g in &self.cgroups {
                        let p = base.join(rel.trim_start_matches('/')).join(g);
                        if p.exists() {
                            left.push(format!("cgroup {}", p.display()));
                        }
                    }
                }
            }
        }
        for r in &self.run_dirs {
            if r.exists() {
                left.push(format!("run dir {}", r.display()));
            }
        }
        if self.bed_dir.exists() {
            left.push(format!("state dir {}", self.bed_dir.display()));
        }
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
                if (cmd.contains(&bed) || self.holders.contains(&pid)) && alive(pid) {
                    left.push(format!("process {pid}: {cmd}"));
                }
            }
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("I6 left after down: {left:#?}"))
        }
    }
}
