//! What a container sees and what it cannot do.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use shoal_node::runtime::{ContainerStatus, ExecRequest, RuntimeError, IDMAP_SIZE};

use crate::common::*;
use crate::words;

#[test]
fn unprivileged_container_is_isolated() {
    if !root_or_skip("unprivileged_container_is_isolated") {
        return;
    }
    let mut env = TestEnv::new("iso");
    env.create("iso", false);
    let rt = env.rt();
    rt.start("iso").unwrap();
    let st = rt.state("iso").unwrap();
    assert_eq!(st.status, ContainerStatus::Running);
    let init_pid = st.init_pid.unwrap();

    // PID 1 is busybox init.
    assert_eq!(sh(rt, "iso", "cat /proc/1/comm").trim(), "init");
    assert_eq!(sh(rt, "iso", "readlink /proc/1/exe").trim(), "/bin/busybox");
    assert!(exec(rt, "iso", &["cat", "/proc/1/cmdline"])
        .stdout
        .starts_with("init"));

    // Container root is an unprivileged host range of its own.
    let base = fs::metadata(env.container_dir("iso").join("upper"))
        .unwrap()
        .uid();
    assert!(base >= 1_000_000, "upper owned by mapped root, got {base}");
    let uid_map = words(&sh(rt, "iso", "cat /proc/self/uid_map"));
    assert_eq!(
        uid_map,
        ["0".to_string(), base.to_string(), IDMAP_SIZE.to_string()]
    );
    assert_eq!(words(&sh(rt, "iso", "cat /proc/self/gid_map")), uid_map);
    let host_view = fs::read_to_string(format!("/proc/{init_pid}/uid_map")).unwrap();
    assert_eq!(words(&host_view), uid_map);
    assert_eq!(sh(rt, "iso", "id -u").trim(), "0");

    // Limits are visible inside (v1 memory here, v2 memory.max elsewhere).
    let mem = sh(
        rt,
        "iso",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    );
    assert_eq!(mem.trim(), (64u64 << 20).to_string());
    // The cgroup namespace shows the container's cgroup as its root.
    let own = sh(rt, "iso", "cat /proc/self/cgroup");
    assert!(own.lines().all(|l| l.ends_with(":/")), "{own}");

    // Hostname, loopback, network isolation.
    assert_eq!(sh(rt, "iso", "hostname").trim(), "iso");
    let links = sh(rt, "iso", "ls /sys/class/net");
    assert_eq!(words(&links), ["lo"]);
    assert!(sh(rt, "iso", "ip link show lo").contains("UP"));

    // Only the container's processes are visible.
    let pids = sh(
        rt,
        "iso",
        "for p in /proc/[0-9]*; do echo ${p#/proc/}; done",
    );
    let pids: Vec<i32> = pids.lines().map(|l| l.parse().unwrap()).collect();
    assert!(pids.contains(&1));
    assert!(pids.iter().all(|p| *p < 100), "host pids visible: {pids:?}");

    // No descriptor leaks into exec'd processes or init.
    let fds: BTreeSet<String> = words(&sh(rt, "iso", "ls /proc/self/fd"))
        .into_iter()
        .collect();
    assert!(
        fds.iter()
            .all(|f| ["0", "1", "2", "3"].contains(&f.as_str())),
        "{fds:?}"
    );
    let init_fds: BTreeSet<String> = words(&sh(rt, "iso", "ls /proc/1/fd")).into_iter().collect();
    assert!(
        init_fds
            .iter()
            .all(|f| ["0", "1", "2"].contains(&f.as_str())),
        "{init_fds:?}"
    );
    assert_eq!(sh(rt, "iso", "readlink /proc/self/cwd").trim(), "/");

    // Hardening of init and of exec'd processes.
    for who in ["self", "1"] {
        let status = sh(rt, "iso", &format!("cat /proc/{who}/status"));
        assert!(status.contains("NoNewPrivs:\t1"), "{who}: {status}");
        assert!(status.contains("Seccomp:\t2"), "{who}: {status}");
        let bnd = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
        let bnd = u64::from_str_radix(bnd.split_whitespace().nth(1).unwrap(), 16).unwrap();
        for (cap, name) in shoal_node::runtime::DROPPED_CAPS.iter() {
            assert_eq!(bnd & (1 << cap), 0, "{who} still has {name}");
        }
        assert_ne!(
            bnd & (1 << 21),
            0,
            "{who} lost CAP_SYS_ADMIN (needed inside)"
        );
    }
    assert!(sh(rt, "iso", "cat /proc/1/status").contains("PPid:\t0"));

    // Masked and read-only paths.
    assert_eq!(sh(rt, "iso", "wc -c < /proc/timer_list").trim(), "0");
    assert_eq!(sh(rt, "iso", "wc -c < /proc/keys").trim(), "0");
    for dir in ["/sys/firmware", "/proc/acpi"] {
        assert_eq!(
            sh(rt, "iso", &format!("ls -A {dir} | wc -l")).trim(),
            "0",
            "{dir} masked"
        );
    }
    let ro = exec(
        rt,
        "iso",
        &["sh", "-c", "echo 1 > /proc/sys/kernel/domainname"],
    );
    assert_ne!(ro.code, 0, "/proc/sys must be read-only");
    sh(rt, "iso", "echo 1 > /proc/sys/net/ipv4/ip_forward");
    let sysw = exec(
        rt,
        "iso",
        &["sh", "-c", "echo x > /sys/kernel/uevent_helper"],
    );
    assert_ne!(sysw.code, 0);
    let dev = sh(rt, "iso", "ls /dev");
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "console", "pts", "ptmx", "shm",
        "mqueue",
    ] {
        assert!(
            words(&dev).iter().any(|d| d == node),
            "/dev/{node} missing: {dev}"
        );
    }
    sh(
        rt,
        "iso",
        "echo hello > /dev/null && head -c 4 /dev/urandom | wc -c | grep -q 4",
    );
    sh(rt, "iso", "echo console-test > /dev/console");
    assert_host_dev_null_untouched();

    rt.stop("iso", Duration::from_secs(10), true).unwrap();
    let log = fs::read_to_string(env.container_dir("iso").join("console.log")).unwrap();
    assert!(log.contains("console-test"), "console log: {log:?}");
    assert_host_dev_null_untouched();
}

