//! `shoal-bench move`: downtime and total time of cold and precopy moves of a busybox
//! container holding 100 MB, moved back and forth between two hosts of a 4-host test bed,
//! plus a cold move of the stopped instance to show the transfer cost on its own.
//!
//! The figures come from the line `shoal move` prints, which the leader measures: total
//! from the start of the move, downtime from the stop request to Running on the target.

use anyhow::{bail, Context, Result};
use std::time::{Duration, Instant};

use crate::testbed::{bin_dir, is_root, workspace, CliOutput, Testbed};

const NAME: &str = "mover";
const HOSTS: [&str; 2] = ["a", "b"];
/// Pause between a move's end and the next move (see `Bench::one`).
const SETTLE: Duration = Duration::from_millis(1500);

/// Fails with a clear message unless we are root and the binaries and scripts exist.
pub fn preflight(what: &str) -> Result<()> {
    if !is_root() {
        bail!("shoal-bench {what} needs root (it creates network namespaces and containers)");
    }
    let bins = bin_dir();
    for b in ["shoald", "shoal"] {
        if !bins.join(b).is_file() {
            bail!(
                "{} is missing (the benchmark uses the binaries next to shoal-bench, or in \
                 $SHOAL_BIN_DIR); build them with `cargo build --release --bins`",
                bins.join(b).display()
            );
        }
    }
    let script = workspace().join("deploy/local-cluster");
    if !script.is_file() {
        bail!("{} is missing", script.display());
    }
    Ok(())
}

/// Runs `shoal ARGS` on `tb` and fails with both streams unless it succeeded.
pub fn cli(tb: &Testbed, args: &[&str]) -> Result<CliOutput> {
    let out = tb.shoal(args);
    if out.code != 0 {
        bail!(
            "`shoal {}` failed ({}): {}{}",
            args.join(" "),
            out.code,
            out.stdout.trim(),
            out.stderr.trim()
        );
    }
    Ok(out)
}

/// What `shoal move` reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveReport {
    /// "cold" or "precopy".
    pub mode: String,
    /// Bytes copied while the instance ran (precopy only).
    pub bytes_running: u64,
    /// Bytes copied after it stopped (or all of them for a cold move).
    pub bytes_stopped: u64,
    pub total: Duration,
    /// None when the instance was not running.
    pub downtime: Option<Duration>,
}

/// Parses `moved X from A to B (cold: N bytes; T ms in all, downtime D ms)` or
/// `(precopy: N bytes while running, M bytes after stopping; T ms in all, downtime D ms)`.
pub fn parse_move(line: &str) -> Option<MoveReport> {
    let inner = line.trim().split_once('(')?.1.strip_suffix(')')?;
    let (copied, times) = inner.split_once("; ")?;
    let (mode, sizes) = copied.split_once(": ")?;
    let num = |s: &str, suffix: &str| s.trim().strip_suffix(suffix)?.trim().parse::<u64>().ok();
    let (bytes_running, bytes_stopped) = match mode {
        "cold" => (0, num(sizes, "bytes")?),
        "precopy" => {
            let (r, s) = sizes.split_once(", ")?;
            (
                num(r, "bytes while running")?,
                num(s, "bytes after stopping")?,
            )
        }
        _ => return None,
    };
    let (total, downtime) = match times.split_once(", downtime ") {
        Some((t, d)) => (t, Some(d)),
        None => (times, None),
    };
    Some(MoveReport {
        mode: mode.to_string(),
        bytes_running,
        bytes_stopped,
        total: Duration::from_millis(num(total, "ms in all")?),
        downtime: match downtime {
            Some(d) => Some(Duration::from_millis(num(d, "ms")?)),
            None => None,
        },
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Cold,
    Precopy,
    Stopped,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Variant::Cold => "cold",
            Variant::Precopy => "precopy",
            Variant::Stopped => "cold, stopped",
        }
    }
}

