//! Manager and container tests against temporary directories laid out like v2, v1 and
//! hybrid hosts. The kernel's side is simulated by writing the files it would provide
//! (`cgroup.controllers`, `cgroup.events`, ...) and deleting interface files before rmdir.

use std::fs;
use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::hierarchy::tests::{HOST_MOUNTINFO, HOST_SELF_CGROUP};
use super::hierarchy::{discover, CgroupVersion};
use super::{CgroupError, CgroupManager, ContainerCgroup, Limits, Usage};

const MIB64: u64 = 64 << 20;

fn limits() -> Limits {
    Limits {
        memory_bytes: Some(MIB64),
        cpu_millicores: Some(500),
        pids_max: Some(64),
    }
}

/// A fake root with the own-cgroup directory of every hierarchy created.
fn fake(mountinfo: &str, self_cgroup: &str) -> TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for h in discover(mountinfo, self_cgroup, Some(tmp.path())).unwrap() {
        fs::create_dir_all(&h.dir).unwrap();
    }
    tmp
}

fn put(path: &Path, content: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn dir_of(cg: &ContainerCgroup, label: &str) -> PathBuf {
    cg.paths()
        .into_iter()
        .find(|(l, _)| l == label)
        .unwrap_or_else(|| panic!("no {label} in {:?}", cg.paths()))
        .1
}

/// What the kernel does on rmdir: interface files vanish with the directory.
fn remove_like_kernel(cg: &ContainerCgroup) {
    fn strip(dir: &Path) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_type().unwrap().is_dir() {
                strip(&e.path());
            } else {
                fs::remove_file(e.path()).unwrap();
            }
        }
    }
    for (_, dir) in cg.paths() {
        strip(&dir);
    }
    cg.remove().unwrap();
}

const V2_MOUNTINFO: &str =
    "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
const V2_SELF: &str = "0::/system.slice/shoald.service\n";

fn v2_fake(available: &str) -> (TempDir, PathBuf) {
    let tmp = fake(V2_MOUNTINFO, V2_SELF);
    let own = tmp.path().join("sys/fs/cgroup/system.slice/shoald.service");
    put(&own.join("cgroup.controllers"), available);
    put(&own.join("cgroup.subtree_control"), "");
    (tmp, own)
}

