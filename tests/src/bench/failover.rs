//! `shoal-bench failover`: time from a host's death (its `shoald` killed) to its instances
//! Running elsewhere, and to their old copies being fenced (their init gone on the dead
//! host), on a 4-host test bed. The design bound is 15 s: healing after 10 s of silence.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::moves::{cli, preflight};
use crate::testbed::Testbed;

const VICTIM: &str = "b";
const INSTANCES: usize = 4;
const BOUND: Duration = Duration::from_secs(15);
const GIVE_UP: Duration = Duration::from_secs(60);

/// Whether `pid` exists and is not a zombie.
fn alive(pid: i64) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .contains("State:\tZ")
}

fn list(tb: &Testbed) -> Result<Vec<Value>> {
    let out = cli(tb, &["list", "--format", "json"])?;
    let v: Value = serde_json::from_str(&out.stdout).context("parsing `shoal list` JSON")?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn member_status(tb: &Testbed, name: &str) -> Result<String> {
    let out = cli(tb, &["cluster", "list", "--format", "json"])?;
    let v: Value =
        serde_json::from_str(&out.stdout).context("parsing `shoal cluster list` JSON")?;
    Ok(v.as_array()
        .and_then(|a| a.iter().find(|m| m["name"] == name))
        .and_then(|m| m["status"].as_str())
        .unwrap_or("")
        .to_string())
}

/// Polls `done` every 100 ms until it holds, for at most `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let t0 = Instant::now();
    while !done()? {
        if t0.elapsed() > limit {
            bail!("{what}: not done after {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// Timings of one failover.
struct Run {
    fence: Duration,
    running: Duration,
    cleanup: Duration,
    /// Instances seen Running elsewhere while their old init was still alive.
    twice: Vec<String>,
}

fn one(tb: &Testbed, round: usize) -> Result<Run> {
    wait_until(GIVE_UP, &format!("{VICTIM} Online"), || {
        Ok(member_status(tb, VICTIM)? == "Online")
    })?;
    let names: Vec<String> = (0..INSTANCES).map(|i| format!("f{round}x{i}")).collect();
    for n in &names {
        cli(
            tb,
            &[
                "launch",
                "busybox",
                n,
                "--target",
                VICTIM,
                "-c",
                "cluster.evacuate=auto",
            ],
        )?;
    }
    let before = list(tb)?;
    let mut pids = BTreeMap::new();
    for n in &names {
        let i = before
            .iter()
            .find(|i| i["name"] == n.as_str())
            .with_context(|| format!("{n} missing from `shoal list`"))?;
        let pid = i["init_pid"].as_i64().unwrap_or(0);
        if i["location"] != VICTIM || i["status"] != "Running" || pid <= 0 {
            bail!("{n} is not Running on {VICTIM} before the kill: {i}");
        }
        pids.insert(n.clone(), pid);
    }

    // The fence watcher polls the old inits every 5 ms beside the list poller.
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let (fence, running, twice) = std::thread::scope(|s| -> Result<_> {
        let watcher = s.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                if pids.values().all(|p| !alive(*p)) {
                    return Some(t0.elapsed());
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            None
        });
        let polled = (|| -> Result<_> {
            let out = tb.script(&["stop-host", VICTIM])?;
            if out.code != 0 {
                bail!("stop-host {VICTIM} failed: {}{}", out.stdout, out.stderr);
            }
            let mut twice = vec![];
            loop {
                let now = list(tb)?;
                let mut done = true;
                for (n, pid) in &pids {
                    let moved = now.iter().any(|i| {
                        i["name"] == n.as_str()
                            && i["location"] != VICTIM
                            && i["status"] == "Running"
                    });
                    if moved && alive(*pid) && !twice.contains(n) {
                        twice.push(n.clone());
                    }
                    done &= moved;
                }
                if done {
                    return Ok((t0.elapsed(), twice));
                }
                if t0.elapsed() > GIVE_UP {
                    bail!("instances not Running elsewhere after 60 s: {now:?}");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })();
        let fence_deadline = Instant::now() + GIVE_UP;
        while !watcher.is_finished() && Instant::now() < fence_deadline && polled.is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::Relaxed);
        let fence = watcher.join().expect("fence watcher");
        let (running, twice) = polled?;
        let fence = fence.context("old inits still alive 60 s after the kill")?;
        Ok((fence, running, twice))
    })?;

    let out = tb.script(&["start-host", VICTIM])?;
    if out.code != 0 {
        bail!("start-host {VICTIM} failed: {}{}", out.stdout, out.stderr);
    }
    let t1 = Instant::now();
    let dir = tb.host_dir(VICTIM).join("containers");
    let mut left = vec![];
    wait_until(
        GIVE_UP,
        &format!("stale copies removed from {VICTIM}"),
        || {
            left = std::fs::read_dir(&dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .flatten()
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.')) // runtime scratch such as `.rootfs`
                .collect::<Vec<_>>();
            Ok(left.is_empty())
        },
    )
    .with_context(|| format!("left in {}: {left:?}", dir.display()))?;
    let cleanup = t1.elapsed();
    let mut args = vec!["delete", "--force"];
    args.extend(names.iter().map(String::as_str));
    cli(tb, &args)?;
    Ok(Run {
        fence,
        running,
        cleanup,
        twice,
    })
}

fn median(xs: impl Iterator<Item = Duration>) -> Duration {
    let mut v: Vec<Duration> = xs.collect();
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// What one run of the failover benchmark measured (medians over the runs).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub runs: usize,
    /// From the kill until the old inits were gone.
    pub fence: Duration,
    /// From the kill until every instance ran elsewhere.
    pub running: Duration,
    /// From the restart of the dead host until its stale copies were removed.
    pub cleanup: Duration,
    /// The slowest run's time to Running elsewhere.
    pub worst: Duration,
    /// Instances seen Running elsewhere while their old init was alive.
    pub twice: Vec<String>,
}

/// The design bound of a failover.
pub const BOUND_SECS: u64 = BOUND.as_secs();

/// Runs the benchmark and prints the medians.
pub fn run(runs: usize) -> Result<()> {
    let o = measure(runs)?;
    print(&o);
    Ok(())
}

/// Kills host b's daemon `runs` times and times the failovers.
pub fn measure(runs: usize) -> Result<Outcome> {
    preflight("failover")?;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    eprintln!("bringing up a 4-host test bed...");
    let tb = Testbed::up(4)?;
    let mut results = Vec::with_capacity(runs);
    for round in 0..runs {
        let r = one(&tb, round)?;
        eprintln!(
            "run {}: fenced after {}, Running elsewhere after {}, stale copies removed {} after restart{}",
            round + 1,
            secs(r.fence),
            secs(r.running),
            secs(r.cleanup),
            if r.twice.is_empty() {
                String::new()
            } else {
                format!(", RUNNING TWICE: {:?}", r.twice)
            }
        );
        results.push(r);
    }
    let fence = median(results.iter().map(|r| r.fence));
    let running = median(results.iter().map(|r| r.running));
    let cleanup = median(results.iter().map(|r| r.cleanup));
    let worst = results.iter().map(|r| r.running).max().unwrap_or_default();
    let twice: Vec<String> = results.iter().flat_map(|r| r.twice.clone()).collect();
    tb.down();
    Ok(Outcome {
        runs,
        fence,
        running,
        cleanup,
        worst,
        twice,
    })
}

/// Prints the medians of one run.
pub fn print(o: &Outcome) {
    let (runs, fence, running, cleanup, worst, twice) =
        (o.runs, o.fence, o.running, o.cleanup, o.worst, &o.twice);
    println!(
        "failover: SIGKILL of host {VICTIM}'s shoald with {INSTANCES} busybox instances \
         (cluster.evacuate=auto), {runs} runs (median), from the kill"
    );
    println!(
        "{:<44} {:>10}",
        "time to fence (old inits gone on b)",
        secs(fence)
    );
    println!("{:<44} {:>10}", "time to Running elsewhere", secs(running));
    println!(
        "{:<44} {:>10}",
        "stale copies removed after b restarts",
        secs(cleanup)
    );
    println!(
        "design bound: {} (heal after 10 s of silence); worst run {}: {}",
        secs(BOUND),
        secs(worst),
        if worst <= BOUND { "within" } else { "EXCEEDED" }
    );
    if twice.is_empty() {
        println!("never on two hosts at once: old inits were gone before every copy ran elsewhere");
    } else {
        println!("RUNNING TWICE (old init alive while Running elsewhere): {twice:?}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_liveness() {
        let d = |s| Duration::from_secs(s);
        assert_eq!(median([d(3), d(1), d(2)].into_iter()), d(2));
        assert!(alive(std::process::id() as i64));
        assert!(!alive(i32::MAX as i64));
    }
}
