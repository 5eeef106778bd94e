//! `shoal-bench runtime`: our container create-start-stop-delete cycle beside `crun run` of
//! the same busybox rootfs, in one invocation, with both medians and the ratio; plus the
//! monitor's memory per container and `shoald`'s idle RSS.
//!
//! Both cycles kill the container (SIGKILL) rather than asking busybox init to power off,
//! which always takes 2 s. crun runs in a private mount namespace with
//! /sys/fs/cgroup/unified unmounted (crun cannot handle this hybrid host's layout otherwise).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::stats::{ms, rss_kib, summarize, Summary};
use crate::testbed::{bin_dir, workspace};
use shoal_node::cgroups::Limits;
use shoal_node::runtime::{ContainerConfig, Runtime, RuntimeConfig};

/// Builds the busybox rootfs into `dir`.
pub fn build_rootfs(dir: &Path) -> Result<()> {
    let st = Command::new(workspace().join("deploy/build-busybox-image"))
        .arg("--rootfs")
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .context("running deploy/build-busybox-image")?;
    if !st.success() {
        bail!("deploy/build-busybox-image --rootfs failed");
    }
    Ok(())
}

/// Removes the cgroup group and run dir the benchmark's runtime made, however it ends.
struct BenchCleanup {
    group: String,
    run_dir: PathBuf,
}