#[test]
fn v2_create_enables_controllers_and_writes_limits() {
    let (tmp, own) = v2_fake("cpuset cpu io memory hugetlb pids rdma misc\n");
    let mgr =
        CgroupManager::from_parts(V2_MOUNTINFO, V2_SELF, Some(tmp.path()), "shoal-a").unwrap();
    assert_eq!(mgr.version(), CgroupVersion::V2);
    let cg = mgr.create("c1", &limits()).unwrap();
    let dir = own.join("shoal-a/c1");
    assert_eq!(cg.paths(), vec![("unified".to_string(), dir.clone())]);
    assert_eq!(cg.unified_path(), Some(dir.as_path()));
    assert_eq!(
        read(&own.join("cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(
        read(&own.join("shoal-a/cgroup.subtree_control")),
        "+memory +cpu +pids"
    );
    assert_eq!(read(&dir.join("memory.max")), "67108864");
    assert_eq!(read(&dir.join("cpu.max")), "50000 100000");
    assert_eq!(read(&dir.join("pids.max")), "64");
    assert!(!dir.join("memory.swap.max").exists());

    // As the kernel reports it later: already enabled, so nothing is written again.
    put(&own.join("cgroup.subtree_control"), "cpu memory pids\n");
    let c2 = mgr.create("c2", &Limits::default()).unwrap();
    assert_eq!(
        read(&own.join("cgroup.subtree_control")),
        "cpu memory pids\n"
    );
    assert_eq!(read(&c2.paths()[0].1.join("cpu.max")), "max 100000");

    put(&dir.join("memory.swap.max"), "max");
    cg.set_limits(&Limits {
        memory_bytes: Some(1 << 20),
        ..Limits::default()
    })
    .unwrap();
    assert_eq!(read(&dir.join("memory.max")), "1048576");
    assert_eq!(read(&dir.join("memory.swap.max")), "0");
    assert_eq!(read(&dir.join("pids.max")), "max");
}

#[test]
fn v2_usage_freeze_kill_and_remove() {
    let (tmp, own) = v2_fake("cpu memory pids\n");
    let mgr =
        CgroupManager::from_parts(V2_MOUNTINFO, V2_SELF, Some(tmp.path()), "shoal-b").unwrap();
    let cg = mgr.create("c1", &limits()).unwrap();
    let dir = cg.paths()[0].1.clone();
    put(&dir.join("memory.current"), "1234\n");
    put(
        &dir.join("cpu.stat"),
        "usage_usec 5\nuser_usec 3\nsystem_usec 2\n",
    );
    put(&dir.join("pids.current"), "2\n");
    let usage = cg.usage().unwrap();
    assert_eq!(
        usage,
        Usage {
            memory_bytes: 1234,
            cpu_nanos: 5000,
            pids: 2
        }
    );

    put(&dir.join("memory.current"), "lots\n");
    let msg = cg.usage().unwrap_err().to_string();
    assert!(
        msg.contains("memory.current: unexpected content \"lots\\n\""),
        "{msg}"
    );

    assert!(matches!(
        cg.freeze(),
        Err(CgroupError::FreezerUnavailable { .. })
    ));
    put(&dir.join("cgroup.freeze"), "0\n");
    put(&dir.join("cgroup.events"), "populated 0\nfrozen 1\n");
    cg.freeze().unwrap();
    assert_eq!(read(&dir.join("cgroup.freeze")), "1");
    assert!(cg.is_frozen().unwrap());
    put(&dir.join("cgroup.events"), "populated 0\nfrozen 0\n");
    cg.thaw().unwrap();
    assert_eq!(read(&dir.join("cgroup.freeze")), "0");
    assert!(!cg.is_frozen().unwrap());

    put(&dir.join("cgroup.kill"), "");
    cg.kill_all().unwrap();
    assert_eq!(read(&dir.join("cgroup.kill")), "1");

    remove_like_kernel(&cg);
    assert!(!dir.exists());
    cg.remove().unwrap();
    assert!(matches!(mgr.open("c1"), Err(CgroupError::NotFound { .. })));
    fs::remove_file(own.join("shoal-b/cgroup.subtree_control")).unwrap();
    mgr.remove_base().unwrap();
    assert!(!own.join("shoal-b").exists());
    mgr.remove_base().unwrap();
}

#[test]
fn v2_errors_name_the_file_and_roll_back() {
    let (tmp, own) = v2_fake("cpu memory pids\n");
    // A dangling link: reads as absent, and the write fails like a kernel refusal would.
    fs::remove_file(own.join("cgroup.subtree_control")).unwrap();
    std::os::unix::fs::symlink(
        tmp.path().join("gone/x"),
        own.join("cgroup.subtree_control"),
    )
    .unwrap();
    let mgr =
        CgroupManager::from_parts(V2_MOUNTINFO, V2_SELF, Some(tmp.path()), "shoal-c").unwrap();
    let msg = mgr.create("c1", &limits()).unwrap_err().to_string();
    let expected = format!(
        "enabling controllers: writing \"+memory +cpu +pids\" to {}: ",
        own.join("cgroup.subtree_control").display()
    );
    assert!(msg.starts_with(&expected), "{msg}");

    // Memory is not offered: a memory limit fails and leaves no directory behind.
    let (tmp, own) = v2_fake("cpu pids\n");
    let mgr =
        CgroupManager::from_parts(V2_MOUNTINFO, V2_SELF, Some(tmp.path()), "shoal-d").unwrap();
    let err = mgr.create("c1", &limits()).unwrap_err();
    assert!(matches!(
        err,
        CgroupError::ControllerUnavailable {
            controller: "memory",
            ..
        }
    ));
    assert!(!own.join("shoal-d/c1").exists());

    // A write that fails names path and value.
    let cg = mgr.create("c2", &Limits::default()).unwrap();
    let pids_max = own.join("shoal-d/c2/pids.max");
    fs::remove_file(&pids_max).unwrap();
    fs::create_dir(&pids_max).unwrap();
    let msg = cg
        .set_limits(&Limits {
            pids_max: Some(7),
            ..Limits::default()
        })
        .unwrap_err()
        .to_string();
    assert!(
        msg.starts_with(&format!("writing \"7\" to {}: ", pids_max.display())),
        "{msg}"
    );
}

const V1_MOUNTINFO: &str = "\
25 24 0:22 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
26 24 0:23 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
27 24 0:24 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids
28 24 0:25 / /sys/fs/cgroup/freezer rw - cgroup cgroup rw,freezer
29 24 0:26 / /sys/fs/cgroup/cpuset rw - cgroup cgroup rw,cpuset
30 24 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
";
const V1_SELF: &str = "\
6:name=systemd:/
5:cpuset:/
4:freezer:/
3:pids:/
2:memory:/
1:cpu,cpuacct:/
";

#[test]
fn v1_create_limits_usage_and_freezer() {
    let tmp = fake(V1_MOUNTINFO, V1_SELF);
    let cg_root = tmp.path().join("sys/fs/cgroup");
    put(&cg_root.join("cpuset/cpuset.cpus"), "0-1\n");
    put(&cg_root.join("cpuset/cpuset.mems"), "0\n");
    put(&cg_root.join("cpuset/shoal-a/cpuset.cpus"), "\n");
    put(&cg_root.join("cpuset/shoal-a/cpuset.mems"), "\n");
    let mgr =
        CgroupManager::from_parts(V1_MOUNTINFO, V1_SELF, Some(tmp.path()), "shoal-a").unwrap();
    assert_eq!(mgr.version(), CgroupVersion::V1);
    let cg = mgr.create("c1", &limits()).unwrap();
    let labels: Vec<String> = cg.paths().into_iter().map(|(l, _)| l).collect();
    assert_eq!(
        labels,
        [
            "cpu,cpuacct",
            "memory",
            "pids",
            "freezer",
            "cpuset",
            "name=systemd"
        ]
    );
    assert_eq!(read(&cg_root.join("cpuset/shoal-a/cpuset.cpus")), "0-1");
    assert_eq!(read(&cg_root.join("cpuset/shoal-a/cpuset.mems")), "0");

    let mem = dir_of(&cg, "memory");
    let cpu = dir_of(&cg, "cpu,cpuacct");
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
    assert!(!mem.join("memory.memsw.limit_in_bytes").exists());
    assert_eq!(read(&cpu.join("cpu.cfs_period_us")), "100000");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "50000");
    assert_eq!(read(&dir_of(&cg, "pids").join("pids.max")), "64");

    put(
        &mem.join("memory.memsw.limit_in_bytes"),
        "9223372036854771712",
    );
    cg.set_limits(&Limits {
        memory_bytes: Some(128 << 20),
        ..Limits::default()
    })
    .unwrap();
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "134217728");
    assert_eq!(read(&mem.join("memory.memsw.limit_in_bytes")), "134217728");
    assert_eq!(read(&cpu.join("cpu.cfs_quota_us")), "-1");

    put(&mem.join("memory.usage_in_bytes"), "4096\n");
    put(&cpu.join("cpuacct.usage"), "987654\n");
    put(&dir_of(&cg, "pids").join("pids.current"), "1\n");
    let usage = cg.usage().unwrap();
    assert_eq!(
        usage,
        Usage {
            memory_bytes: 4096,
            cpu_nanos: 987654,
            pids: 1
        }
    );

    let state = dir_of(&cg, "freezer").join("freezer.state");
    cg.freeze().unwrap();
    assert_eq!(read(&state), "FROZEN");
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert_eq!(read(&state), "THAWED");
    assert!(!cg.is_frozen().unwrap());
    cg.kill_all().unwrap(); // empty: nothing to signal

    // 99999999 is above any pid_max, so nothing real could ever be signalled.
    cg.attach(99_999_999).unwrap();
    for (_, dir) in cg.paths() {
        assert_eq!(read(&dir.join("cgroup.procs")), "99999999");
    }
    assert_eq!(cg.pids().unwrap(), vec![99_999_999]);
    assert!(matches!(
        cg.attach(0),
        Err(CgroupError::InvalidPid { pid: 0 })
    ));

    let opened = mgr.open("c1").unwrap();
    assert_eq!(opened.paths(), cg.paths());
    remove_like_kernel(&opened);
    for (_, dir) in cg.paths() {
        assert!(!dir.exists(), "{}", dir.display());
    }
}

