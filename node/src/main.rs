//! `shoald`, the Shoal node agent.
//!
//! `shoald monitor ...` is the per-container monitor, re-executed from this binary. It is
//! dispatched before any thread or runtime starts, so the monitor stays single-threaded.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("monitor") {
        std::process::exit(shoal_node::runtime::monitor_main(&args[2..]));
    }
    // Fail points (fault suite only): `FAILPOINTS=name=action;...`, see tests/src/faults.
    #[cfg(feature = "failpoints")]
    let failpoints = fail::FailScenario::setup();
    let code = shoal_node::daemon::main(args);
    #[cfg(feature = "failpoints")]
    drop(failpoints);
    std::process::exit(code);
}