#[test]
fn exec_stdio_exit_codes_and_tty() {
    if !root_or_skip("exec_stdio_exit_codes_and_tty") {
        return;
    }
    let mut env = TestEnv::new("exec");
    env.create("exec", false);
    let rt = env.rt();
    rt.start("exec").unwrap();

    assert_eq!(exec(rt, "exec", &["sh", "-c", "exit 7"]).code, 7);
    assert_eq!(exec(rt, "exec", &["sh", "-c", "kill -9 $$"]).code, 137);
    let o = exec_with(
        rt,
        "exec",
        &req(&["sh", "-c", "tr a-z A-Z; echo oops >&2; exit 3"]),
        b"hello stdin\n",
    );
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (3, "HELLO STDIN\n", "oops\n")
    );

    // Environment, working directory and user.
    let r = ExecRequest {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "echo $FOO $(pwd) $(id -u):$(id -g)".into(),
        ],
        env: vec![("FOO".into(), "bar".into())],
        cwd: Some("/tmp".into()),
        uid: 1000,
        gid: 1001,
        tty: None,
    };
    let o = exec_with(rt, "exec", &r, b"");
    assert_eq!(o.stdout.trim(), "bar /tmp 1000:1001", "{o:?}");
    let caps = exec_with(
        rt,
        "exec",
        &ExecRequest {
            argv: vec!["grep".into(), "CapEff".into(), "/proc/self/status".into()],
            ..r.clone()
        },
        b"",
    );
    assert!(
        caps.stdout.contains("0000000000000000"),
        "non-root has no caps: {caps:?}"
    );

    // Errors come back as errors, with the step.
    let err = rt.exec("exec", &req(&["/no/such/binary"])).unwrap_err();
    assert!(
        matches!(&err, RuntimeError::Monitor { errno, .. } if *errno == nix::errno::Errno::ENOENT),
        "{err}"
    );
    let err = rt
        .exec(
            "exec",
            &ExecRequest {
                cwd: Some("/nonexistent".into()),
                ..req(&["true"])
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("working directory"), "{err}");

    // A terminal: stdin/stdout are the pty master, size as requested, resizable.
    let mut r = req(&[
        "sh",
        "-c",
        "test -t 0 && test -t 1 && echo tty-yes; stty size; read x; stty size",
    ]);
    r.tty = Some((30, 100));
    let s = rt.exec("exec", &r).unwrap();
    assert!(s.stderr.is_none());
    let mut out = fs::File::from(s.stdout.try_clone().unwrap());
    let mut input = fs::File::from(s.stdin.try_clone().unwrap());
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    use std::io::{Read, Write};
    while !seen.contains("30 100") && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        let n = out.read(&mut buf).unwrap();
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert!(
        seen.contains("tty-yes") && seen.contains("30 100"),
        "{seen:?}"
    );
    s.resize(40, 120).unwrap();
    input.write_all(b"go\n").unwrap();
    while !seen.contains("40 120") && Instant::now() < deadline {
        let mut buf = [0u8; 256];
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(seen.contains("40 120"), "{seen:?}");
    assert_eq!(s.control.wait().unwrap(), 0);

    // Exec into a stopped container is a clear error.
    rt.stop("exec", Duration::ZERO, true).unwrap();
    let err = rt.exec("exec", &req(&["true"])).unwrap_err();
    assert!(matches!(err, RuntimeError::NotRunning { .. }), "{err}");
}

fn build_probes(dir: &std::path::Path) -> Vec<(String, i32)> {
    // (binary name in the container, expected exit code when the filter works)
    let mut probes = Vec::new();
    let c = dir.join("probe64.c");
    fs::write(
        &c,
        r#"#include <errno.h>
#include <unistd.h>
#include <sys/syscall.h>
int main(void) {
    if (syscall(SYS_keyctl, 0, -3, 0) != -1 || errno != EPERM) return 10;
    if (syscall(SYS_umount2, "/nonexistent", 1) != -1 || errno != EPERM) return 11;
    if (syscall(SYS_umount2, "/nonexistent", 0) != -1 || errno != ENOENT) return 12;
    if (syscall(SYS_perf_event_open, 0, 0, -1, -1, 0) != -1 || errno != EPERM) return 13;
    return 0;
}
"#,
    )
    .unwrap();
    let ok = std::process::Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.join("probe64"))
        .arg(&c)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        probes.push(("probe64".to_string(), 0));
    } else {
        eprintln!("no static gcc: skipping the 64-bit seccomp probe");
    }
    // i386: keyctl via int 0x80; exits with -result, so EPERM -> 1.
    let s = dir.join("probe32.s");
    fs::write(
        &s,
        ".globl _start\n_start:\n movl $288, %eax\n xorl %ebx, %ebx\n movl $-3, %ecx\n xorl %edx, %edx\n int $0x80\n negl %eax\n movl %eax, %ebx\n movl $1, %eax\n int $0x80\n",
    )
    .unwrap();
    let ok = std::process::Command::new("as")
        .args(["--32", "-o"])
        .arg(dir.join("probe32.o"))
        .arg(&s)
        .status()
        .is_ok_and(|s| s.success())
        && std::process::Command::new("ld")
            .args(["-m", "elf_i386", "-o"])
            .arg(dir.join("probe32"))
            .arg(dir.join("probe32.o"))
            .status()
            .is_ok_and(|s| s.success());
    if ok {
        probes.push(("probe32".to_string(), 1));
    } else {
        eprintln!("no i386 binutils: skipping the 32-bit seccomp probe");
    }
    probes
}