#[test]
fn v1_chown_hands_over_dirs_and_delegation_files() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping v1_chown_hands_over_dirs_and_delegation_files: chown needs root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let tmp = fake(V1_MOUNTINFO, V1_SELF);
    let mgr =
        CgroupManager::from_parts(V1_MOUNTINFO, V1_SELF, Some(tmp.path()), "shoal-a").unwrap();
    let cg = mgr.create("c1", &Limits::default()).unwrap();
    let mem = dir_of(&cg, "memory");
    put(&mem.join("cgroup.procs"), "");
    put(&mem.join("tasks"), "");
    cg.chown(100_000, 100_001).unwrap();
    for path in [mem.clone(), mem.join("cgroup.procs"), mem.join("tasks")] {
        let md = fs::metadata(&path).unwrap();
        assert_eq!(
            (md.uid(), md.gid()),
            (100_000, 100_001),
            "{}",
            path.display()
        );
    }
    assert_eq!(
        fs::metadata(mem.join("memory.limit_in_bytes"))
            .unwrap()
            .uid(),
        0
    );
}

#[test]
fn hybrid_host_layout_puts_limits_in_v1_and_freeze_in_unified() {
    let tmp = fake(HOST_MOUNTINFO, HOST_SELF_CGROUP);
    let unified = tmp.path().join("sys/fs/cgroup/unified");
    put(&unified.join("cgroup.controllers"), "hugetlb\n");
    put(&unified.join("cgroup.subtree_control"), "");
    let mgr = CgroupManager::from_parts(
        HOST_MOUNTINFO,
        HOST_SELF_CGROUP,
        Some(tmp.path()),
        "shoal-a",
    )
    .unwrap();
    assert_eq!(mgr.version(), CgroupVersion::Hybrid);
    let cg = mgr.create("c1", &limits()).unwrap();
    assert_eq!(cg.paths().len(), 10);
    let mem = dir_of(&cg, "memory");
    assert!(mem.ends_with("memory/process_api/fc5df87933119b5d71b4854e017a6bd5/shoal-a/c1"));
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "67108864");
    assert_eq!(read(&dir_of(&cg, "cpu").join("cpu.cfs_quota_us")), "50000");
    let v2 = dir_of(&cg, "unified");
    assert_eq!(cg.unified_path(), Some(v2.as_path()));
    assert!(!v2.join("memory.max").exists());
    assert!(!unified.join("shoal-a/cgroup.subtree_control").exists());
    assert_eq!(read(&unified.join("cgroup.subtree_control")), "");
    dir_of(&cg, "name=systemd");

    // Without cgroup.freeze in the v2 child the v1 freezer is used ...
    cg.freeze().unwrap();
    assert_eq!(
        read(&dir_of(&cg, "freezer").join("freezer.state")),
        "FROZEN"
    );
    cg.thaw().unwrap();
    // ... with it, the unified one, and v1 freezer.state is left alone.
    put(&v2.join("cgroup.freeze"), "0");
    put(&v2.join("cgroup.events"), "populated 1\nfrozen 1\n");
    cg.freeze().unwrap();
    assert_eq!(read(&v2.join("cgroup.freeze")), "1");
    assert_eq!(
        read(&dir_of(&cg, "freezer").join("freezer.state")),
        "THAWED"
    );

    // The cpuacct hierarchy is separate on this host and is where cpu time comes from.
    put(&dir_of(&cg, "cpuacct").join("cpuacct.usage"), "42\n");
    put(&mem.join("memory.usage_in_bytes"), "1\n");
    put(&dir_of(&cg, "pids").join("pids.current"), "0\n");
    assert_eq!(cg.usage().unwrap().cpu_nanos, 42);
    remove_like_kernel(&cg);
}

#[test]
fn names_are_validated_and_duplicates_refused() {
    let (tmp, own) = v2_fake("cpu memory pids\n");
    for bad in ["", ".", "..", "a/b", ".x", "a.b", "tasks", "a b", "x\0"] {
        let err =
            CgroupManager::from_parts(V2_MOUNTINFO, V2_SELF, Some(tmp.path()), bad).unwrap_err();
        assert!(
            matches!(err, CgroupError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    let mgr =
        CgroupManager::from_parts(V2_MOUNTINFO, V2_SELF, Some(tmp.path()), "shoal-a").unwrap();
    assert!(matches!(
        mgr.create("../x", &limits()),
        Err(CgroupError::InvalidName { .. })
    ));
    assert!(matches!(
        mgr.open("../x"),
        Err(CgroupError::InvalidName { .. })
    ));
    mgr.create("dup", &limits()).unwrap();
    let err = mgr.create("dup", &limits()).unwrap_err();
    assert!(matches!(err, CgroupError::AlreadyExists { .. }), "{err}");
    assert!(err.to_string().contains("already exists"));
    assert_eq!(read(&own.join("shoal-a/dup/memory.max")), "67108864");
}
