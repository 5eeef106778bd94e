//! Live tests on the real host (root only; skipped with a message otherwise).
//!
//! Each test uses its own group name (`shoal-test-<pid>-<n>`) under the test process's own
//! cgroups, and a [`Live`] guard that kills the processes it started and removes every
//! cgroup it made even when an assertion fails.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{CgroupError, CgroupManager, CgroupVersion, ContainerCgroup, Limits};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Cleanup guard: children first (by the pids we started), then cgroups, then the base.
struct Live {
    mgr: CgroupManager,
    group: String,
    containers: Vec<String>,
    children: Vec<Child>,
}

impl Drop for Live {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for name in &self.containers {
            if let Ok(cg) = self.mgr.open(name) {
                if let Err(err) = cg.kill_all().and_then(|()| cg.remove()) {
                    eprintln!("cleanup of cgroup {name}: {err}");
                }
            }
        }
        if let Err(err) = self.mgr.remove_base() {
            eprintln!("cleanup of base cgroup {}: {err}", self.group);
        }
    }
}

impl Live {
    /// `None` (with a printed reason) when not root.
    fn new(test: &str) -> Option<Self> {
        Self::with(test, CgroupManager::detect)
    }

    fn with(
        test: &str,
        build: impl FnOnce(&str) -> Result<CgroupManager, CgroupError>,
    ) -> Option<Self> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipping {test}: live cgroup tests need root");
            return None;
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let group = format!("shoal-test-{}-{n}", std::process::id());
        let mgr = build(&group).expect("cgroup manager");
        Some(Self {
            mgr,
            group,
            containers: Vec::new(),
            children: Vec::new(),
        })
    }

    fn create(&mut self, name: &str, limits: &Limits) -> ContainerCgroup {
        self.containers.push(name.to_string());
        self.mgr.create(name, limits).expect("create cgroup")
    }

    /// Starts `sh -c 'read go; SCRIPT'`: it waits on stdin, so it can be attached before
    /// it allocates anything or forks.
    fn spawn_gated(&mut self, script: &str) -> (i32, ChildStdin) {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("read go; {script}"))
            .stdin(Stdio::piped())
            .spawn()
            .expect("spawn sh");
        let stdin = child.stdin.take().unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        self.children.push(child);
        (pid, stdin)
    }

    fn child(&mut self, pid: i32) -> &mut Child {
        self.children
            .iter_mut()
            .find(|c| c.id() as i32 == pid)
            .unwrap()
    }
}

