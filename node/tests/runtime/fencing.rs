//! Lease fencing: monitors of containers that fence SIGKILL them once the host's lease
//! file says the lease has expired, with or without a daemon, and leave the others alone.

use std::fs;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use shoal_node::runtime::{ContainerState, ContainerStatus, Runtime, RuntimeError};

use crate::common::*;

/// How long after the lease's expiry a fencing container may still run.
const FENCE_WITHIN: Duration = Duration::from_millis(1500);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Creates (registered for cleanup) and starts a container with the given policy.
fn started(env: &mut TestEnv, name: &str, fence: bool) -> i32 {
    let mut cfg = env.container_config(name, false);
    cfg.fence = fence;
    env.names.push(name.to_string());
    let rt = env.rt();
    rt.create(&cfg).unwrap();
    rt.start(name).unwrap();
    rt.state(name).unwrap().init_pid.unwrap()
}

/// Waits until the container is stopped; its final state and when it was first seen so.
fn wait_stopped(rt: &Runtime, name: &str, within: Duration) -> Option<(ContainerState, Instant)> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let st = rt.state(name).unwrap();
        if st.status == ContainerStatus::Stopped {
            return Some((st, Instant::now()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Whether a host pid is gone (or a zombie) by `deadline`; the moment it was seen gone.
fn wait_pid_gone(pid: i32, within: Duration) -> Option<Instant> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.is_empty() || stat.contains(") Z ") {
            return Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

fn assert_running(rt: &Runtime, name: &str, init: i32) {
    let st = rt.state(name).unwrap();
    assert_eq!(st.status, ContainerStatus::Running, "{name}: {st:?}");
    assert_eq!(st.init_pid, Some(init), "{name} was restarted");
    assert!(!st.fenced);
}

fn assert_fenced(st: &ContainerState) {
    assert!(st.fenced, "{st:?}");
    assert_eq!(st.exit_code, Some(128 + libc::SIGKILL), "{st:?}");
}

#[test]
fn an_expired_lease_kills_a_fencing_container_at_once() {
    if !root_or_skip("an_expired_lease_kills_a_fencing_container_at_once") {
        return;
    }
    let mut env = TestEnv::new("fence");
    let init = started(&mut env, "fence", true);
    let rt = env.rt();
    let expiry = Instant::now() + Duration::from_millis(1000);
    rt.renew_lease(now_ms() + 1000).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_running(rt, "fence", init);
    let (st, seen) = wait_stopped(rt, "fence", Duration::from_secs(3)).expect("not fenced");
    assert_fenced(&st);
    let late = seen.saturating_duration_since(expiry);
    assert!(late < FENCE_WITHIN, "fenced {late:?} after the expiry");
    let log = fs::read_to_string(env.container_dir("fence").join("monitor.log")).unwrap();
    assert!(log.contains("FENCED"), "{log}");
    // Under an expired lease a fencing container does not start; renewed, it does.
    let err = rt.start("fence").unwrap_err();
    assert!(matches!(err, RuntimeError::LeaseExpired { .. }), "{err}");
    rt.renew_lease(now_ms() + 60_000).unwrap();
    rt.start("fence").unwrap();
    let st = rt.state("fence").unwrap();
    assert_eq!(st.status, ContainerStatus::Running);
    assert!(!st.fenced, "a new boot is not fenced");
}

#[test]
fn a_container_that_does_not_fence_survives_an_expired_lease() {
    if !root_or_skip("a_container_that_does_not_fence_survives_an_expired_lease") {
        return;
    }
    let mut env = TestEnv::new("stay");
    env.rt().renew_lease(now_ms() - 1).unwrap();
    let init = started(&mut env, "stay", false);
    let rt = env.rt();
    std::thread::sleep(Duration::from_millis(800));
    assert_running(rt, "stay", init);
    assert_eq!(sh(rt, "stay", "echo alive").trim(), "alive");
    // Turning fencing on with the lease still expired fences at once.
    let t = Instant::now();
    rt.set_fence("stay", true).unwrap();
    let (st, seen) = wait_stopped(rt, "stay", Duration::from_secs(3)).expect("not fenced");
    assert_fenced(&st);
    assert!(seen - t < FENCE_WITHIN, "fenced after {:?}", seen - t);
    // The policy is stored: off again, the container starts and stays under the old lease.
    rt.set_fence("stay", false).unwrap();
    rt.start("stay").unwrap();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(rt.state("stay").unwrap().status, ContainerStatus::Running);
}

#[test]
fn without_a_readable_lease_nothing_is_fenced() {
    if !root_or_skip("without_a_readable_lease_nothing_is_fenced") {
        return;
    }
    let mut env = TestEnv::new("nolease");
    let init = started(&mut env, "nolease", true);
    let rt = env.rt();
    let lease = env.dir.path().join("run/lease");
    assert!(!lease.exists());
    std::thread::sleep(Duration::from_millis(600));
    assert_running(rt, "nolease", init);
    // A file that does not parse counts as no lease (and is logged).
    fs::write(&lease, "soon\n").unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_running(rt, "nolease", init);
    // A cleared lease is no lease, even once its old expiry has passed.
    rt.renew_lease(now_ms() + 300).unwrap();
    rt.clear_lease().unwrap();
    assert!(!lease.exists());
    rt.clear_lease().unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert_running(rt, "nolease", init);
    let log = fs::read_to_string(env.container_dir("nolease").join("monitor.log")).unwrap();
    assert_eq!(log.matches("ignoring the lease").count(), 1, "{log}");
    assert!(!log.contains("FENCED"), "{log}");
}

#[test]
fn renewing_the_lease_keeps_a_fencing_container_alive() {
    if !root_or_skip("renewing_the_lease_keeps_a_fencing_container_alive") {
        return;
    }
    let mut env = TestEnv::new("renew");
    let init = started(&mut env, "renew", true);
    let rt = env.rt();
    // Heartbeats every 150 ms, each lease good for 600 ms: well past the first expiry.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut last = now_ms();
    while Instant::now() < until {
        last = now_ms() + 600;
        rt.renew_lease(last).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    assert_running(rt, "renew", init);
    // Heartbeats stop: fenced once the last lease runs out.
    let expiry = Instant::now() + Duration::from_millis((last - now_ms()).max(0) as u64);
    let (st, seen) = wait_stopped(rt, "renew", Duration::from_secs(3)).expect("not fenced");
    assert_fenced(&st);
    let late = seen.saturating_duration_since(expiry);
    assert!(late < FENCE_WITHIN, "fenced {late:?} after the expiry");
}

const DAEMON_ENV: &str = "SHOAL_RT_TEST_FENCE_DAEMON_DIR";
const DAEMON_GROUP_ENV: &str = "SHOAL_RT_TEST_FENCE_DAEMON_GROUP";

/// Runs only as a child process of `monitors_fence_on_their_own_when_the_daemon_is_gone`:
/// a stand-in daemon that starts both containers and renews the lease (600 ms every
/// 150 ms) until it is SIGKILLed.
#[test]
#[ignore = "helper process for monitors_fence_on_their_own_when_the_daemon_is_gone"]
fn fence_daemon_helper() {
    let Ok(dir) = std::env::var(DAEMON_ENV) else {
        return;
    };
    let group = std::env::var(DAEMON_GROUP_ENV).unwrap();
    let rt = Runtime::new(TestEnv::config_for(std::path::Path::new(&dir), &group)).unwrap();
    rt.renew_lease(now_ms() + 600).unwrap();
    rt.start("orphan-f").unwrap();
    rt.start("orphan-s").unwrap();
    println!("started");
    loop {
        rt.renew_lease(now_ms() + 600).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
}

#[test]
fn monitors_fence_on_their_own_when_the_daemon_is_gone() {
    if !root_or_skip("monitors_fence_on_their_own_when_the_daemon_is_gone") {
        return;
    }
    let mut env = TestEnv::new("orphan");
    for (name, fence) in [("orphan-f", true), ("orphan-s", false)] {
        let mut cfg = env.container_config(name, false);
        cfg.fence = fence;
        env.names.push(name.to_string());
        env.rt().create(&cfg).unwrap();
    }
    let mut daemon = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "fencing::fence_daemon_helper",
            "--ignored",
            "--nocapture",
        ])
        .env(DAEMON_ENV, env.dir.path())
        .env(DAEMON_GROUP_ENV, &env.group)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    {
        use std::io::BufRead;
        let mut out = std::io::BufReader::new(daemon.stdout.take().unwrap());
        while !line.contains("started") {
            line.clear();
            if out.read_line(&mut line).unwrap() == 0 {
                let _ = daemon.kill();
                panic!("the stand-in daemon exited without starting the containers");
            }
        }
    }
    let rt = env.rt();
    let fencing = rt.state("orphan-f").unwrap().init_pid.unwrap();
    let staying = rt.state("orphan-s").unwrap().init_pid.unwrap();
    // Its heartbeats keep the container alive past the first lease's expiry ...
    std::thread::sleep(Duration::from_millis(900));
    assert_running(rt, "orphan-f", fencing);
    // ... until the daemon is SIGKILLed: its last lease (in the file) runs out.
    daemon.kill().unwrap();
    daemon.wait().unwrap();
    let (killed, killed_ms) = (Instant::now(), now_ms());
    let last: i64 = fs::read_to_string(env.dir.path().join("run/lease"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let expiry = killed + Duration::from_millis((last - killed_ms).max(0) as u64);
    let gone = wait_pid_gone(fencing, Duration::from_secs(3)).expect("init not fenced");
    assert!(
        gone + Duration::from_millis(50) >= expiry,
        "fenced {:?} before the lease expired",
        expiry.saturating_duration_since(gone)
    );
    let late = gone.saturating_duration_since(expiry);
    assert!(late < FENCE_WITHIN, "fenced {late:?} after the expiry");
    // A restarted daemon finds it stopped and knows why; the other one still runs.
    env.reopen();
    let rt = env.rt();
    let (st, _) = wait_stopped(rt, "orphan-f", Duration::from_secs(2)).expect("still running");
    assert_fenced(&st);
    assert_running(rt, "orphan-s", staying);
}