#[test]
fn seccomp_denies_with_eperm_on_both_abis() {
    if !root_or_skip("seccomp_denies_with_eperm_on_both_abis") {
        return;
    }
    let mut env = TestEnv::new("sec");
    env.create("sec", false);
    let probes = build_probes(env.dir.path());
    if probes.is_empty() {
        return;
    }
    // Put the probes into the upper layer before the overlay is mounted.
    let upper = env.container_dir("sec").join("upper");
    for (p, _) in &probes {
        fs::copy(env.dir.path().join(p), upper.join(p)).unwrap();
    }
    let rt = env.rt();
    rt.start("sec").unwrap();
    for (p, want) in &probes {
        let o = exec(rt, "sec", &[&format!("/{p}")]);
        assert_eq!(o.code, *want, "{p}: {o:?}");
    }
}

#[test]
fn privileged_container_and_distinct_id_ranges() {
    if !root_or_skip("privileged_container_and_distinct_id_ranges") {
        return;
    }
    let mut env = TestEnv::new("priv");
    env.create("priv", true);
    env.create("ua", false);
    env.create("ub", false);
    let rt = env.rt();
    for n in ["priv", "ua", "ub"] {
        rt.start(n).unwrap();
    }
    let map = words(&sh(rt, "priv", "cat /proc/self/uid_map"));
    assert_eq!(map, ["0", "0", "4294967295"]);
    assert_eq!(sh(rt, "priv", "hostname").trim(), "priv");
    let status = sh(rt, "priv", "cat /proc/1/status");
    assert!(status.contains("Seccomp:\t2"));
    assert_eq!(sh(rt, "priv", "cat /proc/1/comm").trim(), "init");
    sh(rt, "priv", "echo p > /root/p");
    let upper = env.container_dir("priv").join("upper");
    assert_eq!(fs::metadata(upper.join("root/p")).unwrap().uid(), 0);

    let base = |n: &str| -> u64 {
        words(&sh(rt, n, "cat /proc/self/uid_map"))[1]
            .parse()
            .unwrap()
    };
    let (a, b) = (base("ua"), base("ub"));
    assert!(
        a.abs_diff(b) >= u64::from(IDMAP_SIZE),
        "ranges overlap: {a} {b}"
    );
    // Neither sees the other's processes.
    let pids = sh(rt, "ua", "ls -d /proc/[0-9]* | wc -l");
    assert!(pids.trim().parse::<u32>().unwrap() < 5, "{pids}");
    assert_host_dev_null_untouched();
}
