//! `shoal-bench`: benchmarks that run a reference beside Shoal in one invocation.
//!
//!   shoal-bench runtime [--runs N]   container cycle against crun; monitor and daemon memory

use anyhow::{bail, Result};
use std::path::Path;

fn usage() -> ! {
    eprintln!("usage: shoal-bench runtime [--runs N]");
    std::process::exit(2)
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
