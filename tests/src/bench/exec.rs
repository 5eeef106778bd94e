//! `shoal-bench exec`: latency of `shoal exec NAME -- true` from the CLI (connect, TLS,
//! the call relayed to the instance's host, the process run in the container, its exit
//! status back) on a 1-host test bed, beside LXD's `lxc exec NAME -- true` when LXD is
//! installed.
//!
//! LXD is never installed by the benchmark, and never started on the machine's network: a
//! private LXD (its own `LXD_DIR` in a temporary directory) runs inside a network namespace
//! the benchmark creates and deletes, initialised from a preseed without any network (no
//! bridge, no NIC in the profile), with the same busybox image imported from
//! `deploy/build-busybox-image`. Without `lxd` and `lxc` on the PATH, the reference is
//! skipped with the note "LXD not installed".

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moves::{cli, preflight};
use super::raft::which;
use super::stats::{ms, rss_kib, summarize, Summary};
use crate::testbed::{workspace, Testbed};

const NAME: &str = "execbench";
/// Unmeasured calls before the timed ones (connections, page cache).
const WARMUP: usize = 3;
/// Longest wait for one LXD command.
const LXD_TIMEOUT: Duration = Duration::from_secs(120);

/// What the reference measured.
#[derive(Debug, Clone)]
pub struct Lxd {
    /// `lxc exec NAME -- true`, client wall time.
    pub exec: Summary,
    /// RSS of the LXD daemon with one container, in KiB.
    pub daemon_kib: Option<u64>,
    /// RSS of that container's `[lxc monitor]`, in KiB.
    pub monitor_kib: Option<u64>,
}

/// What one run of the exec benchmark measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub runs: usize,
    /// `shoal exec NAME -- true`, CLI wall time.
    pub shoal: Summary,
    /// LXD's figures, or why there are none ("LXD not installed", or the error).
    pub lxd: Result<Lxd, String>,
}

/// The note of a missing LXD.
pub const NOT_INSTALLED: &str = "LXD not installed";

/// Whether both `lxd` and `lxc` are on the PATH.
pub fn lxd_installed() -> bool {
    which("lxd").is_some() && which("lxc").is_some()
}

/// Times `runs` calls of `cmd()` after the warm-up; each must succeed.
fn time_calls(runs: usize, what: &str, mut cmd: impl FnMut() -> Command) -> Result<Vec<Duration>> {
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs + WARMUP {
        let t = Instant::now();
        let out = cmd()
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {what}"))?;
        let took = t.elapsed();
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout).trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i >= WARMUP {
            times.push(took);
        }
    }
    Ok(times)
}

fn measure_shoal(runs: usize) -> Result<Summary> {
    eprintln!("shoal-bench exec: bringing up a 1-host test bed");
    let tb = Testbed::up(1)?;
    cli(&tb, &["launch", "busybox", NAME])?;
    let times = time_calls(runs, "`shoal exec`", || {
        tb.shoal_cmd(&["exec", NAME, "--", "true"])
    })?;
    cli(&tb, &["delete", "--force", NAME])?;
    tb.down();
    Ok(summarize(&times))
}

/// Measures Shoal's exec latency and, when LXD is installed, LXD's.
pub fn measure(runs: usize) -> Result<Outcome> {
    preflight("exec")?;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    let shoal = measure_shoal(runs)?;
    let lxd = if lxd_installed() {
        eprintln!("shoal-bench exec: LXD found; running a private LXD in a network namespace");
        measure_lxd(runs).map_err(|e| format!("LXD: {e:#}"))
    } else {
        Err(NOT_INSTALLED.to_string())
    };
    Ok(Outcome { runs, shoal, lxd })
}

/// Prints the figures of one run.
pub fn print(o: &Outcome) {
    println!(
        "exec: `shoal exec NAME -- true` from the CLI to a running busybox container, {} runs (median)",
        o.runs
    );
    println!("{:<10} {:>12} {:>12} {:>12}", "", "median", "p90", "min");
    let line = |who: &str, s: &Summary| {
        println!(
            "{:<10} {:>12} {:>12} {:>12}",
            who,
            ms(s.median),
            ms(s.p90),
            ms(s.min)
        )
    };
    line("shoal", &o.shoal);
    match &o.lxd {
        Ok(l) => {
            line("lxc exec", &l.exec);
            println!(
                "ratio shoal/lxc (median): {:.2}",
                o.shoal.median.as_secs_f64() / l.exec.median.as_secs_f64()
            );
            let mib = |k: Option<u64>| {
                k.map_or("not found".to_string(), |k| {
                    format!("{:.1} MiB", k as f64 / 1024.0)
                })
            };
            println!(
                "LXD daemon RSS with one container: {}; its [lxc monitor]: {}",
                mib(l.daemon_kib),
                mib(l.monitor_kib)
            );
        }
        Err(e) => println!("lxc exec: not measured ({e})"),
    }
}

/// Runs the benchmark and prints the figures.
pub fn run(runs: usize) -> Result<()> {
    let o = measure(runs)?;
    print(&o);
    Ok(())
}

