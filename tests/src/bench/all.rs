//! `shoal-bench all`: every benchmark in sequence, each beside its reference, and one
//! Markdown table of medians and ratios (optionally also as JSON). A benchmark that fails
//! puts its error in its rows; the others still run, and the program exits non-zero at the
//! end.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::{exec, failover, moves, raft, runtime, schedule};

/// The benchmarks, in the order they run.
pub const BENCHMARKS: [&str; 6] = ["runtime", "exec", "raft", "schedule", "move", "failover"];

/// The published LXD daemon RSS range (MB) and LXC monitor RSS (MB).
const LXD_DAEMON_MB: (f64, f64) = (55.0, 85.0);
const LXC_MONITOR_MB: f64 = 3.0;

/// How big each benchmark is.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub runtime_runs: usize,
    pub exec_runs: usize,
    pub raft: raft::Options,
    pub schedule: schedule::Options,
    pub move_runs: usize,
    pub failover_runs: usize,
}

impl Sizes {
    /// Each subcommand's defaults.
    pub fn full() -> Self {
        Self {
            runtime_runs: 20,
            exec_runs: 50,
            raft: raft::Options::default(),
            schedule: schedule::Options::default(),
            move_runs: 5,
            failover_runs: 3,
        }
    }

    /// Fewer runs and a smaller schedule (200 hosts, 2,000 instances): minutes, not tens.
    pub fn quick() -> Self {
        Self {
            runtime_runs: 5,
            exec_runs: 10,
            raft: raft::Options {
                writes: 300,
                clients: 32,
            },
            schedule: schedule::Options {
                hosts: 200,
                instances: 2000,
                clients: 64,
            },
            move_runs: 1,
            failover_runs: 1,
        }
    }
}

/// What `shoal-bench all` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    pub quick: bool,
    /// Also write the rows as JSON here.
    pub json: Option<PathBuf>,
    /// Benchmarks not to run (names from [`BENCHMARKS`]).
    pub skip: Vec<String>,
}

/// One line of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub benchmark: String,
    /// "ms", "s", "MiB" or a rate such as "writes/s".
    pub unit: String,
    pub shoal: Option<f64>,
    /// What Shoal is compared with (and, without a value, why there is nothing).
    pub reference_name: String,
    pub reference: Option<f64>,
    /// Why Shoal's figure is missing.
    pub error: Option<String>,
    pub note: String,
}

impl Row {
    fn new(benchmark: &str, unit: &str, reference_name: &str) -> Self {
        Self {
            benchmark: benchmark.into(),
            unit: unit.into(),
            shoal: None,
            reference_name: reference_name.into(),
            reference: None,
            error: None,
            note: String::new(),
        }
    }

    fn shoal(mut self, v: f64) -> Self {
        self.shoal = Some(v);
        self
    }

    fn reference(mut self, v: Option<f64>) -> Self {
        self.reference = v;
        self
    }

    fn note(mut self, n: impl Into<String>) -> Self {
        self.note = n.into();
        self
    }

    fn failed(mut self, e: &str) -> Self {
        self.error = Some(e.to_string());
        self
    }

    /// Shoal's figure over the reference's, when both exist.
    pub fn ratio(&self) -> Option<f64> {
        match (self.shoal, self.reference) {
            (Some(s), Some(r)) if r > 0.0 => Some(s / r),
            _ => None,
        }
    }
}

/// A value with its unit, to a sensible precision.
pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "ms" if v >= 100.0 => format!("{v:.0} ms"),
        "ms" => format!("{v:.2} ms"),
        "s" => format!("{v:.2} s"),
        "MiB" => format!("{v:.1} MiB"),
        u if u.ends_with("/s") => format!("{v:.0} {u}"),
        u => format!("{v} {u}"),
    }
}

/// Text made safe for one Markdown table cell: one line, no bare `|`, at most `max` chars.
pub fn cell(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut s: String = one_line.chars().take(max).collect();
    if one_line.chars().count() > max {
        s.push('…');
    }
    s.replace('|', "\\|")
}

