//! `shoal-bench`: benchmarks that run a reference beside Shoal in one invocation.
//!
//!   shoal-bench all [--quick] [--json FILE] [--skip LIST]
//!                                    every benchmark below in sequence, one table of ratios
//!   shoal-bench runtime [--runs N]   container cycle against crun; monitor and daemon memory
//!   shoal-bench exec [--runs N]      `shoal exec NAME -- true` against `lxc exec` (if installed)
//!   shoal-bench raft [--writes N]    durable cluster-state writes against 3 etcd members
//!   shoal-bench move [--runs N]      downtime of cold and precopy moves of 100 MB
//!   shoal-bench failover [--runs N]  time from a host's death to its instances running elsewhere
//!   shoal-bench schedule [--hosts N] [--instances N] [--clients N]
//!                                    placements per second on hollow hosts (Nomad C1M: 3,750/s)

use anyhow::{bail, Result};
use std::path::Path;

fn usage() -> ! {
    eprintln!("usage: shoal-bench all [--quick] [--json FILE] [--skip runtime,exec,raft,schedule,move,failover]");
    eprintln!("       shoal-bench runtime [--runs N]");
    eprintln!("       shoal-bench exec [--runs N]");
    eprintln!("       shoal-bench raft [--writes N] [--clients N]");
    eprintln!("       shoal-bench move [--runs N]");
    eprintln!("       shoal-bench failover [--runs N]");
    eprintln!("       shoal-bench schedule [--hosts N] [--instances N] [--clients N]");
    std::process::exit(2)
}

/// `--runs N` after the subcommand, or `default`.
fn runs_flag(args: &[String], default: usize) -> usize {
    match args.get(1).map(String::as_str) {
        Some("--runs") if args.len() == 3 => args[2].parse().unwrap_or_else(|_| usage()),
        None => default,
        _ => usage(),
    }
}

/// `--flag N` pairs (every value a number), or the usage on anything else.
fn numeric_flags(args: &[String]) -> Vec<(&str, usize)> {
    args.chunks(2)
        .map(|pair| match pair {
            [flag, n] => (flag.as_str(), n.parse().unwrap_or_else(|_| usage())),
            _ => usage(),
        })
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("runtime") => {
            let runs = match args.get(1).map(String::as_str) {
                Some("--runs") => args
                    .get(2)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| usage()),
                None => 20,
                _ => usage(),
            };
            if !shoal_tests::is_root() {
                bail!("shoal-bench runtime needs root");
            }
            shoal_tests::bench::runtime::run(runs)
        }
        Some("raft") => {
            let mut opts = shoal_tests::bench::raft::Options::default();
            for (flag, value) in numeric_flags(&args[1..]) {
                match flag {
                    "--writes" => opts.writes = value,
                    "--clients" => opts.clients = value,
                    _ => usage(),
                }
            }
            shoal_tests::bench::raft::run(opts)
        }
        Some("schedule") => {
            let mut opts = shoal_tests::bench::schedule::Options::default();
            for (flag, value) in numeric_flags(&args[1..]) {
                match flag {
                    "--hosts" => opts.hosts = value,
                    "--instances" => opts.instances = value,
                    "--clients" => opts.clients = value,
                    _ => usage(),
                }
            }
            shoal_tests::bench::schedule::run(opts)
        }
        Some("all") => {
            let mut opts = shoal_tests::bench::all::Options {
                quick: false,
                json: None,
                skip: vec![],
            };
            let mut rest = args[1..].iter();
            while let Some(flag) = rest.next() {
                match flag.as_str() {
                    "--quick" => opts.quick = true,
                    "--json" => opts.json = Some(rest.next().unwrap_or_else(|| usage()).into()),
                    "--skip" => opts.skip.extend(
                        rest.next()
                            .unwrap_or_else(|| usage())
                            .split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from),
                    ),
                    _ => usage(),
                }
            }
            shoal_tests::bench::all::run(opts)
        }
        Some("exec") => shoal_tests::bench::exec::run(runs_flag(&args, 50)),
        Some("move") => shoal_tests::bench::moves::run(runs_flag(&args, 5)),
        Some("failover") => shoal_tests::bench::failover::run(runs_flag(&args, 3)),
        Some("crun-cycles") => {
            let bundle = args.get(1).unwrap_or_else(|| usage());
            let runs = args
                .get(2)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| usage());
            shoal_tests::bench::runtime::crun_cycles(Path::new(bundle), runs)
        }
        _ => usage(),
    }
}
