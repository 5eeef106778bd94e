//! The monitor's entry point: argument parsing, the double fork, the start report on
//! stdout, and everything set up before the event loop takes over.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use super::super::config::{
    read_json, state_path, write_json, ContainerPaths, MonitorState, StoredConfig,
};
use super::super::protocol::{self, WireError};
use crate::sys::{self, Forked};

/// PATH for init and exec'd commands that bring none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The first line the monitor prints on success: `ok <init pid>`.
pub(crate) const REPORT_OK: &str = "ok";
/// The first line on failure: `err <WireError as JSON>`.
pub(crate) const REPORT_ERR: &str = "err";

struct Args {
    containers_dir: PathBuf,
    run_dir: PathBuf,
    group: String,
    name: String,
}

fn parse_args(args: &[String]) -> Option<Args> {
    match args {
        [containers_dir, run_dir, group, name] => Some(Args {
            containers_dir: containers_dir.into(),
            run_dir: run_dir.into(),
            group: group.clone(),
            name: name.clone(),
        }),
        _ => None,
    }
}

/// Writes the one-line start report to stdout (the daemon's pipe), then points stdout at
/// /dev/null so the daemon sees EOF and no later write can block or fail on it.
fn report(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    drop(out);
    if let Ok(null) = OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdout(null.as_fd());
    }
}

fn report_err(e: &WireError) {
    let json = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
    report(&format!("{REPORT_ERR} {json}"));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Entry point of `shoald monitor <containers_dir> <run_dir> <cgroup_group> <name>`;
/// returns the process exit code.
pub fn monitor_main(args: &[String]) -> i32 {
    let Some(args) = parse_args(args) else {
        eprintln!("usage: shoald monitor CONTAINERS_DIR RUN_DIR CGROUP_GROUP NAME");
        return 2;
    };
    // Nothing inherited beyond stdio is ours to keep.
    let _ = sys::close_range(3, u32::MAX, 0);
    let single = match sys::SingleThreaded::check() {
        Ok(s) => s,
        Err(e) => {
            report_err(&WireError::new(
                "checking the monitor is single-threaded",
                e,
                "",
            ));
            return 1;
        }
    };
    match sys::fork(single) {
        Err(e) => {
            report_err(&WireError::new("forking the monitor", e, ""));
            return 1;
        }
        Ok(Forked::Parent { .. }) => return 0,
        Ok(Forked::Child) => {}
    }
    let _ = nix::unistd::setsid();
    match serve(&args, single) {
        Ok(code) => code,
        Err(e) => {
            eprintln!(
                "monitor {}: {}: {} ({})",
                args.name,
                e.step,
                Errno::from_raw(e.errno),
                e.detail
            );
            report_err(&e);
            1
        }
    }
}

fn fail(step: &'static str) -> impl Fn(Errno) -> WireError {
    move |e| WireError::new(step, e, "")
}

fn serve(args: &Args, single: sys::SingleThreaded) -> Result<i32, WireError> {
    use nix::sys::prctl;
    prctl::set_child_subreaper(true).map_err(fail("becoming a subreaper"))?;
    // CVE-2019-5736: nothing in the container may open /proc/<pid>/exe (or fd, mem) of
    // this process or of the children it forks into the container's namespaces.
    prctl::set_dumpable(false).map_err(fail("making the monitor non-dumpable"))?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::unistd::chdir("/").map_err(fail("chdir /"))?;
    let name = args.name.clone();
    super::super::config::validate_name(&name)
        .map_err(|e| WireError::new("checking the name", Errno::EINVAL, e.to_string()))?;
    let paths = ContainerPaths::new(&args.containers_dir, &name);
    let cfg: StoredConfig = read_json(&name, "reading config", &paths.config())
        .map_err(|e| WireError::new("reading the config", Errno::EIO, e.to_string()))?;
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(paths.lock())
        .map_err(|e| {
            WireError::new(
                "opening monitor.lock",
                Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
                "",
            )
        })?;
    let lock = Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        WireError::new(
            "locking monitor.lock",
            e,
            "another monitor runs this container",
        )
    })?;
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGCHLD,
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
    ] {
        mask.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(fail("blocking signals"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(fail("creating the signalfd"))?;
    std::fs::create_dir_all(&args.run_dir).map_err(|e| {
        WireError::new(
            "creating the run dir",
            Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
            args.run_dir.display().to_string(),
        )
    })?;
    let listener: OwnedFd = protocol::listen_at(&args.run_dir, &name).map_err(|e| {
        WireError::new(
            "binding the control socket",
            e,
            args.run_dir.display().to_string(),
        )
    })?;
    let seccomp = super::hardening::seccomp_program()?;
    let launched = match super::launch::launch(single, &name, &paths, &cfg, &args.group, &seccomp) {
        Ok(l) => l,
        Err(e) => {
            let _ = protocol::unlink_socket(&args.run_dir, &name);
            return Err(e);
        }
    };
    let started = now_ms();
    report(&format!("{REPORT_OK} {}", launched.pid));
    // After the report: the daemon asks the socket while we run; this file only replaces
    // the previous run's exit status, in case this monitor is killed without a word.
    let state = MonitorState {
        running: true,
        monitor_pid: std::process::id() as i32,
        init_pid: Some(launched.pid.as_raw()),
        exit_code: None,
        started_unix_ms: started,
        fenced: false,
    };
    let state_file = state_path(&args.run_dir, &name);
    if let Err(e) = write_json(&name, "writing state", &state_file, &state) {
        eprintln!("monitor {name}: {e}");
    }
    // The fencing policy may have changed since the config was read: `set_fence` stores
    // it first and then asks the socket, which was bound before this read, so a change
    // is either seen here or arrives as a request.
    let mut cfg = cfg;
    if let Ok(now) = read_json::<StoredConfig>(&name, "reading config", &paths.config()) {
        cfg.fence = now.fence;
    }
    let monitor = super::event_loop::Monitor::new(
        name,
        paths,
        args.run_dir.clone(),
        cfg,
        listener,
        signals,
        launched,
        seccomp,
        started,
        single,
        lock,
    );
    Ok(monitor.run())
}