/// The Markdown table: benchmark | shoal | reference | ratio | note, columns padded.
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            let (shoal, note) = match (&r.error, r.shoal) {
                (Some(e), _) => ("failed".into(), format!("error: {}", cell(e, 300))),
                (None, Some(v)) => (format_value(v, &r.unit), cell(&r.note, 300)),
                (None, None) => ("—".into(), cell(&r.note, 300)),
            };
            let reference = match r.reference {
                Some(v) => format!(
                    "{} ({})",
                    format_value(v, &r.unit),
                    cell(&r.reference_name, 80)
                ),
                None => cell(&r.reference_name, 120),
            };
            let ratio = r.ratio().map_or("—".into(), |x| format!("{x:.2}"));
            [cell(&r.benchmark, 80), shoal, reference, ratio, note]
        })
        .collect();
    let head = ["benchmark", "shoal", "reference", "ratio", "note"];
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for c in &cells {
        for (i, x) in c.iter().enumerate() {
            w[i] = w[i].max(x.chars().count());
        }
    }
    let pad = |s: &str, i: usize, right: bool| {
        let n = w[i].saturating_sub(s.chars().count());
        if right {
            format!("{}{s}", " ".repeat(n))
        } else {
            format!("{s}{}", " ".repeat(n))
        }
    };
    let line = |c: &[String]| {
        let parts: Vec<String> = c
            .iter()
            .enumerate()
            .map(|(i, s)| pad(s, i, i == 1 || i == 3))
            .collect();
        format!("| {} |\n", parts.join(" | "))
    };
    let mut out = line(&head.map(String::from));
    let rule: Vec<String> = (0..5)
        .map(|i| {
            if i == 1 || i == 3 {
                format!("{}:", "-".repeat(w[i] - 1))
            } else {
                "-".repeat(w[i])
            }
        })
        .collect();
    out += &format!("| {} |\n", rule.join(" | "));
    for c in &cells {
        out += &line(c);
    }
    out
}

/// The rows as JSON, with each ratio.
pub fn json(rows: &[Row], quick: bool) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).expect("rows serialise");
            v["ratio"] = r.ratio().into();
            v
        })
        .collect();
    serde_json::json!({ "quick": quick, "rows": rows })
}

/// "1 run", "3 runs".
fn runs(n: usize) -> String {
    format!("{n} run{}", if n == 1 { "" } else { "s" })
}