impl Drop for BenchCleanup {
    fn drop(&mut self) {
        if let Ok(m) = shoal_node::cgroups::CgroupManager::detect(&self.group) {
            let _ = m.remove_base();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

fn ours(rootfs: &Path, work: &Path, runs: usize) -> Result<(Vec<Duration>, Option<u64>)> {
    let cleanup = BenchCleanup {
        group: format!("shoal-bench-{}", std::process::id()),
        run_dir: PathBuf::from(format!("/run/shoal/bench-{}", std::process::id())),
    };
    let rt = Runtime::new(RuntimeConfig {
        containers_dir: work.join("containers"),
        run_dir: cleanup.run_dir.clone(),
        shoald_exe: bin_dir().join("shoald"),
        cgroup_group: cleanup.group.clone(),
    })?;
    let mut times = Vec::with_capacity(runs);
    let mut monitor_kib = None;
    for i in 0..runs + 2 {
        let name = format!("bench{i}");
        let cfg = ContainerConfig {
            name: name.clone(),
            image_rootfs: rootfs.to_path_buf(),
            privileged: false,
            limits: Limits {
                memory_bytes: Some(64 << 20),
                cpu_millicores: None,
                pids_max: Some(512),
            },
            stop_signal: libc::SIGUSR2,
            env: vec![],
            fence: false,
        };
        let t0 = Instant::now();
        rt.create(&cfg)?;
        rt.start(&name)?;
        let t_started = t0.elapsed();
        if monitor_kib.is_none() {
            monitor_kib = monitor_pid(&name).and_then(rss_kib);
        }
        let t1 = Instant::now();
        rt.stop(&name, Duration::from_secs(0), true)?;
        rt.delete(&name)?;
        let total = t_started + t1.elapsed();
        if i >= 2 {
            times.push(total); // the first two warm caches up
        }
    }
    Ok((times, monitor_kib))
}

/// Finds the monitor of container `name` among our own processes.
fn monitor_pid(name: &str) -> Option<i32> {
    for e in std::fs::read_dir("/proc").ok()?.flatten() {
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
        if args.get(1).map(String::as_str) == Some("monitor")
            && args
                .iter()
                .any(|a| a.ends_with(&format!("/{name}")) || a == name)
        {
            return Some(pid);
        }
    }
    None
}

/// Writes an OCI bundle for crun around `rootfs`.
fn crun_bundle(rootfs: &Path, bundle: &Path) -> Result<()> {
    std::fs::create_dir_all(bundle)?;
    let st = Command::new("crun")
        .args(["spec"])
        .current_dir(bundle)
        .status()
        .context("running `crun spec` (install Debian's crun)")?;
    if !st.success() {
        bail!("crun spec failed");
    }
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    spec["process"]["terminal"] = false.into();
    spec["process"]["args"] = serde_json::json!(["/sbin/init"]);
    spec["root"]["path"] = rootfs.to_string_lossy().into_owned().into();
    spec["root"]["readonly"] = true.into();
    spec["linux"]["resources"] = serde_json::json!({
        "memory": {"limit": 64u64 << 20},
        "pids": {"limit": 512}
    });
    std::fs::write(&path, serde_json::to_vec_pretty(&spec)?)?;
    Ok(())
}

/// Inside the private mount namespace: `runs` crun cycles, printed as nanoseconds.
pub fn crun_cycles(bundle: &Path, runs: usize) -> Result<()> {
    let mut out = Vec::new();
    for i in 0..runs + 2 {
        let id = format!("shoalbench-{}-{i}", std::process::id());
        let t0 = Instant::now();
        let st = Command::new("crun")
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()?;
        if !st.success() {
            bail!("crun run failed");
        }
        let st = Command::new("crun")
            .args(["delete", "--force", &id])
            .status()?;
        if !st.success() {
            bail!("crun delete failed");
        }
        if i >= 2 {
            out.push(t0.elapsed().as_nanos() as u64);
        }
    }
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}

fn crun(rootfs: &Path, work: &Path, runs: usize) -> Result<Vec<Duration>> {
    let bundle = work.join("bundle");
    crun_bundle(rootfs, &bundle)?;
    let me = std::env::current_exe()?;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "--", "sh", "-c"])
        .arg("umount /sys/fs/cgroup/unified 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(me)
        .arg("crun-cycles")
        .arg(&bundle)
        .arg(runs.to_string())
        .stderr(Stdio::inherit())
        .output()
        .context("running the crun cycles")?;
    if !out.status.success() {
        bail!("crun cycles failed");
    }
    let ns: Vec<u64> = serde_json::from_slice(&out.stdout).context("parsing crun timings")?;
    Ok(ns.into_iter().map(Duration::from_nanos).collect())
}

/// Idle RSS of a fresh `shoald` on loopback, in KiB.
fn shoald_idle_rss(work: &Path) -> Result<u64> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut child = Command::new(bin_dir().join("shoald"))
        .args(["--name", "bench", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(work.join("daemon"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting shoald")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("shoald did not listen within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_secs(2));
    let rss = rss_kib(child.id() as i32).unwrap_or(0);
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    let _ = Command::new(bin_dir().join("shoald"))
        .args(["purge", "--name", "bench"])
        .arg("--data-dir")
        .arg(work.join("daemon"))
        .stderr(Stdio::null())
        .status();
    Ok(rss)
}

/// What one run of the runtime benchmark measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub runs: usize,
    /// Our create + start + kill + delete cycle.
    pub ours: Summary,
    /// crun's cycle, or why it was not measured.
    pub crun: Result<Summary, String>,
    /// RSS of one container's monitor, in KiB.
    pub monitor_kib: Option<u64>,
    /// Idle RSS of a fresh `shoald`, in KiB, or why it was not measured.
    pub shoald_kib: Result<u64, String>,
}

/// Measures both cycles and the memory figures.
pub fn measure(runs: usize) -> Result<Outcome> {
    if !crate::testbed::is_root() {
        bail!("shoal-bench runtime needs root");
    }
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let work = tempfile::Builder::new().prefix("shoal-bench-").tempdir()?;
    let rootfs = work.path().join("rootfs");
    build_rootfs(&rootfs)?;
    let (our_times, monitor_kib) = ours(&rootfs, work.path(), runs)?;
    let crun = crun(&rootfs, work.path(), runs)
        .map(|t| summarize(&t))
        .map_err(|e| format!("{e:#}"));
    let shoald_kib = shoald_idle_rss(work.path()).map_err(|e| format!("{e:#}"));
    Ok(Outcome {
        runs,
        ours: summarize(&our_times),
        crun,
        monitor_kib,
        shoald_kib,
    })
}

/// Prints the table of one run.
pub fn print(o: &Outcome) {
    let runs = o.runs;
    println!("container cycle: create + start + kill + delete of a busybox system container, {runs} runs each");
    let ours_s = o.ours;
    if let Err(e) = &o.crun {
        println!("crun: not measured ({e})");
    }
    println!("{:<10} {:>12} {:>12} {:>12}", "", "median", "p90", "min");
    println!(
        "{:<10} {:>12} {:>12} {:>12}",
        "shoal",
        ms(ours_s.median),
        ms(ours_s.p90),
        ms(ours_s.min)
    );
    if let Ok(c) = &o.crun {
        println!(
            "{:<10} {:>12} {:>12} {:>12}",
            "crun",
            ms(c.median),
            ms(c.p90),
            ms(c.min)
        );
        println!(
            "ratio shoal/crun (median): {:.2}",
            ours_s.median.as_secs_f64() / c.median.as_secs_f64()
        );
    }
    match o.monitor_kib {
        Some(k) => println!(
            "monitor RSS per container: {:.1} MiB (LXC's monitor: about 3 MB)",
            k as f64 / 1024.0
        ),
        None => println!("monitor RSS per container: not found"),
    }
    match &o.shoald_kib {
        Ok(k) => println!(
            "shoald idle RSS: {:.1} MiB (LXD's daemon: 55 to 85 MB)",
            *k as f64 / 1024.0
        ),
        Err(e) => println!("shoald idle RSS: not measured ({e})"),
    }
}

/// Runs the benchmark and prints the table.
pub fn run(runs: usize) -> Result<()> {
    let o = measure(runs)?;
    print(&o);
    Ok(())
}
