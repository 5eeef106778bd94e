//! End-to-end: what a container can see and do, checked from inside through the CLI.
//! Needs root; skips with a message otherwise.

use shoal_tests::{is_root, Testbed};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn inside(tb: &Testbed, name: &str, script: &str) -> (i32, String) {
    let out = tb.shoal(&["exec", name, "--", "sh", "-c", script]);
    (out.code, format!("{}{}", out.stdout, out.stderr))
}

#[test]
fn containers_are_confined() {
    if !is_root() {
        eprintln!("skipping: end-to-end tests need root");
        return;
    }
    let tb = Testbed::up(1).expect("test bed up");
    tb.shoal(&[
        "launch",
        "busybox",
        "s1",
        "-c",
        "limits.memory=32MiB",
        "-c",
        "limits.processes=40",
    ])
    .ok();

    // Only its own processes.
    let (_, ps) = inside(&tb, "s1", "ps -o pid,comm");
    let pids: Vec<&str> = ps.lines().skip(1).collect();
    assert!(pids.len() <= 4, "only the container's processes: {ps}");
    assert!(pids[0].trim().starts_with("1 "), "{ps}");
    // No host mount visible: the host's data directory does not appear.
    let data = tb.host_dir("a");
    let (_, mounts) = inside(&tb, "s1", "cat /proc/self/mountinfo");
    assert!(!mounts.contains(data.to_str().unwrap()), "{mounts}");
    assert!(!mounts.contains("/work"), "{mounts}");
    // Root is unprivileged on the host.
    let (_, map) = inside(&tb, "s1", "cat /proc/self/uid_map");
    let base: u64 = map.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(base >= 100_000, "{map}");
    // Masked and read-only kernel paths.
    for path in ["/proc/kcore", "/proc/keys", "/proc/timer_list"] {
        let (_, n) = inside(
            &tb,
            "s1",
            &format!("cat {path} 2>/dev/null | head -c 1 | wc -c"),
        );
        assert_eq!(n.trim(), "0", "{path} must be masked");
    }
    let (code, _) = inside(&tb, "s1", "echo 1 > /proc/sys/vm/drop_caches");
    assert_ne!(code, 0, "/proc/sys must be read-only");
    let (code, _) = inside(&tb, "s1", "echo b > /proc/sysrq-trigger");
    assert_ne!(code, 0);
    // No inherited descriptors: 0, 1, 2 and the one `ls` opens.
    let (_, fds) = inside(&tb, "s1", "ls /proc/self/fd");
    let fds: Vec<&str> = fds.split_whitespace().collect();
    assert!(fds.len() <= 4, "{fds:?}");
    // A fork bomb hits limits.processes: the shell cannot fork past it; the container lives on.
    let (code, out) = inside(
        &tb,
        "s1",
        "for i in $(seq 60); do sleep 2 & done; echo all started",
    );
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains("can't fork") && !out.contains("all started"),
        "{out}"
    );
    std::thread::sleep(std::time::Duration::from_secs(3));
    // Memory stays within limits.memory: the hog is killed, the container lives on.
    let (code, _) = inside(&tb, "s1", "head -c 200m /dev/zero | tail > /dev/null");
    assert_ne!(code, 0, "a 200 MB allocation must not succeed under 32 MiB");
    let list = tb.shoal(&["list", "--format", "json"]).ok().json();
    assert_eq!(list[0]["status"], "Running", "{list}");
    // The host's /dev/null was never touched.
    let null = std::fs::metadata("/dev/null").unwrap();
    assert_eq!((null.uid(), null.permissions().mode() & 0o777), (0, 0o666));
    tb.down();
}
