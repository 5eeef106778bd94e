//! Monitor failure, the CVE defences, live limit updates and the async exec interface.

use std::fs;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use shoal_node::cgroups::Limits;
use shoal_node::runtime::ContainerStatus;

use crate::common::*;

/// The monitor's pid: init's parent.
fn monitor_of(init: i32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{init}/stat")).unwrap();
    let rest = stat.rsplit_once(')').unwrap().1;
    rest.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn wait_gone(pid: i32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

#[test]
fn a_killed_monitor_takes_its_container_along_and_start_recovers() {
    if !root_or_skip("a_killed_monitor_takes_its_container_along_and_start_recovers") {
        return;
    }
    let mut env = TestEnv::new("mkill");
    env.create("mkill", false);
    let rt = env.rt();
    rt.start("mkill").unwrap();
    let init = rt.state("mkill").unwrap().init_pid.unwrap();
    let monitor = monitor_of(init);
    kill(Pid::from_raw(monitor), Signal::SIGKILL).unwrap();
    assert!(
        wait_gone(init, Duration::from_secs(5)),
        "init outlived its monitor"
    );
    let st = rt.state("mkill").unwrap();
    assert_eq!(st.status, ContainerStatus::Stopped);
    // The stale socket and cgroup do not block the next start.
    rt.start("mkill").unwrap();
    assert_eq!(sh(rt, "mkill", "echo back").trim(), "back");
}

#[test]
fn monitors_run_from_a_read_only_binary() {
    if !root_or_skip("monitors_run_from_a_read_only_binary") {
        return;
    }
    let mut env = TestEnv::new("cve");
    env.create("cve", true);
    let rt = env.rt();
    rt.start("cve").unwrap();
    let init = rt.state("cve").unwrap().init_pid.unwrap();
    let monitor = monitor_of(init);
    let exe = format!("/proc/{monitor}/exe");
    let vfs = nix::sys::statvfs::statvfs(exe.as_str()).unwrap();
    assert!(
        vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the monitor's binary must sit on a read-only mount"
    );
    let err = fs::OpenOptions::new().write(true).open(&exe).unwrap_err();
    assert!(
        matches!(err.raw_os_error(), Some(libc::EROFS | libc::ETXTBSY)),
        "{err}"
    );
    let status = fs::read_to_string(format!("/proc/{monitor}/status")).unwrap();
    assert!(status.contains("Threads:\t1"));
    let o = exec(
        rt,
        "cve",
        &["sh", "-c", "cat /proc/self/status | grep NoNewPrivs"],
    );
    assert!(o.stdout.contains('1'), "{o:?}");
}

#[test]
fn limits_update_live_and_init_gets_its_environment() {
    if !root_or_skip("limits_update_live_and_init_gets_its_environment") {
        return;
    }
    let mut env = TestEnv::new("lim");
    env.create("lim", false);
    let rt = env.rt();
    rt.start("lim").unwrap();
    let environ = sh(rt, "lim", "tr '\\0' '\\n' < /proc/1/environ");
    for var in ["SHOAL_TEST=1", "container=shoal", "PATH=/usr/local/sbin"] {
        assert!(environ.contains(var), "{var} missing: {environ}");
    }
    let new = Limits {
        memory_bytes: Some(96 << 20),
        cpu_millicores: Some(250),
        pids_max: Some(50),
    };
    rt.update_limits("lim", &new).unwrap();
    let mem = sh(
        rt,
        "lim",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    );
    assert_eq!(mem.trim(), (96u64 << 20).to_string());
    let pids = sh(
        rt,
        "lim",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    );
    assert_eq!(pids.trim(), "50");
    // Container root cannot raise its own limits.
    let o = exec(
        rt,
        "lim",
        &[
            "sh",
            "-c",
            "echo 1000000000 > /sys/fs/cgroup/memory/memory.limit_in_bytes",
        ],
    );
    assert_ne!(o.code, 0, "limit changed from inside: {o:?}");
    // The new limits are stored for the next start too.
    rt.stop("lim", Duration::ZERO, true).unwrap();
    rt.start("lim").unwrap();
    let pids = sh(
        rt,
        "lim",
        "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    );
    assert_eq!(pids.trim(), "50");
}

#[test]
fn exec_exit_status_can_be_awaited_without_blocking() {
    if !root_or_skip("exec_exit_status_can_be_awaited_without_blocking") {
        return;
    }
    let mut env = TestEnv::new("async");
    env.create("async", false);
    let rt = env.rt();
    rt.start("async").unwrap();
    let s = rt
        .exec("async", &req(&["sh", "-c", "read x; exit 42"]))
        .unwrap();
    assert_eq!(s.control.try_exit_code().unwrap(), None, "still running");
    drop(s.stdin); // EOF: `read` returns and the shell exits
    let mut fds = [PollFd::new(s.control.as_fd(), PollFlags::POLLIN)];
    let n = poll(&mut fds, PollTimeout::from(10_000u16)).unwrap();
    assert_eq!(
        n, 1,
        "control socket becomes readable when the command exits"
    );
    assert_eq!(s.control.try_exit_code().unwrap(), Some(42));
}