struct Bench {
    tb: Testbed,
    at: usize,
    sum: String,
    /// Wall times of `shoal stop` and `shoal start` in place, as a reference.
    stops: Vec<Duration>,
    starts: Vec<Duration>,
    /// How long each move waited for the previous source copy to be removed.
    waits: Vec<Duration>,
    /// When the last move ended.
    arrived: Instant,
}

impl Bench {
    fn md5(&self) -> Result<String> {
        let out = cli(&self.tb, &["exec", NAME, "--", "md5sum", "/root/blob"])?;
        Ok(out
            .stdout
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string())
    }

    fn check(&self) -> Result<()> {
        let now = self.md5()?;
        if now != self.sum {
            bail!(
                "data changed after a move to {}: md5 {now}, was {}",
                HOSTS[self.at],
                self.sum
            );
        }
        Ok(())
    }

    fn timed(&mut self, verb: &str) -> Result<()> {
        let t = Instant::now();
        cli(&self.tb, &[verb, NAME])?;
        match verb {
            "stop" => self.stops.push(t.elapsed()),
            _ => self.starts.push(t.elapsed()),
        }
        Ok(())
    }

    /// Waits until `host` no longer holds the copy an earlier move left there: shoal removes
    /// source copies asynchronously (a 500 ms loop), and a move back before that fails with
    /// "destination ... is not empty".
    fn wait_source_removed(&mut self, host: &str) -> Result<()> {
        let dir = self.tb.host_dir(host).join("containers").join(NAME);
        let t = Instant::now();
        while dir.exists() {
            if t.elapsed() > Duration::from_secs(30) {
                bail!("{} still exists 30 s after the move away", dir.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.waits.push(t.elapsed());
        Ok(())
    }

    /// One move to the other host; verifies the data on arrival.
    fn one(&mut self, v: Variant) -> Result<MoveReport> {
        let to = HOSTS[1 - self.at];
        self.wait_source_removed(to)?;
        // Let the data settle: the precopy delta sends again every file whose ctime is
        // within 1 s of its read (coarse timestamps), and an import sets the blob's ctime.
        let since = self.arrived.elapsed();
        if since < SETTLE {
            std::thread::sleep(SETTLE - since);
        }
        let mut args = vec!["move", NAME, "--target", to];
        if v == Variant::Precopy {
            args.extend(["--mode", "precopy"]);
        }
        let out = cli(&self.tb, &args)?;
        let line = out.stdout.lines().rfind(|l| l.starts_with("moved "));
        let report = line
            .and_then(parse_move)
            .with_context(|| format!("unexpected output of `shoal move`: {}", out.stdout))?;
        self.at = 1 - self.at;
        self.arrived = Instant::now();
        if v == Variant::Stopped {
            self.timed("start")?;
            self.check()?;
            self.timed("stop")?;
        } else {
            self.check()?;
        }
        Ok(report)
    }
}

fn median(mut xs: Vec<u64>) -> u64 {
    xs.sort_unstable();
    xs[xs.len() / 2]
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// What one run of the move benchmark measured.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub runs: usize,
    /// Moves of the running instance, cold.
    pub cold: Vec<MoveReport>,
    /// Moves of the running instance, precopy.
    pub precopy: Vec<MoveReport>,
    /// Cold moves of the stopped instance.
    pub stopped: Vec<MoveReport>,
    /// Wall times of `shoal stop` and `shoal start` in place, as a reference.
    pub stops: Vec<Duration>,
    pub starts: Vec<Duration>,
    /// How long each move waited for the previous source copy to be removed.
    pub waits: Vec<Duration>,
}

impl Outcome {
    /// Median downtime of the cold moves of the running instance.
    pub fn cold_downtime(&self) -> Duration {
        median_downtime(&self.cold)
    }

    /// Median downtime of the precopy moves.
    pub fn precopy_downtime(&self) -> Duration {
        median_downtime(&self.precopy)
    }

    /// Median CLI wall time of `shoal stop` plus that of `shoal start`, in place.
    pub fn in_place_restart(&self) -> Duration {
        ms_median(&self.stops) + ms_median(&self.starts)
    }
}

fn median_downtime(rs: &[MoveReport]) -> Duration {
    Duration::from_millis(median(
        rs.iter()
            .map(|r| r.downtime.unwrap_or_default().as_millis() as u64)
            .collect(),
    ))
}

/// The median of `xs` in whole milliseconds (zero for none).
fn ms_median(xs: &[Duration]) -> Duration {
    if xs.is_empty() {
        return Duration::ZERO;
    }
    Duration::from_millis(median(xs.iter().map(|d| d.as_millis() as u64).collect()))
}

/// Runs the benchmark and prints the table.
pub fn run(runs: usize) -> Result<()> {
    let o = measure(runs)?;
    print(&o);
    Ok(())
}

/// Moves the instance back and forth and collects what `shoal move` reported.
pub fn measure(runs: usize) -> Result<Outcome> {
    preflight("move")?;
    if runs == 0 {
        bail!("--runs must be at least 1");
    }
    eprintln!("bringing up a 4-host test bed...");
    let tb = Testbed::up(4)?;
    cli(&tb, &["launch", "busybox", NAME, "--target", HOSTS[0]])?;
    cli(
        &tb,
        &[
            "exec",
            NAME,
            "--",
            "dd",
            "if=/dev/urandom",
            "of=/root/blob",
            "bs=1M",
            "count=100",
        ],
    )?;
    let mut b = Bench {
        tb,
        at: 0,
        sum: String::new(),
        stops: vec![],
        starts: vec![],
        waits: vec![],
        arrived: Instant::now(),
    };
    b.sum = b.md5()?;
    eprintln!("wrote 100 MB in {NAME} on a (md5 {}); warming up", b.sum);
    // One untimed round trip: brings the image to b and warms the page cache.
    b.one(Variant::Cold)?;
    b.one(Variant::Cold)?;

    let mut results: [(Variant, Vec<MoveReport>); 3] = [
        (Variant::Cold, vec![]),
        (Variant::Precopy, vec![]),
        (Variant::Stopped, vec![]),
    ];
    for i in 0..runs {
        for (v, out) in results.iter_mut().take(2) {
            let r = b.one(*v)?;
            eprintln!(
                "run {}: {} -> {}: {}",
                i + 1,
                v.label(),
                HOSTS[b.at],
                describe(&r)
            );
            out.push(r);
        }
    }
    b.timed("stop")?;
    for i in 0..runs {
        let r = b.one(Variant::Stopped)?;
        eprintln!(
            "run {}: {} -> {}: {}",
            i + 1,
            Variant::Stopped.label(),
            HOSTS[b.at],
            describe(&r)
        );
        results[2].1.push(r);
    }

    b.tb.down();
    let [cold, precopy, stopped] = results.map(|(_, rs)| rs);
    Ok(Outcome {
        runs,
        cold,
        precopy,
        stopped,
        stops: b.stops,
        starts: b.starts,
        waits: b.waits,
    })
}

/// Prints the table of one run.
pub fn print(o: &Outcome) {
    let runs = o.runs;
    let results = [
        (Variant::Cold, &o.cold),
        (Variant::Precopy, &o.precopy),
        (Variant::Stopped, &o.stopped),
    ];
    println!(
        "moves of a busybox container holding 100 MB between hosts a and b, \
         {runs} runs each (median), data verified by md5 after every move"
    );
    println!(
        "{:<15} {:>14} {:>14} {:>26}",
        "mode", "downtime", "total", "bytes moved"
    );
    let mut downs = vec![];
    for (v, rs) in results {
        let down = match v {
            Variant::Stopped => None,
            _ => Some(median(
                rs.iter()
                    .map(|r| r.downtime.unwrap_or_default().as_millis() as u64)
                    .collect(),
            )),
        };
        downs.push(down);
        let total = median(rs.iter().map(|r| r.total.as_millis() as u64).collect());
        let moved = match v {
            Variant::Precopy => format!(
                "{:.1} MB + {:.2} MB",
                mb(median(rs.iter().map(|r| r.bytes_running).collect())),
                mb(median(rs.iter().map(|r| r.bytes_stopped).collect()))
            ),
            _ => format!(
                "{:.1} MB",
                mb(median(rs.iter().map(|r| r.bytes_stopped).collect()))
            ),
        };
        println!(
            "{:<15} {:>14} {:>14} {:>26}",
            v.label(),
            down.map_or("-".to_string(), |d| format!("{d} ms")),
            format!("{total} ms"),
            moved
        );
    }
    if let (Some(c), Some(p)) = (downs[0], downs[1]) {
        println!(
            "downtime ratio precopy/cold (median): {:.2}",
            p as f64 / c.max(1) as f64
        );
    }
    let stopped = results[2].1;
    let copy_ms = median(stopped.iter().map(|r| r.total.as_millis() as u64).collect());
    let bytes = median(stopped.iter().map(|r| r.bytes_stopped).collect());
    println!(
        "stopped copy time: {copy_ms} ms for {:.1} MB ({:.0} MB/s), no downtime",
        mb(bytes),
        mb(bytes) / (copy_ms.max(1) as f64 / 1000.0)
    );
    let ms_of = |xs: &[Duration]| median(xs.iter().map(|d| d.as_millis() as u64).collect());
    println!(
        "reference, in place: `shoal stop` {} ms, `shoal start` {} ms (CLI wall time, median)",
        ms_of(&o.stops),
        ms_of(&o.starts)
    );
    let stop = ms_of(&o.stops);
    if let (Some(c), Some(p)) = (downs[0], downs[1]) {
        println!(
            "downtime beyond an in-place stop (median downtime - `shoal stop` median): \
             cold {} ms, precopy {} ms",
            c as i64 - stop as i64,
            p as i64 - stop as i64
        );
    }
    println!(
        "before each move the target's old copy was waited for (removed asynchronously): \
         median {} ms, max {} ms",
        ms_of(&o.waits),
        o.waits.iter().max().unwrap_or(&Duration::ZERO).as_millis()
    );
    println!(
        "each move started at least {} ms after the previous one ended, so no file's ctime \
         was within precopy's 1 s racy window",
        SETTLE.as_millis()
    );
    println!(
        "note: downtime includes busybox init's clean shutdown, about 2 s (it powers off \
         2 s after SIGUSR2), and the start on the target"
    );
}

fn describe(r: &MoveReport) -> String {
    let down = r.downtime.map_or(String::new(), |d| {
        format!(", downtime {} ms", d.as_millis())
    });
    format!(
        "{} + {} bytes, total {} ms{down}",
        r.bytes_running,
        r.bytes_stopped,
        r.total.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cold_precopy_and_stopped_lines() {
        let c = parse_move(
            "moved c1 from a to b (cold: 104857600 bytes; 2312 ms in all, downtime 2300 ms)",
        )
        .unwrap();
        assert_eq!(c.mode, "cold");
        assert_eq!((c.bytes_running, c.bytes_stopped), (0, 104857600));
        assert_eq!(c.total, Duration::from_millis(2312));
        assert_eq!(c.downtime, Some(Duration::from_millis(2300)));

        let p = parse_move(
            "moved c1 from b to a (precopy: 104857600 bytes while running, 4096 bytes after \
             stopping; 3100 ms in all, downtime 2100 ms)\n",
        )
        .unwrap();
        assert_eq!(p.mode, "precopy");
        assert_eq!((p.bytes_running, p.bytes_stopped), (104857600, 4096));
        assert_eq!(p.downtime, Some(Duration::from_millis(2100)));

        let s = parse_move("moved c1 from a to b (cold: 10 bytes; 500 ms in all)").unwrap();
        assert_eq!((s.total, s.downtime), (Duration::from_millis(500), None));

        assert!(parse_move("moved c1 from a to b").is_none());
        assert!(parse_move("moved c1 from a to b (live: 1 bytes; 1 ms in all)").is_none());
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(vec![3, 1, 2]), 2);
        assert_eq!(median(vec![4, 1, 3, 2]), 3);
    }
}