fn release(mut stdin: ChildStdin) {
    stdin.write_all(b"go\n").unwrap();
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn read_trim(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Checks the limit files wherever the host keeps them; returns how many were checked.
fn check_limits(cg: &ContainerCgroup) -> usize {
    let mut checked = 0;
    for (label, dir) in cg.paths() {
        let mut expect = |file: &str, want: &str| {
            if let Some(got) = read_trim(&dir.join(file)) {
                assert_eq!(got, want, "{label}: {file}");
                checked += 1;
            }
        };
        let ctrls: Vec<&str> = label.split(',').collect();
        if ctrls.contains(&"memory") {
            expect("memory.limit_in_bytes", "67108864");
            expect("memory.memsw.limit_in_bytes", "67108864");
        }
        if ctrls.contains(&"cpu") {
            expect("cpu.cfs_period_us", "100000");
            expect("cpu.cfs_quota_us", "50000");
        }
        if ctrls.contains(&"pids") || label == "unified" {
            expect("pids.max", "64");
        }
        if label == "unified" {
            expect("memory.max", "67108864");
            expect("cpu.max", "50000 100000");
        }
    }
    checked
}

fn limits() -> Limits {
    Limits {
        memory_bytes: Some(64 << 20),
        cpu_millicores: Some(500),
        pids_max: Some(64),
    }
}

#[test]
fn live_cgroups_full_lifecycle() {
    let Some(mut live) = Live::new("live_cgroups_full_lifecycle") else {
        return;
    };
    let cg = live.create("c1", &limits());
    eprintln!("version {:?}, paths {:?}", live.mgr.version(), cg.paths());
    assert!(check_limits(&cg) >= 4, "limits found in too few files");

    let (pid, gate) = live.spawn_gated("exec sleep 1000");
    cg.attach(pid).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![pid]);
    let suffix = format!("/{}/c1", live.group);
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let inside = own.lines().filter(|l| l.ends_with(&suffix)).count();
    assert_eq!(inside, cg.paths().len(), "{own}");

    release(gate);
    let comm = format!("/proc/{pid}/comm");
    wait_until("exec of sleep", Duration::from_secs(5), || {
        read_trim(Path::new(&comm)).as_deref() == Some("sleep")
    });
    let usage = cg.usage().unwrap();
    eprintln!("usage {usage:?}");
    assert!(usage.memory_bytes > 0, "{usage:?}");
    assert!(usage.cpu_nanos > 0, "{usage:?}");
    assert_eq!(usage.pids, 1);

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    if live.mgr.version() == CgroupVersion::Hybrid {
        let v2 = cg.unified_path().expect("v2 child on a hybrid host");
        assert!(v2.join("cgroup.kill").exists());
        let events = read_trim(&v2.join("cgroup.events")).unwrap();
        assert!(events.contains("frozen 1"), "{events}");
    }
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());

    cg.kill_all().unwrap();
    assert!(cg.pids().unwrap().is_empty());
    let status = live.child(pid).wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    cg.remove().unwrap();
    for (_, dir) in cg.paths() {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
    cg.remove().unwrap();
    assert!(matches!(
        live.mgr.open("c1"),
        Err(CgroupError::NotFound { .. })
    ));
}

/// Drops the cgroup2 mount so a hybrid host behaves like a v1 one: exercises the v1
/// freezer and the freeze + SIGKILL fallback of `kill_all`, on a frozen process tree.
#[test]
fn live_cgroups_v1_freezer_and_kill_fallback() {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    if !mountinfo.lines().any(|l| l.contains(" - cgroup ")) {
        eprintln!("skipping live_cgroups_v1_freezer_and_kill_fallback: no v1 hierarchy here");
        return;
    }
    let v1_only: String = mountinfo
        .lines()
        .filter(|l| !l.contains(" - cgroup2 "))
        .map(|l| format!("{l}\n"))
        .collect();
    let self_cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let Some(mut live) = Live::with("live_cgroups_v1_freezer_and_kill_fallback", |g| {
        CgroupManager::from_parts(&v1_only, &self_cgroup, None, g)
    }) else {
        return;
    };
    assert_eq!(live.mgr.version(), CgroupVersion::V1);
    let cg = live.create("tree", &limits());
    assert!(cg.unified_path().is_none());
    let (pid, gate) = live.spawn_gated("sleep 1000 & sleep 1000 & wait");
    cg.attach(pid).unwrap();
    release(gate);
    wait_until("three processes", Duration::from_secs(5), || {
        cg.pids().unwrap().len() == 3
    });

    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let (_, freezer) = cg
        .paths()
        .into_iter()
        .find(|(l, _)| l == "freezer")
        .unwrap();
    assert_eq!(read_trim(&freezer.join("freezer.state")).unwrap(), "FROZEN");

    cg.kill_all().unwrap(); // while frozen
    assert!(cg.pids().unwrap().is_empty());
    assert!(!cg.is_frozen().unwrap());
    let status = live.child(pid).wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    cg.remove().unwrap();
}

#[test]
fn live_cgroups_open_chown_and_duplicate() {
    let Some(mut live) = Live::new("live_cgroups_open_chown_and_duplicate") else {
        return;
    };
    let cg = live.create("own", &Limits::default());
    let err = live.mgr.create("own", &limits()).unwrap_err();
    assert!(matches!(err, CgroupError::AlreadyExists { .. }), "{err}");
    assert!(
        cg.paths().iter().all(|(_, d)| d.is_dir()),
        "duplicate create removed dirs"
    );

    cg.chown(100_000, 100_000).unwrap();
    for (label, dir) in cg.paths() {
        assert_eq!(std::fs::metadata(&dir).unwrap().uid(), 100_000, "{label}");
        let procs = std::fs::metadata(dir.join("cgroup.procs")).unwrap();
        assert_eq!((procs.uid(), procs.gid()), (100_000, 100_000), "{label}");
        if let Ok(md) = std::fs::metadata(dir.join("tasks")) {
            assert_eq!(md.uid(), 100_000, "{label}");
        }
    }
    let opened = live.mgr.open("own").unwrap();
    assert_eq!(opened.paths(), cg.paths());
    opened.remove().unwrap();
    assert!(cg.paths().iter().all(|(_, d)| !d.exists()));
}

#[test]
fn live_cgroups_memory_limit_is_enforced() {
    let Some(mut live) = Live::new("live_cgroups_memory_limit_is_enforced") else {
        return;
    };
    let cg = live.create("hog", &limits());
    // tail keeps the whole never-ending "line" of /dev/zero in memory.
    let (pid, gate) = live.spawn_gated("exec tail /dev/zero");
    cg.attach(pid).unwrap();
    release(gate);
    let start = Instant::now();
    let status = loop {
        if let Some(status) = live.child(pid).try_wait().unwrap() {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not killed at 64 MiB"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    cg.kill_all().unwrap();
    cg.remove().unwrap();
}