/// A private LXD inside a network namespace of its own; torn down on drop.
struct PrivateLxd {
    netns: String,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl PrivateLxd {
    fn lxd_dir(&self) -> PathBuf {
        self.dir.path().join("lxd")
    }

    /// Runs `prog ARGS` against this LXD (the clients talk to its unix socket, so they need
    /// not enter the namespace), failing after [`LXD_TIMEOUT`].
    fn run(&self, prog: &str, args: &[&str], stdin: Option<&Path>) -> Result<String> {
        let out_path = self.dir.path().join("cmd.out");
        let out = File::create(&out_path)?;
        let mut c = Command::new(prog);
        c.args(args)
            .env("LXD_DIR", self.lxd_dir())
            .stdout(out.try_clone()?)
            .stderr(out);
        match stdin {
            Some(p) => c.stdin(File::open(p)?),
            None => c.stdin(Stdio::null()),
        };
        let what = format!("`{prog} {}`", args.join(" "));
        let mut child = c.spawn().with_context(|| format!("running {what}"))?;
        let st = wait_timeout(&mut child, LXD_TIMEOUT).with_context(|| what.clone())?;
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        if !st.success() {
            bail!("{what} failed ({st}): {}", text.trim());
        }
        Ok(text)
    }

    fn start() -> Result<Self> {
        let netns = format!("shoalbench-lxd-{}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix("shoal-bench-lxd-")
            .tempdir()?;
        let st = Command::new("ip").args(["netns", "add", &netns]).status()?;
        if !st.success() {
            bail!("ip netns add {netns} failed");
        }
        let mut me = Self {
            netns,
            dir,
            daemon: None,
        };
        let _ = Command::new("ip")
            .args(["-n", &me.netns, "link", "set", "lo", "up"])
            .status();
        std::fs::create_dir_all(me.lxd_dir())?;
        let log = File::create(me.dir.path().join("lxd.log"))?;
        me.daemon = Some(
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", me.netns))
                .args(["--", "lxd", "--group", "root"])
                .env("LXD_DIR", me.lxd_dir())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting lxd in the namespace")?,
        );
        me.run("lxd", &["waitready", "--timeout", "60"], None)?;
        // No network at all: a dir pool and a root disk; nothing touches any interface.
        let preseed = me.dir.path().join("preseed.yaml");
        std::fs::write(
            &preseed,
            "storage_pools:\n- name: default\n  driver: dir\n\
             profiles:\n- name: default\n  devices:\n    root:\n      path: /\n      \
             pool: default\n      type: disk\n",
        )?;
        me.run("lxd", &["init", "--preseed"], Some(&preseed))?;
        Ok(me)
    }
}

impl Drop for PrivateLxd {
    fn drop(&mut self) {
        let _ = self.run("lxc", &["delete", "--force", NAME], None);
        let _ = self.run("lxd", &["shutdown", "--timeout", "30"], None);
        if let Some(mut d) = self.daemon.take() {
            if wait_timeout(&mut d, Duration::from_secs(10)).is_err() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        // Whatever LXD left mounted under its directory (shmounts, devlxd, the pool).
        let root = self.dir.path().to_string_lossy().into_owned();
        let mut mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| m.starts_with(&root))
            .collect();
        mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for m in mounts {
            let _ = Command::new("umount").args(["--lazy", &m]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
    }
}

/// Waits for `child` at most `limit`; kills it and fails after that.
fn wait_timeout(child: &mut Child, limit: Duration) -> Result<std::process::ExitStatus> {
    let t0 = Instant::now();
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            bail!("no answer within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The pid of the `[lxc monitor]` of container `name`.
fn lxc_monitor_pid(name: &str) -> Option<i32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.starts_with("[lxc monitor]") && cmd.split_whitespace().any(|w| w == name))
            .then_some(pid)
    })
}

fn measure_lxd(runs: usize) -> Result<Lxd> {
    let lxd = PrivateLxd::start()?;
    let image = lxd.dir.path().join("busybox.tar.gz");
    let st = Command::new(workspace().join("deploy/build-busybox-image"))
        .arg(&image)
        .stdout(Stdio::null())
        .status()
        .context("running deploy/build-busybox-image")?;
    if !st.success() {
        bail!("deploy/build-busybox-image failed");
    }
    let image_s = image.to_string_lossy().into_owned();
    lxd.run(
        "lxc",
        &["image", "import", &image_s, "--alias", "shoalbench-busybox"],
        None,
    )?;
    lxd.run("lxc", &["launch", "shoalbench-busybox", NAME], None)?;
    let lxd_dir = lxd.lxd_dir();
    let times = time_calls(runs, "`lxc exec`", || {
        let mut c = Command::new("lxc");
        c.args(["exec", NAME, "--", "true"])
            .env("LXD_DIR", &lxd_dir);
        c
    })?;
    let daemon_kib = lxd.daemon.as_ref().and_then(|d| rss_kib(d.id() as i32));
    let monitor_kib = lxc_monitor_pid(NAME).and_then(rss_kib);
    drop(lxd);
    Ok(Lxd {
        exec: summarize(&times),
        daemon_kib,
        monitor_kib,
    })
}