fn ms_f(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn mb_to_mib(mb: f64) -> f64 {
    mb * 1e6 / (1024.0 * 1024.0)
}

/// A benchmark's result for the table: its outcome, or why there is none.
pub type Got<'a, T> = Result<&'a T, &'a str>;

/// The container cycle row.
pub fn runtime_rows(r: Got<runtime::Outcome>) -> Vec<Row> {
    let row = Row::new(
        "container cycle (create, start, kill, delete)",
        "ms",
        "crun",
    );
    vec![match r {
        Err(e) => row.failed(e),
        Ok(o) => {
            let (reference, why) = match &o.crun {
                Ok(c) => (Some(ms_f(c.median)), String::new()),
                Err(e) => (None, format!("; crun not measured: {e}")),
            };
            row.shoal(ms_f(o.ours.median))
                .reference(reference)
                .note(format!(
                    "busybox system container, {}, median (p90 {:.2} ms){why}",
                    runs(o.runs),
                    ms_f(o.ours.p90)
                ))
        }
    }]
}

/// The exec row.
pub fn exec_rows(r: Got<exec::Outcome>) -> Vec<Row> {
    let row = Row::new("exec `true` from the CLI", "ms", "lxc exec");
    vec![match r {
        Err(e) => row.failed(e),
        Ok(o) => {
            let what = format!(
                "median of {} `shoal exec NAME -- true` on a 1-host test bed",
                o.runs
            );
            match &o.lxd {
                Ok(l) => row
                    .shoal(ms_f(o.shoal.median))
                    .reference(Some(ms_f(l.exec.median)))
                    .note(format!(
                        "{what}; LXD private, in a network namespace of its own"
                    )),
                Err(e) => Row {
                    reference_name: format!("lxc exec: {e}"),
                    ..row
                }
                .shoal(ms_f(o.shoal.median))
                .note(format!("{what}; {e}")),
            }
        }
    }]
}

/// The cluster-write rows (one client, many clients; both through the leader).
pub fn raft_rows(r: Got<Vec<raft::Outcome>>, opts: raft::Options) -> Vec<Row> {
    let workloads = [
        ("1 client, leader".to_string(), "1 client".to_string()),
        (
            format!("{} clients, leader", opts.clients),
            format!("{} clients", opts.clients),
        ),
    ];
    workloads
        .iter()
        .map(|(workload, label)| {
            let row = Row::new(
                &format!("cluster writes, {label}"),
                "writes/s",
                "etcd, 3 members",
            );
            match r {
                Err(e) => row.failed(e),
                Ok(out) => match raft::pair(out, workload) {
                    None => row.failed(&format!("no result for workload {workload:?}")),
                    Some((s, e)) => row.shoal(s.rate()).reference(Some(e.rate())).note(format!(
                        "{} durable writes, 3 voters, same namespaces and disk; median latency \
                         {:.2} ms vs {:.2} ms",
                        s.writes,
                        ms_f(s.median),
                        ms_f(e.median)
                    )),
                },
            }
        })
        .collect()
}

/// The placements row.
pub fn schedule_rows(r: Got<schedule::Outcome>, opts: schedule::Options) -> Vec<Row> {
    let row = Row::new(
        "placements",
        "placements/s",
        "Nomad C1M, published; Nomad isn't packaged",
    )
    .reference(Some(schedule::NOMAD_C1M_PER_SEC));
    vec![match r {
        Err(e) => row.failed(e),
        Ok(o) => row.shoal(o.per_sec).note(format!(
            "{} instances on {} hollow hosts, {} clients; launch median {:.2} ms; {} refused",
            o.placed,
            o.hosts,
            opts.clients,
            ms_f(o.create_median),
            o.refused
        )),
    }]
}

/// The move downtime rows (cold, precopy).
pub fn move_rows(r: Got<moves::Outcome>) -> Vec<Row> {
    let reference = "`shoal stop` + `shoal start` in place";
    let cold = Row::new("move downtime, cold", "ms", reference);
    let pre = Row::new("move downtime, precopy", "ms", reference);
    match r {
        Err(e) => vec![cold.failed(e), pre.failed(e)],
        Ok(o) => {
            let restart = Some(ms_f(o.in_place_restart()));
            let note = format!(
                "100 MB of data, {}, median; includes busybox init's ~2 s shutdown",
                runs(o.runs)
            );
            vec![
                cold.shoal(ms_f(o.cold_downtime()))
                    .reference(restart)
                    .note(note.clone()),
                pre.shoal(ms_f(o.precopy_downtime()))
                    .reference(restart)
                    .note(note),
            ]
        }
    }
}

/// The failover row.
pub fn failover_rows(r: Got<failover::Outcome>) -> Vec<Row> {
    let row = Row::new(
        "failover (host killed to instances Running elsewhere)",
        "s",
        "design bound",
    )
    .reference(Some(failover::BOUND_SECS as f64));
    vec![match r {
        Err(e) => row.failed(e),
        Ok(o) => {
            let twice = if o.twice.is_empty() {
                "never on two hosts at once".to_string()
            } else {
                format!("RUNNING TWICE: {:?}", o.twice)
            };
            row.shoal(o.running.as_secs_f64()).note(format!(
                "{}, median; worst {:.2} s ({}); fenced after {:.2} s; {twice}",
                runs(o.runs),
                o.worst.as_secs_f64(),
                if o.worst <= Duration::from_secs(failover::BOUND_SECS) {
                    "within the bound"
                } else {
                    "BOUND EXCEEDED"
                },
                o.fence.as_secs_f64()
            ))
        }
    }]
}

/// The memory rows: against LXD measured beside us when it ran, else the published figures.
pub fn memory_rows(r: Got<runtime::Outcome>, lxd: Option<&exec::Lxd>) -> Vec<Row> {
    let published = "published figure (LXD not measured here)";
    let (daemon_ref, daemon_name, daemon_why) = match lxd.and_then(|l| l.daemon_kib) {
        Some(k) => (mib(k), "LXD daemon, measured", String::new()),
        None => (
            mb_to_mib((LXD_DAEMON_MB.0 + LXD_DAEMON_MB.1) / 2.0),
            "LXD daemon, published 55–85 MB",
            format!("; {published}, ratio to the middle"),
        ),
    };
    let (mon_ref, mon_name, mon_why) = match lxd.and_then(|l| l.monitor_kib) {
        Some(k) => (mib(k), "LXC monitor, measured", String::new()),
        None => (
            mb_to_mib(LXC_MONITOR_MB),
            "LXC monitor, published about 3 MB",
            format!("; {published}"),
        ),
    };
    let daemon = Row::new("daemon memory (RSS)", "MiB", daemon_name).reference(Some(daemon_ref));
    let monitor =
        Row::new("monitor memory per container (RSS)", "MiB", mon_name).reference(Some(mon_ref));
    match r {
        Err(e) => vec![daemon.failed(e), monitor.failed(e)],
        Ok(o) => vec![
            match &o.shoald_kib {
                Ok(k) => daemon
                    .shoal(mib(*k))
                    .note(format!("idle shoald, fresh data dir{daemon_why}")),
                Err(e) => daemon.failed(e),
            },
            match o.monitor_kib {
                Some(k) => monitor
                    .shoal(mib(k))
                    .note(format!("one busybox container's monitor{mon_why}")),
                None => monitor.failed("the monitor process was not found"),
            },
        ],
    }
}

/// Runs `f`, turning an error or a panic into the text for the rows.
fn attempt<T>(name: &str, i: usize, f: impl FnOnce() -> Result<T>) -> Result<T, String> {
    eprintln!("shoal-bench all: [{}/{}] {name}", i + 1, BENCHMARKS.len());
    let t0 = Instant::now();
    let r = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{e:#}")),
        Err(p) => Err(format!(
            "panicked: {}",
            p.downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| p.downcast_ref::<&str>().copied())
                .unwrap_or("?")
        )),
    };
    match &r {
        Ok(_) => eprintln!(
            "shoal-bench all: {name} done in {:.0} s",
            t0.elapsed().as_secs_f64()
        ),
        Err(e) => eprintln!("shoal-bench all: {name} FAILED: {e}"),
    }
    r
}

