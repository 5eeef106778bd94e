//! `shoal-soak`: the fault suite's long tier. Brings up a test bed, runs the workload and
//! random faults for as long as asked, checks every invariant after every fault round
//! (I1-I5; I6 after `down`), prints a summary and exits non-zero on any violation.
//!
//! ```sh
//! cargo build --release --bins
//! cargo run --release -p shoal-tests --bin shoal-soak -- --minutes 30
//! ```

use anyhow::{bail, Context, Result};
use shoal_tests::faults::{self, Bed, Fault, HostWatch, LeaderWatch, Leaks, Rng, WorkloadConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: shoal-soak [--minutes N] [--hosts N] [--seed N] [--clients N] [--faults a,b,...]
  Runs random faults against a local test bed (needs root) and checks the invariants after
  each round. Faults: kill-leader kill-voters-loop kill-all pause-leader isolate-leader
  isolate-worker one-way-partition packet-loss disk-full crash-in-create crash-in-move
  corrupt-store membership-change-during-fault replace-wiped (default: all).";

struct Opts {
    minutes: f64,
    hosts: usize,
    seed: u64,
    clients: usize,
    faults: Vec<Fault>,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        minutes: 30.0,
        hosts: 4,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        clients: 3,
        faults: Fault::ALL.to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || {
            args.next()
                .with_context(|| format!("{a} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--minutes" => o.minutes = val()?.parse().context("--minutes takes a number")?,
            "--hosts" => o.hosts = val()?.parse().context("--hosts takes a number")?,
            "--seed" => o.seed = val()?.parse().context("--seed takes a number")?,
            "--clients" => o.clients = val()?.parse().context("--clients takes a number")?,
            "--faults" => {
                o.faults = val()?
                    .split(',')
                    .map(|n| {
                        Fault::ALL
                            .into_iter()
                            .find(|f| f.name() == n)
                            .with_context(|| format!("unknown fault '{n}'\n{USAGE}"))
                    })
                    .collect::<Result<_>>()?
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument '{other}'\n{USAGE}"),
        }
    }
    if !(4..=8).contains(&o.hosts) {
        bail!("--hosts takes 4 to 8 (the faults need a worker beside three voters)");
    }
    Ok(o)
}

fn main() -> Result<()> {
    let o = parse()?;
    if !shoal_tests::is_root() {
        bail!("shoal-soak needs root (it creates network namespaces): run it with sudo");
    }
    let t0 = Instant::now();
    let budget = Duration::from_secs_f64(o.minutes * 60.0);
    eprintln!(
        "shoal-soak: {} hosts, {} clients, seed {}, {:.1} minutes",
        o.hosts, o.clients, o.seed, o.minutes
    );
    let bed = Arc::new(Bed::up(o.hosts, 3).context("bringing up the test bed")?);
    let watch = HostWatch::start(&bed, Duration::from_millis(250));
    let mut leaders = LeaderWatch::start(&bed, Duration::from_millis(700));
    let mut rng = Rng::new(o.seed);
    let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut calls, mut acked, mut inst_calls) = (0usize, 0usize, 0usize);
    let mut violations = Vec::new();
    let mut rounds = 0u64;
    // Replacing members uses up Raft member ids (1-5); later joiners become agents, so
    // those faults run a bounded number of times per run.
    let mut replacements = 0;
    while t0.elapsed() < budget {
        let mut fault = *rng.pick(&o.faults);
        if matches!(fault, Fault::CorruptStore | Fault::ReplaceWiped) {
            if replacements >= 1 {
                fault = Fault::KillLeader;
            } else {
                replacements += 1;
            }
        }
        let cfg = WorkloadConfig {
            clients: o.clients,
            ..WorkloadConfig::default()
        };
        let r = faults::round(&bed, &watch, &leaders, fault, &mut rng, rounds, cfg);
        rounds += 1;
        *by_kind.entry(fault.name()).or_default() += 1;
        calls += r.calls;
        acked += r.acked_writes;
        inst_calls += r.instance_calls;
        println!(
            "[{:>6.1}s] round {} {}: {} ({} calls, {} acknowledged writes, {:.1} s)\n  instance operations: {}{}",
            t0.elapsed().as_secs_f64(),
            r.round,
            fault.name(),
            r.what,
            r.calls,
            r.acked_writes,
            r.took.as_secs_f64(),
            r.instance_outcomes,
            if r.violations.is_empty() {
                String::new()
            } else {
                format!(" VIOLATIONS: {:#?}", r.violations)
            }
        );
        violations.extend(r.violations);
    }
    if !violations.is_empty() {
        println!("{}", bed.log_tails(40));
    }
    leaders.stop();
    let (samples, terms) = leaders.stats();
    let scans = watch.scans();
    drop(watch);
    let leaks = Leaks::note(&bed);
    drop(leaders);
    match Arc::try_unwrap(bed) {
        Ok(bed) => bed.tb.down(),
        Err(_) => bail!("the test bed is still shared"),
    }
    if let Err(e) = leaks.check() {
        violations.push(e);
    }
    println!("\nshoal-soak summary (seed {})", o.seed);
    println!(
        "  duration          {:.1} min",
        t0.elapsed().as_secs_f64() / 60.0
    );
    println!("  rounds            {rounds}");
    for (k, n) in &by_kind {
        println!("    {k:<32} {n}");
    }
    println!("  calls             {calls} ({inst_calls} instance operations)");
    println!("  acknowledged writes {acked}");
    println!("  leader samples    {samples} over {terms} terms");
    println!("  host scans        {scans}");
    println!("  violations        {}", violations.len());
    for v in &violations {
        println!("    - {v}");
    }
    if !violations.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}