/// Results of every benchmark (`None` when skipped).
struct Results {
    runtime: Option<Result<runtime::Outcome, String>>,
    exec: Option<Result<exec::Outcome, String>>,
    raft: Option<Result<Vec<raft::Outcome>, String>>,
    schedule: Option<Result<schedule::Outcome, String>>,
    moves: Option<Result<moves::Outcome, String>>,
    failover: Option<Result<failover::Outcome, String>>,
}

fn got<T>(r: &Result<T, String>) -> Got<'_, T> {
    r.as_ref().map_err(String::as_str)
}

fn rows(r: &Results, sizes: &Sizes) -> Vec<Row> {
    let mut rows = Vec::new();
    if let Some(x) = &r.runtime {
        rows.extend(runtime_rows(got(x)));
    }
    if let Some(x) = &r.exec {
        rows.extend(exec_rows(got(x)));
    }
    if let Some(x) = &r.raft {
        rows.extend(raft_rows(got(x), sizes.raft));
    }
    if let Some(x) = &r.schedule {
        rows.extend(schedule_rows(got(x), sizes.schedule));
    }
    if let Some(x) = &r.moves {
        rows.extend(move_rows(got(x)));
    }
    if let Some(x) = &r.failover {
        rows.extend(failover_rows(got(x)));
    }
    if let Some(x) = &r.runtime {
        let lxd = match &r.exec {
            Some(Ok(e)) => e.lxd.as_ref().ok(),
            _ => None,
        };
        rows.extend(memory_rows(got(x), lxd));
    }
    rows
}

/// Runs every benchmark not skipped, prints the table, writes the JSON; fails at the end
/// if any benchmark failed.
pub fn run(opts: Options) -> Result<()> {
    for s in &opts.skip {
        if !BENCHMARKS.contains(&s.as_str()) {
            bail!(
                "--skip: unknown benchmark {s:?}; the benchmarks are {}",
                BENCHMARKS.join(", ")
            );
        }
    }
    if !crate::testbed::is_root() {
        bail!("shoal-bench all needs root (network namespaces, containers)");
    }
    let sizes = if opts.quick {
        Sizes::quick()
    } else {
        Sizes::full()
    };
    let on = |name: &str| !opts.skip.iter().any(|s| s == name);
    let t0 = Instant::now();
    let mut r = Results {
        runtime: None,
        exec: None,
        raft: None,
        schedule: None,
        moves: None,
        failover: None,
    };
    for (i, name) in BENCHMARKS.iter().enumerate() {
        if !on(name) {
            eprintln!("shoal-bench all: skipping {name}");
            continue;
        }
        match *name {
            "runtime" => {
                r.runtime = Some(attempt(name, i, || runtime::measure(sizes.runtime_runs)))
            }
            "exec" => r.exec = Some(attempt(name, i, || exec::measure(sizes.exec_runs))),
            "raft" => r.raft = Some(attempt(name, i, || raft::measure(sizes.raft))),
            "schedule" => {
                r.schedule = Some(attempt(name, i, || {
                    moves::preflight("schedule")?;
                    schedule::measure(sizes.schedule)
                }))
            }
            "move" => r.moves = Some(attempt(name, i, || moves::measure(sizes.move_runs))),
            "failover" => {
                r.failover = Some(attempt(name, i, || failover::measure(sizes.failover_runs)))
            }
            _ => unreachable!("every benchmark has a branch"),
        }
    }
    let rows = rows(&r, &sizes);
    println!(
        "shoal-bench all ({}, {:.0} s): medians; ratio = shoal / reference (for times and \
         memory lower is better, for rates higher)\n",
        if opts.quick {
            "quick sizes"
        } else {
            "full sizes"
        },
        t0.elapsed().as_secs_f64()
    );
    print!("{}", table(&rows));
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&json(&rows, opts.quick))?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        eprintln!("shoal-bench all: rows written to {}", path.display());
    }
    let failed: Vec<&str> = BENCHMARKS
        .iter()
        .copied()
        .filter(|n| match *n {
            "runtime" => matches!(r.runtime, Some(Err(_))),
            "exec" => matches!(r.exec, Some(Err(_))),
            "raft" => matches!(r.raft, Some(Err(_))),
            "schedule" => matches!(r.schedule, Some(Err(_))),
            "move" => matches!(r.moves, Some(Err(_))),
            _ => matches!(r.failover, Some(Err(_))),
        })
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} benchmark(s) failed: {}",
            failed.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::summarize;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn values_and_cells() {
        assert_eq!(format_value(12.345, "ms"), "12.35 ms");
        assert_eq!(format_value(2345.6, "ms"), "2346 ms");
        assert_eq!(format_value(9.5, "s"), "9.50 s");
        assert_eq!(format_value(21.04, "MiB"), "21.0 MiB");
        assert_eq!(format_value(3750.4, "placements/s"), "3750 placements/s");
        assert_eq!(cell("a | b\nc", 100), "a \\| b c");
        assert_eq!(cell("abcdef", 3), "abc…");
        assert_eq!(
            (runs(1), runs(3)),
            ("1 run".to_string(), "3 runs".to_string())
        );
    }

    #[test]
    fn table_has_header_rule_and_aligned_rows() {
        let rows = vec![
            Row::new("container cycle", "ms", "crun")
                .shoal(20.0)
                .reference(Some(10.0))
                .note("5 runs"),
            Row::new("exec", "ms", "lxc exec: LXD not installed").shoal(7.5),
            Row::new("cluster writes", "writes/s", "etcd").failed("boom |\n here"),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        assert!(lines[0].starts_with("| benchmark"), "{t}");
        assert!(lines[1].starts_with("| ---"), "{t}");
        assert!(lines[1].contains(":"), "numbers right-aligned: {t}");
        // Every line has the same width and five cells.
        let width = lines[0].chars().count();
        for l in &lines {
            assert_eq!(l.chars().count(), width, "{t}");
            assert_eq!(l.matches(" | ").count(), 4, "{l}");
        }
        assert!(lines[2].contains("20.00 ms"), "{t}");
        assert!(lines[2].contains("10.00 ms (crun)"), "{t}");
        assert!(lines[2].contains("2.00"), "{t}");
        assert!(lines[3].contains("lxc exec: LXD not installed"), "{t}");
        assert!(lines[3].contains("—"), "no ratio without a reference: {t}");
        assert!(lines[4].contains(" failed | "), "{t}");
        assert!(lines[4].contains("error: boom \\| here"), "{t}");
    }

    #[test]
    fn json_carries_ratios_and_errors() {
        let rows = vec![
            Row::new("placements", "placements/s", "Nomad C1M")
                .shoal(1875.0)
                .reference(Some(3750.0)),
            Row::new("failover", "s", "design bound").failed("bed did not come up"),
        ];
        let v = json(&rows, true);
        assert_eq!(v["quick"], true);
        assert_eq!(v["rows"][0]["ratio"], 0.5);
        assert_eq!(v["rows"][0]["unit"], "placements/s");
        assert!(v["rows"][1]["ratio"].is_null());
        assert_eq!(v["rows"][1]["error"], "bed did not come up");
    }

    #[test]
    fn failed_benchmarks_keep_their_rows() {
        assert_eq!(move_rows(Err("x")).len(), 2);
        assert_eq!(raft_rows(Err("x"), raft::Options::default()).len(), 2);
        let m = memory_rows(Err("no root"), None);
        assert!(m.iter().all(|r| r.error.as_deref() == Some("no root")));
        // Published references stand in for LXD, with a note.
        assert!(m[0].reference_name.contains("published"));
        assert!(m[0].reference.is_some());
    }

    #[test]
    fn rows_from_outcomes() {
        let rt = runtime::Outcome {
            runs: 3,
            ours: summarize(&[d(30), d(40), d(50)]),
            crun: Ok(summarize(&[d(20), d(20), d(20)])),
            monitor_kib: Some(2048),
            shoald_kib: Err("did not listen".into()),
        };
        let r = &runtime_rows(Ok(&rt))[0];
        assert_eq!((r.shoal, r.reference), (Some(40.0), Some(20.0)));
        assert_eq!(r.ratio(), Some(2.0));
        let lxd = exec::Lxd {
            exec: summarize(&[d(10)]),
            daemon_kib: Some(65536),
            monitor_kib: None,
        };
        let m = memory_rows(Ok(&rt), Some(&lxd));
        assert_eq!(m[0].error.as_deref(), Some("did not listen"));
        assert_eq!(m[0].reference, Some(64.0));
        assert_eq!(m[0].reference_name, "LXD daemon, measured");
        assert_eq!(m[1].shoal, Some(2.0));
        assert!(m[1].reference_name.contains("published"));

        let ex = exec::Outcome {
            runs: 1,
            shoal: summarize(&[d(8)]),
            lxd: Err(exec::NOT_INSTALLED.into()),
        };
        let e = &exec_rows(Ok(&ex))[0];
        assert_eq!(e.reference, None);
        assert!(e.reference_name.contains("LXD not installed"));

        let w = |system, ms| raft::Outcome {
            system,
            workload: "1 client, leader".into(),
            writes: 100,
            elapsed: d(ms),
            median: d(1),
            p99: d(2),
        };
        let out = vec![w("shoal", 500), w("etcd", 250)];
        let rr = raft_rows(Ok(&out), raft::Options::default());
        assert_eq!(rr[0].ratio(), Some(0.5));
        assert!(rr[1].error.is_some(), "the 32-client workload did not run");
    }
}
